//! Canary: with every log at TRACE — this crate's, reqwest's and hyper's (through the `log`
//! bridge) — a key used in successful and failing calls appears in no log line. Its own test
//! binary, because it installs the process-wide subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assistd_gemini::{ApiKey, Content, GeminiClient, GeminiConfig, GenerateContentRequest};
use assistd_testkit::GeminiServer;
use assistd_testkit::gemini::{ErrorBody, Fault};

const KEY: &str = "AIzaSyA-assistd-canary-key-0000000000001";
const UNKNOWN_KEY: &str = "AIzaSyA-assistd-canary-key-999999999999X";

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_contains_the_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let server = GeminiServer::start().await;
    server.allow_key(KEY);
    let client = GeminiClient::new(&GeminiConfig {
        base_url: server.base_url(),
        request_timeout: Duration::from_millis(500),
        ..GeminiConfig::default()
    })
    .unwrap();
    let key = ApiKey::new(KEY).unwrap();

    client.list_models(&key, Some(1), None).await.unwrap();
    client.get_model(&key, "gemini-2.5-flash").await.unwrap();
    let request = GenerateContentRequest {
        contents: vec![Content::user("Hello")],
        ..GenerateContentRequest::default()
    };
    client
        .generate_content(&key, "gemini-2.5-flash", &request)
        .await
        .unwrap();
    let mut stream = client
        .stream_generate_content(&key, "gemini-2.5-flash", &request)
        .await
        .unwrap();
    while let Some(item) = stream.next().await {
        item.unwrap();
    }
    server.fail_next(1, Fault::DisconnectAfter(1));
    let mut stream = client
        .stream_generate_content(&key, "gemini-2.5-flash", &request)
        .await
        .unwrap();
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            tracing::error!(%error, ?error, "what a caller would log");
        }
    }
    server.fail_next(1, ErrorBody::ResourceExhausted);
    let error = client
        .stream_generate_content(&key, "gemini-2.5-flash", &request)
        .await
        .unwrap_err();
    tracing::error!(%error, ?error, "what a caller would log");
    client
        .list_models(&ApiKey::new(UNKNOWN_KEY).unwrap(), None, None)
        .await
        .unwrap_err();
    for fault in [
        Fault::from(ErrorBody::ResourceExhausted),
        Fault::from(ErrorBody::Unavailable),
        Fault::Stall,
        Fault::DropConnection,
    ] {
        server.fail_next(1, fault);
        let error = client.list_models(&key, None, None).await.unwrap_err();
        tracing::error!(%error, ?error, "what a caller would log");
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Gemini API answered") && logs.contains("Gemini API call failed"),
        "the canary saw no logs:\n{logs}"
    );
    assert!(!logs.contains(KEY), "the key is in the logs:\n{logs}");
    assert!(!logs.contains(UNKNOWN_KEY), "a key is in the logs:\n{logs}");
}
