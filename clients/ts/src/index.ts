export { createAssistdClient } from "./client.js";
export type { AssistdClient, AssistdClientOptions, TransportInit } from "./client.js";
export { AssistdSession } from "./session.js";
export type { SessionEndReason, SessionEndedEvent, SessionOptions } from "./session.js";
export { isUnsentRequestError, retryUnsentRequests } from "./retry.js";
export { memoryTokenStore, tokensFromProto } from "./tokens.js";
export type { TokenStore, Tokens } from "./tokens.js";
export {
  Reason,
  describeError,
  errorInfo,
  errorReason,
  fieldViolations,
  isError,
  resourceInfo,
  retryDelayMs,
} from "./errors.js";
export type { AssistdError, ErrorInfoValue, ResourceInfoValue } from "./errors.js";
export { backoffDelay, watchPreferences } from "./watch.js";
export type { BackoffOptions, PreferencesWatch, WatchPreferencesOptions, WatchState } from "./watch.js";
export {
  LoginRedirectError,
  beginRedirectLogin,
  completeRedirectLogin,
  defaultLoginStateStore,
  signInWithIdToken,
} from "./signin.js";
export type {
  BeginRedirectLoginOptions,
  CompleteRedirectLoginOptions,
  IdTokenSignInOptions,
  LoginStateStore,
} from "./signin.js";
export { Code, ConnectError } from "@connectrpc/connect";
