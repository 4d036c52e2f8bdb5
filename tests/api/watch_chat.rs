//! WatchChat end to end: a second device sees a reply delta by delta with the committed
//! messages and the exchange's end, across replicas on PostgreSQL; a reconnect with a cursor
//! misses no committed change; expired and malformed cursors; a watcher that stops reading is
//! dropped without slowing the sender; another user's chat never reaches a watcher; shutdown
//! ends watches with UNAVAILABLE.

use std::time::Duration;

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::chat::v1::watch_chat_response::Event;
use assistd_testkit::gemini::ScriptedReply;
use futures::StreamExt as _;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt as _;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, spawn_app};

/// Longest wait for an event that should come (a guard against hanging, not a measurement).
const PATIENCE: Duration = Duration::from_secs(20);

/// A signed-in user with a stored key.
struct User {
    token: String,
}

impl User {
    async fn new(app: &TestApp) -> Self {
        let token = app.token_for(app.create_user().await);
        app.gemini.allow_key(GOOD_KEY);
        UserApiKeyServiceClient::new(app.channel().await)
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
        Self { token }
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        authed(message, &self.token)
    }

    /// A chat client on its own connection (another device).
    async fn device(&self, app: &TestApp) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(app.channel().await)
    }

    async fn session(&self, chat: &mut ChatServiceClient<Channel>) -> pb::Session {
        chat.create_session(self.req(pb::CreateSessionRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
    }

    async fn send(
        &self,
        chat: &mut ChatServiceClient<Channel>,
        session: &str,
        id: &str,
        text: &str,
    ) -> pb::SendMessageResponse {
        chat.send_message(self.req(pb::SendMessageRequest {
            session_id: session.into(),
            client_message_id: id.into(),
            text: text.into(),
        }))
        .await
        .expect("the send succeeds")
        .into_inner()
    }

    /// Streams a send to its end; returns the deltas' texts and the events.
    async fn stream(
        &self,
        chat: &mut ChatServiceClient<Channel>,
        session: &str,
        id: &str,
        text: &str,
    ) -> (Vec<String>, Vec<pb::stream_message_response::Event>) {
        let mut stream = chat
            .stream_message(self.req(pb::StreamMessageRequest {
                session_id: session.into(),
                client_message_id: id.into(),
                text: text.into(),
            }))
            .await
            .expect("the stream starts")
            .into_inner();
        let mut deltas = Vec::new();
        let mut events = Vec::new();
        while let Some(item) = stream.next().await {
            let event = item.expect("the stream ends OK").event.unwrap();
            if let pb::stream_message_response::Event::TextDelta(delta) = &event {
                deltas.push(delta.text.clone());
            }
            events.push(event);
        }
        (deltas, events)
    }

    /// Opens a watch with `cursor` on `chat`; returns the stream after its `started` event,
    /// with the cursor `started` carried.
    async fn watch(
        &self,
        chat: &mut ChatServiceClient<Channel>,
        cursor: &str,
    ) -> Result<(Watch, Vec<pb::WatchChatResponse>), tonic::Status> {
        let mut stream = chat
            .watch_chat(self.req(pb::WatchChatRequest {
                cursor: cursor.into(),
            }))
            .await?
            .into_inner();
        let mut replayed = Vec::new();
        loop {
            let response = tokio::time::timeout(PATIENCE, stream.next())
                .await
                .expect("the watch starts")
                .expect("the watch stays open")?;
            if matches!(response.event, Some(Event::Started(_))) {
                return Ok((Watch { stream }, replayed));
            }
            replayed.push(response);
        }
    }
}

/// An open WatchChat stream.
struct Watch {
    stream: tonic::Streaming<pb::WatchChatResponse>,
}

impl Watch {
    async fn next(&mut self) -> pb::WatchChatResponse {
        tokio::time::timeout(PATIENCE, self.stream.next())
            .await
            .expect("an event arrives")
            .expect("the watch stays open")
            .expect("the watch goes on")
    }

    /// Events until the end of the exchange of `exchange_id` and until the deltas seen add up
    /// to `reply` (deltas and committed events travel separately, so either may come last).
    async fn until_finished(
        &mut self,
        exchange_id: &str,
        reply: &str,
    ) -> Vec<pb::WatchChatResponse> {
        let mut seen = Vec::new();
        let mut finished = false;
        let mut text = String::new();
        while !finished || text != reply {
            let response = self.next().await;
            match response.event.as_ref().unwrap() {
                Event::ExchangeFinished(end) if end.exchange_id == exchange_id => finished = true,
                Event::ReplyDelta(delta) if delta.exchange_id == exchange_id => {
                    text.push_str(&delta.text);
                }
                _ => {}
            }
            seen.push(response);
        }
        seen
    }
}

fn text_of(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text,
        _ => "",
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

fn deltas_of(events: &[pb::WatchChatResponse]) -> Vec<String> {
    events
        .iter()
        .filter_map(|response| match response.event.as_ref()? {
            Event::ReplyDelta(delta) => Some(delta.text.clone()),
            _ => None,
        })
        .collect()
}

/// The committed events, as `kind:id` strings, in order.
fn committed_of(events: &[pb::WatchChatResponse]) -> Vec<String> {
    events
        .iter()
        .filter_map(|response| match response.event.as_ref()? {
            Event::SessionCreated(session) => Some(format!("created:{}", session.id)),
            Event::SessionUpdated(session) => Some(format!("updated:{}", session.id)),
            Event::SessionDeleted(deleted) => Some(format!("deleted:{}", deleted.session_id)),
            Event::MessageCommitted(message) => Some(format!("message:{}", message.id)),
            Event::ExchangeFinished(end) => Some(format!(
                "finished:{}:{:?}",
                end.exchange_id,
                pb::ExchangeOutcome::try_from(end.outcome).unwrap()
            )),
            Event::ReplyDelta(_) | Event::Started(_) => None,
        })
        .collect()
}

/// The committed events of a StreamMessage call, as [`committed_of`] names them.
fn expected_of_send(events: &[pb::stream_message_response::Event]) -> Vec<String> {
    use pb::stream_message_response::Event as Send;
    let mut expected = Vec::new();
    let mut exchange = String::new();
    for event in events {
        match event {
            Send::UserMessage(message) => {
                exchange = message.id.clone();
                expected.push(format!("message:{}", message.id));
            }
            Send::ModelMessage(message)
            | Send::FunctionCall(message)
            | Send::FunctionResult(message) => expected.push(format!("message:{}", message.id)),
            Send::Completed(_) => expected.push(format!("finished:{exchange}:Done")),
            Send::TextDelta(_) => {}
        }
    }
    expected
}

fn user_message_id(events: &[pb::stream_message_response::Event]) -> String {
    match &events[0] {
        pb::stream_message_response::Event::UserMessage(message) => message.id.clone(),
        other => panic!("the first event is the user message, not {other:?}"),
    }
}

#[tokio::test]
async fn a_second_device_sees_the_reply_delta_by_delta_with_the_committed_messages() {
    let app = spawn_app().await;
    let user = User::new(&app).await;
    let mut laptop = user.device(&app).await;
    let mut phone = user.device(&app).await;
    let (mut watch, replayed) = user.watch(&mut phone, "").await.unwrap();
    assert!(replayed.is_empty(), "an empty cursor starts from now");

    let session = user.session(&mut laptop).await;
    let created = watch.next().await;
    assert_eq!(
        committed_of(&[created]),
        [format!("created:{}", session.id)]
    );

    let pieces = ["The ", "capital ", "of France ", "is Paris."];
    app.gemini.push_reply(ScriptedReply::chunks(pieces));
    app.gemini.set_chunk_interval(Duration::from_millis(20));
    let (sent_deltas, sent) = user
        .stream(&mut laptop, &session.id, "c-1", "Capital?")
        .await;
    assert_eq!(sent_deltas, pieces);

    let seen = watch
        .until_finished(&user_message_id(&sent), &pieces.concat())
        .await;
    assert_eq!(deltas_of(&seen), pieces, "every delta, in order");
    assert_eq!(committed_of(&seen), expected_of_send(&sent));
    // The committed reply is the one the sender got.
    let reply = seen
        .iter()
        .find_map(|response| match response.event.as_ref()? {
            Event::MessageCommitted(message) if message.role == pb::MessageRole::Model as i32 => {
                Some(message.clone())
            }
            _ => None,
        })
        .expect("the reply is committed");
    assert_eq!(text_of(&reply), pieces.concat());
    // Deltas name the exchange and count from 0.
    let indexes: Vec<u32> = seen
        .iter()
        .filter_map(|response| match response.event.as_ref()? {
            Event::ReplyDelta(delta) => {
                assert_eq!(delta.session_id, session.id);
                Some(delta.index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
}

#[tokio::test]
async fn a_watcher_on_one_replica_sees_a_reply_written_on_another_on_postgresql() {
    let app = spawn_app().await;
    if !app.config.database.url.starts_with("postgres") {
        // SQLite is the single-server deployment: two processes on one file do not notify
        // each other (README, "Replicas"); nothing to test here.
        return;
    }
    let replica = app.replica().await;
    let user = User::new(&app).await;
    let mut on_a = user.device(&app).await;
    let mut on_b = user.device(&replica).await;
    let (mut watch, _) = user.watch(&mut on_b, "").await.unwrap();

    let session = user.session(&mut on_a).await;
    let created = watch.next().await;
    assert_eq!(
        committed_of(&[created]),
        [format!("created:{}", session.id)]
    );

    // A delta of 10,000 bytes, over PostgreSQL's 8,000-byte NOTIFY payload limit, travels in
    // pieces, in order.
    let long = "é".repeat(5_000);
    let pieces = vec!["Bonjour ".to_owned(), long, " fin.".to_owned()];
    app.gemini.push_reply(ScriptedReply::chunks(pieces.clone()));
    let (sent_deltas, sent) = user.stream(&mut on_a, &session.id, "c-1", "Salut").await;
    assert_eq!(sent_deltas, pieces);
    let seen = watch
        .until_finished(&user_message_id(&sent), &pieces.concat())
        .await;
    assert_eq!(deltas_of(&seen).concat(), pieces.concat());
    assert_eq!(committed_of(&seen), expected_of_send(&sent));
}

#[tokio::test]
async fn a_reconnect_with_the_last_cursor_misses_no_committed_change() {
    let app = spawn_app().await;
    let user = User::new(&app).await;
    let mut laptop = user.device(&app).await;
    let mut phone = user.device(&app).await;
    let (mut watch, _) = user.watch(&mut phone, "").await.unwrap();
    let session = user.session(&mut laptop).await;
    let cursor = watch.next().await.cursor;
    drop(watch);

    // While the phone is away: two sends, a rename, a new session and a deleted one.
    app.gemini.push_reply(ScriptedReply::text("one"));
    let first = user.send(&mut laptop, &session.id, "c-1", "first").await;
    app.gemini.push_reply(ScriptedReply::text("two"));
    let second = user.send(&mut laptop, &session.id, "c-2", "second").await;
    laptop
        .update_session(user.req(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: session.id.clone(),
                title: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        }))
        .await
        .unwrap();
    let gone = user.session(&mut laptop).await;
    laptop
        .delete_session(user.req(pb::DeleteSessionRequest {
            session_id: gone.id.clone(),
        }))
        .await
        .unwrap();
    let kept = user.session(&mut laptop).await;

    let (mut watch, replayed) = user.watch(&mut phone, &cursor).await.unwrap();
    let mut expected = Vec::new();
    for response in [&first, &second] {
        let user_message = response.user_message.as_ref().unwrap();
        expected.push(format!("message:{}", user_message.id));
        expected.push(format!("message:{}", response.reply.as_ref().unwrap().id));
        expected.push(format!("finished:{}:Done", user_message.id));
    }
    expected.push(format!("updated:{}", session.id));
    // The deleted session's creation is left out (it no longer exists); its deletion is not.
    expected.push(format!("deleted:{}", gone.id));
    expected.push(format!("created:{}", kept.id));
    assert_eq!(committed_of(&replayed), expected);
    // Replayed sessions are read as they are now.
    assert!(replayed.iter().any(|response| matches!(
        response.event.as_ref(),
        Some(Event::SessionUpdated(s)) if s.title == "Renamed"
    )));
    // Cursors advance with every event, past the left-out one.
    let numbers: Vec<i64> = replayed
        .iter()
        .map(|response| {
            response
                .cursor
                .strip_prefix("c1.")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "{numbers:?}"
    );

    // Then live, with nothing repeated.
    laptop
        .delete_session(user.req(pb::DeleteSessionRequest {
            session_id: kept.id.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(
        committed_of(&[watch.next().await]),
        [format!("deleted:{}", kept.id)]
    );

    // The cursor of the last event resumes with nothing to replay.
    let last = replayed.last().unwrap().cursor.clone();
    drop(watch);
    let (_, again) = user.watch(&mut phone, &last).await.unwrap();
    assert_eq!(committed_of(&again), [format!("deleted:{}", kept.id)]);
}

#[tokio::test]
async fn malformed_foreign_and_expired_cursors_are_refused() {
    let app = spawn_app().await;
    let user = User::new(&app).await;
    let mut chat = user.device(&app).await;
    for bad in ["bogus", "c1.", "c1.-4", "c9.1", "c1.99"] {
        let status = user.watch(&mut chat, bad).await.err().unwrap();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
        let violations = status.get_error_details().bad_request().cloned().unwrap();
        assert_eq!(violations.field_violations[0].field, "cursor", "{bad}");
    }

    let (mut watch, _) = user.watch(&mut chat, "").await.unwrap();
    user.session(&mut chat).await;
    let old = watch.next().await.cursor;
    user.session(&mut chat).await;
    let newest = watch.next().await.cursor;
    drop(watch);

    // The hourly pruning, as if a week had passed: every event is older than the cutoff.
    let pruned = app
        .store
        .prune_chat_events(chrono::Utc::now() + chrono::TimeDelta::seconds(1))
        .await
        .unwrap();
    assert!(pruned >= 2);
    let status = user.watch(&mut chat, &old).await.err().unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "CURSOR_EXPIRED");
    // A cursor with nothing after it still resumes, and so does an empty one.
    assert!(user.watch(&mut chat, &newest).await.unwrap().1.is_empty());
    assert!(user.watch(&mut chat, "").await.is_ok());
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_dropped_and_the_sender_is_not_slowed() {
    let app = spawn_app().await;
    let user = User::new(&app).await;
    let mut laptop = user.device(&app).await;
    // The phone's connection takes in little before HTTP/2 flow control stops the server.
    let small_window = Endpoint::from_shared(app.address.clone())
        .unwrap()
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535))
        .connect()
        .await
        .unwrap();
    let mut phone = ChatServiceClient::new(small_window);
    let (mut watch, _) = user.watch(&mut phone, "").await.unwrap();

    // 1,000 deltas of 2,000 characters: far more than the transport's buffers and the
    // watcher's 256 places hold. The phone reads nothing meanwhile.
    let session = user.session(&mut laptop).await;
    let pieces: Vec<String> = (0..1_000)
        .map(|i| format!("{:04}", i).repeat(500))
        .collect();
    app.gemini.push_reply(ScriptedReply::chunks(pieces.clone()));
    let (sent_deltas, _) = tokio::time::timeout(
        PATIENCE,
        user.stream(&mut laptop, &session.id, "c-1", "Write a lot"),
    )
    .await
    .expect("the sender is not held up by a watcher that does not read");
    assert_eq!(sent_deltas.len(), pieces.len());
    // On PostgreSQL deltas reach the watchers through NOTIFY a moment later. A small send after
    // it travels the same queues: once a third device sees it, every delta of the long reply
    // was offered to the phone's watch.
    let mut tablet = user.device(&app).await;
    let (mut companion, _) = user.watch(&mut tablet, "").await.unwrap();
    app.gemini.push_reply(ScriptedReply::chunks(["marker"]));
    let (_, marker) = user.stream(&mut laptop, &session.id, "c-2", "Short").await;
    companion
        .until_finished(&user_message_id(&marker), "marker")
        .await;

    // The phone reads again: what was buffered, then the end of its watch.
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match watch.stream.next().await {
                Some(Ok(_)) => {}
                Some(Err(status)) => return status,
                None => panic!("the watch ended without a status"),
            }
        }
    })
    .await
    .expect("the slow watcher's stream ends");
    assert_eq!(ended.code(), Code::Aborted);
    assert_eq!(reason(&ended), "WATCH_TOO_SLOW");

    // Its last cursor resumes: the committed reply is replayed.
    let (_, replayed) = user.watch(&mut phone, "c1.1").await.unwrap();
    assert!(replayed.iter().any(|response| matches!(
        response.event.as_ref(),
        Some(Event::MessageCommitted(m)) if text_of(m) == pieces.concat()
    )));
}

#[tokio::test]
async fn another_users_chat_never_reaches_a_watcher() {
    let app = spawn_app().await;
    let alice = User::new(&app).await;
    let bob = User::new(&app).await;
    let mut alice_chat = alice.device(&app).await;
    let mut bob_chat = bob.device(&app).await;
    let (mut bobs_watch, _) = bob.watch(&mut bob_chat, "").await.unwrap();
    let (mut alices_watch, _) = alice.watch(&mut alice_chat, "").await.unwrap();

    let session = alice.session(&mut alice_chat).await;
    app.gemini
        .push_reply(ScriptedReply::chunks(["secret ", "plans"]));
    let (_, sent) = alice
        .stream(&mut alice_chat, &session.id, "c-1", "my secret")
        .await;
    // Alice's own watch sees all of it...
    let seen = alices_watch
        .until_finished(&user_message_id(&sent), "secret plans")
        .await;
    assert!(!committed_of(&seen).is_empty());

    // ...while Bob's next event is his own session, numbered from his own first event.
    let bobs = bob.session(&mut bob_chat).await;
    let next = bobs_watch.next().await;
    assert_eq!(
        committed_of(std::slice::from_ref(&next)),
        [format!("created:{}", bobs.id)]
    );
    assert_eq!(next.cursor, "c1.1");
    // Alice's cursor means nothing on Bob's feed.
    let status = bob.watch(&mut bob_chat, &seen.last().unwrap().cursor).await;
    assert_eq!(status.err().unwrap().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn watches_end_with_unavailable_when_the_server_stops() {
    let mut app = spawn_app().await;
    let user = User::new(&app).await;
    let mut chat = user.device(&app).await;
    let (mut watch, _) = user.watch(&mut chat, "").await.unwrap();
    let stopping = tokio::spawn(async move {
        app.stop().await.unwrap();
    });
    let ended = tokio::time::timeout(PATIENCE, watch.stream.next())
        .await
        .expect("the watch ends")
        .expect("with a status")
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable);
    stopping.await.unwrap();
}
