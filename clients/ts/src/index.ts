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

// The contracts. Enums are exported by name so that apps compare with `Theme.DARK`, never with
// the number 2; message types for the values apps keep and show. Names that two packages share
// are exported under the name of what they are (`ChatSession`, `DeviceSession`, `ChatUsage`).
// Everything else generated (requests, responses, schemas for `create`) is in the per-package
// namespaces `authV1`, `apikeyV1`, `chatV1`, `preferencesV1` and `gmailV1`.
export { AuthService, SignInMethod } from "../gen/assistd/auth/v1/auth_pb.js";
export type { Session as DeviceSession, SessionTokens, User } from "../gen/assistd/auth/v1/auth_pb.js";
export {
  ApiKeyStatus,
  AuditAction,
  AuditOutcome,
  Provider as ApiKeyProvider,
  UserApiKeyService,
} from "../gen/assistd/apikey/v1/apikey_pb.js";
export type { ApiKey, AuditEvent, TokenBudget, UsageRecord } from "../gen/assistd/apikey/v1/apikey_pb.js";
export {
  ArchivedFilter,
  ChatService,
  ExchangeOutcome,
  FinishReason,
  ListMessagesDirection,
  MessageRole,
} from "../gen/assistd/chat/v1/chat_pb.js";
export type {
  ExchangeCompleted,
  ExchangeFinished,
  FunctionCall,
  FunctionResult,
  Memory,
  Message,
  MessageError,
  MessageMetadata,
  Model,
  ReplyDelta,
  SearchHit,
  Session as ChatSession,
  SessionDeleted,
  SnippetSegment,
  StreamMessageResponse,
  TextDelta,
  Usage as ChatUsage,
  WatchChatResponse,
  WatchStarted,
} from "../gen/assistd/chat/v1/chat_pb.js";
export { PreferencesSchema, PreferencesService, Theme } from "../gen/assistd/preferences/v1/preferences_pb.js";
export type { Language, Preferences, ThemeOption } from "../gen/assistd/preferences/v1/preferences_pb.js";
export {
  GmailConnectionState,
  GmailService,
  TriageCategory,
  TriagePriority,
} from "../gen/assistd/gmail/v1/gmail_pb.js";
export type { GmailConnection, MailMessage, MailSummary, TriageResult } from "../gen/assistd/gmail/v1/gmail_pb.js";
export * as authV1 from "../gen/assistd/auth/v1/auth_pb.js";
export * as apikeyV1 from "../gen/assistd/apikey/v1/apikey_pb.js";
export * as chatV1 from "../gen/assistd/chat/v1/chat_pb.js";
export * as preferencesV1 from "../gen/assistd/preferences/v1/preferences_pb.js";
export * as gmailV1 from "../gen/assistd/gmail/v1/gmail_pb.js";
