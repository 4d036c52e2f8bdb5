//! The HTTP client: one connection pool, quota buckets and concurrency bound for all users.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::config::{ConfigError, GmailConfig};
use crate::error::{ErrorEnvelope, GmailError};
use crate::quota::QuotaBuckets;
use crate::token::{AccessToken, AccessTokenSource};
use crate::wire::{HistoryPage, MessagePage, Profile, RawMessage, RawMessageWire, Thread};

/// Most bytes of an error body read; Google's are around a kilobyte.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The history types an incremental sync needs; all four are asked for.
const HISTORY_TYPES: [&str; 4] = [
    "messageAdded",
    "messageDeleted",
    "labelAdded",
    "labelRemoved",
];

/// A Gmail API method this client calls, with its quota cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// users.getProfile.
    GetProfile,
    /// users.messages.list.
    ListMessages,
    /// users.messages.get.
    GetMessage,
    /// users.threads.get.
    GetThread,
    /// users.history.list.
    ListHistory,
    /// users.drafts.create.
    CreateDraft,
}

impl Operation {
    /// The method's name as Google documents it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::GetProfile => "users.getProfile",
            Self::ListMessages => "users.messages.list",
            Self::GetMessage => "users.messages.get",
            Self::GetThread => "users.threads.get",
            Self::ListHistory => "users.history.list",
            Self::CreateDraft => "users.drafts.create",
        }
    }

    /// Quota units one call costs (Gmail's per-method usage table).
    #[must_use]
    pub const fn cost(self) -> u32 {
        match self {
            Self::GetProfile => 1,
            Self::ListHistory => 2,
            Self::ListMessages | Self::GetMessage => 5,
            Self::GetThread | Self::CreateDraft => 10,
        }
    }
}

/// Told about every finished call: its operation, its outcome (`ok` or a
/// [`GmailError::label`]) and how long it took, retries and waits included.
pub type CallObserver = Arc<dyn Fn(Operation, &str, Duration) + Send + Sync>;

/// Holds the observer; says only whether there is one.
#[derive(Clone)]
struct Observer(CallObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
}

/// A client of the Gmail REST API. Cheap to clone (the connection pool, quota buckets and
/// semaphore are shared); one per process. Holds no token.
///
/// Redirects are not followed, so the bearer token never goes to another host.
#[derive(Clone, Debug)]
pub struct GmailClient {
    http: reqwest::Client,
    base_url: Url,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_rate_limit_wait: Duration,
    quota: QuotaBuckets,
    in_flight: Arc<Semaphore>,
    observer: Option<Observer>,
}

impl GmailClient {
    /// A client for the API at `config.base_url`.
    ///
    /// # Errors
    /// The base URL is not an absolute http(s) URL, a timeout or limit is zero, the user
    /// agent is not a valid header value, or the TLS stack cannot be initialised.
    pub fn new(config: &GmailConfig) -> Result<Self, ConfigError> {
        let mut base_url = Url::parse(&config.base_url)
            .ok()
            .filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.has_host()
                    && url.query().is_none()
                    && url.fragment().is_none()
            })
            .ok_or_else(|| ConfigError::BaseUrl {
                url: config.base_url.clone(),
            })?;
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        for (field, timeout) in [
            ("connect_timeout", config.connect_timeout),
            ("timeout", config.timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::ZeroTimeout { field });
            }
        }
        if config.quota_units_per_second == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "quota_units_per_second",
            });
        }
        if config.max_concurrent_requests == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "max_concurrent_requests",
            });
        }
        let user_agent =
            HeaderValue::from_str(&config.user_agent).map_err(|_| ConfigError::UserAgent)?;
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ConfigError::Http)?;
        Ok(Self {
            http,
            base_url,
            timeout: config.timeout,
            max_retries: config.max_retries,
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff.max(config.initial_backoff),
            max_rate_limit_wait: config.max_rate_limit_wait,
            quota: QuotaBuckets::new(config.quota_units_per_second),
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            observer: None,
        })
    }

    /// This client, telling `observer` about every call it finishes (for metrics).
    #[must_use]
    pub fn with_observer(mut self, observer: CallObserver) -> Self {
        self.observer = Some(Observer(observer));
        self
    }

    /// The base URL calls go to.
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The per-user quota buckets.
    #[must_use]
    pub fn quota(&self) -> &QuotaBuckets {
        &self.quota
    }

    /// Calls for one user: `quota_key` names their quota bucket (e.g. their user id; never
    /// logged), `tokens` gives their access token.
    #[must_use]
    pub fn for_user<'a>(
        &'a self,
        quota_key: &str,
        tokens: &'a dyn AccessTokenSource,
    ) -> UserGmail<'a> {
        UserGmail {
            client: self,
            quota_key: quota_key.to_owned(),
            tokens,
        }
    }

    /// `users/me/{segments}`. A send method is no endpoint of this client: the segment
    /// `send` (messages.send, drafts.send) is refused here, so no call can reach one.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        assert!(
            !segments
                .iter()
                .any(|segment| segment.eq_ignore_ascii_case("send")),
            "assistd never sends mail"
        );
        let mut url = self.base_url.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("an http(s) base URL has path segments");
            path.pop_if_empty();
            path.extend(["users", "me"]);
            path.extend(segments);
        }
        url
    }

    /// Exponential backoff for retry `attempt` (0-based) with jitter: a random delay in
    /// `[d/2, d]` where `d = initial · 2^attempt`, capped at `max_backoff`.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        let factor = 0.5 + rand::random::<f64>() * 0.5;
        exponential.mul_f64(factor)
    }
}

/// One user's view of the Gmail API: every call spends their quota and uses their token.
pub struct UserGmail<'a> {
    client: &'a GmailClient,
    quota_key: String,
    tokens: &'a dyn AccessTokenSource,
}

impl std::fmt::Debug for UserGmail<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserGmail").finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    /// A 2xx body.
    Done(bytes::Bytes),
    /// 401: the token was refused.
    Unauthorized,
    /// 429 or 403 rate limit, with `Retry-After` if given.
    RateLimited(Option<Duration>),
    /// 5xx, timeout, connection failure: worth retrying.
    Transient(String),
    /// A final failure.
    Failed(GmailError),
}

impl UserGmail<'_> {
    /// `users/me/{segments}` on this client's API root.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        self.client.endpoint(segments)
    }

    /// The mailbox's address, totals and current history id (users.getProfile).
    ///
    /// # Errors
    /// As [`GmailError`] says.
    pub async fn profile(&self) -> Result<Profile, GmailError> {
        let url = self.client.endpoint(&["profile"]);
        self.call_json(Operation::GetProfile, url).await
    }

    /// One page of the mailbox's messages, newest first, SPAM and TRASH excluded
    /// (users.messages.list). `max_results` is clamped to 1..=500; `page_token` is the
    /// previous page's [`MessagePage::next_page_token`].
    ///
    /// # Errors
    /// As [`GmailError`] says.
    pub async fn list_messages(
        &self,
        page_token: Option<&str>,
        max_results: u32,
    ) -> Result<MessagePage, GmailError> {
        let mut url = self.client.endpoint(&["messages"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("includeSpamTrash", "false");
            query.append_pair("maxResults", &max_results.clamp(1, 500).to_string());
            if let Some(token) = page_token.filter(|token| !token.is_empty()) {
                query.append_pair("pageToken", token);
            }
        }
        self.call_json(Operation::ListMessages, url).await
    }

    /// A message as RFC 2822 bytes with its ids, labels, dates and size
    /// (users.messages.get `format=raw`).
    ///
    /// # Errors
    /// [`GmailError::NotFound`] when the message was deleted meanwhile; otherwise as
    /// [`GmailError`] says.
    pub async fn get_raw(&self, id: &str) -> Result<RawMessage, GmailError> {
        let mut url = self.client.endpoint(&["messages", id]);
        url.query_pairs_mut().append_pair("format", "raw");
        let wire: RawMessageWire = self.call_json(Operation::GetMessage, url).await?;
        RawMessage::try_from(wire)
    }

    /// A thread's messages with their labels (users.threads.get `format=minimal`).
    ///
    /// # Errors
    /// [`GmailError::NotFound`] when the thread does not exist; otherwise as [`GmailError`]
    /// says.
    pub async fn get_thread(&self, id: &str) -> Result<Thread, GmailError> {
        let mut url = self.client.endpoint(&["threads", id]);
        url.query_pairs_mut().append_pair("format", "minimal");
        self.call_json(Operation::GetThread, url).await
    }

    /// One page of the changes after `start_history_id` (users.history.list, all four
    /// history types, up to 500 records a page).
    ///
    /// # Errors
    /// [`GmailError::HistoryTooOld`] when Gmail no longer keeps history that far back (do a
    /// full sync); otherwise as [`GmailError`] says.
    pub async fn list_history(
        &self,
        start_history_id: u64,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, GmailError> {
        let mut url = self.client.endpoint(&["history"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("startHistoryId", &start_history_id.to_string());
            for kind in HISTORY_TYPES {
                query.append_pair("historyTypes", kind);
            }
            query.append_pair("maxResults", "500");
            if let Some(token) = page_token.filter(|token| !token.is_empty()) {
                query.append_pair("pageToken", token);
            }
        }
        self.call_json(Operation::ListHistory, url).await
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        operation: Operation,
        url: Url,
    ) -> Result<T, GmailError> {
        self.call_json_with(operation, url, None).await
    }

    /// A call with a JSON `body`, sent as a POST (a GET without one).
    pub(crate) async fn call_json_with<T: DeserializeOwned>(
        &self,
        operation: Operation,
        url: Url,
        body: Option<bytes::Bytes>,
    ) -> Result<T, GmailError> {
        let span = tracing::info_span!(
            "gmail.call",
            operation = operation.name(),
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = async {
            let body = self.call(operation, url, body).await?;
            serde_json::from_slice(&body).map_err(|err| {
                GmailError::Protocol(format!(
                    "{} answer is not the documented JSON (line {}, column {})",
                    operation.name(),
                    err.line(),
                    err.column()
                ))
            })
        }
        .instrument(span.clone())
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.label(),
        };
        span.record("outcome", outcome);
        tracing::debug!(parent: &span, elapsed_ms = started.elapsed().as_millis() as u64, "gmail call finished");
        if let Some(Observer(observer)) = &self.client.observer {
            observer(operation, outcome, started.elapsed());
        }
        result
    }

    /// The request loop: quota, permit, send, classify, refresh once, retry within bounds.
    /// A POST (`body` given) is not retried after a 5xx or a timeout: Gmail may have acted
    /// on it.
    async fn call(
        &self,
        operation: Operation,
        url: Url,
        body: Option<bytes::Bytes>,
    ) -> Result<bytes::Bytes, GmailError> {
        let client = self.client;
        let mut token = self.tokens.access_token(false).await?;
        let mut refreshed = false;
        let mut transient_retries = 0;
        let mut rate_limit_retries = 0;
        let mut rate_limit_waited = Duration::ZERO;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            tracing::Span::current().record("attempts", attempts);
            let attempt = {
                let _permit = client
                    .in_flight
                    .acquire()
                    .await
                    .expect("the request semaphore is never closed");
                // Counted from now until a window after the answer arrived (see `quota`).
                let _spend = client
                    .quota
                    .acquire(&self.quota_key, operation.cost())
                    .await;
                self.attempt(operation, &url, &token, body.clone()).await
            };
            match attempt {
                Attempt::Done(body) => return Ok(body),
                Attempt::Failed(err) => return Err(err),
                Attempt::Unauthorized if !refreshed => {
                    tracing::debug!("gmail answered 401; refreshing the access token once");
                    refreshed = true;
                    token = self.tokens.access_token(true).await?;
                }
                Attempt::Unauthorized => return Err(GmailError::ReauthRequired),
                Attempt::RateLimited(retry_after) => {
                    let wait = retry_after.unwrap_or_else(|| client.backoff(rate_limit_retries));
                    if rate_limit_retries >= client.max_retries
                        || rate_limit_waited + wait > client.max_rate_limit_wait
                    {
                        return Err(GmailError::RateLimited { retry_after: wait });
                    }
                    rate_limit_retries += 1;
                    rate_limit_waited += wait;
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "gmail rate limit; waiting"
                    );
                    tokio::time::sleep(wait).await;
                }
                Attempt::Transient(what) => {
                    if transient_retries >= client.max_retries || body.is_some() {
                        return Err(GmailError::Unavailable(format!(
                            "{what} (after {attempts} attempts)"
                        )));
                    }
                    let wait = client.backoff(transient_retries);
                    transient_retries += 1;
                    tracing::debug!(wait_ms = wait.as_millis() as u64, failure = %what, "gmail call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One HTTP exchange, classified.
    async fn attempt(
        &self,
        operation: Operation,
        url: &Url,
        token: &AccessToken,
        body: Option<bytes::Bytes>,
    ) -> Attempt {
        let mut authorization =
            match HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())) {
                Ok(value) => value,
                // A token that cannot be a header is no token Gmail would accept.
                Err(_) => return Attempt::Unauthorized,
            };
        authorization.set_sensitive(true);
        let request = match body {
            Some(body) => self
                .client
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body),
            None => self.client.http.get(url.clone()),
        };
        let sent = request
            .header(AUTHORIZATION, authorization)
            .timeout(self.client.timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return Attempt::Transient(transport_failure(&err)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(body),
                Err(err) => Attempt::Transient(transport_failure(&err)),
            };
        }
        let body = read_limited(response).await;
        let envelope: ErrorEnvelope = serde_json::from_slice(&body).unwrap_or_default();
        classify(operation, status, &envelope, retry_after)
    }
}

/// The class of a non-2xx answer.
fn classify(
    operation: Operation,
    status: StatusCode,
    envelope: &ErrorEnvelope,
    retry_after: Option<Duration>,
) -> Attempt {
    const RATE_LIMIT: [&str; 3] = [
        "userRateLimitExceeded",
        "rateLimitExceeded",
        "RATE_LIMIT_EXCEEDED",
    ];
    const SCOPE: [&str; 2] = ["insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"];
    match status.as_u16() {
        401 => Attempt::Unauthorized,
        429 => Attempt::RateLimited(retry_after),
        403 if envelope.has_reason(&RATE_LIMIT) => Attempt::RateLimited(retry_after),
        403 if envelope.has_reason(&SCOPE) => Attempt::Failed(GmailError::ScopeMissing),
        404 if operation == Operation::ListHistory => Attempt::Failed(GmailError::HistoryTooOld),
        404 => Attempt::Failed(GmailError::NotFound),
        408 => Attempt::Transient("HTTP 408".to_owned()),
        code if status.is_server_error() => Attempt::Transient(format!("HTTP {code}")),
        code => Attempt::Failed(GmailError::Protocol(format!(
            "{} answered HTTP {code} (reason {})",
            operation.name(),
            envelope.first_reason()
        ))),
    }
}

/// What went wrong on the wire, without URL or headers.
fn transport_failure(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "request timed out".to_owned()
    } else if err.is_connect() {
        "could not connect".to_owned()
    } else if err.is_body() || err.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

/// An error body, at most [`MAX_ERROR_BODY`] bytes (empty if it cannot be read).
async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    body
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past is
/// zero.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(parsed > Duration::from_secs(110) && parsed <= Duration::from_secs(120));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn classifies_google_error_bodies() {
        let parse = |body: &str| -> ErrorEnvelope { serde_json::from_str(body).unwrap() };
        let scope = parse(
            r#"{"error":{"code":403,"errors":[{"reason":"insufficientPermissions"}],"details":[{"reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}"#,
        );
        assert!(matches!(
            classify(Operation::GetMessage, StatusCode::FORBIDDEN, &scope, None),
            Attempt::Failed(GmailError::ScopeMissing)
        ));
        let rate = parse(r#"{"error":{"errors":[{"reason":"userRateLimitExceeded"}],"code":403}}"#);
        assert!(matches!(
            classify(Operation::GetMessage, StatusCode::FORBIDDEN, &rate, Some(Duration::from_secs(2))),
            Attempt::RateLimited(Some(d)) if d == Duration::from_secs(2)
        ));
        let empty = ErrorEnvelope::default();
        assert!(matches!(
            classify(Operation::ListHistory, StatusCode::NOT_FOUND, &empty, None),
            Attempt::Failed(GmailError::HistoryTooOld)
        ));
        assert!(matches!(
            classify(Operation::GetMessage, StatusCode::NOT_FOUND, &empty, None),
            Attempt::Failed(GmailError::NotFound)
        ));
        assert!(matches!(
            classify(Operation::GetMessage, StatusCode::BAD_GATEWAY, &empty, None),
            Attempt::Transient(_)
        ));
        assert!(matches!(
            classify(Operation::GetMessage, StatusCode::FORBIDDEN, &empty, None),
            Attempt::Failed(GmailError::Protocol(_))
        ));
    }
}
