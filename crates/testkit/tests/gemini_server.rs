//! The Gemini test server answers like the real API, byte for byte where the peer examples
//! say so. Driven by a plain HTTP client.

use std::time::{Duration, Instant};

use assistd_testkit::GeminiServer;
use assistd_testkit::gemini::{ErrorBody, Fault, FaultRule, ScriptedReply, bodies, key_marker};
use serde_json::{Value, json};

const KEY: &str = "AIzaSyA-testkit-key-000000000000000000001";

async fn peer() -> GeminiServer {
    let server = GeminiServer::start().await;
    server.allow_key(KEY);
    server
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(server: &GeminiServer, path_and_query: &str, key: Option<&str>) -> (u16, String) {
    let mut request = http().get(format!("{}{path_and_query}", server.base_url()));
    if let Some(key) = key {
        request = request.header("x-goog-api-key", key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post(server: &GeminiServer, path_and_query: &str, body: &str) -> reqwest::Response {
    http()
        .post(format!("{}{path_and_query}", server.base_url()))
        .header("x-goog-api-key", KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn no_key_gets_the_403_body_and_an_unknown_key_the_400_body() {
    let server = peer().await;
    assert_eq!(
        get(&server, "/v1beta/models", None).await,
        (403, bodies::ERROR_403_NO_KEY.to_owned())
    );
    assert_eq!(
        get(
            &server,
            "/v1beta/models",
            Some("AIzaSyNotAKeyThisServerKnows")
        )
        .await,
        (400, bodies::ERROR_400_API_KEY_INVALID.to_owned())
    );
    let (status, _) = get(&server, "/v1beta/models", Some(KEY)).await;
    assert_eq!(status, 200);
    server.revoke_key(KEY);
    assert_eq!(get(&server, "/v1beta/models", Some(KEY)).await.0, 400);
}

#[tokio::test]
async fn a_key_in_the_query_works_like_google_and_is_recorded_as_a_marker() {
    let server = peer().await;
    let (status, _) = get(&server, &format!("/v1beta/models?key={KEY}"), None).await;
    assert_eq!(status, 200);
    let request = &server.requests()[0];
    assert_eq!(request.query, Some(format!("key={}", key_marker(KEY))));
    assert_eq!(request.places_of(&key_marker(KEY)), ["query"]);
    assert!(!format!("{request:?}").contains(KEY));
    // Markers are stable and distinguish keys.
    assert_eq!(key_marker(KEY), key_marker(KEY));
    assert_ne!(key_marker(KEY), key_marker("another"));
}

#[tokio::test]
async fn unknown_keys_are_redacted_too() {
    let server = peer().await;
    let stranger = "AIzaSyStrangerKey0000000000000000000000";
    get(&server, "/v1beta/models", Some(stranger)).await;
    let request = &server.requests()[0];
    assert_eq!(
        request.header("x-goog-api-key"),
        Some(key_marker(stranger).as_str())
    );
    assert!(!format!("{request:?}").contains(stranger));
}

#[tokio::test]
async fn models_paginate_with_googles_page_tokens() {
    let server = peer().await;
    let (status, body) = get(&server, "/v1beta/models?pageSize=1", Some(KEY)).await;
    assert_eq!(status, 200);
    let first: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["models"].as_array().unwrap().len(), 1);
    // The same token the real API gave in the example after models/gemini-2.5-flash.
    let example: Value = serde_json::from_str(bodies::MODELS_LIST).unwrap();
    assert_eq!(first["nextPageToken"], example["nextPageToken"]);

    let token = first["nextPageToken"].as_str().unwrap();
    let query = form_encode(&[("pageSize", "1"), ("pageToken", token)]);
    let (_, body) = get(&server, &format!("/v1beta/models?{query}"), Some(KEY)).await;
    let second: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(second["models"][0]["name"], "models/text-embedding-004");
    assert!(second.get("nextPageToken").is_none());

    // Without pageSize, everything fits the default page of 50.
    let (_, body) = get(&server, "/v1beta/models", Some(KEY)).await;
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["models"], example["models"]);

    let (status, body) = get(&server, "/v1beta/models?pageToken=garbage", Some(KEY)).await;
    assert_eq!(status, 400);
    assert!(body.contains("INVALID_ARGUMENT"));
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            let encoded: String = value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{name}={encoded}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn get_model_answers_the_example_or_404() {
    let server = peer().await;
    let (status, body) = get(&server, "/v1beta/models/gemini-2.5-flash", Some(KEY)).await;
    assert_eq!(status, 200);
    let model: Value = serde_json::from_str(&body).unwrap();
    let example: Value = serde_json::from_str(bodies::MODELS_GET).unwrap();
    assert_eq!(model, example);

    let (status, body) = get(&server, "/v1beta/models/gemini-1.5-flash", Some(KEY)).await;
    assert_eq!(status, 404);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["status"], "NOT_FOUND");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("models/gemini-1.5-flash is not found for API version v1beta")
    );

    // A path no API serves gets the front end's HTML page, not JSON.
    let (status, body) = get(&server, "/v2/whatever", Some(KEY)).await;
    assert_eq!(status, 404);
    assert!(body.contains("<html"));
}

#[tokio::test]
async fn generate_content_answers_the_scripted_text_with_usage() {
    let server = peer().await;
    server.push_reply(ScriptedReply::text("Four words of reply."));

    let response = post(
        &server,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        bodies::GENERATE_CONTENT_REQUEST,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(
        candidate["content"]["parts"][0]["text"],
        "Four words of reply."
    );
    assert_eq!(candidate["finishReason"], "STOP");
    // Prompt "tokens" are words: 9 in the system instruction, 6 + 4 + 2 in the turns.
    let usage = &body["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], 21);
    assert_eq!(usage["candidatesTokenCount"], 4);
    assert_eq!(usage["totalTokenCount"], 25);
    assert_eq!(body["modelVersion"], "gemini-2.5-flash");
    assert!(body["responseId"].is_string());

    // Same keys as the real example answer.
    let example: Value = serde_json::from_str(bodies::GENERATE_CONTENT_RESPONSE).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&body), keys(&example));
    assert_eq!(keys(usage), keys(&example["usageMetadata"]));

    // Queue empty: the example's text.
    let body: Value = post(
        &server,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        bodies::GENERATE_CONTENT_REQUEST,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "Bob asked you to confirm the Q3 numbers before Friday."
    );
    let recorded = &server.requests()[0];
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.json().unwrap()["contents"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn stream_generate_content_sends_sse_events_framed_by_crlf() {
    let server = peer().await;
    server.push_reply(
        ScriptedReply::chunks(["Hello", " there,", " friend."]).finish_reason("MAX_TOKENS"),
    );
    let request =
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}).to_string();

    let response = post(
        &server,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &request,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("\r\n\r\n"));
    let events: Vec<Value> = text
        .split_terminator("\r\n\r\n")
        .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    let pieces: Vec<&str> = events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(pieces, ["Hello", " there,", " friend."]);
    assert!(
        events[..2]
            .iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none()
                && e["usageMetadata"].get("candidatesTokenCount").is_none())
    );
    assert_eq!(events[2]["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(events[2]["usageMetadata"]["promptTokenCount"], 2);
    assert_eq!(events[2]["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(events[2]["usageMetadata"]["totalTokenCount"], 5);
    assert!(
        events
            .iter()
            .all(|e| e["responseId"] == events[0]["responseId"])
    );

    // The default reply streams like the example file, event for event.
    let text = post(
        &server,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        bodies::GENERATE_CONTENT_REQUEST,
    )
    .await
    .text()
    .await
    .unwrap();
    let texts_of = |sse: &str| -> Vec<String> {
        sse.split_terminator("\r\n\r\n")
            .map(|e| serde_json::from_str::<Value>(&e[6..]).unwrap())
            .map(|e| {
                e["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        texts_of(&text),
        texts_of(bodies::STREAM_GENERATE_CONTENT_SSE)
    );

    // Without alt=sse: one JSON array of the same chunks.
    let array: Value = post(
        &server,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        &request,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(array.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn generate_refuses_missing_contents_and_models_that_do_not_generate() {
    let server = peer().await;
    let response = post(
        &server,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "{}",
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().await.unwrap(),
        bodies::ERROR_400_INVALID_ARGUMENT
    );

    let response = post(
        &server,
        "/v1beta/models/text-embedding-004:generateContent",
        bodies::GENERATE_CONTENT_REQUEST,
    )
    .await;
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("not supported for generateContent")
    );
}

#[tokio::test]
async fn faults_count_down_and_can_target_one_key() {
    let server = peer().await;
    let other = "AIzaSyA-testkit-key-000000000000000000002";
    server.allow_key(other);

    server.fail_next(2, ErrorBody::Internal);
    assert_eq!(
        get(&server, "/v1beta/models", Some(KEY)).await,
        (500, bodies::ERROR_500_INTERNAL.to_owned())
    );
    assert_eq!(get(&server, "/v1beta/models", Some(other)).await.0, 500);
    assert_eq!(get(&server, "/v1beta/models", Some(KEY)).await.0, 200);

    server.inject(FaultRule::next(1, ErrorBody::ResourceExhausted).for_key(other));
    assert_eq!(get(&server, "/v1beta/models", Some(KEY)).await.0, 200);
    assert_eq!(
        get(&server, "/v1beta/models", Some(other)).await,
        (429, bodies::ERROR_429_RESOURCE_EXHAUSTED.to_owned())
    );
    assert_eq!(get(&server, "/v1beta/models", Some(other)).await.0, 200);

    server.fail_key(other, ErrorBody::PermissionDenied);
    for _ in 0..3 {
        assert_eq!(get(&server, "/v1beta/models", Some(other)).await.0, 403);
    }
    server.fail_always(ErrorBody::Unavailable);
    assert_eq!(get(&server, "/v1beta/models", Some(KEY)).await.0, 503);
    server.clear_faults();
    assert_eq!(get(&server, "/v1beta/models", Some(other)).await.0, 200);

    for (body, status) in [
        (ErrorBody::ApiKeyInvalid, 400),
        (ErrorBody::InvalidArgument, 400),
        (ErrorBody::ModelNotFound, 404),
        (ErrorBody::DeadlineExceeded, 504),
    ] {
        server.fail_next(1, body);
        assert_eq!(
            get(&server, "/v1beta/models", Some(KEY)).await,
            (status, body.body().to_owned())
        );
    }
    assert_eq!(server.request_count(), 15);
}

#[tokio::test]
async fn latency_stall_and_dropped_connections() {
    let server = peer().await;

    server.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(get(&server, "/v1beta/models", Some(KEY)).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    server.set_latency(Duration::ZERO);

    server.fail_next(1, Fault::Stall);
    let error = http()
        .get(format!("{}/v1beta/models", server.base_url()))
        .header("x-goog-api-key", KEY)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");

    server.fail_next(1, Fault::DropConnection);
    let error = http()
        .get(format!("{}/v1beta/models", server.base_url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");

    assert_eq!(get(&server, "/v1beta/models", Some(KEY)).await.0, 200);
    assert_eq!(server.request_count(), 4);
}
