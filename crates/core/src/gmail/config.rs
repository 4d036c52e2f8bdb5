//! Settings of the Gmail sync.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Batches of `triage_batch_size` messages one automatic triage after a background sync may
/// send to the model at most: the newest `triage_batch_size * AUTO_TRIAGE_BATCHES` new INBOX
/// messages are triaged, so a first sync of a large mailbox does not triage all of it.
pub const AUTO_TRIAGE_BATCHES: usize = 5;

/// How assistd talks to Gmail and how often it syncs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GmailSettings {
    /// Base URL of the Gmail REST API, ending in `/gmail/v1/`.
    pub api_base_url: String,
    /// Whether this server syncs connected mailboxes in the background. Every replica may:
    /// the lease in the database lets one sync a mailbox at a time.
    pub background_sync: bool,
    /// How often each connected mailbox is synced in the background; each user's next sync
    /// is due after this interval stretched or shrunk by up to 10% (jitter), so mailboxes
    /// connected together do not sync together.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// How often the background task looks for mailboxes that are due.
    #[serde(with = "humantime_serde")]
    pub sync_poll_interval: Duration,
    /// Most mailboxes one server syncs at the same time in the background.
    pub max_concurrent_syncs: usize,
    /// Most messages a full sync fetches (the newest ones).
    pub max_full_sync_messages: u32,
    /// Longest stored body, in characters (Unicode scalar values); longer bodies are cut and
    /// marked `body_truncated`.
    pub max_body_chars: usize,
    /// Gmail quota units one user may spend per second (Google's per-user limit is 250).
    pub quota_units_per_second: u32,
    /// Most Gmail requests in flight at once from this server, over all users.
    pub max_concurrent_requests: usize,
    /// Longest one Gmail request may take.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a Gmail request that failed with 5xx, a timeout or a dropped connection.
    pub max_retries: u32,
    /// How long a sync's lease lasts; the server running the sync renews it every third of
    /// this, so another replica takes a mailbox over only when its syncing server stopped.
    #[serde(with = "humantime_serde")]
    pub sync_lease: Duration,
    /// Longest a rate-limited Gmail request is retried after Retry-After before the sync
    /// gives up with GMAIL_RATE_LIMITED.
    #[serde(with = "humantime_serde")]
    pub max_rate_limit_wait: Duration,
    /// Messages TriageInbox gives the model in one call.
    pub triage_batch_size: usize,
    /// Whether a background sync that stored new INBOX mail triages it with the user's own
    /// Gemini key (at most the newest `triage_batch_size * AUTO_TRIAGE_BATCHES` per sync).
    /// Off by default: it spends the user's key and budget without the user asking.
    pub auto_triage: bool,
    /// Estimated tokens (about four characters each) of mail one summary request may carry;
    /// a longer thread is summarised from its newest messages that fit.
    pub summary_context_tokens: usize,
}

impl Default for GmailSettings {
    fn default() -> Self {
        Self {
            api_base_url: "https://gmail.googleapis.com/gmail/v1/".to_owned(),
            background_sync: true,
            sync_interval: Duration::from_secs(15 * 60),
            sync_poll_interval: Duration::from_secs(30),
            max_concurrent_syncs: 4,
            max_full_sync_messages: 2_000,
            max_body_chars: 200_000,
            quota_units_per_second: 250,
            max_concurrent_requests: 32,
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            sync_lease: Duration::from_secs(60),
            max_rate_limit_wait: Duration::from_secs(30),
            triage_batch_size: 10,
            auto_triage: false,
            summary_context_tokens: 24_000,
        }
    }
}

impl GmailSettings {
    /// Checks the values.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let url = url_is_http(&self.api_base_url)
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "gmail.api_base_url must be an http(s) URL, got {:?}",
                    self.api_base_url
                )
            });
        url?;
        if self.sync_lease < Duration::from_secs(3) {
            return Err(format!(
                "gmail.sync_lease must be at least 3s (it is renewed every third of itself), got {:?}",
                self.sync_lease
            ));
        }
        if self.sync_interval < Duration::from_secs(1) {
            return Err("gmail.sync_interval must be at least 1s".into());
        }
        if self.sync_poll_interval.is_zero() {
            return Err("gmail.sync_poll_interval must be positive".into());
        }
        if self.max_concurrent_syncs == 0 || self.max_concurrent_requests == 0 {
            return Err(
                "gmail.max_concurrent_syncs and gmail.max_concurrent_requests must be at least 1"
                    .into(),
            );
        }
        if self.quota_units_per_second < 10 {
            return Err(
                "gmail.quota_units_per_second must be at least 10 (one messages.list costs 5)"
                    .into(),
            );
        }
        if self.max_full_sync_messages == 0 || self.max_body_chars == 0 {
            return Err(
                "gmail.max_full_sync_messages and gmail.max_body_chars must be positive".into(),
            );
        }
        if !(1..=50).contains(&self.triage_batch_size) {
            return Err(format!(
                "gmail.triage_batch_size must be between 1 and 50, got {}",
                self.triage_batch_size
            ));
        }
        if self.summary_context_tokens < 1_000 {
            return Err(format!(
                "gmail.summary_context_tokens must be at least 1000, got {}",
                self.summary_context_tokens
            ));
        }
        Ok(())
    }
}

fn url_is_http(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && url.ends_with('/')
}
