//! Gmail: the link to the user's mailbox, the sync engine, and the synced copy sealed at
//! rest and searchable through a blind index.
//!
//! [`GmailService`] is one type; its operations live one group per file:
//! - `connection`: GetConnection and Disconnect;
//! - `sync`: one sync of one mailbox under its lease (full or incremental);
//! - `background`: the task that syncs every connected mailbox on its schedule, and triages
//!   each sync's new INBOX mail when `gmail.auto_triage` is on;
//! - `search`: listing, searching and reading the synced copy;
//! - `drafts`: what the chat's mail tools may do, and creating a draft (never sending);
//! - `sealing`: the per-user mail key, the sealed header and body, the blind-index terms;
//! - `tokens`: the user's Google access token as the Gmail client asks for it;
//! - `ai`: summaries and triage with the user's Gemini key ([`MailAssistant`]).

mod ai;
mod background;
mod config;
mod connection;
mod drafts;
mod sealing;
mod search;
mod sync;
mod tokens;

use std::sync::Arc;

use assistd_domain::{Clock, Error, ErrorReason};
use assistd_gmail::{GmailClient, GmailError};
use assistd_store::Store;
use tokio_util::sync::CancellationToken;

pub use ai::{
    AiUsage, MailAssistant, MailSummary, MessageSummary, ThreadSummary, TriageCategory,
    TriagePriority, TriageReport, TriageResult, TriageSelection, TriagedMessage, prompt,
};
pub use config::{AUTO_TRIAGE_BATCHES, GmailSettings};
pub use drafts::{DraftRequest, MailToolAccess};

use crate::SecretSealer;
use crate::auth::AuthService;

/// The Gmail service: connection state, sync, and the synced copy.
#[derive(Clone)]
pub struct GmailService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    sealer: SecretSealer,
    auth: AuthService,
    client: GmailClient,
    clock: Arc<dyn Clock>,
    settings: GmailSettings,
    /// This server's name in sync leases.
    replica: String,
    /// Fires when the server stops: running syncs stop between messages.
    stop: CancellationToken,
}

impl std::fmt::Debug for GmailService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GmailService")
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

impl GmailService {
    /// Builds the service. `stop` stops running syncs (between two messages; what was synced
    /// stays, and the next sync resumes).
    ///
    /// # Errors
    /// The settings are invalid or the HTTP client cannot be built.
    pub fn new(
        store: Store,
        sealer: SecretSealer,
        auth: AuthService,
        settings: GmailSettings,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> Result<Self, String> {
        settings.validate()?;
        let config = assistd_gmail::GmailConfig {
            base_url: settings.api_base_url.clone(),
            timeout: settings.request_timeout,
            max_retries: settings.max_retries,
            max_rate_limit_wait: settings.max_rate_limit_wait,
            quota_units_per_second: settings.quota_units_per_second,
            max_concurrent_requests: settings.max_concurrent_requests,
            ..assistd_gmail::GmailConfig::default()
        };
        let client = GmailClient::new(&config).map_err(|e| format!("gmail: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                sealer,
                auth,
                client,
                clock,
                settings,
                replica: uuid::Uuid::now_v7().to_string(),
                stop,
            }),
        })
    }

    /// The settings in effect.
    #[must_use]
    pub fn settings(&self) -> &GmailSettings {
        &self.inner.settings
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }
}

/// The domain error a failed Gmail call becomes. Messages name the fix and carry no token
/// or mail content.
pub(crate) fn gmail_error(err: GmailError) -> Error {
    match err {
        GmailError::ReauthRequired => Error::FailedPrecondition {
            reason: ErrorReason::GoogleReauthRequired,
            message: "Google no longer accepts the stored Gmail grant; reconnect Gmail (sign in with request_gmail_access)".into(),
        },
        GmailError::ScopeMissing => Error::FailedPrecondition {
            reason: ErrorReason::GmailScopeMissing,
            message: "the Google grant lacks gmail.readonly; reconnect Gmail (sign in with request_gmail_access) and allow reading mail".into(),
        },
        GmailError::RateLimited { retry_after } => Error::ResourceExhausted {
            reason: ErrorReason::GmailRateLimited,
            message: "Gmail's rate limit for this mailbox is exhausted; retry later".into(),
            retry_after: Some(retry_after),
        },
        GmailError::NotFound => Error::Unavailable {
            reason: ErrorReason::GmailUnavailable,
            message: "Gmail answered not found for a resource it had listed; retry".into(),
            retry_after: None,
        },
        GmailError::HistoryTooOld => Error::Unavailable {
            reason: ErrorReason::GmailUnavailable,
            message: "Gmail no longer has the history the sync started from; retry".into(),
            retry_after: None,
        },
        GmailError::Unavailable(message) | GmailError::Protocol(message) => Error::Unavailable {
            reason: ErrorReason::GmailUnavailable,
            message: format!("Gmail is unavailable: {message}"),
            retry_after: None,
        },
    }
}
