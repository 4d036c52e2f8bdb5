// The reference web app: plain DOM on @assistd/client. One page; the screens are sections shown
// one at a time. Tokens live in sessionStorage, so a reload or the sign-in redirect keeps the
// session of this tab and nothing else.
import {
  ApiKeyProvider,
  AuditOutcome,
  Code,
  ConnectError,
  beginRedirectLogin,
  completeRedirectLogin,
  watchPreferences,
} from "@assistd/client";
import type { PreferencesWatch, SessionEndReason, SessionEndedEvent } from "@assistd/client";
import { $, client, el, showFieldErrors, when, words } from "./app.js";
import { closeSession, loadSessions, stopStreaming } from "./chat.js";
import { loadMemories } from "./memories.js";
import { loadUsage } from "./usage.js";

const PROVIDER_GEMINI = ApiKeyProvider.GEMINI;
const KEY_STATUS: Record<number, string> = { 0: "unknown", 1: "valid", 2: "invalid", 3: "not yet checked" };
const THEME_NAMES: Record<number, string> = { 1: "light", 2: "dark", 3: "system" };
const AUDIT_ACTIONS: Record<number, string> = {
  1: "Signed in",
  2: "Sign-in failed",
  3: "Session refreshed",
  4: "Refresh token reused: session revoked",
  5: "Signed out",
  6: "Device signed out",
  7: "Profile updated",
  8: "API key stored",
  9: "API key validated",
  10: "API key deleted",
  11: "API key used",
  12: "Token budget set",
  13: "Token budget cleared",
  14: "Gmail connected",
  15: "Gmail disconnected",
  16: "Google asked to reconnect",
  17: "A service acted for you",
};
const AUDIT_FAILURE = AuditOutcome.FAILURE;

const SESSION_END_WORDS: Record<SessionEndReason, string> = {
  SIGNED_OUT: "You signed out.",
  SESSION_REVOKED: "This device was signed out from another device.",
  REFRESH_TOKEN_REUSED: "Your session was ended for safety: its credentials were used twice.",
  REFRESH_TOKEN_INVALID: "Your session has expired. Sign in again.",
  ACCOUNT_NOT_FOUND: "This account no longer exists.",
} as Record<SessionEndReason, string>;

client.session.onSessionEnded(({ reason }: SessionEndedEvent) => showSignIn(SESSION_END_WORDS[reason] ?? `Signed out (${reason}).`));

// ---------------------------------------------------------------- screens

type Screen = "signin" | "chat" | "memories" | "usage" | "apikey" | "preferences" | "devices";
const screens: Screen[] = ["signin", "chat", "memories", "usage", "apikey", "preferences", "devices"];
let watch: PreferencesWatch | undefined;

function show(screen: Screen): void {
  for (const s of screens) $(`screen-${s}`).hidden = s !== screen;
  $("nav").hidden = screen === "signin";
  for (const b of document.querySelectorAll<HTMLButtonElement>("#nav [data-screen]")) {
    b.setAttribute("aria-current", String(b.dataset.screen === screen));
  }
  if (screen === "chat") void loadSessions();
  if (screen === "memories") void loadMemories();
  if (screen === "usage") void loadUsage();
  if (screen === "apikey") void loadKey();
  if (screen === "preferences") void loadPreferences();
  if (screen === "devices") void loadDevices();
}

function showSignIn(reason?: string): void {
  watch?.stop();
  watch = undefined;
  stopStreaming();
  closeSession();
  $("whoami").textContent = "";
  $("signin-reason").hidden = !reason;
  $("signin-reason").textContent = reason ?? "";
  show("signin");
}

async function enterApp(): Promise<void> {
  try {
    const { user } = await client.auth.getCurrentUser({});
    $("whoami").textContent = user ? `${user.displayName || user.email} (${user.email})` : "";
  } catch (err) {
    if (!(await client.session.signedIn())) return; // onSessionEnded showed the sign-in screen
    $("signin-error").textContent = words(err);
    return;
  }
  startWatch();
  show("chat");
}

// ---------------------------------------------------------------- sign-in

const redirectUri = `${location.origin}/auth/callback`;

$("sign-in").addEventListener("click", async () => {
  $("signin-error").textContent = "";
  sessionStorage.setItem("assistd.device_name", $<HTMLInputElement>("device-name").value.trim());
  try {
    const { authorizationUrl } = await beginRedirectLogin(client, { redirectUri });
    location.assign(authorizationUrl);
  } catch (err) {
    $("signin-error").textContent = words(err);
  }
});

$("sign-out").addEventListener("click", async () => {
  try {
    await client.signOut();
  } catch {
    // The tokens are forgotten whatever the server said.
  }
  showSignIn("You signed out.");
});

for (const b of document.querySelectorAll<HTMLButtonElement>("#nav [data-screen]")) {
  b.addEventListener("click", () => show(b.dataset.screen as Screen));
}

// ---------------------------------------------------------------- API key

async function loadKey(): Promise<void> {
  $("key-message").textContent = "";
  void loadAudit(true);
  try {
    const { apiKey } = await client.apiKeys.getApiKey({ provider: PROVIDER_GEMINI });
    $("key-hint").textContent = apiKey?.maskedHint || "none";
    $("key-status").textContent = apiKey ? (KEY_STATUS[apiKey.status] ?? String(apiKey.status)) + (apiKey.statusDetail ? `: ${apiKey.statusDetail}` : "") : "—";
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) {
      $("key-hint").textContent = "none";
      $("key-status").textContent = "no key stored";
    } else {
      $("key-message").textContent = words(err);
    }
  }
}

let auditToken = "";

/** The user's audit trail, newest first: sign-ins, key changes, budget changes… */
async function loadAudit(first: boolean): Promise<void> {
  try {
    const res = await client.apiKeys.listAuditEvents({ pageSize: 20, pageToken: first ? "" : auditToken });
    const rows = res.events.map((e) => {
      const li = el("li", e.outcome === AUDIT_FAILURE ? "failure" : "");
      const what = AUDIT_ACTIONS[e.action] ?? `Event ${e.action}`;
      li.append(el("span", "", `${when(e.createTime)} — ${what}${e.outcome === AUDIT_FAILURE ? " (failed)" : ""}`));
      if (e.ipAddress) li.append(el("small", "", ` from ${e.ipAddress}`));
      return li;
    });
    if (first) $("audit").replaceChildren(...rows);
    else $("audit").append(...rows);
    auditToken = res.nextPageToken;
    $("audit-more").hidden = auditToken === "";
  } catch (err) {
    $("key-message").textContent = words(err);
  }
}
$("audit-more").addEventListener("click", () => void loadAudit(false));

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("api-key-error").textContent = "";
  $("key-message").textContent = "";
  const input = $<HTMLInputElement>("api-key");
  try {
    await client.apiKeys.setApiKey({ provider: PROVIDER_GEMINI, apiKey: input.value.trim() });
    input.value = "";
    await loadKey();
  } catch (err) {
    showFieldErrors(err, { api_key: "api-key-error" }, $("key-message"));
  }
});

$("key-validate").addEventListener("click", async () => {
  $("key-message").textContent = "";
  try {
    await client.apiKeys.validateApiKey({ provider: PROVIDER_GEMINI });
    await loadKey();
  } catch (err) {
    $("key-message").textContent = words(err);
    await loadKey().catch(() => undefined);
  }
});

$("key-delete").addEventListener("click", async () => {
  try {
    await client.apiKeys.deleteApiKey({ provider: PROVIDER_GEMINI });
    await loadKey();
  } catch (err) {
    $("key-message").textContent = words(err);
  }
});

// ---------------------------------------------------------------- preferences

let prefsLoaded = false;

function applyTheme(theme: number): void {
  document.documentElement.dataset.theme = THEME_NAMES[theme] ?? "system";
}

function fillPreferences(p: { theme: number; language: string; timezone: string }): void {
  applyTheme(p.theme);
  $<HTMLSelectElement>("theme").value = String(p.theme);
  const lang = $<HTMLSelectElement>("language");
  if (![...lang.options].some((o) => o.value === p.language)) lang.append(new Option(p.language, p.language));
  lang.value = p.language;
  if (document.activeElement !== $("timezone")) $<HTMLInputElement>("timezone").value = p.timezone;
}

async function loadPreferences(): Promise<void> {
  $("prefs-message").textContent = "";
  try {
    if (!prefsLoaded) {
      const [themes, languages] = await Promise.all([client.preferences.listThemes({}), client.preferences.listLanguages({})]);
      $("theme").replaceChildren(...themes.themes.map((t) => new Option(t.displayName, String(t.theme))));
      $("language").replaceChildren(...languages.languages.map((l) => new Option(`${l.displayName} (${l.nativeName})`, l.tag)));
      prefsLoaded = true;
    }
    const { preferences } = await client.preferences.getPreferences({});
    if (preferences) fillPreferences(preferences);
    $("prefs-form").dataset.loaded = "true";
  } catch (err) {
    $("prefs-message").textContent = words(err);
  }
}

function clearPrefErrors(): void {
  for (const id of ["theme-error", "language-error", "timezone-error", "prefs-message"]) $(id).textContent = "";
}

async function savePreferences(paths: string[]): Promise<void> {
  clearPrefErrors();
  try {
    const { preferences } = await client.preferences.updatePreferences({
      preferences: {
        theme: Number($<HTMLSelectElement>("theme").value),
        language: $<HTMLSelectElement>("language").value,
        timezone: $<HTMLInputElement>("timezone").value.trim(),
      },
      updateMask: { paths },
    });
    if (preferences) fillPreferences(preferences);
    $("prefs-message").textContent = "Saved.";
  } catch (err) {
    showFieldErrors(
      err,
      { "preferences.theme": "theme-error", "preferences.language": "language-error", "preferences.timezone": "timezone-error" },
      $("prefs-message"),
    );
  }
}

// The theme applies at once and is saved at once; language and timezone with Save.
$("theme").addEventListener("change", () => {
  applyTheme(Number($<HTMLSelectElement>("theme").value));
  void savePreferences(["theme"]);
});
$("prefs-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void savePreferences(["language", "timezone"]);
});

let tzQuery = 0;
$("timezone").addEventListener("input", async () => {
  const filter = $<HTMLInputElement>("timezone").value.trim();
  const mine = ++tzQuery;
  try {
    const { timezones } = await client.preferences.listTimezones({ filter, pageSize: 20 });
    if (mine === tzQuery) $("timezones").replaceChildren(...timezones.map((t) => new Option(t, t)));
  } catch {
    // Suggestions only; Save reports real errors.
  }
});

function startWatch(): void {
  watch?.stop();
  watch = watchPreferences(client, {
    onPreferences: (p) => {
      if (prefsLoaded) fillPreferences(p);
      else applyTheme(p.theme);
    },
  });
}

// ---------------------------------------------------------------- devices

async function loadDevices(): Promise<void> {
  $("devices-error").textContent = "";
  try {
    const { sessions } = await client.auth.listSessions({ pageSize: 50 });
    $("devices").replaceChildren(
      ...sessions.map((s) => {
        const li = document.createElement("li");
        li.dataset.id = s.id;
        const seen = when(s.lastUsedTime) || "never";
        li.textContent = `${s.deviceName || "Unnamed device"}${s.current ? " (this device)" : ""} — last used ${seen} `;
        if (!s.current) {
          const b = document.createElement("button");
          b.textContent = "Sign out this device";
          b.className = "revoke";
          b.addEventListener("click", async () => {
            try {
              await client.auth.revokeSession({ sessionId: s.id });
              await loadDevices();
            } catch (err) {
              $("devices-error").textContent = words(err);
            }
          });
          li.append(b);
        }
        return li;
      }),
    );
  } catch (err) {
    $("devices-error").textContent = words(err);
  }
}
$("devices-refresh").addEventListener("click", () => void loadDevices());

// ---------------------------------------------------------------- start

async function start(): Promise<void> {
  $<HTMLInputElement>("device-name").value = sessionStorage.getItem("assistd.device_name") || "Web browser";
  if (location.pathname === "/auth/callback") {
    try {
      await completeRedirectLogin(client, {
        callbackUrl: location.href,
        deviceName: sessionStorage.getItem("assistd.device_name") || "Web browser",
      });
    } catch (err) {
      history.replaceState(null, "", "/");
      showSignIn();
      $("signin-error").textContent = words(err);
      return;
    }
    history.replaceState(null, "", "/");
  }
  if (await client.session.signedIn()) await enterApp();
  else showSignIn();
}

void start();
