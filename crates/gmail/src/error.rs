//! What can go wrong calling the Gmail API, classified from Google's answers.

use std::time::Duration;

use serde::Deserialize;

/// Why a Gmail call failed. No variant ever contains a token, an address or mail contents:
/// messages name the HTTP status, Google's `reason` and the kind of transport failure only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GmailError {
    /// The grant is gone: Gmail answered 401 again after one refresh, or the token source
    /// reported `invalid_grant`. The user must reconnect; do not retry.
    #[error("Gmail access must be granted again")]
    ReauthRequired,
    /// The token lacks the Gmail scope (403 `insufficientPermissions`,
    /// `ACCESS_TOKEN_SCOPE_INSUFFICIENT`). The user must consent again.
    #[error("the Google grant does not include Gmail access")]
    ScopeMissing,
    /// Gmail kept answering 429 or 403 `userRateLimitExceeded`/`rateLimitExceeded` beyond
    /// the configured retries or wait budget.
    #[error("Gmail rate limit exceeded; retry after {retry_after:?}")]
    RateLimited {
        /// Google's `Retry-After`, or the backoff this client would have waited.
        retry_after: Duration,
    },
    /// The message (or thread) does not exist (any more): deleted meanwhile.
    #[error("not found in the mailbox")]
    NotFound,
    /// history.list answered 404: the start history id is older than Gmail keeps. Do a full
    /// sync.
    #[error("the history id is too old; a full sync is needed")]
    HistoryTooOld,
    /// Gmail is down, too slow, or the connection failed, after the bounded retries.
    #[error("Gmail is unavailable: {0}")]
    Unavailable(String),
    /// Gmail answered something this client does not understand (another 4xx, a body that
    /// is not the documented JSON).
    #[error("unexpected answer from Gmail: {0}")]
    Protocol(String),
}

impl GmailError {
    /// A short label of the variant, for metrics and tracing.
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::ReauthRequired => "reauth_required",
            Self::ScopeMissing => "scope_missing",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound => "not_found",
            Self::HistoryTooOld => "history_too_old",
            Self::Unavailable(_) => "unavailable",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// Google's JSON error envelope, the parts that classify.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorEnvelope {
    #[serde(default)]
    pub(crate) error: ErrorBody,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) errors: Vec<ErrorItem>,
    #[serde(default)]
    pub(crate) details: Vec<ErrorDetail>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorItem {
    #[serde(default)]
    pub(crate) reason: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    pub(crate) reason: String,
}

impl ErrorEnvelope {
    /// Every `reason` the body gives: `errors[].reason` and `details[].reason`.
    pub(crate) fn reasons(&self) -> impl Iterator<Item = &str> {
        self.error
            .errors
            .iter()
            .map(|item| item.reason.as_str())
            .chain(
                self.error
                    .details
                    .iter()
                    .map(|detail| detail.reason.as_str()),
            )
            .filter(|reason| !reason.is_empty())
    }

    pub(crate) fn has_reason(&self, wanted: &[&str]) -> bool {
        self.reasons().any(|reason| wanted.contains(&reason))
    }

    /// The first reason, sanitised to a short identifier for an error message.
    pub(crate) fn first_reason(&self) -> String {
        self.reasons()
            .next()
            .unwrap_or("none")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect()
    }
}
