//! A local model that speaks the Gemini REST API (`v1beta`) and answers by
//! [keyword rules](rules), so chat screens can be built without a Gemini key.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /v1beta/models` | the models below |
//! | `GET /v1beta/models/{model}` | one of them, or Google's `404 NOT_FOUND` |
//! | `POST /v1beta/models/{model}:generateContent` | the whole reply |
//! | `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` | the reply as server-sent events, a word every [`LocalModelConfig::word_delay`] |
//!
//! Every call needs an `x-goog-api-key` header starting with
//! [`LocalModelConfig::key_prefix`] (`dev-` by default); any other key gets Gemini's own
//! `400 API_KEY_INVALID` body, and none at all its `403 PERMISSION_DENIED`. A request body is
//! read up to 20 MiB (`413` past that). A request whose `Host` is not `127.0.0.1`, `localhost` or `[::1]` with the model's port gets `421`, so a
//! web page cannot reach it through DNS rebinding.

pub mod api;
mod rules;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::serve::{AllowedHosts, Body, BodyError, Bound, Serving, read_body, streamed};
use rules::Reply;

/// The models the local model answers as: `(id, display name)`.
const MODELS: [(&str, &str); 3] = [
    (
        "gemini-2.5-flash",
        "Gemini 2.5 Flash (local development model)",
    ),
    ("gemini-2.5-pro", "Gemini 2.5 Pro (local development model)"),
    (
        "gemini-2.5-flash-lite",
        "Gemini 2.5 Flash-Lite (local development model)",
    ),
];

/// The largest request body read, Gemini's own limit; a larger one gets `413`.
const MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;

/// How the local model behaves.
#[derive(Debug, Clone)]
pub struct LocalModelConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// API keys starting with this are valid; others are refused as Gemini refuses them.
    pub key_prefix: String,
    /// The pause before each streamed word.
    pub word_delay: Duration,
}

impl LocalModelConfig {
    /// The default prefix of accepted API keys.
    pub const DEFAULT_KEY_PREFIX: &'static str = "dev-";
}

/// A running local model. Dropping it stops it.
#[derive(Debug)]
pub struct LocalModel {
    server: Serving,
}

impl LocalModel {
    /// Binds `config.listen` and serves.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(config: LocalModelConfig) -> std::io::Result<Self> {
        let bound = Bound::bind(config.listen).await?;
        let config = Arc::new(config);
        // Browsers can reach a loopback port too (DNS rebinding): answer to its own names only.
        let hosts = AllowedHosts::for_addr(bound.addr());
        let server = bound
            .answer_only_to(hosts)
            .serve(move |request, _| handle(Arc::clone(&config), request));
        Ok(Self { server })
    }

    /// The socket address the model listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL to configure as assistd's Gemini base URL, e.g. `http://127.0.0.1:50053`;
    /// loopback when the model listens on every interface (`0.0.0.0`, `::`), since that is
    /// one of the names it answers to.
    #[must_use]
    pub fn base_url(&self) -> String {
        let mut addr = self.addr();
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{addr}")
    }
}

/// Serves one request.
async fn handle(
    config: Arc<LocalModelConfig>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    if let Some(refusal) = refuse_key(&config, &parts.headers) {
        return Ok(refusal);
    }
    let path = parts.uri.path();
    let Some(resource) = path.strip_prefix("/v1beta/models") else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("Unknown path {path}."),
        ));
    };
    let response = match (&parts.method, resource) {
        (&Method::GET, "" | "/") => json_response(
            StatusCode::OK,
            &json!({ "models": MODELS.iter().map(|(id, name)| model(id, name)).collect::<Vec<_>>() }),
        ),
        (&Method::GET, id) => match find_model(id.trim_start_matches('/')) {
            Some((id, name)) => json_response(StatusCode::OK, &model(id, name)),
            None => model_not_found(id.trim_start_matches('/')),
        },
        (&Method::POST, call) => {
            let call = call.trim_start_matches('/');
            let (id, method) = call.split_once(':').unwrap_or((call, ""));
            let body = match read_body(body, MAX_REQUEST_BYTES).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => {
                    return Ok(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!(
                            "Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes."
                        ),
                    ));
                }
                Err(BodyError::Broken) => {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        "The request body could not be read.",
                    ));
                }
            };
            match (find_model(id), serde_json::from_slice::<Value>(&body)) {
                (None, _) => model_not_found(id),
                (Some(_), Err(err)) => error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid JSON payload received. {err}"),
                ),
                (Some((id, _)), Ok(request)) => match method {
                    "generateContent" => generate(id, &request),
                    "streamGenerateContent" => stream(id, &request, config.word_delay),
                    other => error(
                        StatusCode::NOT_FOUND,
                        &format!("Method {other:?} is not served by the local model."),
                    ),
                },
            }
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
    };
    Ok(response)
}

/// Gemini's answer to a request without a key or with one not starting with the configured
/// prefix; `None` lets the request through.
fn refuse_key(config: &LocalModelConfig, headers: &HeaderMap) -> Option<Response<Body>> {
    match headers.get("x-goog-api-key").map(http::HeaderValue::to_str) {
        None => Some(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": {
                "code": 403,
                "message": "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                "status": "PERMISSION_DENIED",
            }}),
        )),
        Some(Ok(key)) if key.starts_with(&config.key_prefix) => None,
        Some(_) => Some(json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": "API key not valid. Please pass a valid API key.",
                    },
                ],
            }}),
        )),
    }
}

fn find_model(id: &str) -> Option<(&'static str, &'static str)> {
    let id = id.strip_prefix("models/").unwrap_or(id);
    MODELS.iter().copied().find(|(known, _)| *known == id)
}

/// A `Model` resource.
fn model(id: &str, display_name: &str) -> Value {
    api::model_resource(
        id,
        display_name,
        "assistd's local development model: fixed replies and keyword rules.",
        false,
    )
}

/// `generateContent`: the whole reply in one answer.
fn generate(id: &str, request: &Value) -> Response<Body> {
    let reply = rules::reply_to(request);
    let part = match &reply {
        Reply::Text(text) => json!({ "text": text }),
        Reply::Call { name, args } => json!({ "functionCall": { "name": name, "args": args } }),
    };
    json_response(
        StatusCode::OK,
        &chunk(
            id,
            part,
            true,
            api::prompt_tokens(request),
            output_tokens(&reply),
        ),
    )
}

/// `streamGenerateContent`: the reply as SSE events, a word at a time.
fn stream(id: &str, request: &Value, word_delay: Duration) -> Response<Body> {
    let reply = rules::reply_to(request);
    let (prompt, output) = (api::prompt_tokens(request), output_tokens(&reply));
    let events: Vec<Value> = match &reply {
        Reply::Call { name, args } => vec![chunk(
            id,
            json!({ "functionCall": { "name": name, "args": args } }),
            true,
            prompt,
            output,
        )],
        Reply::Text(text) => {
            let words = words(text);
            let last = words.len().saturating_sub(1);
            words
                .into_iter()
                .enumerate()
                .map(|(index, word)| {
                    chunk(id, json!({ "text": word }), index == last, prompt, output)
                })
                .collect()
        }
    };
    let chunks = futures::stream::unfold(events.into_iter(), move |mut events| async move {
        let event = events.next()?;
        tokio::time::sleep(word_delay).await;
        Some((Ok(Bytes::from(format!("data: {event}\r\n\r\n"))), events))
    });
    let mut response = Response::new(streamed(chunks));
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// The text in pieces that each start a word, so joined they give the text back.
fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for (index, word) in text.split(' ').enumerate() {
        if index == 0 {
            words.push(word.to_owned());
        } else {
            words.push(format!(" {word}"));
        }
    }
    words
}

/// One `GenerateContentResponse` carrying `part`; the last one has the finish reason and the
/// output token count.
fn chunk(id: &str, part: Value, last: bool, prompt: u64, output: u64) -> Value {
    let mut candidate = json!({ "content": { "parts": [part], "role": "model" }, "index": 0 });
    let mut usage = json!({ "promptTokenCount": prompt, "totalTokenCount": prompt });
    if last {
        candidate["finishReason"] = "STOP".into();
        usage["candidatesTokenCount"] = output.into();
        usage["totalTokenCount"] = (prompt + output).into();
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": id,
        "responseId": "local-development-model",
    })
}

fn output_tokens(reply: &Reply) -> u64 {
    match reply {
        Reply::Text(text) => api::word_count(text),
        Reply::Call { .. } => 1,
    }
}

fn model_not_found(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "{} The local model serves {}.",
            api::model_not_found_message(&format!("models/{id}"), "generateContent"),
            MODELS.map(|(id, _)| id).join(", ")
        ),
    )
}

/// Google's error body for `status`.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    let name = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "INVALID_ARGUMENT",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "UNIMPLEMENTED",
    };
    api::google_error(status.as_u16(), name, message)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    api::json_response(status.as_u16(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_words_join_into_the_text() {
        let text = "Got it. I will remember: My cat is Tom.";
        assert_eq!(words(text).concat(), text);
        assert_eq!(words(text).len(), 9);
    }
}
