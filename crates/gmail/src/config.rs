//! Where the Gmail API is, how long to wait for it, and how hard to push it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The public Gmail API, version 1 (calls append `users/me/…`).
pub const DEFAULT_BASE_URL: &str = "https://gmail.googleapis.com/gmail/v1/";

/// Settings of a [`GmailClient`](crate::GmailClient). Holds no credential. Deserializes from
/// a configuration table (durations in humantime form, e.g. `"30s"`); every field has a
/// default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GmailConfig {
    /// The API root including the version, ending in `/`
    /// (`https://gmail.googleapis.com/gmail/v1/`; tests point it at 127.0.0.1).
    pub base_url: String,
    /// Longest wait for a TCP (and TLS) connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for one whole request, from sending to the last byte of the answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How many times a call is retried after a 5xx answer, a timeout or a dropped
    /// connection (so at most `max_retries + 1` attempts), and also how many rate-limit
    /// answers it waits out.
    pub max_retries: u32,
    /// The first backoff delay after a 5xx, timeout or dropped connection; each further one
    /// doubles, up to [`GmailConfig::max_backoff`], with jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest single backoff delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// The most one call waits, in total, on rate-limit answers (`Retry-After`) before it
    /// gives up with [`GmailError::RateLimited`](crate::GmailError::RateLimited).
    #[serde(with = "humantime_serde")]
    pub max_rate_limit_wait: Duration,
    /// Quota units one user may spend per second (Google's per-user limit is 250).
    pub quota_units_per_second: u32,
    /// Most Gmail requests in flight at once, all users together.
    pub max_concurrent_requests: usize,
    /// The `user-agent` header.
    pub user_agent: String,
}

impl Default for GmailConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_retries: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_rate_limit_wait: Duration::from_secs(60),
            quota_units_per_second: 250,
            max_concurrent_requests: 16,
            user_agent: concat!("assistd/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why a [`GmailClient`](crate::GmailClient) could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL is not an absolute `http` or `https` URL without query or fragment.
    #[error("gmail.base_url {url:?} must be an absolute http(s) URL without query or fragment")]
    BaseUrl {
        /// The configured value.
        url: String,
    },
    /// A timeout is zero.
    #[error("gmail.{field} must be longer than zero")]
    ZeroTimeout {
        /// `connect_timeout` or `timeout`.
        field: &'static str,
    },
    /// A limit is zero.
    #[error("gmail.{field} must be at least 1")]
    ZeroLimit {
        /// `quota_units_per_second` or `max_concurrent_requests`.
        field: &'static str,
    },
    /// The user agent cannot be an HTTP header value.
    #[error("gmail.user_agent must be visible ASCII")]
    UserAgent,
    /// The HTTP stack could not be set up (e.g. no TLS roots).
    #[error("could not set up the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_humantime_durations_over_defaults() {
        let config: GmailConfig = serde_json::from_str(
            r#"{"base_url": "http://127.0.0.1:9/gmail/v1/", "timeout": "1500ms", "quota_units_per_second": 100}"#,
        )
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.quota_units_per_second, 100);
        assert_eq!(config.max_retries, GmailConfig::default().max_retries);
        assert!(serde_json::from_str::<GmailConfig>(r#"{"access_token": "x"}"#).is_err());
    }
}
