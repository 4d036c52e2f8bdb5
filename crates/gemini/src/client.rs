//! The HTTP client: one connection pool, many users' keys.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::config::{ConfigError, GeminiConfig};
use crate::error::Error;
use crate::key::ApiKey;
use crate::model::{ListModelsResponse, Model, ModelPage};

/// The API version every path starts with.
pub const API_VERSION: &str = "v1beta";

/// The header that carries the key. Never the `key` query parameter: URLs are logged.
const API_KEY_HEADER: &str = "x-goog-api-key";

/// Most bytes of an error body read; Google's are around a kilobyte.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::ZeroTimeout { field });
            }
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
            // Applied per request rather than to the whole client, so that streaming calls
            // can use a different budget later.
            request_timeout: config.request_timeout,
        })
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
        let wire: ListModelsResponse = self.call_json(api_key, Method::GET, url).await?;
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
        self.call_json(api_key, Method::GET, url).await
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

    /// Sends a request with the key and decodes a successful JSON answer.
    async fn call_json<T: DeserializeOwned>(
        &self,
        api_key: &ApiKey,
        method: Method,
        url: Url,
    ) -> Result<T, Error> {
        let response = self.send(api_key, method, url).await?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| Error::transport(error, self.request_timeout))?;
        serde_json::from_slice(&body).map_err(|cause| {
            Error::undecodable(status, &cause, &body).scrub(api_key.expose_secret())
        })
    }

    /// Sends a request with the key in its header; answers other than 2xx become [`Error`]s.
    async fn send(&self, api_key: &ApiKey, method: Method, url: Url) -> Result<Response, Error> {
        let mut key_header = HeaderValue::from_str(api_key.expose_secret())
            .expect("ApiKey::new admits only visible ASCII");
        // Keeps the value out of the Debug output of requests (and thus of any log of them).
        key_header.set_sensitive(true);
        let path = url.path().to_owned();
        let started = Instant::now();
        let result = self
            .http
            .request(method.clone(), url)
            .header(API_KEY_HEADER, key_header)
            .timeout(self.request_timeout)
            .send()
            .await;
        let response = match result {
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
        Err(self
            .error_from(status, response)
            .await
            .scrub(api_key.expose_secret()))
    }

    async fn error_from(&self, status: StatusCode, mut response: Response) -> Error {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
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
        Error::from_response(status.as_u16(), retry_after.as_deref(), &body)
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
