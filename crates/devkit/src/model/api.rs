//! The Gemini REST API's shapes that every server here answers with the same way: `Model`
//! resources, Google's error bodies, the not-found message, the word-count stand-in for a
//! tokenizer and JSON answers. The local model is built on them, and so is the Gemini test
//! server of `assistd-testkit`.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::serve::{Body, full};

/// The header the Gemini API reads the key from.
pub const API_KEY_HEADER: &str = "x-goog-api-key";
/// The content type of Google's JSON answers.
pub const JSON: &str = "application/json; charset=UTF-8";

/// A `Model` resource named `models/{id}` that serves generateContent and countTokens.
#[must_use]
pub fn model_resource(id: &str, display_name: &str, description: &str, thinking: bool) -> Value {
    json!({
        "name": format!("models/{id}"),
        "baseModelId": id,
        "version": "001",
        "displayName": display_name,
        "description": description,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": thinking,
    })
}

/// Google's message for a model `name` (`models/…`) that is unknown or does not serve
/// `method`.
#[must_use]
pub fn model_not_found_message(name: &str, method: &str) -> String {
    format!(
        "{name} is not found for API version v1beta, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."
    )
}

/// Google's error answer: `{"error": {"code", "message", "status"}}` with HTTP `code`.
#[must_use]
pub fn google_error(code: u16, status: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// A JSON answer with HTTP `status`, pretty-printed as Google's front end writes it.
#[must_use]
pub fn json_response(status: u16, body: &Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(body).expect("JSON values serialize") + "\n";
    raw_json(status, text)
}

/// `body` as a JSON answer with HTTP `status`, unchanged.
#[must_use]
pub fn raw_json(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(JSON));
    response
}

/// The stand-in for a tokenizer: the words of `text`.
#[must_use]
pub fn word_count(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

/// The prompt's "tokens": the words of every text part of `contents` and
/// `systemInstruction`.
#[must_use]
pub fn prompt_tokens(request: &Value) -> u64 {
    let parts_of = |content: &Value| -> u64 {
        content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(word_count)
            .sum()
    };
    let contents: u64 = request
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(parts_of)
        .sum();
    contents + request.get("systemInstruction").map_or(0, parts_of)
}
