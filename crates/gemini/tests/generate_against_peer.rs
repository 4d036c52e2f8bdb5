//! generateContent and streamGenerateContent against the in-tree Gemini API server
//! (assistd-testkit), over real sockets.

use std::time::{Duration, Instant};

use assistd_gemini::{
    ApiKey, Content, ContentStream, Error, FunctionCallingConfig, FunctionCallingMode,
    FunctionDeclaration, GeminiClient, GeminiConfig, GenerateContentRequest,
    GenerateContentResponse, GenerationConfig, Part, Tool, ToolConfig,
};
use assistd_testkit::GeminiServer;
use assistd_testkit::gemini::{ErrorBody, Fault, ScriptedReply, StreamEnd, key_marker};
use serde_json::{Value, json};

const KEY: &str = "AIzaSyA-assistd-test-key-000000000000001";
const MODEL: &str = "gemini-2.5-flash";

async fn peer() -> GeminiServer {
    let server = GeminiServer::start().await;
    server.allow_key(KEY);
    server
}

fn client_with(server: &GeminiServer, config: GeminiConfig) -> GeminiClient {
    GeminiClient::new(&GeminiConfig {
        base_url: server.base_url(),
        ..config
    })
    .unwrap()
}

fn client(server: &GeminiServer) -> GeminiClient {
    client_with(
        server,
        GeminiConfig {
            request_timeout: Duration::from_secs(5),
            stream_idle_timeout: Duration::from_secs(5),
            ..GeminiConfig::default()
        },
    )
}

fn key() -> ApiKey {
    ApiKey::new(KEY).unwrap()
}

fn ask(text: &str) -> GenerateContentRequest {
    GenerateContentRequest {
        contents: vec![Content::user(text)],
        ..GenerateContentRequest::default()
    }
}

/// Every item of a stream until it ends, errors included.
async fn drain(mut stream: ContentStream) -> Vec<Result<GenerateContentResponse, Error>> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    items
}

fn assert_no_key_in(error: &Error) {
    let mut texts = vec![error.to_string(), format!("{error:?}")];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        source = cause.source();
    }
    assert!(texts.iter().all(|text| !text.contains(KEY)), "{texts:?}");
}

#[tokio::test]
async fn generate_content_sends_the_request_and_decodes_the_answer() {
    let server = peer().await;
    server.push_reply(ScriptedReply::text("Four words of reply.").with_thought("Hmm, let me see"));
    let request = GenerateContentRequest {
        contents: vec![
            Content::user("Summarise my mail."),
            Content::model(vec![Part::text("Which mail?")]),
            Content::user("From Bob."),
        ],
        system_instruction: Some(Content::system("Be brief.")),
        tools: vec![Tool {
            function_declarations: vec![FunctionDeclaration {
                name: "search_mail".to_owned(),
                description: "Search the mailbox.".to_owned(),
                parameters: Some(
                    json!({"type": "object", "properties": {"query": {"type": "string"}}}),
                ),
            }],
        }],
        tool_config: Some(ToolConfig {
            function_calling_config: Some(FunctionCallingConfig {
                mode: Some(FunctionCallingMode::Auto),
                allowed_function_names: Vec::new(),
            }),
        }),
        generation_config: Some(GenerationConfig {
            temperature: Some(0.5),
            max_output_tokens: Some(256),
            ..GenerationConfig::default()
        }),
        ..GenerateContentRequest::default()
    };

    let response = client(&server)
        .generate_content(&key(), MODEL, &request)
        .await
        .unwrap();
    assert_eq!(response.text(), "Four words of reply.");
    assert_eq!(response.finish_reason(), Some("STOP"));
    assert!(response.function_calls().is_empty());
    let usage = response.usage_metadata.unwrap();
    // Words: 3 + 2 + 2 in the turns, 2 in the system instruction.
    assert_eq!(usage.prompt_token_count, Some(9));
    assert_eq!(usage.candidates_token_count, Some(4));
    assert_eq!(usage.thoughts_token_count, Some(4));
    assert_eq!(usage.total_token_count, Some(17));
    assert_eq!(response.model_version.as_deref(), Some(MODEL));

    let recorded = &server.requests()[0];
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(recorded.query, None);
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    let body = recorded.json().unwrap();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(body["contents"][1]["role"], "model");
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["name"],
        "search_mail"
    );
    assert_eq!(body["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 0.5, "maxOutputTokens": 256})
    );

    // "models/…" works as well; a name that would change the path is refused unsent.
    client(&server)
        .generate_content(&key(), "models/gemini-2.5-flash", &ask("Hi"))
        .await
        .unwrap();
    for bad in [
        "gemini-2.5-flash:streamGenerateContent",
        "../models",
        "a/b",
        "x?alt=sse",
    ] {
        let error = client(&server)
            .generate_content(&key(), bad, &ask("Hi"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { .. }),
            "{bad}: {error:?}"
        );
        let error = client(&server)
            .stream_generate_content(&key(), bad, &ask("Hi"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { .. }),
            "{bad}: {error:?}"
        );
    }
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_function_call_goes_back_verbatim_with_its_thought_signature() {
    let server = peer().await;
    let client = client(&server);
    server.push_reply(ScriptedReply::function_call(
        "search_mail",
        json!({"query": "from:bob", "max_results": 1}),
    ));
    server.push_reply(ScriptedReply::text("Bob wants the Q3 numbers."));

    let mut request = ask("Summarise Bob's last mail.");
    let response = client
        .generate_content(&key(), MODEL, &request)
        .await
        .unwrap();
    let calls = response.function_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "search_mail");
    assert_eq!(
        calls[0].args,
        json!({"query": "from:bob", "max_results": 1})
    );
    let issued = &server.issued_calls()[0];
    assert_eq!(calls[0].id.as_deref(), Some(issued.id.as_str()));
    let turn = response.candidates[0].content.clone().unwrap();
    assert_eq!(
        turn.parts[0].thought_signature.as_deref(),
        Some(issued.signature.as_str())
    );

    let answer = calls[0].respond(json!({"messages": [{"subject": "Q3 numbers"}]}));
    request.contents.push(turn.clone());
    request
        .contents
        .push(Content::user_parts(vec![Part::function_response(answer)]));
    let response = client
        .generate_content(&key(), MODEL, &request)
        .await
        .unwrap();
    assert_eq!(response.text(), "Bob wants the Q3 numbers.");
    let sent = &server.generate_requests()[1];
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        issued.signature.as_str()
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"]["id"],
        issued.id.as_str()
    );

    // Dropping the signature is what Gemini 3 refuses.
    request.contents[1].parts[0].thought_signature = None;
    let error = client
        .generate_content(&key(), MODEL, &request)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidArgument { message } if message.contains("missing a thought_signature") && message.contains("default_api:search_mail")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_tool_loop_over_streams() {
    let server = peer().await;
    server.respond_with(|request: &Value| {
        let answered = request["contents"]
            .as_array()
            .and_then(|contents| contents.last())
            .is_some_and(|turn| turn["parts"][0].get("functionResponse").is_some());
        if answered {
            ScriptedReply::chunks(["It is", " sunny."])
        } else {
            ScriptedReply::text("Checking.").with_function_call("weather", json!({"city": "Oslo"}))
        }
    });
    let client = client(&server);
    let mut request = ask("Weather in Oslo?");

    let mut parts = Vec::new();
    for item in drain(
        client
            .stream_generate_content(&key(), MODEL, &request)
            .await
            .unwrap(),
    )
    .await
    {
        let response = item.unwrap();
        parts.extend(response.parts().iter().cloned());
    }
    let call = parts
        .iter()
        .find_map(|part| part.function_call.clone())
        .unwrap();
    assert_eq!(call.args, json!({"city": "Oslo"}));
    request.contents.push(Content::model(parts));
    request
        .contents
        .push(Content::user_parts(vec![Part::function_response(
            call.respond(json!({"forecast": "sunny"})),
        )]));

    let items = drain(
        client
            .stream_generate_content(&key(), MODEL, &request)
            .await
            .unwrap(),
    )
    .await;
    let texts: Vec<String> = items.into_iter().map(|item| item.unwrap().text()).collect();
    assert_eq!(texts, ["It is", " sunny."]);
}

#[tokio::test]
async fn a_stream_yields_each_event_as_it_is_written() {
    let server = peer().await;
    // Each event in three writes, the last its final "\n" alone; 80 ms between events.
    server.split_stream_events(3, Duration::from_millis(2));
    server.set_chunk_interval(Duration::from_millis(80));
    server.push_reply(
        ScriptedReply::chunks(["Hel", "lo, ", "wörld", "!"]).finish_reason("MAX_TOKENS"),
    );

    let mut stream = client(&server)
        .stream_generate_content(&key(), MODEL, &ask("Greet"))
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut texts = Vec::new();
    while let Some(item) = stream.next().await {
        let response = item.unwrap();
        received.push(Instant::now());
        texts.push(response.text());
        if received.len() < 4 {
            assert_eq!(response.finish_reason(), None);
        } else {
            assert_eq!(response.finish_reason(), Some("MAX_TOKENS"));
            assert_eq!(
                response.usage_metadata.unwrap().candidates_token_count,
                Some(2)
            );
        }
    }
    assert_eq!(texts, ["Hel", "lo, ", "wörld", "!"]);
    assert!(stream.is_finished());

    // Every event reached the caller before the next one was even written.
    let written = &server.stream_write_times()[0];
    assert_eq!(written.len(), 4);
    for index in 0..3 {
        assert!(
            received[index] < written[index + 1],
            "event {index} was held back"
        );
    }
    let request = &server.requests()[0];
    assert_eq!(
        request.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(request.query.as_deref(), Some("alt=sse"));
}

#[tokio::test]
async fn request_timeout_bounds_the_headers_not_a_long_stream() {
    let server = peer().await;
    let client = client_with(
        &server,
        GeminiConfig {
            request_timeout: Duration::from_millis(300),
            stream_idle_timeout: Duration::from_secs(2),
            ..GeminiConfig::default()
        },
    );
    server.set_chunk_interval(Duration::from_millis(150));
    server.push_reply(ScriptedReply::chunks(["a", "b", "c", "d", "e"]));
    let started = Instant::now();
    let items = drain(
        client
            .stream_generate_content(&key(), MODEL, &ask("Slow"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(Result::is_ok));
    assert!(started.elapsed() >= Duration::from_millis(600));

    // Headers later than request_timeout: unavailable.
    server.set_latency(Duration::from_millis(800));
    let started = Instant::now();
    let error = client
        .stream_generate_content(&key(), MODEL, &ask("Slower"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable { status: None, message, .. } if message.contains("300ms")),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(700));
    assert!(error.is_retryable());
}

#[tokio::test]
async fn http_errors_are_classified_before_the_stream_starts() {
    let server = peer().await;
    let client = client(&server);
    for body in [
        ErrorBody::ApiKeyInvalid,
        ErrorBody::InvalidArgument,
        ErrorBody::PermissionDenied,
        ErrorBody::ModelNotFound,
        ErrorBody::ResourceExhausted,
        ErrorBody::Internal,
        ErrorBody::Unavailable,
        ErrorBody::DeadlineExceeded,
    ] {
        for streamed in [false, true] {
            server.fail_next(1, body);
            let error = if streamed {
                client
                    .stream_generate_content(&key(), MODEL, &ask("Hi"))
                    .await
                    .unwrap_err()
            } else {
                client
                    .generate_content(&key(), MODEL, &ask("Hi"))
                    .await
                    .unwrap_err()
            };
            let expected = match (&error, body) {
                (Error::InvalidApiKey { .. }, ErrorBody::ApiKeyInvalid)
                | (Error::InvalidArgument { .. }, ErrorBody::InvalidArgument)
                | (Error::PermissionDenied { .. }, ErrorBody::PermissionDenied)
                | (Error::NotFound { .. }, ErrorBody::ModelNotFound) => true,
                (Error::RateLimited { retry_after, .. }, ErrorBody::ResourceExhausted) => {
                    *retry_after == Some(Duration::from_secs(33))
                }
                (
                    Error::Unavailable {
                        status: Some(status),
                        ..
                    },
                    _,
                ) => *status == body.status() && error.is_retryable(),
                _ => false,
            };
            assert!(expected, "{body:?} (streamed: {streamed}): {error:?}");
            assert_eq!(error.is_retryable(), body.status() >= 500, "{body:?}");
            assert_no_key_in(&error);
        }
    }
    // A model the server does not serve, for real.
    let error = client
        .stream_generate_content(&key(), "gemini-0.1-gone", &ask("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { message } if message.contains("streamGenerateContent")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_blocked_prompt_is_an_answer_not_an_error() {
    let server = peer().await;
    let client = client(&server);
    server.push_reply(ScriptedReply::blocked_prompt("SAFETY"));
    let response = client
        .generate_content(&key(), MODEL, &ask("Bad"))
        .await
        .unwrap();
    assert_eq!(response.block_reason(), Some("SAFETY"));
    assert!(response.candidates.is_empty());

    server.push_reply(ScriptedReply::blocked_prompt("PROHIBITED_CONTENT"));
    let items = drain(
        client
            .stream_generate_content(&key(), MODEL, &ask("Worse"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].as_ref().unwrap().block_reason(),
        Some("PROHIBITED_CONTENT")
    );

    server.push_reply(ScriptedReply::chunks(["Once", ""]).finish_reason("SAFETY"));
    let items = drain(
        client
            .stream_generate_content(&key(), MODEL, &ask("Story"))
            .await
            .unwrap(),
    )
    .await;
    let last = items.last().unwrap().as_ref().unwrap();
    assert_eq!(last.finish_reason(), Some("SAFETY"));
    assert!(
        last.candidates[0]
            .safety_ratings
            .iter()
            .any(|rating| rating.blocked)
    );
}

#[tokio::test]
async fn a_connection_cut_mid_stream_is_an_interruption() {
    let server = peer().await;
    server.push_reply(ScriptedReply::chunks(["a", "b", "c"]));
    server.fail_next(1, Fault::DisconnectAfter(2));

    let items = drain(
        client(&server)
            .stream_generate_content(&key(), MODEL, &ask("Go"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap().text(), "a");
    assert_eq!(items[1].as_ref().unwrap().text(), "b");
    let error = items[2].as_ref().unwrap_err();
    assert!(
        matches!(error, Error::StreamInterrupted { message } if message.contains("after 2 events")),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_no_key_in(error);
}

#[tokio::test]
async fn a_body_that_ends_without_a_finish_reason_is_an_interruption() {
    let server = peer().await;
    let client = client(&server);
    let event = json!({"candidates": [{"content": {"parts": [{"text": "half"}], "role": "model"}, "index": 0}]});
    server.fail_next(
        1,
        Fault::Raw {
            status: 200,
            content_type: "text/event-stream".to_owned(),
            body: format!("data: {event}\r\n\r\n"),
        },
    );
    let items = drain(
        client
            .stream_generate_content(&key(), MODEL, &ask("Go"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().text(), "half");
    assert!(
        matches!(
            &items[1],
            Err(Error::StreamInterrupted { message }) if message.contains("without a finish reason")
        ),
        "{:?}",
        items[1]
    );

    // An event that is not a GenerateContentResponse.
    server.fail_next(
        1,
        Fault::Raw {
            status: 200,
            content_type: "text/event-stream".to_owned(),
            body: "data: {\"candidates\": 7}\r\n\r\n".to_owned(),
        },
    );
    let items = drain(
        client
            .stream_generate_content(&key(), MODEL, &ask("Go"))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(
            &items[..],
            [Err(Error::Unexpected {
                status: Some(200),
                ..
            })]
        ),
        "{items:?}"
    );

    // A 200 that is not an event stream (a proxy's page).
    server.fail_next(
        1,
        Fault::Raw {
            status: 200,
            content_type: "text/html".to_owned(),
            body: "<html>Sign in to the Wi-Fi</html>".to_owned(),
        },
    );
    let error = client
        .stream_generate_content(&key(), MODEL, &ask("Go"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Unexpected { status: Some(200), message } if message.contains("Wi-Fi")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_silent_stream_times_out_and_the_connection_is_closed() {
    let server = peer().await;
    let client = client_with(
        &server,
        GeminiConfig {
            request_timeout: Duration::from_secs(5),
            stream_idle_timeout: Duration::from_millis(300),
            ..GeminiConfig::default()
        },
    );
    server.push_reply(ScriptedReply::chunks(["a", "b"]));
    server.fail_next(1, Fault::StallAfter(1));

    let mut stream = client
        .stream_generate_content(&key(), MODEL, &ask("Go"))
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().text(), "a");
    let started = Instant::now();
    let error = stream.next().await.unwrap().unwrap_err();
    let gave_up = Instant::now();
    assert!(
        matches!(&error, Error::Unavailable { status: None, message, .. } if message.contains("300ms")),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert!(stream.next().await.is_none());
    // Giving up released the connection, while the stream itself is still held.
    let noticed = server
        .wait_for_stream_disconnects(1, Duration::from_secs(2))
        .await
        .expect("the server saw the connection close");
    assert!(noticed - gave_up < Duration::from_secs(1));
    drop(stream);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection_at_once() {
    let server = peer().await;
    server.push_reply(ScriptedReply::chunks(["a", "b", "c"]));
    server.fail_next(1, Fault::StallAfter(1));
    let mut stream = client(&server)
        .stream_generate_content(&key(), MODEL, &ask("Go"))
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    assert!(matches!(server.streams()[0].end, StreamEnd::Open));

    let dropped = Instant::now();
    drop(stream);
    let noticed = server
        .wait_for_stream_disconnects(1, Duration::from_secs(2))
        .await
        .expect("the server saw the client go");
    assert!(
        noticed - dropped < Duration::from_secs(1),
        "{:?}",
        noticed - dropped
    );

    // Also while events are still flowing.
    server.set_chunk_interval(Duration::from_millis(50));
    server.push_reply(ScriptedReply::chunks([
        "1", "2", "3", "4", "5", "6", "7", "8",
    ]));
    let mut stream = client(&server)
        .stream_generate_content(&key(), MODEL, &ask("Go"))
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    let dropped = Instant::now();
    drop(stream);
    let noticed = server
        .wait_for_stream_disconnects(2, Duration::from_secs(2))
        .await
        .expect("the server saw the client go");
    assert!(
        noticed - dropped < Duration::from_secs(1),
        "{:?}",
        noticed - dropped
    );
    assert!(server.stream_write_times()[1].len() < 8);
}

#[tokio::test]
async fn the_key_travels_only_in_the_header_of_generate_calls() {
    let server = peer().await;
    let client = client(&server);
    client
        .generate_content(&key(), MODEL, &ask("Hi"))
        .await
        .unwrap();
    drain(
        client
            .stream_generate_content(&key(), MODEL, &ask("Hi"))
            .await
            .unwrap(),
    )
    .await;
    server.fail_next(1, ErrorBody::Unavailable);
    client
        .stream_generate_content(&key(), MODEL, &ask("Hi"))
        .await
        .unwrap_err();

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(
            request.places_of(&key_marker(KEY)),
            ["header x-goog-api-key"],
            "{request:?}"
        );
        assert_eq!(request.query_param("key"), None);
        assert!(!request.uri().contains(KEY));
    }
    let stream = client
        .stream_generate_content(&key(), MODEL, &ask("Hi"))
        .await
        .unwrap();
    assert!(!format!("{stream:?}").contains(KEY));
}
