//! The REST surface: routing, the key check, faults, and each method's answer.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::fault::{ErrorBody, Fault};
use super::reply::Render;
use super::signature::{missing_signature_message, unsigned_call};
use super::stream::{Cut, sse_body};
use super::{API_KEY_HEADER, ScriptedReply, Shared};
use crate::serve::{Body, Hangup, full};
use assistd_devkit::model::api::{
    google_error, json_response, model_not_found_message, prompt_tokens, raw_json,
};

/// `models.list` page size when none (or 0) is asked for, and the most it returns.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// The methods this server knows.
enum Route {
    ListModels,
    GetModel(String),
    Generate { model: String, stream: bool },
}

impl Route {
    fn of(method: &Method, path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/v1beta/models")?;
        if rest.is_empty() || rest == "/" {
            return (method == Method::GET).then_some(Self::ListModels);
        }
        let name = rest.strip_prefix('/').filter(|name| !name.contains('/'))?;
        match (method, name.split_once(':')) {
            (&Method::GET, None) => Some(Self::GetModel(name.to_owned())),
            (&Method::POST, Some((model, "generateContent"))) => Some(Self::Generate {
                model: model.to_owned(),
                stream: false,
            }),
            (&Method::POST, Some((model, "streamGenerateContent"))) => Some(Self::Generate {
                model: model.to_owned(),
                stream: true,
            }),
            _ => None,
        }
    }
}

/// Serves one request: record it, wait the configured latency, apply a fault, check the key,
/// answer (with `Connection: close` when told).
pub(super) async fn handle(
    shared: Arc<Shared>,
    hangup: Hangup,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let close = shared.lock().close_connections;
    let mut response = answer(shared, hangup, request).await?;
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// The answer to one request, as [`handle`] says.
async fn answer(
    shared: Arc<Shared>,
    hangup: Hangup,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let header_key = parts
        .headers
        .get(API_KEY_HEADER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .filter(|value| !value.is_empty());
    let query_key = query
        .iter()
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.clone())
        .filter(|value| !value.is_empty());
    // Like Google, accept the key from the query too, so a client that sends it there still
    // works here and the recording is what catches it.
    let key = header_key.clone().or_else(|| query_key.clone());
    let route = Route::of(&parts.method, parts.uri.path());
    let sse = query
        .iter()
        .any(|(name, value)| name == "alt" && value == "sse");
    let streams_events = sse && matches!(route, Some(Route::Generate { stream: true, .. }));

    let (latency, fault, index) = {
        let mut state = shared.lock();
        let secrets: Vec<String> = header_key.into_iter().chain(query_key).collect();
        let index = state.record(&parts, &body, &secrets);
        (state.latency, state.take_fault(key.as_deref()), index)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut cut = None;
    match fault {
        None => {}
        Some(Fault::DisconnectAfter(n)) if streams_events => cut = Some(Cut::Disconnect(n)),
        Some(Fault::StallAfter(n)) if streams_events => cut = Some(Cut::Stall(n)),
        Some(Fault::Error(error)) => return Ok(error_body(error)),
        Some(Fault::Raw {
            status,
            content_type,
            body,
        }) => {
            return Ok(Response::builder()
                .status(status)
                .header(CONTENT_TYPE, content_type)
                .body(full(body))
                .expect("a valid raw response"));
        }
        Some(Fault::Stall | Fault::StallAfter(_)) => {
            match std::future::pending::<Infallible>().await {}
        }
        Some(Fault::DropConnection | Fault::DisconnectAfter(_)) => {
            match hangup.drop_connection().await {}
        }
    }

    let Some(route) = route else {
        return Ok(unknown_path());
    };
    let Some(key) = key else {
        return Ok(error_body(ErrorBody::PermissionDenied));
    };
    if !shared.lock().keys.contains(&key) {
        return Ok(error_body(ErrorBody::ApiKeyInvalid));
    }
    Ok(match route {
        Route::ListModels => list_models(&shared, &query),
        Route::GetModel(id) => get_model(&shared, &id),
        Route::Generate { model, stream } => {
            let call = Call {
                model: &model,
                stream,
                sse,
                request: index,
                cut,
            };
            generate(&shared, &call, &body)
        }
    })
}

fn list_models(shared: &Shared, query: &[(String, String)]) -> Response<Body> {
    let param = |wanted: &str| {
        query
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    let size = match param("pageSize").map(str::parse::<i64>) {
        None | Some(Ok(0)) => DEFAULT_PAGE_SIZE,
        Some(Ok(size)) if size > 0 => {
            usize::try_from(size).map_or(MAX_PAGE_SIZE, |size| size.min(MAX_PAGE_SIZE))
        }
        Some(_) => {
            return google_error(400, "INVALID_ARGUMENT", "Invalid value for pageSize.");
        }
    };
    let state = shared.lock();
    let start = match param("pageToken").filter(|token| !token.is_empty()) {
        None => 0,
        Some(token) => {
            let after = decode_page_token(token).and_then(|name| {
                state
                    .models
                    .iter()
                    .position(|model| model["name"].as_str() == Some(name.as_str()))
            });
            match after {
                Some(index) => index + 1,
                None => return google_error(400, "INVALID_ARGUMENT", "Invalid page token."),
            }
        }
    };
    let page: Vec<Value> = state
        .models
        .iter()
        .skip(start)
        .take(size)
        .cloned()
        .collect();
    let mut body = json!({ "models": page });
    if start + page.len() < state.models.len()
        && let Some(last) = page.last().and_then(|model| model["name"].as_str())
    {
        body["nextPageToken"] = json!(encode_page_token(last));
    }
    json_response(200, &body)
}

fn get_model(shared: &Shared, id: &str) -> Response<Body> {
    let name = format!("models/{id}");
    let state = shared.lock();
    match state
        .models
        .iter()
        .find(|model| model["name"].as_str() == Some(name.as_str()))
    {
        Some(model) => json_response(200, model),
        None => model_not_found(&name, "get"),
    }
}

/// A generate call as routed.
struct Call<'a> {
    model: &'a str,
    stream: bool,
    sse: bool,
    /// Its index among the recorded requests.
    request: usize,
    /// Where a mid-stream fault cuts the answer.
    cut: Option<Cut>,
}

fn generate(shared: &Arc<Shared>, call: &Call<'_>, body: &Bytes) -> Response<Body> {
    let name = format!("models/{}", call.model);
    let known = shared.lock().models.iter().any(|model| {
        model["name"].as_str() == Some(name.as_str())
            && model["supportedGenerationMethods"]
                .as_array()
                .is_some_and(|methods| methods.iter().any(|m| m == "generateContent"))
    });
    if !known {
        let method = if call.stream {
            "streamGenerateContent"
        } else {
            "generateContent"
        };
        return model_not_found(&name, method);
    }
    let Ok(request @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    if request["contents"].as_array().is_none_or(Vec::is_empty) {
        return error_body(ErrorBody::InvalidArgument);
    }
    let (queued, responder) = {
        let mut state = shared.lock();
        if state.require_signatures
            && let Some((function, position)) = unsigned_call(&request, &state.issued)
        {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                &missing_signature_message(&function, position),
            );
        }
        (state.replies.pop_front(), state.responder.clone())
    };
    // The responder runs without the lock: it may take its time.
    let reply = match (queued, responder) {
        (Some(reply), _) => reply,
        (None, Some(responder)) => responder(&request),
        (None, None) => ScriptedReply::default(),
    };
    let (tags, response_id, shape) = {
        let mut state = shared.lock();
        state.responses += 1;
        let id = format!("testkit{:016}", state.responses);
        (state.issue_calls(&reply), id, state.shape)
    };
    let render = Render {
        prompt_tokens: prompt_tokens(&request),
        model: call.model,
        response_id: &response_id,
        calls: &tags,
    };
    if !call.stream {
        return json_response(200, &reply.response(&render));
    }
    let chunks = reply.stream_chunks(&render);
    if !call.sse {
        // Without alt=sse Google streams one JSON array; sent whole here.
        return json_response(200, &Value::Array(chunks));
    }
    Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "text/event-stream")
        .body(sse_body(
            Arc::clone(shared),
            call.request,
            &chunks,
            shape,
            call.cut,
        ))
        .expect("a valid SSE response")
}

/// The page token Google uses: base64 of a protobuf message whose field 1 is the name of the
/// last model on the page (the example's token decodes to `models/gemini-2.5-flash`).
fn encode_page_token(last_name: &str) -> String {
    let mut message = vec![0x0a];
    let mut length = last_name.len();
    while length >= 0x80 {
        message.push(u8::try_from(length & 0x7f).expect("7 bits") | 0x80);
        length >>= 7;
    }
    message.push(u8::try_from(length).expect("7 bits"));
    message.extend_from_slice(last_name.as_bytes());
    STANDARD.encode(message)
}

fn decode_page_token(token: &str) -> Option<String> {
    let message = STANDARD.decode(token).ok()?;
    let (&tag, mut rest) = message.split_first()?;
    if tag != 0x0a {
        return None;
    }
    let mut length = 0usize;
    for shift in [0u32, 7, 14, 21] {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (rest.len() == length)
                .then(|| String::from_utf8(rest.to_vec()).ok())
                .flatten();
        }
    }
    None
}

fn error_body(error: ErrorBody) -> Response<Body> {
    raw_json(error.status(), error.body())
}

/// The 404 of the peer example, naming the model and method asked for.
fn model_not_found(name: &str, method: &str) -> Response<Body> {
    google_error(404, "NOT_FOUND", &model_not_found_message(name, method))
}

/// What Google's front end answers for a path no API serves: an HTML page, not JSON.
fn unknown_path() -> Response<Body> {
    Response::builder()
        .status(404)
        .header(CONTENT_TYPE, "text/html; charset=UTF-8")
        .body(full(
            "<!DOCTYPE html>\n<html lang=en><title>Error 404 (Not Found)!!1</title><p><b>404.</b> That’s an error.</p></html>\n",
        ))
        .expect("a valid HTML response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_match_googles_and_round_trip() {
        assert_eq!(
            encode_page_token("models/gemini-2.5-flash"),
            "Chdtb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA=="
        );
        let long = format!("models/{}", "x".repeat(300));
        assert_eq!(decode_page_token(&encode_page_token(&long)), Some(long));
        assert_eq!(decode_page_token("not base64!"), None);
        assert_eq!(decode_page_token(&STANDARD.encode([0x12, 1, b'a'])), None);
    }
}
