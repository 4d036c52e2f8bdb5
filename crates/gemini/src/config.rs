//! Where the Gemini API is and how long to wait for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The public Gemini API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Settings of a [`GeminiClient`](crate::GeminiClient). Holds no credential: keys come with
/// each call. Deserializes from the `[gemini]` table of the configuration (durations in
/// humantime form, e.g. `"30s"`); every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeminiConfig {
    /// Scheme, host, port and optional path prefix of the API, without the version
    /// (`https://generativelanguage.googleapis.com`; tests point it at 127.0.0.1).
    pub base_url: String,
    /// Longest wait for a TCP (and TLS) connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for a whole unary call, from connecting to the last byte of the answer.
    /// For a streamed call, the longest wait for the answer's headers (and an error body):
    /// a healthy stream may then run as long as it keeps sending.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest silence inside a streamed answer before it is given up as
    /// [`Error::Unavailable`](crate::Error::Unavailable). Thinking models can pause for a
    /// while before the first event.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// The `user-agent` header.
    pub user_agent: String,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(5),
            // Generous because generateContent with thinking can take tens of seconds.
            request_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(60),
            user_agent: concat!("assistd/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why a [`GeminiClient`](crate::GeminiClient) could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL is not an absolute `http` or `https` URL without query or fragment.
    #[error("gemini.base_url {url:?} must be an absolute http(s) URL without query or fragment")]
    BaseUrl {
        /// The configured value.
        url: String,
    },
    /// A timeout is zero.
    #[error("gemini.{field} must be longer than zero")]
    ZeroTimeout {
        /// `connect_timeout`, `request_timeout` or `stream_idle_timeout`.
        field: &'static str,
    },
    /// The user agent cannot be an HTTP header value.
    #[error("gemini.user_agent must be visible ASCII")]
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
        let config: GeminiConfig = serde_json::from_str(
            r#"{"base_url": "http://127.0.0.1:9", "request_timeout": "1500ms", "stream_idle_timeout": "2m"}"#,
        )
        .unwrap();
        assert_eq!(config.base_url, "http://127.0.0.1:9");
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(config.stream_idle_timeout, Duration::from_secs(120));
        assert_eq!(
            config.connect_timeout,
            GeminiConfig::default().connect_timeout
        );
        assert!(serde_json::from_str::<GeminiConfig>(r#"{"api_key": "x"}"#).is_err());
    }
}
