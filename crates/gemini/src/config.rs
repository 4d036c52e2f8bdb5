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
    /// The HTTP version spoken to the API: `http1` (the default) or `http2`.
    ///
    /// With HTTP/1.1 every call in flight holds a connection of its own: a streamed reply
    /// that waits on the model keeps its TCP connection, its TLS session and their buffers
    /// for as long as it lasts. With HTTP/2 every call is multiplexed over one connection per
    /// host: a call costs a stream, with no connection, buffers or handshake of its own.
    ///
    /// The risk of HTTP/2: the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` caps the calls
    /// in flight on that connection, and a call past it waits for a free stream (up to
    /// `request_timeout`) rather than opening another connection. Choose `http2` only where
    /// the upstream allows as many concurrent streams as this server has replies in flight.
    pub http_version: HttpVersion,
}

/// The HTTP version a [`GeminiClient`](crate::GeminiClient) speaks (see
/// [`GeminiConfig::http_version`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/1.1 only (`"http1"`), also over TLS (ALPN offers `http/1.1` alone): one
    /// connection per call in flight.
    #[default]
    Http1,
    /// HTTP/2 only (`"http2"`): negotiated by ALPN over TLS, spoken with prior knowledge
    /// (h2c) over plain `http`. Every call is a stream on one connection per host.
    Http2,
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
            http_version: HttpVersion::Http1,
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

    #[test]
    fn http_version_defaults_to_http1_and_parses_its_two_names() {
        assert_eq!(GeminiConfig::default().http_version, HttpVersion::Http1);
        let parse = |value: &str| {
            serde_json::from_str::<GeminiConfig>(&format!(r#"{{"http_version": "{value}"}}"#))
        };
        assert_eq!(parse("http1").unwrap().http_version, HttpVersion::Http1);
        assert_eq!(parse("http2").unwrap().http_version, HttpVersion::Http2);
        for unknown in ["http3", "HTTP2", "h2", "2", ""] {
            let err = parse(unknown).unwrap_err().to_string();
            assert!(
                err.contains("unknown variant") && err.contains("http2"),
                "{unknown:?}: {err}"
            );
        }
        let json = serde_json::to_value(GeminiConfig {
            http_version: HttpVersion::Http2,
            ..GeminiConfig::default()
        })
        .unwrap();
        assert_eq!(json["http_version"], "http2");
    }
}
