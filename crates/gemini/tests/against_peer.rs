//! The client against the in-tree Gemini API server (assistd-testkit), over real sockets.

use std::time::{Duration, Instant};

use assistd_gemini::{ApiKey, Error, GeminiClient, GeminiConfig};
use assistd_testkit::GeminiServer;
use assistd_testkit::gemini::{ErrorBody, Fault, FaultRule, example_model, key_marker};

/// A key the server accepts; shaped like a real one (39 characters, `AIza` prefix).
const KEY: &str = "AIzaSyA-assistd-test-key-000000000000001";
/// Another accepted key, to show per-key faults stay with their key.
const OTHER_KEY: &str = "AIzaSyA-assistd-test-key-000000000000002";
/// A key the server does not know.
const UNKNOWN_KEY: &str = "AIzaSyA-assistd-test-key-99999999999999X";

async fn peer() -> GeminiServer {
    let server = GeminiServer::start().await;
    server.allow_key(KEY);
    server.allow_key(OTHER_KEY);
    server
}

fn client_with_timeout(server: &GeminiServer, request_timeout: Duration) -> GeminiClient {
    GeminiClient::new(&GeminiConfig {
        base_url: server.base_url(),
        request_timeout,
        ..GeminiConfig::default()
    })
    .unwrap()
}

fn client(server: &GeminiServer) -> GeminiClient {
    client_with_timeout(server, Duration::from_secs(5))
}

fn key(key: &str) -> ApiKey {
    ApiKey::new(key).unwrap()
}

/// Neither the message, the Debug form nor any source in the chain names a key.
fn assert_no_key_in(error: &Error) {
    let mut texts = vec![error.to_string(), format!("{error:?}")];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        source = cause.source();
    }
    for text in texts {
        for secret in [KEY, OTHER_KEY, UNKNOWN_KEY] {
            assert!(!text.contains(secret), "key in error text: {text}");
        }
    }
}

#[tokio::test]
async fn a_valid_key_lists_every_model_page_by_page() {
    let server = peer().await;
    for id in ["gemini-test-a", "gemini-test-b", "gemini-test-c"] {
        server.add_model(example_model(id));
    }
    let client = client(&server);

    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_models(&key(KEY), Some(2), token.as_deref())
            .await
            .unwrap();
        pages.push(
            page.models
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>(),
        );
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
        assert!(pages.len() < 10, "pagination does not end");
    }

    let expected: Vec<String> = server
        .models()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), expected);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| r.method == "GET" && r.path == "/v1beta/models")
    );
    assert_eq!(requests[0].query.as_deref(), Some("pageSize=2"));
    assert_eq!(requests[1].query_param("pageSize").as_deref(), Some("2"));
    assert!(requests[1].query_param("pageToken").is_some());
    assert_ne!(
        requests[1].query_param("pageToken"),
        requests[2].query_param("pageToken")
    );
}

#[tokio::test]
async fn listed_models_carry_names_limits_and_methods() {
    let server = peer().await;
    let page = client(&server)
        .list_models(&key(KEY), None, None)
        .await
        .unwrap();
    assert_eq!(page.next_page_token, None);
    let flash = &page.models[0];
    assert_eq!(flash.name, "models/gemini-2.5-flash");
    assert_eq!(flash.display_name.as_deref(), Some("Gemini 2.5 Flash"));
    assert_eq!(flash.input_token_limit, Some(1_048_576));
    assert_eq!(flash.output_token_limit, Some(65_536));
    assert!(flash.supports("generateContent"));
    assert!(!page.models[1].supports("generateContent"));
    // No pageSize sent when none is asked for: Google's default applies.
    assert_eq!(server.requests()[0].query, None);
}

#[tokio::test]
async fn get_model_finds_a_model_and_reports_an_unknown_one() {
    let server = peer().await;
    let client = client(&server);
    for name in ["gemini-2.5-flash", "models/gemini-2.5-flash"] {
        let model = client.get_model(&key(KEY), name).await.unwrap();
        assert_eq!(model.id(), "gemini-2.5-flash");
        assert_eq!(model.version.as_deref(), Some("001"));
    }
    let error = client
        .get_model(&key(KEY), "gemini-1.0-retired")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { message } if message.contains("models/gemini-1.0-retired")),
        "{error:?}"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.path.starts_with("/v1beta/models/"))
    );
}

#[tokio::test]
async fn a_malformed_model_name_is_refused_without_a_call() {
    let server = peer().await;
    for name in ["a/b", "gemini:generateContent", "x?key=1", ""] {
        let error = client(&server)
            .get_model(&key(KEY), name)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { .. }),
            "{name}: {error:?}"
        );
    }
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn an_unknown_or_revoked_key_is_an_invalid_api_key() {
    let server = peer().await;
    let client = client(&server);

    let error = client
        .list_models(&key(UNKNOWN_KEY), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidApiKey { message } if message == "API key not valid. Please pass a valid API key."),
        "{error:?}"
    );
    assert!(error.rejects_key());
    assert!(!error.is_retryable());
    assert_no_key_in(&error);

    client.list_models(&key(KEY), None, None).await.unwrap();
    server.revoke_key(KEY);
    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    assert!(matches!(error, Error::InvalidApiKey { .. }), "{error:?}");
}

#[tokio::test]
async fn a_key_without_permission_is_permission_denied() {
    let server = peer().await;
    server.fail_key(KEY, ErrorBody::PermissionDenied);
    let client = client(&server);

    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    assert!(
        matches!(&error, Error::PermissionDenied { reason: None, message } if message.starts_with("Method doesn't allow unregistered callers")),
        "{error:?}"
    );
    assert!(error.rejects_key());
    assert_no_key_in(&error);
    // The fault belongs to that key only.
    client
        .list_models(&key(OTHER_KEY), None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rate_limit_carries_googles_retry_delay() {
    let server = peer().await;
    server.fail_next(1, ErrorBody::ResourceExhausted);
    let client = client(&server);

    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    let Error::RateLimited {
        retry_after,
        quota_id,
        message,
    } = &error
    else {
        panic!("not rate limited: {error:?}");
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(33)));
    assert_eq!(
        quota_id.as_deref(),
        Some("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
    );
    assert!(message.starts_with("You exceeded your current quota"));
    // The user is told, with the delay; no retry loop hammers the quota.
    assert!(!error.is_retryable());
    assert_no_key_in(&error);

    // Only the next request was limited.
    client.list_models(&key(KEY), None, None).await.unwrap();
}

#[tokio::test]
async fn a_bad_request_is_an_invalid_argument() {
    let server = peer().await;
    server.fail_next(1, ErrorBody::InvalidArgument);
    let error = client(&server)
        .list_models(&key(KEY), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidArgument { message } if message.contains("contents is not specified")),
        "{error:?}"
    );
    assert!(!error.rejects_key());
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let server = peer().await;
    let client = client(&server);
    for (body, status) in [
        (ErrorBody::Internal, 500),
        (ErrorBody::Unavailable, 503),
        (ErrorBody::DeadlineExceeded, 504),
    ] {
        server.fail_next(1, body);
        let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
        assert!(
            matches!(&error, Error::Unavailable { status: Some(s), .. } if *s == status),
            "{status}: {error:?}"
        );
        assert!(error.is_retryable());
        assert_no_key_in(&error);
    }
    client.list_models(&key(KEY), None, None).await.unwrap();
}

#[tokio::test]
async fn a_stall_beyond_the_request_timeout_is_unavailable() {
    let server = peer().await;
    let client = client_with_timeout(&server, Duration::from_millis(300));

    server.fail_next(1, Fault::Stall);
    let started = Instant::now();
    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&error, Error::Unavailable { status: None, message, .. } if message.contains("300ms")),
        "{error:?}"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_no_key_in(&error);

    // Slow but within the budget succeeds; slower than the budget does not.
    server.set_latency(Duration::from_millis(100));
    client.list_models(&key(KEY), None, None).await.unwrap();
    server.set_latency(Duration::from_millis(600));
    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    assert!(
        matches!(error, Error::Unavailable { status: None, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_unavailable() {
    let server = peer().await;
    let client = client(&server);
    // A warm pooled connection first, so the drop hits a reused connection too.
    client.list_models(&key(KEY), None, None).await.unwrap();

    server.fail_next(1, Fault::DropConnection);
    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable { status: None, .. }),
        "{error:?}"
    );
    assert_no_key_in(&error);
    // The client recovers on a new connection.
    client.list_models(&key(KEY), None, None).await.unwrap();
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let server = peer().await;
    let client = client(&server);
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let error = client.list_models(&key(KEY), None, None).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable { status: None, .. }),
        "{error:?}"
    );
    assert_no_key_in(&error);
}

#[tokio::test]
async fn a_page_that_is_not_from_google_is_unexpected_not_a_rejected_key() {
    let server = peer().await;
    server.fail_next(
        1,
        Fault::Raw {
            status: 403,
            content_type: "text/html".to_owned(),
            body: "<html><h1>Access denied by corporate proxy</h1></html>".to_owned(),
        },
    );
    let error = client(&server)
        .list_models(&key(KEY), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Unexpected { status: Some(403), message } if message.contains("corporate proxy")),
        "{error:?}"
    );
    assert!(!error.rejects_key());

    server.fail_next(
        1,
        Fault::Raw {
            status: 200,
            content_type: "application/json".to_owned(),
            body: "[1, 2, 3]".to_owned(),
        },
    );
    let error = client(&server)
        .list_models(&key(KEY), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unexpected {
                status: Some(200),
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_key_travels_only_in_the_x_goog_api_key_header() {
    let server = peer().await;
    let client = client(&server);
    server.inject(FaultRule::next(1, ErrorBody::Unavailable).for_key(OTHER_KEY));

    client.list_models(&key(KEY), Some(1), None).await.unwrap();
    client
        .get_model(&key(KEY), "gemini-2.5-flash")
        .await
        .unwrap();
    client
        .get_model(&key(KEY), "no-such-model")
        .await
        .unwrap_err();
    client
        .list_models(&key(UNKNOWN_KEY), None, None)
        .await
        .unwrap_err();
    client
        .list_models(&key(OTHER_KEY), None, None)
        .await
        .unwrap_err();

    let requests = server.requests();
    let sent_with = [KEY, KEY, KEY, UNKNOWN_KEY, OTHER_KEY];
    assert_eq!(requests.len(), sent_with.len());
    for (request, sent) in requests.iter().zip(sent_with) {
        assert_eq!(
            request.places_of(&key_marker(sent)),
            ["header x-goog-api-key"],
            "{request:?}"
        );
        assert_eq!(
            request.header("x-goog-api-key"),
            Some(key_marker(sent).as_str())
        );
        assert!(!request.uri().contains("key="), "{}", request.uri());
        assert_eq!(request.query_param("key"), None);
        assert!(request.header("authorization").is_none());
        assert!(
            request
                .header("user-agent")
                .is_some_and(|agent| agent.starts_with("assistd/"))
        );
        // The recording holds markers, never a key.
        let recorded = format!("{request:?}");
        for secret in [KEY, OTHER_KEY, UNKNOWN_KEY] {
            assert!(!recorded.contains(secret));
        }
    }
    assert!(!format!("{client:?}").contains(KEY));
    assert_eq!(format!("{:?}", key(KEY)), "ApiKey([redacted])");
}
