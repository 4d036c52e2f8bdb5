import type { CompleteLoginResponse, SignInWithIdTokenResponse } from "../gen/assistd/auth/v1/auth_pb.js";
import type { AssistdClient } from "./client.js";
import { tokensFromProto } from "./tokens.js";

/** Where the redirect sign-in keeps its `state` between BeginLogin and the redirect back. */
export interface LoginStateStore {
  save(state: string): void | Promise<void>;
  load(): string | undefined | null | Promise<string | undefined | null>;
  clear(): void | Promise<void>;
}

const STATE_KEY = "assistd.login_state";

/** sessionStorage when the runtime has it (browsers), otherwise memory. */
export function defaultLoginStateStore(): LoginStateStore {
  const storage = (globalThis as { sessionStorage?: Storage }).sessionStorage;
  if (storage) {
    return {
      save: (s) => storage.setItem(STATE_KEY, s),
      load: () => storage.getItem(STATE_KEY),
      clear: () => storage.removeItem(STATE_KEY),
    };
  }
  let value: string | undefined;
  return {
    save: (s) => {
      value = s;
    },
    load: () => value,
    clear: () => {
      value = undefined;
    },
  };
}

/** The redirect came back without a matching state, or with an error from the provider. */
export class LoginRedirectError extends Error {
  constructor(
    message: string,
    readonly kind: "STATE_MISMATCH" | "PROVIDER_ERROR" | "MISSING_CODE",
  ) {
    super(message);
    this.name = "LoginRedirectError";
  }
}

export interface BeginRedirectLoginOptions {
  redirectUri: string;
  requestGmailAccess?: boolean;
  loginHint?: string;
  stateStore?: LoginStateStore;
}

/**
 * Starts the redirect sign-in: BeginLogin, then keeps the returned state. The app navigates the
 * top-level window to `authorizationUrl` (`location.assign(url)`).
 */
export async function beginRedirectLogin(
  client: AssistdClient,
  options: BeginRedirectLoginOptions,
): Promise<{ authorizationUrl: string; state: string }> {
  const res = await client.auth.beginLogin({
    redirectUri: options.redirectUri,
    requestGmailAccess: options.requestGmailAccess ?? false,
    loginHint: options.loginHint ?? "",
  });
  await (options.stateStore ?? defaultLoginStateStore()).save(res.state);
  return { authorizationUrl: res.authorizationUrl, state: res.state };
}

export interface CompleteRedirectLoginOptions {
  /** The URL the provider redirected to (e.g. `location.href`), with `state` and `code`. */
  callbackUrl: string | URL;
  deviceName?: string;
  stateStore?: LoginStateStore;
}

/**
 * Finishes the redirect sign-in: checks that the redirect's `state` equals the stored one
 * (LoginRedirectError otherwise, and no call is made), calls CompleteLogin and stores the tokens.
 */
export async function completeRedirectLogin(
  client: AssistdClient,
  options: CompleteRedirectLoginOptions,
): Promise<CompleteLoginResponse> {
  const store = options.stateStore ?? defaultLoginStateStore();
  const url = new URL(options.callbackUrl);
  const expected = await store.load();
  await store.clear();
  const state = url.searchParams.get("state");
  if (!expected || !state || state !== expected) {
    throw new LoginRedirectError("the sign-in redirect does not belong to this browser's login", "STATE_MISMATCH");
  }
  const providerError = url.searchParams.get("error");
  if (providerError) {
    const description = url.searchParams.get("error_description");
    throw new LoginRedirectError(`sign-in failed: ${providerError}${description ? `: ${description}` : ""}`, "PROVIDER_ERROR");
  }
  const code = url.searchParams.get("code");
  if (!code) throw new LoginRedirectError("the sign-in redirect carries no code", "MISSING_CODE");
  const res = await client.auth.completeLogin({ state, code, deviceName: options.deviceName ?? "" });
  await client.session.setTokens(tokensFromProto(res.tokens));
  return res;
}

export interface IdTokenSignInOptions {
  /** The Google ID token (Google Identity Services `credential`). */
  idToken: string;
  /** The nonce given to Google Identity Services, if any. */
  nonce?: string;
  deviceName?: string;
}

/** Signs in with a Google ID token (Google Identity Services) and stores the tokens. */
export async function signInWithIdToken(
  client: AssistdClient,
  options: IdTokenSignInOptions,
): Promise<SignInWithIdTokenResponse> {
  const res = await client.auth.signInWithIdToken({
    idToken: options.idToken,
    nonce: options.nonce ?? "",
    deviceName: options.deviceName ?? "",
  });
  await client.session.setTokens(tokensFromProto(res.tokens));
  return res;
}
