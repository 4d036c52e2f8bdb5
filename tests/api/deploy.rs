//! Deploys and crashes, with the real binary: `assistd serve` processes on one database,
//! stopped with SIGTERM while a send is still being answered past `server.shutdown_grace`, or
//! killed with SIGKILL mid-send. What the client gets, what is stored, the exit code, and what
//! a resend gets afterwards — from the restarted server or from another replica.
//!
//! With `TEST_LOG` set the servers log to the test's stderr and each test prints how long
//! the client waited for its status and the process for its exit after the signal, or how long
//! the other replica took to answer a killed replica's send.

use std::time::{Duration, Instant};

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd_store::Store;
use assistd_testkit::gemini::{Fault, ScriptedReply};
use futures::StreamExt as _;
use sea_orm::{ConnectionTrait as _, Statement};
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, spawn_app};
use crate::process::{GRACE, ServeProcess, test_log};

/// Longest wait for a server to listen or to exit before the test gives up (not a speed
/// check: it keeps a broken server from hanging the suite).
const PATIENCE: Duration = Duration::from_secs(60);

/// A chat client over a connection of its own to `replica`.
async fn chat_client(replica: &ServeProcess) -> ChatServiceClient<Channel> {
    ChatServiceClient::new(replica.channel().await)
}

/// A user with a stored Gemini key and a session, set up on an in-process server that is
/// then stopped: the tests run their own `assistd serve` processes on its database and data
/// directory (keys, signing key), and keep `app` for both and for its Gemini peer.
struct Setup {
    app: TestApp,
    token: String,
    session: String,
}

impl Setup {
    async fn new() -> Self {
        let mut app = spawn_app().await;
        let token = app.token_for(app.create_user().await);
        app.gemini.allow_key(GOOD_KEY);
        let channel = app.channel().await;
        UserApiKeyServiceClient::new(channel.clone())
            .set_api_key(authed(
                keypb::SetApiKeyRequest {
                    provider: keypb::Provider::Gemini.into(),
                    api_key: GOOD_KEY.into(),
                    allow_unverified: false,
                },
                &token,
            ))
            .await
            .expect("store the key");
        let session = ChatServiceClient::new(channel)
            .create_session(authed(pb::CreateSessionRequest::default(), &token))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
            .id;
        app.stop().await.expect("the set-up server stops");
        Self {
            app,
            token,
            session,
        }
    }

    /// An `assistd serve` replica on the set-up server's database, with `envs` added.
    async fn replica(&self, envs: &[(&str, &str)]) -> ServeProcess {
        // A title call of its own would take the replies scripted for the sends.
        let mut all = vec![("ASSISTD_CHAT__GENERATE_TITLES", "false")];
        all.extend_from_slice(envs);
        ServeProcess::start(&self.app, &all, None, PATIENCE).await
    }

    fn send_request(&self, id: &str, text: &str) -> tonic::Request<pb::SendMessageRequest> {
        authed(
            pb::SendMessageRequest {
                session_id: self.session.clone(),
                client_message_id: id.into(),
                text: text.into(),
            },
            &self.token,
        )
    }

    async fn messages(&self, replica: &ServeProcess) -> Vec<pb::Message> {
        chat_client(replica)
            .await
            .list_messages(authed(
                pb::ListMessagesRequest {
                    session_id: self.session.clone(),
                    page_size: 200,
                    direction: pb::ListMessagesDirection::Forward.into(),
                    ..Default::default()
                },
                &self.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// How many generate calls the Gemini peer received.
    fn model_calls(&self) -> usize {
        self.app.gemini.generate_requests().len()
    }

    /// Waits until the Gemini peer received `count` generate calls.
    async fn wait_for_model_calls(&self, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.model_calls() < count {
            assert!(Instant::now() < deadline, "no model call arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The exchange state of the send `id` and whether it still holds a lease, read from the
    /// database.
    async fn exchange_row(&self, id: &str) -> (String, bool) {
        let store = Store::connect(&self.app.config.database_settings())
            .await
            .unwrap();
        let db = store.connection();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT exchange_state, \
                     CASE WHEN lease_until IS NULL THEN 0 ELSE 1 END AS leased \
                     FROM chat_messages WHERE client_message_id = '{id}'"
                ),
            ))
            .await
            .unwrap()
            .expect("the send is stored");
        let state: String = row.try_get("", "exchange_state").unwrap();
        let leased: i32 = row.try_get("", "leased").unwrap();
        store.close().await;
        (state, leased == 1)
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
}

fn text_of(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text,
        _ => "",
    }
}

fn finish_of(message: &pb::Message) -> pb::FinishReason {
    message
        .metadata
        .as_ref()
        .map_or(pb::FinishReason::Unspecified, |metadata| {
            metadata.finish_reason()
        })
}

fn error_reason_of(message: &pb::Message) -> String {
    message
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.error.as_ref())
        .map(|error| error.reason.clone())
        .unwrap_or_default()
}

/// Asserts that `status` is the one a send stopped by a shutting-down server ends with.
fn assert_shutting_down(status: &tonic::Status) {
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason(status), "SERVER_SHUTTING_DOWN", "{status:?}");
    assert_eq!(
        retry_delay(status),
        Some(Duration::from_secs(1)),
        "{status:?}"
    );
    assert!(
        status.message().contains("client_message_id"),
        "the message names the fix: {status:?}"
    );
}

#[tokio::test]
async fn sigterm_past_the_grace_stores_the_partial_reply_and_a_resend_after_restart_replays_it() {
    use pb::stream_message_response::Event;
    let setup = Setup::new().await;
    let gemini = &setup.app.gemini;
    gemini.push_reply(ScriptedReply::chunks([
        "The first words ",
        "of a long answer ",
        "that never comes.",
    ]));
    // Two events reach the client, then the model writes nothing more: the stream is still
    // mid-reply when the grace runs out.
    gemini.fail_next(1, Fault::StallAfter(2));
    let mut server = setup.replica(&[]).await;
    let mut stream = chat_client(&server)
        .await
        .stream_message(authed(
            pb::StreamMessageRequest {
                session_id: setup.session.clone(),
                client_message_id: "deploy-1".into(),
                text: "Tell me a long story".into(),
            },
            &setup.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut deltas = String::new();
    let mut seen = 0;
    while seen < 2 {
        match stream.next().await.unwrap().unwrap().event.unwrap() {
            Event::TextDelta(delta) => {
                deltas.push_str(&delta.text);
                seen += 1;
            }
            Event::UserMessage(_) => {}
            other => panic!("unexpected event before the stall: {other:?}"),
        }
    }
    assert_eq!(deltas, "The first words of a long answer ");

    let signalled = server.signal("TERM");
    let mut after = Vec::new();
    let status = loop {
        match stream.next().await {
            Some(Ok(response)) => after.push(response.event.unwrap()),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status: {after:?}"),
        }
    };
    let status_after = signalled.elapsed();
    assert_shutting_down(&status);
    // What was streamed is what was stored, and the client gets the stored reply.
    let [Event::ModelMessage(reply)] = after.as_slice() else {
        panic!("expected the stored partial reply, then the status: {after:?}");
    };
    assert_eq!(text_of(reply), deltas);
    assert_eq!(finish_of(reply), pb::FinishReason::Cancelled);
    assert_eq!(error_reason_of(reply), "SERVER_SHUTTING_DOWN");
    let exit = server.exited().await;
    let exit_after = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "{exit}");
    if test_log() {
        eprintln!(
            "deploy: stream past a {GRACE} grace: SIGTERM -> client status {status_after:?}, \
             SIGTERM -> exit {exit_after:?}"
        );
    }
    // The exchange ended (and let go of its lease) in the database before the process did.
    assert_eq!(
        setup.exchange_row("deploy-1").await,
        ("done".to_owned(), false)
    );
    assert_eq!(setup.model_calls(), 1);

    // After the restart a resend replays the stored partial reply without calling the model.
    let mut restarted = setup.replica(&[]).await;
    let replayed = chat_client(&restarted)
        .await
        .send_message(setup.send_request("deploy-1", "Tell me a long story"))
        .await
        .expect("the resend is answered")
        .into_inner();
    assert!(replayed.replayed);
    let reply = replayed.reply.expect("the stored reply");
    assert_eq!(text_of(&reply), deltas);
    assert_eq!(finish_of(&reply), pb::FinishReason::Cancelled);
    assert_eq!(setup.model_calls(), 1, "no new model call");
    let roles: Vec<_> = setup
        .messages(&restarted)
        .await
        .iter()
        .map(pb::Message::role)
        .collect();
    assert_eq!(roles, [pb::MessageRole::User, pb::MessageRole::Model]);
    restarted.signal("TERM");
    assert_eq!(restarted.exited().await.code(), Some(0));
}

#[tokio::test]
async fn a_unary_send_past_the_grace_is_answered_unavailable_and_the_server_stops_cleanly() {
    let setup = Setup::new().await;
    // The model never answers this call.
    setup.app.gemini.fail_next(1, Fault::Stall);
    let mut server = setup.replica(&[]).await;
    let mut chat = chat_client(&server).await;
    let send = tokio::spawn({
        let request = setup.send_request("deploy-2", "What is the capital of France?");
        async move { chat.send_message(request).await }
    });
    setup.wait_for_model_calls(1).await;

    let signalled = server.signal("TERM");
    let status = send
        .await
        .unwrap()
        .expect_err("a send stopped by the shutdown fails");
    let status_after = signalled.elapsed();
    assert_shutting_down(&status);
    let exit = server.exited().await;
    let exit_after = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "{exit}");
    if test_log() {
        eprintln!(
            "deploy: unary send past a {GRACE} grace: SIGTERM -> client status \
             {status_after:?}, SIGTERM -> exit {exit_after:?}"
        );
    }
    // Nothing of a reply was written: the send is left failed, without a lease, so that a
    // resend asks the model again rather than replaying an empty reply.
    assert_eq!(
        setup.exchange_row("deploy-2").await,
        ("failed".to_owned(), false)
    );

    setup
        .app
        .gemini
        .push_reply(ScriptedReply::text("Paris is the capital of France."));
    let mut restarted = setup.replica(&[]).await;
    let answered = chat_client(&restarted)
        .await
        .send_message(setup.send_request("deploy-2", "What is the capital of France?"))
        .await
        .expect("the resend is answered")
        .into_inner();
    assert!(!answered.replayed);
    assert_eq!(
        text_of(answered.reply.as_ref().unwrap()),
        "Paris is the capital of France."
    );
    assert_eq!(setup.model_calls(), 2, "one more model call");
    // The stopped attempt is stored, as an empty CANCELLED reply that says why, and the
    // model is not shown it: the resend's request holds the question once.
    let messages = setup.messages(&restarted).await;
    let summary: Vec<_> = messages
        .iter()
        .map(|m| (m.role(), finish_of(m), error_reason_of(m)))
        .collect();
    assert_eq!(
        summary,
        [
            (
                pb::MessageRole::User,
                pb::FinishReason::Unspecified,
                String::new()
            ),
            (
                pb::MessageRole::Model,
                pb::FinishReason::Cancelled,
                "SERVER_SHUTTING_DOWN".to_owned()
            ),
            (
                pb::MessageRole::Model,
                pb::FinishReason::Stop,
                String::new()
            ),
        ]
    );
    assert_eq!(text_of(&messages[1]), "");
    let request = setup.app.gemini.generate_requests().pop().unwrap();
    assert_eq!(
        request["contents"],
        serde_json::json!([{"role": "user", "parts": [{"text": "What is the capital of France?"}]}])
    );
    restarted.signal("TERM");
    assert_eq!(restarted.exited().await.code(), Some(0));
}

#[tokio::test]
async fn a_killed_replicas_send_is_taken_over_by_another_once_its_lease_lapses() {
    let setup = Setup::new().await;
    let lease = [("ASSISTD_CHAT__EXCHANGE_LEASE", "1s")];
    let mut killed = setup.replica(&lease).await;
    let mut other = setup.replica(&lease).await;
    setup.app.gemini.fail_next(1, Fault::Stall);
    let mut chat = chat_client(&killed).await;
    let send = tokio::spawn({
        let request = setup.send_request("deploy-3", "Are you still there?");
        async move { chat.send_message(request).await }
    });
    setup.wait_for_model_calls(1).await;
    setup
        .app
        .gemini
        .push_reply(ScriptedReply::text("Yes, on another server."));

    let signalled = killed.signal("KILL");
    assert!(
        send.await.unwrap().is_err(),
        "the killed server answers nothing"
    );
    assert!(!killed.exited().await.success());
    let mut client = chat_client(&other).await;
    let mut refused = 0;
    let answered = loop {
        match client
            .send_message(setup.send_request("deploy-3", "Are you still there?"))
            .await
        {
            Ok(response) => break response.into_inner(),
            Err(status) if reason(&status) == "MESSAGE_IN_PROGRESS" => {
                assert!(
                    signalled.elapsed() < PATIENCE,
                    "the killed replica's send was never taken over"
                );
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("unexpected answer to the resend: {status:?}"),
        }
    };
    let answer_after = signalled.elapsed();
    assert!(!answered.replayed);
    assert_eq!(
        text_of(answered.reply.as_ref().unwrap()),
        "Yes, on another server."
    );
    assert_eq!(setup.model_calls(), 2, "one more model call");
    if test_log() {
        eprintln!(
            "deploy: SIGKILL mid-send with a 1 s lease: answered by the other replica after \
             {answer_after:?} ({refused} resends refused as MESSAGE_IN_PROGRESS before)"
        );
    }
    other.signal("TERM");
    assert_eq!(other.exited().await.code(), Some(0));
}
