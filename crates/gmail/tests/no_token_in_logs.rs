//! Canary: with every log at TRACE — this crate's, reqwest's and hyper's — an access token
//! used in successful, refreshed and failing calls appears in no log line, and neither do the
//! address or the mail contents. Its own test binary, because it installs the process-wide
//! subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assistd_gmail::{GmailClient, GmailConfig};
use assistd_testkit::gmail::{ErrorBody, Fault, NewMessage};
use common::Env;

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
async fn no_log_line_contains_a_token_an_address_or_mail() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let env = Env::start().await;
    let sub = env.sub();
    let canary = "Zyqxwvcanary";
    let id = env.gmail.add_message(
        sub,
        NewMessage::new(common::mail(&format!("{canary} subject"))),
    );
    let client = GmailClient::new(&GmailConfig {
        timeout: Duration::from_millis(300),
        ..env.config()
    })
    .unwrap();
    let gmail = client.for_user("user-1", &env.tokens);
    let first_token = env.tokens.current();

    gmail.profile().await.unwrap();
    gmail.list_messages(None, 10).await.unwrap();
    let message = gmail.get_raw(&id).await.unwrap();
    tracing::info!(?message, "what a caller would log");
    gmail.get_thread(&id).await.unwrap();
    gmail.list_history(1000, None).await.unwrap();
    env.oidc.expire_access_tokens();
    gmail.profile().await.unwrap();
    env.gmail.fail_next(1, Fault::Stall(Duration::from_secs(5)));
    env.gmail.fail_next(1, Fault::DropConnection);
    env.gmail.fail_next(1, ErrorBody::BackendError);
    gmail.profile().await.unwrap();
    env.gmail.fail_next(1, ErrorBody::InsufficientScope);
    let error = gmail.profile().await.unwrap_err();
    tracing::error!(%error, ?error, "what a caller would log");
    let second_token = env.tokens.current();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("gmail.call"), "the spans were logged");
    assert!(logs.contains("users.messages.get"));
    for secret in [
        first_token.as_str(),
        second_token.as_str(),
        env.tokens.refresh_token(),
    ] {
        assert!(!logs.contains(secret), "a token reached the logs");
    }
    assert!(
        !logs.contains(&env.user.email),
        "the address reached the logs"
    );
    assert!(!logs.contains(canary), "mail contents reached the logs");
}
