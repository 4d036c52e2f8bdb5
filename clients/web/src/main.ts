// The reference web app: plain DOM on @assistd/client. One page; the screens are sections shown
// one at a time. Tokens live in sessionStorage, so a reload or the sign-in redirect keeps the
// session of this tab and nothing else.
import {
  Code,
  ConnectError,
  LoginRedirectError,
  beginRedirectLogin,
  completeRedirectLogin,
  createAssistdClient,
  describeError,
  fieldViolations,
  watchPreferences,
} from "@assistd/client";
import type { PreferencesWatch, SessionEndReason, SessionEndedEvent, TokenStore, Tokens } from "@assistd/client";

// Enum numbers of the contracts (assistd.*.v1); the client package exports the services, not
// the generated enums.
const PROVIDER_GEMINI = 1;
const KEY_STATUS: Record<number, string> = { 0: "unknown", 1: "valid", 2: "invalid", 3: "not yet checked" };
const ROLE_USER = 1;
const ROLE_MODEL = 2;
const THEME_NAMES: Record<number, string> = { 1: "light", 2: "dark", 3: "system" };

declare global {
  interface Window {
    ASSISTD_CONFIG?: { apiUrl?: string };
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
};

function sessionStorageTokens(key: string): TokenStore {
  return {
    get: () => {
      const raw = sessionStorage.getItem(key);
      return raw ? (JSON.parse(raw) as Tokens) : undefined;
    },
    set: (t) => sessionStorage.setItem(key, JSON.stringify(t)),
    clear: () => sessionStorage.removeItem(key),
  };
}

const SESSION_END_WORDS: Record<SessionEndReason, string> = {
  SIGNED_OUT: "You signed out.",
  SESSION_REVOKED: "This device was signed out from another device.",
  REFRESH_TOKEN_REUSED: "Your session was ended for safety: its credentials were used twice.",
  REFRESH_TOKEN_INVALID: "Your session has expired. Sign in again.",
  ACCOUNT_NOT_FOUND: "This account no longer exists.",
} as Record<SessionEndReason, string>;

const apiUrl = window.ASSISTD_CONFIG?.apiUrl ?? "http://127.0.0.1:50051";
const client = createAssistdClient({
  baseUrl: apiUrl,
  session: {
    store: sessionStorageTokens("assistd.tokens"),
    onSessionEnded: ({ reason }: SessionEndedEvent) => showSignIn(SESSION_END_WORDS[reason] ?? `Signed out (${reason}).`),
  },
});

/** An error in words: the server's message, or what a browser means by a failed fetch. */
function words(err: unknown): string {
  if (err instanceof LoginRedirectError) return err.message;
  const e = ConnectError.from(err);
  if ((e.code === Code.Unknown || e.code === Code.Unavailable) && /fetch|network/i.test(e.rawMessage)) {
    return `Cannot reach the server at ${apiUrl} (${e.rawMessage}).`;
  }
  const d = describeError(err);
  return d.message || d.codeName;
}

/** Shows field violations next to their fields (`preferences.timezone` → #timezone-error). */
function showFieldErrors(err: unknown, fields: Record<string, string>, fallback: HTMLElement): void {
  const violations = fieldViolations(err);
  let shown = false;
  for (const [path, messages] of Object.entries(violations)) {
    const target = fields[path];
    if (target) {
      $(target).textContent = messages.join(" ");
      shown = true;
    }
  }
  if (!shown) fallback.textContent = words(err);
}

// ---------------------------------------------------------------- screens

type Screen = "signin" | "chat" | "apikey" | "preferences" | "devices";
const screens: Screen[] = ["signin", "chat", "apikey", "preferences", "devices"];
let watch: PreferencesWatch | undefined;

function show(screen: Screen): void {
  for (const s of screens) $(`screen-${s}`).hidden = s !== screen;
  $("nav").hidden = screen === "signin";
  for (const b of document.querySelectorAll<HTMLButtonElement>("#nav [data-screen]")) {
    b.setAttribute("aria-current", String(b.dataset.screen === screen));
  }
  if (screen === "chat") void loadSessions();
  if (screen === "apikey") void loadKey();
  if (screen === "preferences") void loadPreferences();
  if (screen === "devices") void loadDevices();
}

function showSignIn(reason?: string): void {
  watch?.stop();
  watch = undefined;
  streamAbort?.abort();
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

// ---------------------------------------------------------------- chat

let currentSession = "";
let streamAbort: AbortController | undefined;

/** Refreshes the sidebar; returns the title of the current session ("" when it has none yet). */
async function loadSessions(): Promise<string> {
  try {
    const { sessions } = await client.chat.listSessions({ pageSize: 50 });
    const list = $("sessions");
    list.replaceChildren(
      ...sessions.map((s) => {
        const li = document.createElement("li");
        li.textContent = s.title || "New chat";
        li.dataset.id = s.id;
        li.classList.toggle("selected", s.id === currentSession);
        li.addEventListener("click", () => void openSession(s.id));
        return li;
      }),
    );
    return sessions.find((s) => s.id === currentSession)?.title ?? "";
  } catch (err) {
    $("chat-error").textContent = words(err);
    return "";
  }
}

/** The server titles a new session in the background after its first exchange: look again a few times. */
async function refreshUntilTitled(): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    if ((await loadSessions()) !== "" || !currentSession) return;
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

async function openSession(id: string): Promise<void> {
  currentSession = id;
  $("messages").replaceChildren();
  $("chat-error").textContent = "";
  for (const li of $("sessions").querySelectorAll<HTMLLIElement>("li")) li.classList.toggle("selected", li.dataset.id === id);
  try {
    // The newest 100, oldest first on screen (BACKWARD is the default direction).
    const { messages } = await client.chat.listMessages({ sessionId: id, pageSize: 100 });
    for (const m of messages.reverse()) {
      if (m.content.case !== "text") continue;
      bubble(m.role === ROLE_USER ? "user" : m.role === ROLE_MODEL ? "model" : "tool", m.content.value).dataset.state = "done";
    }
  } catch (err) {
    $("chat-error").textContent = words(err);
  }
}

function bubble(kind: "user" | "model" | "tool", text: string): HTMLLIElement {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

$("new-session").addEventListener("click", async () => {
  try {
    const { session } = await client.chat.createSession({});
    if (session) {
      await loadSessions();
      await openSession(session.id);
    }
  } catch (err) {
    $("chat-error").textContent = words(err);
  }
});

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const box = $<HTMLTextAreaElement>("message");
  const text = box.value.trim();
  if (!text || streamAbort) return;
  box.value = "";
  void send(text, crypto.randomUUID());
});

$("cancel").addEventListener("click", () => streamAbort?.abort());

/** Sends one message and renders the reply as it streams; a retry reuses the client message id. */
async function send(text: string, clientMessageId: string, userBubble?: HTMLLIElement): Promise<void> {
  $("chat-error").textContent = "";
  if (!currentSession) {
    try {
      const { session } = await client.chat.createSession({});
      currentSession = session?.id ?? "";
    } catch (err) {
      $("chat-error").textContent = words(err);
      return;
    }
  }
  const mine = userBubble ?? bubble("user", text);
  mine.dataset.state = "sending";
  let reply: HTMLLIElement | undefined;
  const abort = new AbortController();
  streamAbort = abort;
  $("send").hidden = true;
  $("cancel").hidden = false;
  try {
    for await (const res of client.chat.streamMessage({ sessionId: currentSession, clientMessageId, text }, { signal: abort.signal })) {
      const ev = res.event;
      switch (ev.case) {
        case "userMessage":
          mine.dataset.state = "done";
          break;
        case "textDelta":
          reply ??= bubble("model", "");
          reply.dataset.state = "streaming";
          reply.textContent += ev.value.text;
          break;
        case "functionCall":
          bubble("tool", `using ${ev.value.content.case === "functionCall" ? ev.value.content.value.name : "a tool"}…`).dataset.state = "done";
          break;
        case "modelMessage":
          // Text before a tool call is committed as its own message; the next text is new.
          if (reply) reply.dataset.state = "done";
          reply = undefined;
          break;
        case "completed":
          if (reply) reply.dataset.state = "done";
          break;
        default:
          break;
      }
    }
    void refreshUntilTitled();
  } catch (err) {
    if (abort.signal.aborted) {
      if (reply) reply.dataset.state = "cancelled";
      mine.dataset.state = "done";
    } else {
      mine.dataset.state = "failed";
      if (reply) reply.dataset.state = "failed";
      const p = $("chat-error");
      p.textContent = `${words(err)} `;
      const retry = document.createElement("button");
      retry.id = "retry";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => {
        reply?.remove();
        void send(text, clientMessageId, mine);
      });
      p.append(retry);
    }
  } finally {
    if (streamAbort === abort) streamAbort = undefined;
    $("send").hidden = false;
    $("cancel").hidden = true;
  }
}

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
        const seen = s.lastUsedTime ? new Date(Number(s.lastUsedTime.seconds) * 1000).toLocaleString() : "never";
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
