//! The HTTP version a client speaks to the in-tree Gemini API server (assistd-testkit), which
//! records the version of every request: HTTP/1.1 by default, HTTP/2 (h2c with prior
//! knowledge) when configured, for unary and streamed calls alike.

use std::time::{Duration, Instant};

use assistd_gemini::{
    ApiKey, Content, GeminiClient, GeminiConfig, GenerateContentRequest, HttpVersion,
};
use assistd_testkit::GeminiServer;
use assistd_testkit::gemini::{Fault, ScriptedReply, StreamEnd};
use http::Version;

const KEY: &str = "AIzaSyA-assistd-test-key-000000000000001";
const MODEL: &str = "gemini-2.5-flash";

async fn peer() -> GeminiServer {
    let server = GeminiServer::start().await;
    server.allow_key(KEY);
    server
}

fn client(server: &GeminiServer, http_version: HttpVersion) -> GeminiClient {
    GeminiClient::new(&GeminiConfig {
        base_url: server.base_url(),
        request_timeout: Duration::from_secs(5),
        stream_idle_timeout: Duration::from_secs(5),
        http_version,
        ..GeminiConfig::default()
    })
    .unwrap()
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

/// A unary call, then a streamed one read to its end, with `client`; returns the versions
/// the server saw, in order, and the streamed text.
async fn unary_then_streamed(
    server: &GeminiServer,
    client: &GeminiClient,
) -> (Vec<Version>, String) {
    server.push_reply(ScriptedReply::text("Whole."));
    server.push_reply(ScriptedReply::chunks(["In ", "pieces."]));
    let whole = client
        .generate_content(&key(), MODEL, &ask("Once"))
        .await
        .unwrap();
    assert_eq!(whole.text(), "Whole.");
    let mut stream = client
        .stream_generate_content(&key(), MODEL, &ask("Twice"))
        .await
        .unwrap();
    let mut streamed = String::new();
    while let Some(item) = stream.next().await {
        streamed.push_str(&item.unwrap().text());
    }
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        ]
    );
    (requests.iter().map(|r| r.version).collect(), streamed)
}

#[tokio::test]
async fn the_default_client_speaks_http1() {
    assert_eq!(GeminiConfig::default().http_version, HttpVersion::Http1);
    let server = peer().await;
    let client = client(&server, GeminiConfig::default().http_version);
    let (versions, streamed) = unary_then_streamed(&server, &client).await;
    assert_eq!(versions, [Version::HTTP_11, Version::HTTP_11]);
    assert_eq!(streamed, "In pieces.");
}

#[tokio::test]
async fn an_http2_client_makes_unary_and_streamed_calls_over_http2() {
    let server = peer().await;
    let client = client(&server, HttpVersion::Http2);
    let (versions, streamed) = unary_then_streamed(&server, &client).await;
    assert_eq!(versions, [Version::HTTP_2, Version::HTTP_2]);
    assert_eq!(streamed, "In pieces.");
    // The host travels in `:authority`; the server's Host check accepts it.
    let listed = client.list_models(&key(), None, None).await.unwrap();
    assert!(!listed.models.is_empty());
    assert_eq!(server.requests()[2].version, Version::HTTP_2);
}

#[tokio::test]
async fn dropping_a_stream_over_http2_cuts_that_stream_alone() {
    let server = peer().await;
    let client = client(&server, HttpVersion::Http2);
    server.fail_always(Fault::StallAfter(1));
    server.push_reply(ScriptedReply::chunks(["a", "b"]));
    server.push_reply(ScriptedReply::chunks(["c", "d"]));
    let mut kept = client
        .stream_generate_content(&key(), MODEL, &ask("One"))
        .await
        .unwrap();
    let mut dropped = client
        .stream_generate_content(&key(), MODEL, &ask("Two"))
        .await
        .unwrap();
    let first = kept.next().await.unwrap().unwrap().text();
    let second = dropped.next().await.unwrap().unwrap().text();
    let mut texts = [first, second];
    texts.sort();
    assert_eq!(texts, ["a", "c"]);

    let at = Instant::now();
    drop(dropped);
    let noticed = server
        .wait_for_stream_disconnects(1, Duration::from_secs(2))
        .await
        .expect("the server saw the stream reset");
    assert!(noticed - at < Duration::from_secs(1), "{:?}", noticed - at);
    // The other stream, on the same connection, is still open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ends: Vec<StreamEnd> = server.streams().iter().map(|log| log.end).collect();
    assert_eq!(
        ends.iter().filter(|end| **end == StreamEnd::Open).count(),
        1,
        "{ends:?}"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|request| request.version == Version::HTTP_2)
    );
    drop(kept);
    server
        .wait_for_stream_disconnects(2, Duration::from_secs(2))
        .await
        .expect("the server saw the second stream reset");
}
