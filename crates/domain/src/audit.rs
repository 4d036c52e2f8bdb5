//! What the audit log records: who did what to which object, with what outcome, from where.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::UserId;

/// Where a request came from, taken from transport metadata at the edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id (the client's `x-request-id`, or one the server generated).
    pub request_id: String,
    /// The client's address: the peer address, or the `x-forwarded-for` entry added by a
    /// configured trusted proxy.
    pub client_ip: Option<IpAddr>,
    /// The client's `user-agent`, truncated.
    pub user_agent: Option<String>,
}

/// A security-relevant action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A sign-in completed.
    LoginSucceeded,
    /// A sign-in was refused.
    LoginFailed,
    /// A refresh token was exchanged for new tokens.
    TokenRefreshed,
    /// A used refresh token was presented again; its family was revoked.
    RefreshTokenReuseDetected,
    /// The user signed out of a session.
    SignedOut,
    /// A device session was revoked.
    SessionRevoked,
    /// The user changed their profile.
    ProfileUpdated,
    /// The user stored an API key.
    ApiKeySet,
    /// A stored API key was checked with its provider.
    ApiKeyValidated,
    /// The user deleted an API key.
    ApiKeyDeleted,
    /// The server decrypted an API key to call the provider for the user.
    ApiKeyRevealed,
    /// The user deleted their account.
    AccountDeleted,
    /// The user set or changed their monthly token budget.
    TokenBudgetSet,
    /// The user cleared their monthly token budget.
    TokenBudgetCleared,
    /// An administrator created a service account.
    ServiceAccountCreated,
    /// An administrator revoked a service account.
    ServiceAccountRevoked,
    /// A service account called an RPC for the user (or was refused).
    ServiceCall,
    /// The user's data was exported (by the user, or by an operator).
    DataExported,
    /// The user granted Gmail access (a sign-in that stored a refresh token with
    /// `gmail.readonly`).
    GmailConnected,
    /// The user disconnected Gmail.
    GmailDisconnected,
    /// Google refused the user's stored grant; Gmail needs a new consent.
    GoogleReauthRequired,
    /// A chat tool created a draft in the user's Gmail (never sent).
    GmailDraftCreated,
}

impl AuditAction {
    /// Every action, for parsing.
    pub const ALL: [AuditAction; 22] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::TokenRefreshed,
        Self::RefreshTokenReuseDetected,
        Self::SignedOut,
        Self::SessionRevoked,
        Self::ProfileUpdated,
        Self::ApiKeySet,
        Self::ApiKeyValidated,
        Self::ApiKeyDeleted,
        Self::ApiKeyRevealed,
        Self::AccountDeleted,
        Self::TokenBudgetSet,
        Self::TokenBudgetCleared,
        Self::ServiceAccountCreated,
        Self::ServiceAccountRevoked,
        Self::ServiceCall,
        Self::DataExported,
        Self::GmailConnected,
        Self::GmailDisconnected,
        Self::GoogleReauthRequired,
        Self::GmailDraftCreated,
    ];

    /// The stable name stored in the log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::TokenRefreshed => "token_refreshed",
            Self::RefreshTokenReuseDetected => "refresh_token_reuse_detected",
            Self::SignedOut => "signed_out",
            Self::SessionRevoked => "session_revoked",
            Self::ProfileUpdated => "profile_updated",
            Self::ApiKeySet => "api_key_set",
            Self::ApiKeyValidated => "api_key_validated",
            Self::ApiKeyDeleted => "api_key_deleted",
            Self::ApiKeyRevealed => "api_key_revealed",
            Self::AccountDeleted => "account_deleted",
            Self::TokenBudgetSet => "token_budget_set",
            Self::TokenBudgetCleared => "token_budget_cleared",
            Self::ServiceAccountCreated => "service_account_created",
            Self::ServiceAccountRevoked => "service_account_revoked",
            Self::ServiceCall => "service_call",
            Self::DataExported => "data_exported",
            Self::GmailConnected => "gmail_connected",
            Self::GmailDisconnected => "gmail_disconnected",
            Self::GoogleReauthRequired => "google_reauth_required",
            Self::GmailDraftCreated => "gmail_draft_created",
        }
    }

    /// The action stored under `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

/// Whether the audited action succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// It happened.
    Success,
    /// It was attempted and refused or failed.
    Failure,
}

impl AuditOutcome {
    /// The stable name stored in the log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One event to append. `metadata` must never hold a secret: callers put identifiers, hints
/// and counts there, never key material, tokens or message content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The user who acted, if known.
    pub actor: Option<UserId>,
    /// What was done.
    pub action: AuditAction,
    /// The object acted on, e.g. `api_key/gemini`.
    pub target: String,
    /// Whether it worked.
    pub outcome: AuditOutcome,
    /// Where the request came from.
    pub context: RequestContext,
    /// Extra non-secret facts.
    pub metadata: BTreeMap<String, String>,
}

/// One stored audit row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1 (a row below 1 is a forgery: see
    /// `ChainBreak::BeforeStart` in the store).
    pub seq: i64,
    /// Public id of the event.
    pub id: uuid::Uuid,
    /// When it was recorded (microsecond precision).
    pub occurred_at: DateTime<Utc>,
    /// Who acted, if known.
    pub actor: Option<UserId>,
    /// The action's stored name (see `AuditAction::as_str`).
    pub action: String,
    /// The object acted on.
    pub target: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Request id of the call that caused it.
    pub request_id: String,
    /// Client address.
    pub client_ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Non-secret facts.
    pub metadata: BTreeMap<String, String>,
}

/// Narrows a listing of audit events.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only these actions; empty means all.
    pub actions: Vec<AuditAction>,
    /// Only events at or after this time.
    pub start: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub end: Option<DateTime<Utc>>,
}
