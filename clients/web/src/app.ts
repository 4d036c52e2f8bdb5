// What every screen shares: the client of this tab, element lookup and errors in words.
import { Code, ConnectError, LoginRedirectError, createAssistdClient, describeError, fieldViolations, watchPreferences } from "@assistd/client";
import type { AssistdClient, TokenStore, Tokens } from "@assistd/client";

declare global {
  interface Window {
    ASSISTD_CONFIG?: { apiUrl?: string };
    /**
     * The app's client and the client package's `watchPreferences`, for the browser console and
     * the browser tests.
     */
    assistd?: { client: AssistdClient; watchPreferences: typeof watchPreferences };
  }
}

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
};

/** Creates an element with a class and text (never HTML). */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = "", text = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text) e.textContent = text;
  return e;
}

/** A button that runs `action` on click. */
export function button(text: string, className: string, action: () => void | Promise<void>): HTMLButtonElement {
  const b = el("button", className, text);
  b.type = "button";
  b.addEventListener("click", () => void action());
  return b;
}

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

export const apiUrl = window.ASSISTD_CONFIG?.apiUrl ?? "http://127.0.0.1:50051";

/** The client of this tab; tokens live in sessionStorage, so a reload keeps the session. */
export const client = createAssistdClient({
  baseUrl: apiUrl,
  session: { store: sessionStorageTokens("assistd.tokens") },
});
window.assistd = { client, watchPreferences };

/** An error in words: the server's message, or what a browser means by a failed fetch. */
export function words(err: unknown): string {
  if (err instanceof LoginRedirectError) return err.message;
  const e = ConnectError.from(err);
  if ((e.code === Code.Unknown || e.code === Code.Unavailable) && /fetch|network/i.test(e.rawMessage)) {
    return `Cannot reach the server at ${apiUrl} (${e.rawMessage}).`;
  }
  const d = describeError(err);
  return d.message || d.codeName;
}

/** Shows field violations next to their fields (`preferences.timezone` → #timezone-error). */
export function showFieldErrors(err: unknown, fields: Record<string, string>, fallback: HTMLElement): void {
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

/** A protobuf Timestamp as local date and time. */
export function when(t: { seconds: bigint; nanos: number } | undefined): string {
  return t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toLocaleString() : "";
}
