//! The HTTP client: one connection pool, many users' keys.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::config::{ConfigError, GeminiConfig, HttpVersion};
use crate::error::Error;
use crate::generate::{GenerateContentRequest, GenerateContentResponse};
use crate::key::ApiKey;
use crate::model::{ListModelsResponse, Model, ModelPage};
use crate::stream::ContentStream;

/// The API version every path starts with.
pub const API_VERSION: &str = "v1beta";

/// The header that carries the key. Never the `key` query parameter: URLs are logged.
const API_KEY_HEADER: &str = "x-goog-api-key";

/// Most bytes of an error body read; Google's are around a kilobyte.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What `request_timeout` bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Budget {
    /// The whole call, to the last byte of the answer (unary calls).
    WholeCall,
    /// The answer's headers and, for a failure, its error body: a stream then runs as long
    /// as it keeps sending (`stream_idle_timeout` watches it).
    UntilHeaders,
}

/// Told about every finished call to the API: its operation (`models.list`, `models.get`,
/// `generateContent`, `streamGenerateContent`), its outcome (`ok`, `invalid_api_key`,
/// `permission_denied`, `not_found`, `rate_limited`, `invalid_argument`, `unavailable`,
/// `unexpected`) and how long it took (for a stream: until the response headers).
pub type CallObserver = std::sync::Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

/// Holds the observer; says only whether there is one.
#[derive(Clone)]
struct Observer(CallObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
}

/// The operation a request to `path` performs, for [`CallObserver`]s.
fn operation_of(path: &str) -> &'static str {
    match path.rsplit_once(':').map(|(_, verb)| verb) {
        Some("generateContent") => "generateContent",
        Some("streamGenerateContent") => "streamGenerateContent",
        Some(_) => "other",
        None if path.trim_end_matches('/').ends_with("/models") => "models.list",
        None => "models.get",
    }
}

/// The outcome label of a call's result, for [`CallObserver`]s.
fn outcome_of<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::InvalidApiKey { .. }) => "invalid_api_key",
        Err(Error::PermissionDenied { .. }) => "permission_denied",
        Err(Error::NotFound { .. }) => "not_found",
        Err(Error::RateLimited { .. }) => "rate_limited",
        Err(Error::InvalidArgument { .. }) => "invalid_argument",
        Err(Error::Unavailable { .. } | Error::StreamInterrupted { .. }) => "unavailable",
        Err(Error::Unexpected { .. }) => "unexpected",
    }
}

/// A client of the Gemini REST API. Cheap to clone (the connection pool is shared); holds no
/// key — each call takes the user's [`ApiKey`] and sends it in the `x-goog-api-key` header.
///
/// Redirects are not followed: reqwest strips only standard credential headers on a
/// cross-host redirect, so following one could hand the key to another host.
#[derive(Clone, Debug)]
pub struct GeminiClient {
    http: reqwest::Client,
    base_url: Url,
    request_timeout: Duration,
    stream_idle_timeout: Duration,
    observer: Option<Observer>,
}

impl GeminiClient {
    /// A client for the API at `config.base_url`.
    ///
    /// # Errors
    /// The base URL is not an absolute http(s) URL, a timeout is zero, the user agent is not
    /// a valid header value, or the TLS stack cannot be initialised.
    pub fn new(config: &GeminiConfig) -> Result<Self, ConfigError> {
        let base_url = Url::parse(&config.base_url)
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
        for (field, timeout) in [
            ("connect_timeout", config.connect_timeout),
            ("request_timeout", config.request_timeout),
            ("stream_idle_timeout", config.stream_idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::ZeroTimeout { field });
            }
        }
        let user_agent =
            HeaderValue::from_str(&config.user_agent).map_err(|_| ConfigError::UserAgent)?;
        let builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none());
        // With reqwest's `http2` feature on, a builder left alone would offer h2 in TLS ALPN:
        // each version is chosen explicitly.
        let builder = match config.http_version {
            HttpVersion::Http1 => builder.http1_only(),
            HttpVersion::Http2 => builder.http2_prior_knowledge(),
        };
        let http = builder.build().map_err(ConfigError::Http)?;
        Ok(Self {
            http,
            base_url,
            // Applied per request rather than to the whole client: streaming calls bound
            // only the wait for headers with it.
            request_timeout: config.request_timeout,
            stream_idle_timeout: config.stream_idle_timeout,
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

    /// One page of the models `api_key` may use (`GET /v1beta/models`). Free of charge and
    /// quota-light, so it is how a key is validated: `Ok` means Google accepts the key.
    ///
    /// `page_size` is capped by Google at 1000 and defaults to 50; `page_token` is the
    /// previous page's [`ModelPage::next_page_token`].
    ///
    /// # Errors
    /// [`Error::InvalidApiKey`] for a key Google does not know, [`Error::PermissionDenied`]
    /// for a key that may not use the API, otherwise as classified by [`Error`].
    pub async fn list_models(
        &self,
        api_key: &ApiKey,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<ModelPage, Error> {
        let mut url = self.endpoint(&["models"]);
        let page_size = page_size.map(|size| size.to_string());
        let page_token = page_token.filter(|token| !token.is_empty());
        let params = [
            ("pageSize", page_size.as_deref()),
            ("pageToken", page_token),
        ];
        // Only touch the query when there is one: an empty query would still print a `?`.
        if params.iter().any(|(_, value)| value.is_some()) {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
        }
        let wire: ListModelsResponse = self.call_json(api_key, Method::GET, url, None).await?;
        Ok(ModelPage::from(wire))
    }

    /// One model (`GET /v1beta/models/{id}`); `name` is the id (`gemini-2.5-flash`) or the
    /// resource name (`models/gemini-2.5-flash`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a call when `name` is not a model name,
    /// [`Error::NotFound`] for a model Google does not serve, otherwise as [`Error`] says.
    pub async fn get_model(&self, api_key: &ApiKey, name: &str) -> Result<Model, Error> {
        let id = model_id(name)?;
        let url = self.endpoint(&["models", id]);
        self.call_json(api_key, Method::GET, url, None).await
    }

    /// The model's answer to `request` in one piece (`POST
    /// /v1beta/models/{model}:generateContent`); `model` is an id (`gemini-2.5-flash`) or a
    /// resource name (`models/gemini-2.5-flash`). The whole call is bounded by
    /// `request_timeout`.
    ///
    /// A blocked prompt or an answer stopped for safety is an `Ok` answer: see
    /// [`GenerateContentResponse::block_reason`] and
    /// [`GenerateContentResponse::finish_reason`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a call when `model` is not a model name; otherwise
    /// the classified answer ([`Error::InvalidArgument`] for a request Google refuses, e.g. a
    /// function call without its thought signature, [`Error::NotFound`] for an unknown
    /// model, [`Error::RateLimited`], [`Error::Unavailable`], …).
    pub async fn generate_content(
        &self,
        api_key: &ApiKey,
        model: &str,
        request: &(impl RequestBody + ?Sized),
    ) -> Result<GenerateContentResponse, Error> {
        let id = model_id(model)?;
        let url = self.endpoint(&["models", &format!("{id}:generateContent")]);
        let body = request.body()?;
        self.call_json(api_key, Method::POST, url, Some(body)).await
    }

    /// The model's answer to `request` as it is generated (`POST
    /// /v1beta/models/{model}:streamGenerateContent?alt=sse`): one
    /// [`GenerateContentResponse`] per server-sent event, each yielded as soon as it arrived.
    ///
    /// `request_timeout` bounds the wait for the answer's headers; after that the stream runs
    /// as long as it keeps sending, and breaks off after `stream_idle_timeout` of silence.
    /// An HTTP error is classified here, before any event; what can go wrong later is
    /// described at [`ContentStream`].
    ///
    /// # Errors
    /// As [`GeminiClient::generate_content`], and [`Error::Unexpected`] for a 2xx answer
    /// that is not an event stream.
    pub async fn stream_generate_content(
        &self,
        api_key: &ApiKey,
        model: &str,
        request: &(impl RequestBody + ?Sized),
    ) -> Result<ContentStream, Error> {
        let id = model_id(model)?;
        let mut url = self.endpoint(&["models", &format!("{id}:streamGenerateContent")]);
        url.query_pairs_mut().append_pair("alt", "sse");
        let body = request.body()?;
        let response = self
            .send(api_key, Method::POST, url, Some(body), Budget::UntilHeaders)
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_ascii_lowercase());
        match content_type {
            Some(kind) if !kind.starts_with("text/event-stream") => {
                let status = response.status().as_u16();
                let body = self.read_limited(response).await;
                Err(Error::Unexpected {
                    status: Some(status),
                    message: format!(
                        "HTTP {status} with content type {kind:?} instead of an event stream: {:?}",
                        crate::error::snippet(&body)
                    ),
                }
                .scrub(api_key.expose_secret()))
            }
            _ => Ok(ContentStream::new(
                response,
                self.stream_idle_timeout,
                api_key.expose_secret(),
            )),
        }
    }

    /// `{base}/v1beta/{segments…}`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("the base URL was checked to be http(s)")
            .pop_if_empty()
            .push(API_VERSION)
            .extend(segments);
        url
    }

    /// Sends a request with the key (and a JSON body) and decodes a successful JSON answer.
    async fn call_json<T: DeserializeOwned>(
        &self,
        api_key: &ApiKey,
        method: Method,
        url: Url,
        body: Option<Bytes>,
    ) -> Result<T, Error> {
        let response = self
            .send(api_key, method, url, body, Budget::WholeCall)
            .await?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| Error::transport(error, self.request_timeout))?;
        serde_json::from_slice(&body).map_err(|cause| {
            Error::undecodable(status, &cause, &body).scrub(api_key.expose_secret())
        })
    }

    /// Sends a request with the key in its header and `body` as JSON; answers other than
    /// 2xx become [`Error`]s. `budget` says what `request_timeout` bounds.
    async fn send(
        &self,
        api_key: &ApiKey,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        budget: Budget,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let operation = operation_of(url.path());
        let result = match budget {
            Budget::WholeCall => self.exchange(api_key, method, url, body, budget).await,
            Budget::UntilHeaders => {
                let path = url.path().to_owned();
                let exchange = self.exchange(api_key, method.clone(), url, body, budget);
                match tokio::time::timeout(self.request_timeout, exchange).await {
                    Ok(result) => result,
                    Err(_) => {
                        let error = Error::Unavailable {
                            status: None,
                            message: format!("no answer within {:?}", self.request_timeout),
                            source: None,
                        };
                        tracing::debug!(%method, %path, %error, "Gemini API call failed");
                        Err(error)
                    }
                }
            }
        };
        if let Some(Observer(observe)) = &self.observer {
            observe(operation, outcome_of(&result), started.elapsed());
        }
        result.map_err(|error| error.scrub(api_key.expose_secret()))
    }

    /// The request and, for a failure, its error body.
    async fn exchange(
        &self,
        api_key: &ApiKey,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        budget: Budget,
    ) -> Result<Response, Error> {
        let mut key_header = HeaderValue::from_str(api_key.expose_secret())
            .expect("ApiKey::new admits only visible ASCII");
        // Keeps the value out of the Debug output of requests (and thus of any log of them).
        key_header.set_sensitive(true);
        let path = url.path().to_owned();
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(API_KEY_HEADER, key_header);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body);
        }
        // reqwest's timeout runs to the end of the body: never for a stream.
        if budget == Budget::WholeCall {
            request = request.timeout(self.request_timeout);
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = Error::transport(error, self.request_timeout);
                tracing::debug!(%method, %path, elapsed = ?started.elapsed(), %error, "Gemini API call failed");
                return Err(error);
            }
        };
        let status = response.status();
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed = ?started.elapsed(), "Gemini API answered");
        if status.is_success() {
            return Ok(response);
        }
        Err(self.error_from(status, response).await)
    }

    async fn error_from(&self, status: StatusCode, response: Response) -> Error {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = self.read_limited(response).await;
        Error::from_response(status.as_u16(), retry_after.as_deref(), &body)
    }

    /// At most [`MAX_ERROR_BODY`] bytes of the body; what arrived if it breaks off.
    async fn read_limited(&self, mut response: Response) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() >= MAX_ERROR_BODY {
                        body.truncate(MAX_ERROR_BODY);
                        break;
                    }
                }
                Ok(None) => break,
                // The status is known even if the body broke off; classify what arrived.
                Err(_) => break,
            }
        }
        body
    }
}

/// The JSON body of a request, in an allocation of its own length: the encoder's buffer grows
/// by doubling, and bytes kept while a call waits should not keep its spare half.
fn encode(request: &GenerateContentRequest) -> Result<Bytes, Error> {
    serde_json::to_vec(request)
        .map(|json| Bytes::from(json.into_boxed_slice()))
        .map_err(|cause| Error::InvalidArgument {
            message: format!("the request cannot be encoded as JSON: {cause}"),
        })
}

/// What [`GeminiClient::generate_content`] and [`GeminiClient::stream_generate_content`]
/// send: a [`GenerateContentRequest`] (encoded at each call) or an [`EncodedRequest`].
pub trait RequestBody {
    /// The JSON body.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the request cannot be encoded.
    fn body(&self) -> Result<Bytes, Error>;
}

impl RequestBody for GenerateContentRequest {
    fn body(&self) -> Result<Bytes, Error> {
        encode(self)
    }
}

/// A [`GenerateContentRequest`] encoded once, for a caller that may send it more than once
/// (retries) and waits long for the answer: it holds the JSON bytes, a fraction of the
/// request's own memory (tool schemas are maps of maps), and each send shares them.
#[derive(Clone, Debug)]
pub struct EncodedRequest(Bytes);

impl EncodedRequest {
    /// Encodes `request`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the request cannot be encoded.
    pub fn new(request: &GenerateContentRequest) -> Result<Self, Error> {
        encode(request).map(Self)
    }
}

impl RequestBody for EncodedRequest {
    fn body(&self) -> Result<Bytes, Error> {
        Ok(self.0.clone())
    }
}

/// The id of a model name, refusing anything that would change the request path.
fn model_id(name: &str) -> Result<&str, Error> {
    let id = name.strip_prefix("models/").unwrap_or(name);
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && id != "."
        && id != "..";
    if valid {
        Ok(id)
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "{name:?} is not a model name; expected an id such as gemini-2.5-flash or models/gemini-2.5-flash"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base_url: &str) -> GeminiClient {
        GeminiClient::new(&GeminiConfig {
            base_url: base_url.to_owned(),
            ..GeminiConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_segments() {
        assert_eq!(
            client("http://127.0.0.1:8080")
                .endpoint(&["models"])
                .as_str(),
            "http://127.0.0.1:8080/v1beta/models"
        );
        assert_eq!(
            client("https://proxy.example/gemini/")
                .endpoint(&["models", "gemini-2.5-flash"])
                .as_str(),
            "https://proxy.example/gemini/v1beta/models/gemini-2.5-flash"
        );
        // The method suffix stays as Google spells it, colon unescaped.
        assert_eq!(
            client("http://127.0.0.1:8080")
                .endpoint(&["models", "gemini-2.5-flash:streamGenerateContent"])
                .as_str(),
            "http://127.0.0.1:8080/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        for url in [
            "",
            "ftp://host",
            "http://host/?key=x",
            "not a url",
            "/v1beta",
        ] {
            let config = GeminiConfig {
                base_url: url.to_owned(),
                ..GeminiConfig::default()
            };
            assert!(
                matches!(GeminiClient::new(&config), Err(ConfigError::BaseUrl { .. })),
                "{url}"
            );
        }
        let config = GeminiConfig {
            request_timeout: Duration::ZERO,
            ..GeminiConfig::default()
        };
        assert!(matches!(
            GeminiClient::new(&config),
            Err(ConfigError::ZeroTimeout {
                field: "request_timeout"
            })
        ));
    }

    #[test]
    fn model_names_cannot_change_the_path() {
        assert_eq!(
            model_id("models/gemini-2.5-flash").unwrap(),
            "gemini-2.5-flash"
        );
        assert_eq!(model_id("gemini-2.5-flash").unwrap(), "gemini-2.5-flash");
        for bad in [
            "",
            "models/",
            "..",
            "a/b",
            "gemini:generateContent",
            "x?key=1",
            "a b",
            "tunedModels/x",
        ] {
            assert!(
                matches!(model_id(bad), Err(Error::InvalidArgument { .. })),
                "{bad}"
            );
        }
    }
}
