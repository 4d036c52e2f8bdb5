//! The Gemini test server answers like the real API, byte for byte where the peer examples
//! say so. Driven by a plain HTTP client.

use std::time::{Duration, Instant};

use assistd_testkit::GeminiServer;
use assistd_testkit::gemini::{
    ErrorBody, Fault, FaultRule, ScriptedReply, StreamEnd, bodies, key_marker,
};
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

// ---- function calls, thought signatures, safety, usage ----

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

async fn post_json(server: &GeminiServer, path: &str, body: &Value) -> (u16, Value) {
    let response = post(server, path, &body.to_string()).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn ask(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

#[tokio::test]
async fn function_calls_carry_an_id_and_a_signature_that_must_come_back() {
    let server = peer().await;
    server.push_reply(
        ScriptedReply::text("Let me look.")
            .with_function_call("search_mail", json!({"query": "from:bob"}))
            .with_function_call("list_events", json!({})),
    );
    let (status, body) = post_json(&server, GENERATE, &ask("Mail from Bob?")).await;
    assert_eq!(status, 200);
    let content = &body["candidates"][0]["content"];
    let parts = content["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], json!({"text": "Let me look."}));
    let issued = server.issued_calls();
    assert_eq!(issued.len(), 2);
    for (part, issued) in parts[1..].iter().zip(&issued) {
        assert_eq!(part["functionCall"]["id"], issued.id.as_str());
        assert_eq!(part["functionCall"]["name"], issued.name.as_str());
        assert_eq!(part["functionCall"]["args"], issued.args);
        assert_eq!(part["thoughtSignature"], issued.signature.as_str());
    }
    assert_ne!(issued[0].signature, issued[1].signature);
    assert_ne!(issued[0].id, issued[1].id);
    // The example's shape: the signature beside the functionCall, in a model turn.
    let example: Value = serde_json::from_str(bodies::FUNCTION_CALL_RESPONSE).unwrap();
    assert_eq!(
        keys(&parts[1]),
        keys(&example["candidates"][0]["content"]["parts"][0])
    );

    // Echoed verbatim: accepted.
    let followup = |model_turn: Value| {
        json!({"contents": [
            {"role": "user", "parts": [{"text": "Mail from Bob?"}]},
            model_turn,
            {"role": "user", "parts": [
                {"functionResponse": {"name": "search_mail", "response": {"messages": []}}},
                {"functionResponse": {"name": "list_events", "response": {"events": []}}}
            ]}
        ]})
    };
    let (status, _) = post_json(&server, GENERATE, &followup(content.clone())).await;
    assert_eq!(status, 200);

    // Without the second call's signature: Gemini 3's 400.
    let mut stripped = content.clone();
    stripped["parts"][2]
        .as_object_mut()
        .unwrap()
        .remove("thoughtSignature");
    let (status, error) = post_json(&server, GENERATE, &followup(stripped.clone())).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(error["error"]["code"], 400);
    assert_eq!(
        error["error"]["message"],
        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:list_events` , position 2. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
    );
    // A signature of another call is no better.
    let mut swapped = content.clone();
    swapped["parts"][1]["thoughtSignature"] = json!(issued[1].signature);
    assert_eq!(
        post_json(&server, GENERATE, &followup(swapped)).await.0,
        400
    );

    // Switched off, anything goes.
    server.require_thought_signatures(false);
    assert_eq!(
        post_json(&server, GENERATE, &followup(stripped)).await.0,
        200
    );

    // The recorded bodies show what was echoed.
    let sent = server.generate_requests();
    assert_eq!(sent.len(), 5);
    assert_eq!(sent[1]["contents"][1], *content);
}

#[tokio::test]
async fn a_streamed_function_call_comes_in_the_last_event() {
    let server = peer().await;
    server.push_reply(
        ScriptedReply::function_call("search_mail", json!({"query": "x"})).usage(98, 22, 60),
    );
    let text = post(&server, STREAM, &ask("Search").to_string())
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 1);
    let part = &events[0]["candidates"][0]["content"]["parts"][0];
    assert_eq!(part["functionCall"]["name"], "search_mail");
    assert_eq!(
        part["thoughtSignature"],
        server.issued_calls()[0].signature.as_str()
    );
    assert_eq!(events[0]["candidates"][0]["finishReason"], "STOP");
    let usage = &events[0]["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], 98);
    assert_eq!(usage["candidatesTokenCount"], 22);
    assert_eq!(usage["thoughtsTokenCount"], 60);
    assert_eq!(usage["totalTokenCount"], 180);
}

fn sse_events(text: &str) -> Vec<Value> {
    text.split_terminator("\r\n\r\n")
        .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn blocked_prompts_and_safety_stops_look_like_the_examples() {
    let server = peer().await;
    server.push_reply(ScriptedReply::blocked_prompt("SAFETY"));
    let (status, body) = post_json(&server, GENERATE, &ask("Something bad")).await;
    assert_eq!(status, 200);
    let example: Value = serde_json::from_str(bodies::PROMPT_BLOCKED_RESPONSE).unwrap();
    assert_eq!(keys(&body), keys(&example));
    assert_eq!(
        keys(&body["usageMetadata"]),
        keys(&example["usageMetadata"])
    );
    assert_eq!(body["promptFeedback"]["blockReason"], "SAFETY");
    assert_eq!(
        body["promptFeedback"]["safetyRatings"],
        example["promptFeedback"]["safetyRatings"]
    );

    server.push_reply(ScriptedReply::blocked_prompt("PROHIBITED_CONTENT"));
    let text = post(&server, STREAM, &ask("Worse").to_string())
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["promptFeedback"],
        json!({"blockReason": "PROHIBITED_CONTENT"})
    );
    assert!(events[0].get("candidates").is_none());

    server.push_reply(ScriptedReply::text("").finish_reason("SAFETY"));
    let (_, body) = post_json(&server, GENERATE, &ask("Hmm")).await;
    let example: Value = serde_json::from_str(bodies::CANDIDATE_SAFETY_BLOCKED_RESPONSE).unwrap();
    assert_eq!(keys(&body), keys(&example));
    assert_eq!(
        keys(&body["candidates"][0]),
        keys(&example["candidates"][0])
    );
    assert_eq!(
        body["candidates"][0]["safetyRatings"][2]["blocked"],
        json!(true)
    );
    assert!(body["usageMetadata"].get("candidatesTokenCount").is_none());

    // Partial text, then stopped for safety: the text streams, the last event has no content.
    server.push_reply(ScriptedReply::chunks(["Once upon", " a time", ""]).finish_reason("SAFETY"));
    let text = post(&server, STREAM, &ask("Story").to_string())
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1]["candidates"][0]["content"]["parts"][0]["text"],
        " a time"
    );
    let last = &events[2]["candidates"][0];
    assert!(last.get("content").is_none());
    assert_eq!(last["finishReason"], "SAFETY");
    assert!(last["safetyRatings"].is_array());
    assert_eq!(events[2]["usageMetadata"]["candidatesTokenCount"], 4);
}

#[tokio::test]
async fn thoughts_and_usage_overrides() {
    let server = peer().await;
    server.push_reply(ScriptedReply::text("Answer here.").with_thought("Thinking about it"));
    let (_, body) = post_json(&server, GENERATE, &ask("Q")).await;
    let parts = &body["candidates"][0]["content"]["parts"];
    assert_eq!(
        parts[0],
        json!({"text": "Thinking about it", "thought": true})
    );
    assert_eq!(parts[1], json!({"text": "Answer here."}));
    let usage = &body["usageMetadata"];
    assert_eq!(usage["candidatesTokenCount"], 2);
    assert_eq!(usage["thoughtsTokenCount"], 3);
    assert_eq!(usage["totalTokenCount"], 1 + 2 + 3);

    server.push_reply(ScriptedReply::text("x").usage(10, 5, 0));
    let (_, body) = post_json(&server, GENERATE, &ask("Q")).await;
    let usage = &body["usageMetadata"];
    assert_eq!(
        (
            &usage["promptTokenCount"],
            &usage["candidatesTokenCount"],
            &usage["totalTokenCount"]
        ),
        (&json!(10), &json!(5), &json!(15))
    );
    assert!(usage.get("thoughtsTokenCount").is_none());
}

#[tokio::test]
async fn a_responder_answers_from_the_request_when_the_queue_is_empty() {
    let server = peer().await;
    server.respond_with(|request| {
        let last = request["contents"]
            .as_array()
            .and_then(|c| c.last())
            .cloned();
        let answered = last.is_some_and(|turn| turn["parts"][0].get("functionResponse").is_some());
        if answered {
            ScriptedReply::text("Done.")
        } else {
            ScriptedReply::function_call("lookup", json!({"q": "a"}))
        }
    });
    server.push_reply(ScriptedReply::text("Queued first."));
    let text_of = |body: &Value| body["candidates"][0]["content"]["parts"][0]["text"].clone();

    let (_, body) = post_json(&server, GENERATE, &ask("Q")).await;
    assert_eq!(text_of(&body), "Queued first.");
    let (_, body) = post_json(&server, GENERATE, &ask("Q")).await;
    let model_turn = body["candidates"][0]["content"].clone();
    assert_eq!(model_turn["parts"][0]["functionCall"]["name"], "lookup");
    let followup = json!({"contents": [
        {"role": "user", "parts": [{"text": "Q"}]},
        model_turn,
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {}}}]}
    ]});
    let (status, body) = post_json(&server, GENERATE, &followup).await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&body), "Done.");

    server.clear_responder();
    let (_, body) = post_json(&server, GENERATE, &ask("Q")).await;
    assert_eq!(
        text_of(&body),
        "Bob asked you to confirm the Q3 numbers before Friday."
    );
}

// ---- stream shape, mid-stream faults, disconnects, write times ----

async fn open_stream(server: &GeminiServer, text: &str) -> reqwest::Response {
    let response = post(server, STREAM, &ask(text).to_string()).await;
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn events_can_be_split_over_several_writes_and_paced() {
    let server = peer().await;
    server.split_stream_events(3, Duration::from_millis(5));
    server.set_chunk_interval(Duration::from_millis(40));
    server.push_reply(ScriptedReply::chunks(["One", " two", " three"]));

    let mut response = open_stream(&server, "Count").await;
    let mut reads = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        reads.push((Instant::now(), chunk));
    }
    let body: Vec<u8> = reads.iter().flat_map(|(_, chunk)| chunk.to_vec()).collect();
    let events = sse_events(std::str::from_utf8(&body).unwrap());
    assert_eq!(events.len(), 3);
    // Pieces arrive as separate reads; each event's final "\n" alone.
    assert!(reads.len() >= 6, "{} reads", reads.len());
    assert!(
        reads
            .iter()
            .filter(|(_, chunk)| &chunk[..] == b"\n")
            .count()
            >= 2
    );

    let logs = server.streams();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].request, 0);
    assert!(matches!(logs[0].end, StreamEnd::Complete { .. }));
    let written = &server.stream_write_times()[0];
    assert_eq!(written.len(), 3);
    for pair in written.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(40),
            "{written:?}"
        );
    }
    assert_eq!(server.stream_disconnects(), 0);
}

#[tokio::test]
async fn disconnect_after_cuts_the_body_without_the_final_event() {
    let server = peer().await;
    server.push_reply(ScriptedReply::chunks(["a", "b", "c"]));
    server.fail_next(1, Fault::DisconnectAfter(2));

    let mut response = open_stream(&server, "Go").await;
    let mut body = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly"),
            Err(error) => break error,
        }
    };
    assert!(!error.is_timeout(), "{error:?}");
    let events = sse_events(std::str::from_utf8(&body).unwrap());
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none())
    );
    assert!(matches!(
        server.streams()[0].end,
        StreamEnd::ServerClosed { .. }
    ));
    assert_eq!(server.stream_write_times()[0].len(), 2);
    assert_eq!(server.stream_disconnects(), 0);

    // On a call that does not stream, the connection just drops.
    server.fail_next(1, Fault::DisconnectAfter(2));
    let error = http()
        .post(format!("{}{GENERATE}", server.base_url()))
        .header("x-goog-api-key", KEY)
        .body(ask("x").to_string())
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
}

#[tokio::test]
async fn the_server_notices_a_client_leaving_a_stalled_stream_at_once() {
    let server = peer().await;
    server.push_reply(ScriptedReply::chunks(["a", "b", "c"]));
    server.fail_next(1, Fault::StallAfter(1));

    let mut response = open_stream(&server, "Go").await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.ends_with(b"\r\n\r\n"));
    // Nothing more comes.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), response.chunk())
            .await
            .is_err()
    );
    assert!(matches!(server.streams()[0].end, StreamEnd::Open));
    assert_eq!(server.stream_disconnects(), 0);

    let left = Instant::now();
    drop(response);
    let noticed = server
        .wait_for_stream_disconnects(1, Duration::from_secs(2))
        .await
        .expect("the server saw the client go");
    assert!(noticed >= left);
    assert!(
        noticed - left < Duration::from_secs(1),
        "{:?}",
        noticed - left
    );
    assert_eq!(server.stream_disconnects(), 1);
    assert!(matches!(server.streams()[0].end, StreamEnd::ClientGone { at } if at == noticed));

    // Stalled before any event: the headers still come.
    server.fail_next(1, Fault::StallAfter(0));
    let response = tokio::time::timeout(Duration::from_secs(2), open_stream(&server, "Go"))
        .await
        .expect("headers before the stall");
    drop(response);
    server
        .wait_for_stream_disconnects(2, Duration::from_secs(2))
        .await
        .expect("the server saw the client go");
    assert!(server.stream_write_times()[1].is_empty());
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_recorded_too() {
    let server = peer().await;
    server.set_chunk_interval(Duration::from_millis(100));
    server.push_reply(ScriptedReply::chunks(["a", "b", "c", "d", "e"]));

    let mut response = open_stream(&server, "Go").await;
    response.chunk().await.unwrap().unwrap();
    let left = Instant::now();
    drop(response);
    let noticed = server
        .wait_for_stream_disconnects(1, Duration::from_secs(2))
        .await
        .expect("the server saw the client go");
    assert!(
        noticed - left < Duration::from_secs(1),
        "{:?}",
        noticed - left
    );
    assert!(server.stream_write_times()[0].len() < 5);
}
