//! The one error type of every domain operation. The gRPC edge maps each variant to a status
//! code with google.rpc details; the variants carry what a person needs to fix the problem and
//! never a secret.

use std::time::Duration;

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Machine-readable reason for a FAILED_PRECONDITION, ABORTED, RESOURCE_EXHAUSTED or
/// UNAVAILABLE error, carried as `google.rpc.ErrorInfo.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReason {
    /// The object changed since the client read it (optimistic concurrency).
    EtagMismatch,
    /// Another request changed the same object at the same moment; retry.
    ConcurrentChange,
    /// No access token was presented.
    AccessTokenMissing,
    /// The access token expired; refresh it.
    AccessTokenExpired,
    /// The access token is not acceptable (malformed, forged, foreign, wrong kind).
    AccessTokenInvalid,
    /// The caller's account no longer exists.
    AccountNotFound,
    /// The database or another dependency is not reachable.
    DependencyUnavailable,
    /// The user has not stored an API key for the provider.
    ApiKeyMissing,
    /// The provider rejected the API key.
    ApiKeyInvalid,
    /// The provider (e.g. Gemini) could not be reached or failed.
    ProviderUnavailable,
    /// The provider answered that a quota or rate limit is exhausted.
    ProviderRateLimited,
    /// The key-encryption service (local master key or KMS) is unreachable or throttling.
    KeyServiceUnavailable,
    /// The key-encryption service refused: key disabled, pending deletion, access denied.
    KeyServiceRejected,
    /// A client message id was used before for another session or text.
    ClientMessageIdConflict,
    /// The provider does not serve the requested model.
    ModelNotFound,
    /// The user's monthly token budget is spent.
    TokenBudgetExhausted,
    /// An earlier send with the same client message id is still running.
    MessageInProgress,
    /// The provider's stream broke off after part of the reply had arrived.
    ProviderStreamInterrupted,
    /// The redirect URI is not in the server's allowlist.
    RedirectUriNotAllowed,
    /// The login state is unknown, expired or already used.
    LoginStateInvalid,
    /// The identity provider rejected the authorization code or PKCE verifier.
    AuthorizationCodeInvalid,
    /// An ID token failed a check, or was presented a second time.
    IdTokenInvalid,
    /// The identity provider has not verified the account's email address.
    EmailNotVerified,
    /// The account's hosted domain is not allowed to sign in.
    DomainNotAllowed,
    /// The refresh token is unknown, malformed or expired.
    RefreshTokenInvalid,
    /// A used refresh token was presented again; the session was revoked.
    RefreshTokenReused,
    /// The session was signed out or revoked.
    SessionRevoked,
    /// The identity provider (discovery, keys or token endpoint) is unreachable or failing.
    IdentityProviderUnavailable,
    /// Too many requests from this client or for this account; retry later.
    RateLimited,
    /// A confirmation field does not match.
    ConfirmationMismatch,
    /// Google refused the stored refresh token: the user must sign in again with consent.
    GoogleReauthRequired,
    /// The service account that signed the token was revoked.
    ServiceAccountRevoked,
    /// The service account may not call this RPC.
    RpcNotAllowed,
    /// The service account may not act for this user.
    UserNotAllowed,
    /// The server is shutting down (a deploy or restart) and stopped the call; another
    /// server, or this one once restarted, answers a retry.
    ServerShuttingDown,
    /// A watch cursor points before the oldest event still kept; re-read the state and watch
    /// from now.
    CursorExpired,
    /// A watcher fell too far behind its events and was dropped; reconnect with its cursor.
    WatchTooSlow,
    /// The user has not connected Gmail (or disconnected it).
    GmailNotConnected,
    /// The stored Google grant lacks the `gmail.readonly` scope; reconnect with Gmail access.
    GmailScopeMissing,
    /// Another sync of the same mailbox is running (on this or another replica).
    SyncInProgress,
    /// Gmail answered that the user's quota or rate limit is exhausted.
    GmailRateLimited,
    /// Gmail could not be reached or failed.
    GmailUnavailable,
}

impl ErrorReason {
    /// The UPPER_SNAKE_CASE reason string clients match on.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EtagMismatch => "ETAG_MISMATCH",
            Self::ConcurrentChange => "CONCURRENT_CHANGE",
            Self::AccessTokenMissing => "ACCESS_TOKEN_MISSING",
            Self::AccessTokenExpired => "ACCESS_TOKEN_EXPIRED",
            Self::AccessTokenInvalid => "ACCESS_TOKEN_INVALID",
            Self::AccountNotFound => "ACCOUNT_NOT_FOUND",
            Self::DependencyUnavailable => "DEPENDENCY_UNAVAILABLE",
            Self::ApiKeyMissing => "API_KEY_MISSING",
            Self::ApiKeyInvalid => "API_KEY_INVALID",
            Self::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Self::ProviderRateLimited => "PROVIDER_RATE_LIMITED",
            Self::KeyServiceUnavailable => "KEY_SERVICE_UNAVAILABLE",
            Self::KeyServiceRejected => "KEY_SERVICE_REJECTED",
            Self::ClientMessageIdConflict => "CLIENT_MESSAGE_ID_CONFLICT",
            Self::ModelNotFound => "MODEL_NOT_FOUND",
            Self::TokenBudgetExhausted => "TOKEN_BUDGET_EXHAUSTED",
            Self::MessageInProgress => "MESSAGE_IN_PROGRESS",
            Self::ProviderStreamInterrupted => "PROVIDER_STREAM_INTERRUPTED",
            Self::RedirectUriNotAllowed => "REDIRECT_URI_NOT_ALLOWED",
            Self::LoginStateInvalid => "LOGIN_STATE_INVALID",
            Self::AuthorizationCodeInvalid => "AUTHORIZATION_CODE_INVALID",
            Self::IdTokenInvalid => "ID_TOKEN_INVALID",
            Self::EmailNotVerified => "EMAIL_NOT_VERIFIED",
            Self::DomainNotAllowed => "DOMAIN_NOT_ALLOWED",
            Self::RefreshTokenInvalid => "REFRESH_TOKEN_INVALID",
            Self::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
            Self::SessionRevoked => "SESSION_REVOKED",
            Self::IdentityProviderUnavailable => "IDENTITY_PROVIDER_UNAVAILABLE",
            Self::RateLimited => "RATE_LIMITED",
            Self::ConfirmationMismatch => "CONFIRMATION_MISMATCH",
            Self::GoogleReauthRequired => "GOOGLE_REAUTH_REQUIRED",
            Self::ServiceAccountRevoked => "SERVICE_ACCOUNT_REVOKED",
            Self::RpcNotAllowed => "RPC_NOT_ALLOWED",
            Self::UserNotAllowed => "USER_NOT_ALLOWED",
            Self::ServerShuttingDown => "SERVER_SHUTTING_DOWN",
            Self::CursorExpired => "CURSOR_EXPIRED",
            Self::WatchTooSlow => "WATCH_TOO_SLOW",
            Self::GmailNotConnected => "GMAIL_NOT_CONNECTED",
            Self::GmailScopeMissing => "GMAIL_SCOPE_MISSING",
            Self::SyncInProgress => "SYNC_IN_PROGRESS",
            Self::GmailRateLimited => "GMAIL_RATE_LIMITED",
            Self::GmailUnavailable => "GMAIL_UNAVAILABLE",
        }
    }
}

/// One invalid field of a request: the path names the field as the client sent it
/// (e.g. `preferences.timezone`), the description says what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Dotted path of the offending field in the request.
    pub field: String,
    /// What is wrong with the value, for humans.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field` described by `description`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A value that failed domain validation, before the edge knows which request field held it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    /// Attaches the request field path, turning the problem into a [`FieldViolation`].
    #[must_use]
    pub fn at(self, field: impl Into<String>) -> FieldViolation {
        FieldViolation::new(field, self.0)
    }
}

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; every offending field is listed.
    #[error("invalid argument: {}", describe(violations))]
    InvalidArgument {
        /// The offending fields, at least one.
        violations: Vec<FieldViolation>,
        /// A machine-readable reason when the value is well-formed but refused (e.g. a
        /// provider rejected an API key), carried as ErrorInfo beside the violations.
        reason: Option<ErrorReason>,
    },
    /// The caller is not authenticated; the message says why without revealing secrets.
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// Machine-readable reason, e.g. whether refreshing the token helps.
        reason: ErrorReason,
        /// What is wrong, for humans.
        message: String,
    },
    /// The caller is authenticated but may not do this.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// Machine-readable reason.
        reason: ErrorReason,
        /// What is not allowed, for humans.
        message: String,
    },
    /// The object does not exist, or belongs to someone else (the two are indistinguishable).
    #[error("{resource} {id} not found")]
    NotFound {
        /// Kind of object, e.g. "chat session".
        resource: &'static str,
        /// The id the caller asked for.
        id: String,
    },
    /// The system is not in a state that allows the operation; the user must act first.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine-readable reason.
        reason: ErrorReason,
        /// What to do, for humans.
        message: String,
    },
    /// A concurrency conflict; re-read and retry.
    #[error("{message}")]
    Aborted {
        /// Machine-readable reason.
        reason: ErrorReason,
        /// What happened, for humans.
        message: String,
    },
    /// A quota or rate limit is exhausted; retry after the given delay.
    #[error("{message}")]
    ResourceExhausted {
        /// Machine-readable reason.
        reason: ErrorReason,
        /// Which limit, for humans.
        message: String,
        /// How long the client should wait before retrying, if known.
        retry_after: Option<Duration>,
    },
    /// A dependency is temporarily unavailable; retrying later may succeed.
    #[error("{message}")]
    Unavailable {
        /// Machine-readable reason.
        reason: ErrorReason,
        /// What is unavailable, for humans.
        message: String,
        /// How long the client should wait before retrying, if known.
        retry_after: Option<Duration>,
    },
    /// A bug or an unexpected failure. The cause is logged, never shown to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// An INVALID_ARGUMENT error for a single field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument {
            violations: vec![FieldViolation::new(field, description)],
            reason: None,
        }
    }

    /// An internal error wrapping `cause`, which is logged but never shown.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Self::InvalidArgument {
            violations: vec![violation],
            reason: None,
        }
    }
}

impl From<Vec<FieldViolation>> for Error {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::InvalidArgument {
            violations,
            reason: None,
        }
    }
}
