//! What can go wrong calling the Gemini API, classified from Google's answers.
//!
//! Google answers errors with a `google.rpc.Status` as JSON:
//! `{"error": {"code", "message", "status", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason"}, …]}}`.
//! The HTTP status picks the class; the body refines it (a 400 whose `ErrorInfo.reason` is
//! `API_KEY_INVALID` is a rejected key, not a bad request) and gives the message. A 400, 403
//! or 404 whose body is not such a Status did not come from Google (a proxy, a wrong base
//! URL): it is [`Error::Unexpected`], so nobody marks a user's key invalid because of a
//! captive portal.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// Longest upstream message kept in an error; Google's are a few hundred characters.
const MAX_MESSAGE_CHARS: usize = 1000;
/// How much of a body that is not a Google error is quoted in [`Error::Unexpected`].
const MAX_SNIPPET_CHARS: usize = 200;

/// Why a call to the Gemini API failed. No variant, message or source ever contains the API
/// key: upstream messages are scrubbed of it, and transport errors carry no URL or header.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Google does not know or no longer accepts the key (HTTP 400 with `ErrorInfo.reason`
    /// `API_KEY_INVALID`, also for an expired key). The user must set a new key.
    #[error("the Gemini API rejected the API key: {message}")]
    InvalidApiKey {
        /// Google's message.
        message: String,
    },
    /// The key may not call this method (HTTP 403): no key, an API-restricted or a leaked
    /// and blocked key, a suspended project.
    #[error("the Gemini API denied permission: {message}")]
    PermissionDenied {
        /// `ErrorInfo.reason` when Google gave one, e.g. `API_KEY_SERVICE_BLOCKED`.
        reason: Option<String>,
        /// Google's message.
        message: String,
    },
    /// The model (or other resource) does not exist or is retired (HTTP 404).
    #[error("not found at the Gemini API: {message}")]
    NotFound {
        /// Google's message.
        message: String,
    },
    /// Too many requests or a spent quota (HTTP 429, `RESOURCE_EXHAUSTED`). Not
    /// [retryable](Error::is_retryable) by a caller's own loop: the user is told, with the
    /// delay.
    #[error("the Gemini API rate limit or quota is exhausted: {message}")]
    RateLimited {
        /// When to try again: `RetryInfo.retryDelay`, else the `Retry-After` header.
        retry_after: Option<Duration>,
        /// The exhausted quota's `QuotaFailure` id, e.g.
        /// `GenerateRequestsPerMinutePerProjectPerModel-FreeTier` (per minute vs per day).
        quota_id: Option<String>,
        /// Google's message.
        message: String,
    },
    /// Google refused the request itself (another HTTP 400), or this client refused to send
    /// it (a malformed model name).
    #[error("the Gemini API rejected the request: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// The API is down, overloaded or too slow (HTTP 500, 502, 503, 504), or the connection
    /// failed, timed out or was dropped before the answer began; also a stream that went
    /// silent for longer than `stream_idle_timeout`. Retrying later may succeed.
    #[error("the Gemini API is unavailable: {message}")]
    Unavailable {
        /// The HTTP status, when an answer arrived.
        status: Option<u16>,
        /// What happened.
        message: String,
        /// The transport failure, without URL, for the log.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// A streamed answer (`streamGenerateContent`) broke off after it began: the connection
    /// failed mid-body, or the body ended before an event with a `finishReason` (or a
    /// blocked prompt). The events received so far are all there is of the answer.
    /// [Retryable](Error::is_retryable) like [`Error::Unavailable`], but distinct because
    /// part of the answer may already have been shown: a retry starts the answer over.
    #[error("the Gemini API stream broke off: {message}")]
    StreamInterrupted {
        /// What happened, with the transport failure if there was one (never a URL).
        message: String,
    },
    /// Anything else: another status, a body that is not JSON or not the expected shape
    /// (also a stream event that does not decode or exceeds the size limit).
    #[error("unexpected answer from the Gemini API: {message}")]
    Unexpected {
        /// The HTTP status, when an answer arrived.
        status: Option<u16>,
        /// What was unexpected.
        message: String,
    },
}

impl Error {
    /// Whether the same call may simply be sent again after a backoff: outages, 5xx,
    /// timeouts, connection failures ([`Error::Unavailable`]) and broken-off streams
    /// ([`Error::StreamInterrupted`]). Rate limits are not: they go to the user with their
    /// `retry_after` instead of being hammered.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::StreamInterrupted { .. }
        )
    }

    /// Whether Google refused the key itself ([`Error::InvalidApiKey`] or
    /// [`Error::PermissionDenied`]): the user has to fix or replace it.
    #[must_use]
    pub fn rejects_key(&self) -> bool {
        matches!(
            self,
            Self::InvalidApiKey { .. } | Self::PermissionDenied { .. }
        )
    }

    /// Classifies an HTTP answer that is not a success. `retry_after` is the raw
    /// `Retry-After` header, used for a 429 without `RetryInfo`.
    pub(crate) fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Self {
        let rpc = serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|envelope| envelope.error);
        let message = |fallback: &str| {
            rpc.as_ref()
                .map(|rpc| clip(rpc.message.trim()))
                .filter(|message| !message.is_empty())
                .unwrap_or_else(|| fallback.to_owned())
        };
        match (status, &rpc) {
            (400, Some(rpc)) if rpc.rejects_key() => Self::InvalidApiKey {
                message: message("API key not valid"),
            },
            (400, Some(_)) => Self::InvalidArgument {
                message: message("invalid argument"),
            },
            (403, Some(rpc)) => Self::PermissionDenied {
                reason: rpc.error_info_reason().map(str::to_owned),
                message: message("permission denied"),
            },
            (404, Some(_)) => Self::NotFound {
                message: message("not found"),
            },
            (429, _) => Self::RateLimited {
                retry_after: rpc
                    .as_ref()
                    .and_then(RpcStatus::retry_delay)
                    .or_else(|| retry_after.and_then(parse_retry_after_header)),
                quota_id: rpc.as_ref().and_then(RpcStatus::quota_id),
                message: message("too many requests"),
            },
            (500 | 502 | 503 | 504, _) => Self::Unavailable {
                status: Some(status),
                message: message(&format!("HTTP {status}")),
                source: None,
            },
            (_, Some(_)) => Self::Unexpected {
                status: Some(status),
                message: format!("HTTP {status}: {}", message("no message")),
            },
            (_, None) => Self::Unexpected {
                status: Some(status),
                message: format!(
                    "HTTP {status} with a body that is not a Google error: {:?}",
                    snippet(body)
                ),
            },
        }
    }

    /// A 2xx answer whose body is not what the method returns.
    pub(crate) fn undecodable(status: u16, cause: &serde_json::Error, body: &[u8]) -> Self {
        Self::Unexpected {
            status: Some(status),
            message: format!(
                "HTTP {status} with a body that does not decode ({cause}): {:?}",
                snippet(body)
            ),
        }
    }

    /// A failure below HTTP: connecting, sending, waiting or reading. `timeout` is the
    /// request timeout in force, for the message.
    pub(crate) fn transport(error: reqwest::Error, timeout: Duration) -> Self {
        let message = if error.is_builder() {
            return Self::Unexpected {
                status: None,
                message: "the request could not be built".to_owned(),
            };
        } else if error.is_connect() {
            "could not connect".to_owned()
        } else if error.is_timeout() {
            format!("no complete answer within {timeout:?}")
        } else {
            "the connection failed before a complete answer arrived".to_owned()
        };
        Self::Unavailable {
            status: None,
            message,
            // The URL holds no key, but the log has no use for it either.
            source: Some(Box::new(error.without_url())),
        }
    }

    /// Removes every occurrence of `secret` from the messages: Google does not echo keys,
    /// but a proxy or a future message might, and errors end up in logs.
    pub(crate) fn scrub(mut self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let message = match &mut self {
            Self::InvalidApiKey { message }
            | Self::PermissionDenied { message, .. }
            | Self::NotFound { message }
            | Self::RateLimited { message, .. }
            | Self::InvalidArgument { message }
            | Self::Unavailable { message, .. }
            | Self::StreamInterrupted { message, .. }
            | Self::Unexpected { message, .. } => message,
        };
        if message.contains(secret) {
            *message = message.replace(secret, "[redacted]");
        }
        self
    }
}

/// `{"error": google.rpc.Status}`.
#[derive(Deserialize)]
struct Envelope {
    error: RpcStatus,
}

/// The JSON form of `google.rpc.Status` as the Gemini API sends it.
#[derive(Deserialize)]
struct RpcStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl RpcStatus {
    /// The details of one `google.rpc` type (`@type` is `type.googleapis.com/google.rpc.X`).
    fn details_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.details.iter().filter(move |detail| {
            detail
                .get("@type")
                .and_then(Value::as_str)
                .and_then(|name| name.rsplit('/').next())
                .is_some_and(|name| name == kind)
        })
    }

    fn error_info_reason(&self) -> Option<&str> {
        self.details_of("google.rpc.ErrorInfo")
            .find_map(|detail| detail.get("reason").and_then(Value::as_str))
    }

    fn rejects_key(&self) -> bool {
        match self.error_info_reason() {
            Some(reason) => matches!(reason, "API_KEY_INVALID" | "API_KEY_EXPIRED"),
            // Older answers carry only the message ("API key expired. Please renew the API key.").
            None => {
                self.message.starts_with("API key not valid")
                    || self.message.starts_with("API key expired")
            }
        }
    }

    fn retry_delay(&self) -> Option<Duration> {
        self.details_of("google.rpc.RetryInfo")
            .find_map(|detail| detail.get("retryDelay").and_then(Value::as_str))
            .and_then(parse_proto_duration)
    }

    fn quota_id(&self) -> Option<String> {
        self.details_of("google.rpc.QuotaFailure")
            .filter_map(|detail| detail.get("violations").and_then(Value::as_array))
            .flatten()
            .find_map(|violation| violation.get("quotaId").and_then(Value::as_str))
            .map(str::to_owned)
    }
}

/// Parses the JSON form of `google.protobuf.Duration`: seconds with up to nine fractional
/// digits and an `s` suffix (`"33s"`, `"1.5s"`, `"0.000340s"`). Negative delays are refused.
fn parse_proto_duration(text: &str) -> Option<Duration> {
    let number = text.trim().strip_suffix('s')?;
    let (seconds, fraction) = number.split_once('.').unwrap_or((number, ""));
    if seconds.is_empty() || !seconds.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    Some(Duration::new(seconds.parse().ok()?, nanos))
}

/// `Retry-After: <seconds>` (the HTTP-date form is not used by Google and is ignored).
fn parse_retry_after_header(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(MAX_SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", &collapsed[..end]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use assistd_testkit::gemini::bodies;

    use super::*;

    fn classify(status: u16, body: &str) -> Error {
        Error::from_response(status, None, body.as_bytes())
    }

    #[test]
    fn a_400_with_reason_api_key_invalid_is_a_rejected_key() {
        let error = classify(400, bodies::ERROR_400_API_KEY_INVALID);
        let Error::InvalidApiKey { message } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(message, "API key not valid. Please pass a valid API key.");
        assert!(error.rejects_key());
        assert!(!error.is_retryable());
    }

    #[test]
    fn an_expired_key_without_error_info_is_a_rejected_key() {
        let body = r#"{"error": {"code": 400, "message": "API key expired. Please renew the API key.", "status": "INVALID_ARGUMENT"}}"#;
        assert!(matches!(classify(400, body), Error::InvalidApiKey { .. }));
    }

    #[test]
    fn another_400_is_an_invalid_argument_with_its_message() {
        let error = classify(400, bodies::ERROR_400_INVALID_ARGUMENT);
        let Error::InvalidArgument { message } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(
            message,
            "* GenerateContentRequest.contents: contents is not specified"
        );
        assert!(!error.rejects_key());
    }

    #[test]
    fn a_403_is_permission_denied() {
        let error = classify(403, bodies::ERROR_403_NO_KEY);
        let Error::PermissionDenied { reason, message } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*reason, None);
        assert!(message.starts_with("Method doesn't allow unregistered callers"));
        assert!(error.rejects_key());

        let blocked = r#"{"error": {"code": 403, "message": "Requests to this API are blocked.", "status": "PERMISSION_DENIED", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_SERVICE_BLOCKED"}]}}"#;
        let Error::PermissionDenied { reason, .. } = classify(403, blocked) else {
            panic!("not permission denied");
        };
        assert_eq!(reason.as_deref(), Some("API_KEY_SERVICE_BLOCKED"));
    }

    #[test]
    fn a_404_is_not_found() {
        let error = classify(404, bodies::ERROR_404_MODEL_NOT_FOUND);
        let Error::NotFound { message } = &error else {
            panic!("{error:?}");
        };
        assert!(message.starts_with("models/gemini-1.5-flash is not found"));
    }

    #[test]
    fn a_429_carries_retry_info_and_the_quota() {
        let error = classify(429, bodies::ERROR_429_RESOURCE_EXHAUSTED);
        let Error::RateLimited {
            retry_after,
            quota_id,
            message,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(33)));
        assert_eq!(
            quota_id.as_deref(),
            Some("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
        );
        assert!(message.starts_with("You exceeded your current quota"));
        // Surfaced to the user with the delay, not retried in a loop.
        assert!(!error.is_retryable());
    }

    #[test]
    fn a_429_without_retry_info_falls_back_to_the_header() {
        let error = Error::from_response(429, Some("7"), b"Too Many Requests");
        assert!(matches!(
            error,
            Error::RateLimited { retry_after: Some(delay), quota_id: None, .. } if delay == Duration::from_secs(7)
        ));
    }

    #[test]
    fn server_errors_are_unavailable_with_or_without_a_google_body() {
        for (status, body) in [
            (500, bodies::ERROR_500_INTERNAL),
            (503, bodies::ERROR_503_UNAVAILABLE),
            (504, bodies::ERROR_504_DEADLINE_EXCEEDED),
            (502, "<html><body>Bad Gateway</body></html>"),
        ] {
            let error = classify(status, body);
            assert!(
                matches!(&error, Error::Unavailable { status: Some(s), .. } if *s == status),
                "{status}: {error:?}"
            );
            assert!(error.is_retryable());
        }
        let Error::Unavailable { message, .. } = classify(503, bodies::ERROR_503_UNAVAILABLE)
        else {
            panic!("not unavailable");
        };
        assert_eq!(message, "The model is overloaded. Please try again later.");
    }

    #[test]
    fn bodies_that_are_not_google_errors_are_unexpected() {
        for status in [400, 403, 404, 401, 418] {
            let error = classify(status, "<html>Sign in to the Wi-Fi</html>");
            assert!(
                matches!(&error, Error::Unexpected { status: Some(s), message } if *s == status && message.contains("Sign in to the Wi-Fi")),
                "{status}: {error:?}"
            );
            assert!(!error.rejects_key());
        }
        // A Google error with a status this client has no class for.
        let error = classify(
            401,
            r#"{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}"#,
        );
        assert!(
            matches!(&error, Error::Unexpected { message, .. } if message.contains("invalid authentication credentials"))
        );
    }

    #[test]
    fn scrub_removes_the_key_from_messages() {
        let body = r#"{"error": {"code": 400, "message": "bad value AIzaSECRET in field x", "status": "INVALID_ARGUMENT"}}"#;
        let error = classify(400, body).scrub("AIzaSECRET");
        assert!(!error.to_string().contains("AIzaSECRET"));
        assert!(!format!("{error:?}").contains("AIzaSECRET"));
        assert!(error.to_string().contains("[redacted]"));
    }

    #[test]
    fn proto_durations_parse() {
        assert_eq!(parse_proto_duration("33s"), Some(Duration::from_secs(33)));
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_proto_duration("0.000340s"),
            Some(Duration::from_micros(340))
        );
        for bad in ["", "s", "33", "-1s", "1.s2", "1.0000000001s", "abc"] {
            assert_eq!(parse_proto_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x".repeat(5000);
        let body = format!(r#"{{"error": {{"code": 404, "message": "{long}"}}}}"#);
        let Error::NotFound { message } = classify(404, &body) else {
            panic!("not found expected");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
