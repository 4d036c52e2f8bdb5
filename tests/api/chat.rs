//! ChatService end to end: sessions, sends (unary and streamed, native gRPC and grpc-web),
//! the tool loop, memory across sessions, every error path of a send with what it committed,
//! idempotent resends, search, usage and budgets, and isolation between users.

use std::time::{Duration, Instant};

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd_testkit::gemini::{ErrorBody, Fault, ScriptedReply};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, reason, spawn_app, spawn_app_with};

/// A signed-in user with a stored key and chat clients.
struct User {
    token: String,
    chat: ChatServiceClient<Channel>,
    keys: UserApiKeyServiceClient<Channel>,
}

impl User {
    /// A new user; with `key`, their Gemini key is stored (and accepted by the peer).
    async fn new(app: &TestApp, key: bool) -> Self {
        let token = app.token_for(app.create_user().await);
        let channel = app.channel().await;
        let mut user = Self {
            token,
            chat: ChatServiceClient::new(channel.clone()),
            keys: UserApiKeyServiceClient::new(channel),
        };
        if key {
            app.gemini.allow_key(GOOD_KEY);
            user.keys
                .set_api_key(authed(
                    keypb::SetApiKeyRequest {
                        provider: keypb::Provider::Gemini.into(),
                        api_key: GOOD_KEY.into(),
                        allow_unverified: false,
                    },
                    &user.token,
                ))
                .await
                .expect("store the key");
        }
        user
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        authed(message, &self.token)
    }

    async fn session(&mut self) -> pb::Session {
        self.chat
            .create_session(self.req(pb::CreateSessionRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
    }

    async fn send(
        &mut self,
        session: &str,
        id: &str,
        text: &str,
    ) -> Result<pb::SendMessageResponse, tonic::Status> {
        self.chat
            .send_message(self.req(pb::SendMessageRequest {
                session_id: session.into(),
                client_message_id: id.into(),
                text: text.into(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Streams a send to its end: the events, and the status the stream ended with.
    async fn stream(
        &mut self,
        session: &str,
        id: &str,
        text: &str,
    ) -> (
        Vec<pb::stream_message_response::Event>,
        Result<(), tonic::Status>,
    ) {
        let request = self.req(pb::StreamMessageRequest {
            session_id: session.into(),
            client_message_id: id.into(),
            text: text.into(),
        });
        let mut stream = match self.chat.stream_message(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => return (Vec::new(), Err(status)),
        };
        let mut events = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(response) => events.push(response.event.expect("an event")),
                Err(status) => return (events, Err(status)),
            }
        }
        (events, Ok(()))
    }

    async fn messages(&mut self, session: &str) -> Vec<pb::Message> {
        self.chat
            .list_messages(self.req(pb::ListMessagesRequest {
                session_id: session.into(),
                page_size: 200,
                direction: pb::ListMessagesDirection::Forward.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .messages
    }
}

fn text_of(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text,
        _ => "",
    }
}

fn finish(message: &pb::Message) -> pb::FinishReason {
    message
        .metadata
        .as_ref()
        .map_or(pb::FinishReason::Unspecified, |m| m.finish_reason())
}

/// Bodies of the generate calls the peer received, as JSON.
fn generate_bodies(app: &TestApp) -> Vec<Value> {
    app.gemini
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("enerateContent"))
        .map(|r| serde_json::from_str(&r.body).expect("a JSON body"))
        .collect()
}

fn system_text(body: &Value) -> String {
    body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_conversation_streams_and_is_remembered_across_restarts() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;

    app.gemini
        .push_reply(ScriptedReply::chunks(["Hello", " there", ", Ada."]));
    let (events, end) = user.stream(&session.id, "m-1", "Hi, I am Ada").await;
    end.expect("the stream ends OK");
    use pb::stream_message_response::Event;
    assert!(matches!(events.first(), Some(Event::UserMessage(m)) if text_of(m) == "Hi, I am Ada"));
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::TextDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hello", " there", ", Ada."]);
    let Some(Event::ModelMessage(reply)) = events.iter().rev().nth(1) else {
        panic!("a model message before the end: {events:?}");
    };
    assert_eq!(text_of(reply), "Hello there, Ada.");
    let Some(Event::Completed(done)) = events.last() else {
        panic!("completed last: {events:?}");
    };
    assert_eq!(done.reply_message_id, reply.id);
    assert_eq!(done.finish_reason(), pb::FinishReason::Stop);
    assert!(!done.replayed);
    let usage = done.usage.unwrap();
    assert_eq!(usage.model_call_count, 1);
    assert!(usage.total_token_count > 0);
    let request = &app.gemini.requests()[1];
    assert!(
        request.path.ends_with(":streamGenerateContent"),
        "{}",
        request.path
    );
    assert_eq!(request.query_param("alt").as_deref(), Some("sse"));
    assert!(request.query_param("key").is_none());

    // Unary, with the first turn in the context.
    app.gemini
        .push_reply(ScriptedReply::text("You said you are Ada."));
    let second = user.send(&session.id, "m-2", "Who am I?").await.unwrap();
    assert_eq!(
        text_of(second.reply.as_ref().unwrap()),
        "You said you are Ada."
    );
    assert_eq!(second.user_message.as_ref().unwrap().sequence, 3);
    assert_eq!(second.reply.as_ref().unwrap().sequence, 4);
    let bodies = generate_bodies(&app);
    let contents = bodies.last().unwrap()["contents"]
        .as_array()
        .unwrap()
        .clone();
    let turns: Vec<(String, String)> = contents
        .iter()
        .map(|c| {
            (
                c["role"].as_str().unwrap().to_owned(),
                c["parts"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            ("user".to_owned(), "Hi, I am Ada".to_owned()),
            ("model".to_owned(), "Hello there, Ada.".to_owned()),
            ("user".to_owned(), "Who am I?".to_owned()),
        ]
    );
    let system = system_text(bodies.last().unwrap());
    assert!(system.contains("UTC"), "{system}");
    assert!(system.contains("English"), "{system}");

    // History survives a restart.
    let app = app.restart().await;
    let mut user = User {
        chat: ChatServiceClient::new(app.channel().await),
        keys: UserApiKeyServiceClient::new(app.channel().await),
        token: user.token,
    };
    let history = user.messages(&session.id).await;
    let texts: Vec<&str> = history.iter().map(text_of).collect();
    assert_eq!(
        texts,
        [
            "Hi, I am Ada",
            "Hello there, Ada.",
            "Who am I?",
            "You said you are Ada."
        ]
    );
    let roles: Vec<pb::MessageRole> = history.iter().map(pb::Message::role).collect();
    assert_eq!(
        roles,
        [
            pb::MessageRole::User,
            pb::MessageRole::Model,
            pb::MessageRole::User,
            pb::MessageRole::Model
        ]
    );
    let session = user
        .chat
        .get_session(user.req(pb::GetSessionRequest {
            session_id: session.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(session.message_count, 4);
}

#[tokio::test]
async fn a_conversation_works_over_grpc_web() {
    let app = spawn_app().await;
    let user = User::new(&app, true).await;
    let mut web = ChatServiceClient::with_origin(app.grpc_web(), app.address.parse().unwrap());
    let session = web
        .create_session(user.req(pb::CreateSessionRequest {
            title: "Web".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();

    app.gemini
        .push_reply(ScriptedReply::text("Unary over grpc-web."));
    let sent = web
        .send_message(user.req(pb::SendMessageRequest {
            session_id: session.id.clone(),
            client_message_id: "w-1".into(),
            text: "hello".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        text_of(sent.reply.as_ref().unwrap()),
        "Unary over grpc-web."
    );

    app.gemini
        .push_reply(ScriptedReply::chunks(["Streamed ", "over ", "grpc-web."]));
    let mut stream = web
        .stream_message(user.req(pb::StreamMessageRequest {
            session_id: session.id.clone(),
            client_message_id: "w-2".into(),
            text: "again".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut completed = false;
    while let Some(event) = stream.next().await {
        match event.unwrap().event.unwrap() {
            pb::stream_message_response::Event::TextDelta(delta) => text.push_str(&delta.text),
            pb::stream_message_response::Event::Completed(_) => completed = true,
            _ => {}
        }
    }
    assert_eq!(text, "Streamed over grpc-web.");
    assert!(completed);
}

/// Answers like a model that remembers when told a fact and otherwise answers with what its
/// system instruction says it remembers.
fn remembering_model(request: &Value) -> ScriptedReply {
    let contents = request["contents"].as_array().cloned().unwrap_or_default();
    let last = contents.last().cloned().unwrap_or_default();
    if last["parts"][0].get("functionResponse").is_some() {
        return ScriptedReply::text("Noted.");
    }
    let said = last["parts"][0]["text"].as_str().unwrap_or_default();
    if let Some(fact) = said.strip_prefix("Remember: ") {
        return ScriptedReply::function_call("remember", json!({"fact": fact}));
    }
    let system = system_text(request);
    if system.contains("Prefers metric units") {
        ScriptedReply::text("You prefer metric units.")
    } else {
        ScriptedReply::text("I don't know.")
    }
}

#[tokio::test]
async fn a_fact_remembered_in_one_session_is_used_in_another() {
    let app = spawn_app().await;
    app.gemini.respond_with(remembering_model);
    let mut user = User::new(&app, true).await;
    let first = user.session().await;

    let sent = user
        .send(&first.id, "r-1", "Remember: Prefers metric units")
        .await
        .unwrap();
    let roles: Vec<pb::MessageRole> = sent.steps.iter().map(pb::Message::role).collect();
    assert_eq!(
        roles,
        [
            pb::MessageRole::FunctionCall,
            pb::MessageRole::FunctionResult
        ]
    );
    let Some(pb::message::Content::FunctionResult(result)) = &sent.steps[1].content else {
        panic!("a function result");
    };
    assert_eq!(result.name, "remember");
    assert!(!result.failed);
    assert_eq!(text_of(sent.reply.as_ref().unwrap()), "Noted.");
    assert_eq!(sent.usage.unwrap().model_call_count, 2);

    // The follow-up call echoed the model's function-call part with its thought signature
    // (the peer refuses it otherwise) and answered it.
    let bodies = generate_bodies(&app);
    let follow_up = &bodies[1]["contents"];
    assert!(
        follow_up[1]["parts"][0]["thoughtSignature"].is_string(),
        "{follow_up}"
    );
    assert_eq!(
        follow_up[2]["parts"][0]["functionResponse"]["name"],
        "remember"
    );

    // The next send in the same session rebuilds that turn from the database: the stored
    // function-call part goes back with its signature (else the peer answers 400).
    let again = user.send(&first.id, "r-1b", "Thanks!").await.unwrap();
    assert_eq!(
        text_of(again.reply.as_ref().unwrap()),
        "You prefer metric units."
    );
    let from_history = generate_bodies(&app).pop().unwrap();
    let signature = app.gemini.issued_calls()[0].signature.clone();
    assert_eq!(
        from_history["contents"][1]["parts"][0]["thoughtSignature"],
        json!(signature)
    );
    assert_eq!(from_history["contents"].as_array().unwrap().len(), 5);

    let memories = user
        .chat
        .list_memories(user.req(pb::ListMemoriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .memories;
    assert_eq!(memories.len(), 1);
    assert_eq!(memories[0].content, "Prefers metric units");
    assert_eq!(memories[0].source_session_id, first.id);

    // A new session, as another device would open it.
    let second = user.session().await;
    let answer = user
        .send(&second.id, "r-2", "Which units do I like?")
        .await
        .unwrap();
    assert_eq!(
        text_of(answer.reply.as_ref().unwrap()),
        "You prefer metric units."
    );
    let last_body = generate_bodies(&app).pop().unwrap();
    assert_eq!(last_body["contents"].as_array().unwrap().len(), 1);

    // Forgotten facts are no longer sent.
    user.chat
        .delete_memory(user.req(pb::DeleteMemoryRequest {
            memory_id: memories[0].id.clone(),
        }))
        .await
        .unwrap();
    let third = user.session().await;
    let answer = user
        .send(&third.id, "r-3", "Which units do I like?")
        .await
        .unwrap();
    assert_eq!(text_of(answer.reply.as_ref().unwrap()), "I don't know.");
}

#[tokio::test]
async fn tools_run_in_a_bounded_loop() {
    let app = spawn_app_with(|config| config.chat.max_tool_depth = 2).await;
    // A model that asks for the time forever.
    app.gemini
        .respond_with(|_: &Value| ScriptedReply::function_call("current_time", json!({})));
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    let sent = user
        .send(&session.id, "t-1", "what time is it")
        .await
        .unwrap();
    let reply = sent.reply.unwrap();
    assert_eq!(finish(&reply), pb::FinishReason::ToolLimit);
    // Two rounds of call + result, then the third call is not run.
    assert_eq!(sent.steps.len(), 4);
    let Some(pb::message::Content::FunctionResult(result)) = &sent.steps[1].content else {
        panic!("a function result");
    };
    let time = result.response.as_ref().unwrap().fields["time"].clone();
    assert!(matches!(
        time.kind,
        Some(prost_types::value::Kind::StringValue(_))
    ));
    assert_eq!(sent.usage.unwrap().model_call_count, 3);
    assert_eq!(generate_bodies(&app).len(), 3);
}

#[tokio::test]
async fn a_send_without_a_key_stores_nothing() {
    let app = spawn_app().await;
    let mut user = User::new(&app, false).await;
    let session = user.session().await;
    let status = user.send(&session.id, "k-1", "hello").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&status), "API_KEY_MISSING");
    let (_, end) = user.stream(&session.id, "k-2", "hello").await;
    assert_eq!(reason(&end.unwrap_err()), "API_KEY_MISSING");
    assert!(user.messages(&session.id).await.is_empty());
    assert_eq!(app.gemini.request_count(), 0);
}

/// Sends once through `streaming` or unary and returns the error status.
async fn failing_send(user: &mut User, session: &str, id: &str, streaming: bool) -> tonic::Status {
    if streaming {
        let (_, end) = user.stream(session, id, "hello").await;
        end.expect_err("the stream fails")
    } else {
        user.send(session, id, "hello")
            .await
            .expect_err("the send fails")
    }
}

/// The USER message and the ERROR reply a failed exchange leaves.
async fn assert_error_committed(user: &mut User, session: &str, expected_reason: &str) {
    let history = user.messages(session).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].role(), pb::MessageRole::User);
    assert_eq!(text_of(&history[0]), "hello");
    assert_eq!(history[1].role(), pb::MessageRole::Model);
    assert_eq!(finish(&history[1]), pb::FinishReason::Error);
    let error = history[1]
        .metadata
        .as_ref()
        .unwrap()
        .error
        .as_ref()
        .unwrap();
    assert_eq!(error.reason, expected_reason);
    assert!(!error.message.contains(GOOD_KEY));
}

#[tokio::test]
async fn a_rejected_key_is_marked_invalid() {
    for (streaming, body) in [
        (false, ErrorBody::ApiKeyInvalid),
        (true, ErrorBody::PermissionDenied),
    ] {
        let app = spawn_app().await;
        let mut user = User::new(&app, true).await;
        let session = user.session().await;
        app.gemini.fail_next(1, body);
        let status = failing_send(&mut user, &session.id, "x-1", streaming).await;
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert_eq!(reason(&status), "API_KEY_INVALID");
        assert_error_committed(&mut user, &session.id, "API_KEY_INVALID").await;
        let key = user
            .keys
            .get_api_key(user.req(keypb::GetApiKeyRequest {
                provider: keypb::Provider::Gemini.into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .api_key
            .unwrap();
        assert_eq!(key.status(), keypb::ApiKeyStatus::Invalid);
        // Later sends are refused before anything is stored or sent.
        let calls = app.gemini.request_count();
        let status = failing_send(&mut user, &session.id, "x-2", streaming).await;
        assert_eq!(reason(&status), "API_KEY_INVALID");
        assert_eq!(app.gemini.request_count(), calls);
        assert_eq!(user.messages(&session.id).await.len(), 2);
    }
}

#[tokio::test]
async fn a_rate_limit_passes_on_the_retry_delay() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini.fail_next(1, ErrorBody::ResourceExhausted);
    let status = failing_send(&mut user, &session.id, "q-1", true).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&status), "PROVIDER_RATE_LIMITED");
    let retry = status.get_error_details().retry_info().unwrap().retry_delay;
    assert_eq!(retry, Some(Duration::from_secs(33)));
    assert_error_committed(&mut user, &session.id, "PROVIDER_RATE_LIMITED").await;
    // Not retried: one upstream call besides the key check.
    assert_eq!(generate_bodies(&app).len(), 1);

    // A resend of a failed exchange calls the model again for the same user message.
    app.gemini.push_reply(ScriptedReply::text("Now it works."));
    let sent = user.send(&session.id, "q-1", "hello").await.unwrap();
    assert!(!sent.replayed);
    assert_eq!(text_of(sent.reply.as_ref().unwrap()), "Now it works.");
    let history = user.messages(&session.id).await;
    assert_eq!(history.len(), 3);
    assert_eq!(sent.user_message.unwrap().id, history[0].id);
}

#[tokio::test]
async fn outages_are_retried_before_the_first_delta_then_unavailable() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;

    // Two failures, then an answer: the client sees only the answer.
    app.gemini.fail_next(1, ErrorBody::Unavailable);
    app.gemini.fail_next(1, ErrorBody::Internal);
    app.gemini
        .push_reply(ScriptedReply::text("Third time lucky."));
    let (events, end) = user.stream(&session.id, "o-1", "hello").await;
    end.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, pb::stream_message_response::Event::Completed(_)))
    );
    assert_eq!(generate_bodies(&app).len(), 3);

    // Always failing: 1 + 2 retries, then UNAVAILABLE with an ERROR reply committed.
    let session = user.session().await;
    app.gemini.clear_requests();
    app.gemini.fail_always(ErrorBody::DeadlineExceeded);
    let status = failing_send(&mut user, &session.id, "o-2", false).await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(reason(&status), "PROVIDER_UNAVAILABLE");
    assert_eq!(generate_bodies(&app).len(), 3);
    assert_error_committed(&mut user, &session.id, "PROVIDER_UNAVAILABLE").await;
}

#[tokio::test]
async fn a_timeout_is_retried_then_unavailable() {
    let app = spawn_app_with(|config| {
        config.gemini.request_timeout = Duration::from_millis(300);
    })
    .await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini.fail_always(Fault::Stall);
    let status = failing_send(&mut user, &session.id, "s-1", false).await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(reason(&status), "PROVIDER_UNAVAILABLE");
    assert_eq!(generate_bodies(&app).len(), 3);
    assert_error_committed(&mut user, &session.id, "PROVIDER_UNAVAILABLE").await;
}

#[tokio::test]
async fn an_unknown_model_is_a_failed_precondition() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini.fail_next(1, ErrorBody::ModelNotFound);
    let status = failing_send(&mut user, &session.id, "n-1", false).await;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&status), "MODEL_NOT_FOUND");
    assert_error_committed(&mut user, &session.id, "MODEL_NOT_FOUND").await;
}

#[tokio::test]
async fn a_stream_that_breaks_after_text_commits_the_partial_reply() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini
        .push_reply(ScriptedReply::chunks(["One, ", "two, ", "three."]));
    app.gemini.fail_next(1, Fault::DisconnectAfter(2));
    let (events, end) = user.stream(&session.id, "b-1", "count").await;
    let status = end.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(reason(&status), "PROVIDER_STREAM_INTERRUPTED");
    let Some(pb::stream_message_response::Event::ModelMessage(partial)) = events.last() else {
        panic!("the partial reply is sent before the error: {events:?}");
    };
    assert_eq!(text_of(partial), "One, two, ");
    assert_eq!(finish(partial), pb::FinishReason::Incomplete);
    let history = user.messages(&session.id).await;
    assert_eq!(history.len(), 2);
    assert_eq!(finish(&history[1]), pb::FinishReason::Incomplete);
    assert_eq!(
        history[1]
            .metadata
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .reason,
        "PROVIDER_STREAM_INTERRUPTED"
    );
    // Not retried once text was relayed.
    assert_eq!(generate_bodies(&app).len(), 1);
    // A resend returns the stored, incomplete outcome with OK.
    let resent = user.send(&session.id, "b-1", "count").await.unwrap();
    assert!(resent.replayed);
    assert_eq!(
        finish(resent.reply.as_ref().unwrap()),
        pb::FinishReason::Incomplete
    );
}

#[tokio::test]
async fn safety_blocks_are_replies_not_errors() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini
        .push_reply(ScriptedReply::blocked_prompt("SAFETY"));
    let sent = user
        .send(&session.id, "f-1", "something bad")
        .await
        .unwrap();
    let reply = sent.reply.unwrap();
    assert_eq!(finish(&reply), pb::FinishReason::Safety);
    assert_eq!(text_of(&reply), "");

    app.gemini
        .push_reply(ScriptedReply::chunks(["Partial"]).finish_reason("SAFETY"));
    let (events, end) = user.stream(&session.id, "f-2", "something else").await;
    end.unwrap();
    let Some(pb::stream_message_response::Event::Completed(done)) = events.last() else {
        panic!("completed");
    };
    assert_eq!(done.finish_reason(), pb::FinishReason::Safety);
}

#[tokio::test]
async fn a_send_longer_than_its_lease_is_not_taken_over_while_it_runs() {
    let app = spawn_app_with(|config| {
        config.chat.exchange_lease = Duration::from_millis(1_500);
        config.gemini.request_timeout = Duration::from_secs(20);
    })
    .await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini.clear_requests();
    // The answer takes more than twice the lease.
    app.gemini.set_latency(Duration::from_millis(4_000));
    app.gemini.push_reply(ScriptedReply::text("A slow answer."));
    let mut first = User {
        token: user.token.clone(),
        chat: user.chat.clone(),
        keys: user.keys.clone(),
    };
    let session_id = session.id.clone();
    let running =
        tokio::spawn(async move { first.send(&session_id, "l-1", "take your time").await });
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    // Two leases later the send still holds its (renewed) lease.
    let resent = user
        .send(&session.id, "l-1", "take your time")
        .await
        .expect_err("the first send is still running");
    assert_eq!(resent.code(), tonic::Code::Aborted, "{resent:?}");
    assert_eq!(reason(&resent), "MESSAGE_IN_PROGRESS");
    let answered = running.await.unwrap().unwrap();
    assert_eq!(text_of(&answered.reply.unwrap()), "A slow answer.");
    app.gemini.set_latency(Duration::ZERO);
    // One model call, one reply; a resend now replays it.
    assert_eq!(generate_bodies(&app).len(), 1);
    let replayed = user
        .send(&session.id, "l-1", "take your time")
        .await
        .unwrap();
    assert!(replayed.replayed);
    assert_eq!(user.messages(&session.id).await.len(), 2);
}

#[tokio::test]
async fn a_send_uses_the_preferences_changed_a_moment_ago_on_another_replica() {
    use assistd::proto::preferences::v1 as prefs;
    let app = spawn_app().await;
    let replica = app.replica().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    // This replica has the user's (default) preferences cached from a first send.
    app.gemini.push_reply(ScriptedReply::text("Hello."));
    user.send(&session.id, "r-1", "hi").await.unwrap();
    assert!(system_text(generate_bodies(&app).last().unwrap()).contains("UTC"));
    // The other replica changes the timezone; the next send here uses it at once.
    replica
        .preferences()
        .await
        .update_preferences(authed(
            prefs::UpdatePreferencesRequest {
                preferences: Some(prefs::Preferences {
                    timezone: "Asia/Tokyo".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["timezone".into()],
                }),
                ..Default::default()
            },
            &user.token,
        ))
        .await
        .unwrap();
    app.gemini.push_reply(ScriptedReply::text("Konnichiwa."));
    user.send(&session.id, "r-2", "and now?").await.unwrap();
    let system = system_text(generate_bodies(&app).last().unwrap());
    assert!(system.contains("Asia/Tokyo"), "{system}");
}

#[tokio::test]
async fn refused_and_failed_sends_do_not_ride_along_in_later_requests() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    // Gemini refuses the prompt itself.
    app.gemini
        .push_reply(ScriptedReply::blocked_prompt("SAFETY"));
    let blocked = user
        .send(&session.id, "p-1", "tell me about the forbidden topic")
        .await
        .unwrap();
    assert_eq!(finish(&blocked.reply.unwrap()), pb::FinishReason::Safety);
    // Then a run of failed calls.
    for id in ["p-2", "p-3", "p-4"] {
        app.gemini.fail_next(1, ErrorBody::InvalidArgument);
        failing_send(&mut user, &session.id, id, false).await;
    }
    app.gemini.push_reply(ScriptedReply::text("Paris."));
    let france = user
        .send(&session.id, "p-5", "What is the capital of France?")
        .await
        .unwrap();
    assert_eq!(text_of(&france.reply.unwrap()), "Paris.");
    app.gemini.push_reply(ScriptedReply::text("Madrid."));
    let spain = user
        .send(&session.id, "p-6", "And of Spain?")
        .await
        .unwrap();
    assert_eq!(text_of(&spain.reply.unwrap()), "Madrid.");

    // The last request holds the answered turns only, alternating, one text per user turn.
    let bodies = generate_bodies(&app);
    let last = bodies.last().unwrap();
    let turns: Vec<(String, Vec<String>)> = last["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|content| {
            let texts = content["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|part| part["text"].as_str().map(str::to_owned))
                .collect();
            (content["role"].as_str().unwrap().to_owned(), texts)
        })
        .collect();
    assert_eq!(
        turns,
        [
            (
                "user".to_owned(),
                vec!["What is the capital of France?".to_owned()]
            ),
            ("model".to_owned(), vec!["Paris.".to_owned()]),
            ("user".to_owned(), vec!["And of Spain?".to_owned()]),
        ]
    );
    // The request after the block already left it out.
    let after_block = &bodies[1];
    assert!(
        !after_block.to_string().contains("forbidden"),
        "{after_block}"
    );
    // Everything stays stored and listed.
    let history = user.messages(&session.id).await;
    assert!(
        history
            .iter()
            .any(|m| text_of(m) == "tell me about the forbidden topic")
    );
    assert_eq!(history.len(), 12);
}

#[tokio::test]
async fn cancelling_a_stream_aborts_upstream_and_commits_the_partial_reply() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini
        .push_reply(ScriptedReply::chunks(["Before the stall. ", "never sent"]));
    app.gemini.fail_next(1, Fault::StallAfter(1));
    let mut stream = user
        .chat
        .stream_message(user.req(pb::StreamMessageRequest {
            session_id: session.id.clone(),
            client_message_id: "c-1".into(),
            text: "go".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    // Read until the first delta, then hang up.
    loop {
        let event = stream.next().await.unwrap().unwrap().event.unwrap();
        if matches!(event, pb::stream_message_response::Event::TextDelta(_)) {
            break;
        }
    }
    let disconnects = app.gemini.stream_disconnects();
    let cancelled_at = Instant::now();
    drop(stream);
    // The upstream request is aborted (the peer sees its connection close) …
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.gemini.stream_disconnects() == disconnects {
        assert!(
            Instant::now() < deadline,
            "the upstream request was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let aborted_after = cancelled_at.elapsed();
    tracing::info!(?aborted_after, "upstream aborted");
    // … and the partial reply is committed as cancelled.
    let history = loop {
        let history = user.messages(&session.id).await;
        if history.len() == 2 {
            break history;
        }
        assert!(Instant::now() < deadline, "no cancelled reply committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text_of(&history[1]), "Before the stall. ");
    assert_eq!(finish(&history[1]), pb::FinishReason::Cancelled);
}

#[tokio::test]
async fn resends_with_one_id_make_one_message_and_one_model_call() {
    let app = spawn_app().await;
    app.gemini.set_latency(Duration::from_millis(300));
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini.clear_requests();
    app.gemini.push_reply(ScriptedReply::text("Only once."));
    let mut sends = Vec::new();
    for _ in 0..100 {
        let mut chat = user.chat.clone();
        let request = user.req(pb::SendMessageRequest {
            session_id: session.id.clone(),
            client_message_id: "same-id".into(),
            text: "hello".into(),
        });
        sends.push(tokio::spawn(
            async move { chat.send_message(request).await },
        ));
    }
    let mut answered = 0;
    for send in sends {
        match send.await.unwrap() {
            Ok(response) => {
                answered += 1;
                assert_eq!(
                    text_of(response.get_ref().reply.as_ref().unwrap()),
                    "Only once."
                );
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
                assert_eq!(reason(&status), "MESSAGE_IN_PROGRESS");
            }
        }
    }
    assert!(answered >= 1);
    // Once finished, every resend gets the stored outcome.
    for _ in 0..5 {
        let again = user.send(&session.id, "same-id", "hello").await.unwrap();
        assert!(again.replayed);
        assert_eq!(text_of(again.reply.as_ref().unwrap()), "Only once.");
    }
    let (events, end) = user.stream(&session.id, "same-id", "hello").await;
    end.unwrap();
    assert!(
        matches!(events.last(), Some(pb::stream_message_response::Event::Completed(c)) if c.replayed)
    );
    assert_eq!(user.messages(&session.id).await.len(), 2);
    assert_eq!(generate_bodies(&app).len(), 1);

    // The same id with other text is a conflict.
    let status = user
        .send(&session.id, "same-id", "other")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&status), "CLIENT_MESSAGE_ID_CONFLICT");
}

#[tokio::test]
async fn a_spent_budget_refuses_sends_and_usage_is_counted() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini
        .push_reply(ScriptedReply::text("four words of reply"));
    let sent = user.send(&session.id, "u-1", "hello there").await.unwrap();
    let spent = i64::from(sent.usage.unwrap().total_token_count);
    assert!(spent > 0);

    let usage = user
        .keys
        .get_usage(user.req(keypb::GetUsageRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.total_request_count, 1);
    assert_eq!(usage.total_token_count, spent);
    assert_eq!(usage.records.len(), 1);
    assert_eq!(usage.records[0].model, "gemini-2.5-flash");

    let budget = user
        .keys
        .set_token_budget(user.req(keypb::SetTokenBudgetRequest {
            monthly_token_limit: spent,
        }))
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert!(budget.exhausted);
    assert_eq!(budget.used_token_count, spent);
    let status = user.send(&session.id, "u-2", "more").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&status), "TOKEN_BUDGET_EXHAUSTED");
    assert!(
        status.message().contains(&spent.to_string()),
        "{}",
        status.message()
    );
    assert_eq!(user.messages(&session.id).await.len(), 2);

    let cleared = user
        .keys
        .clear_token_budget(user.req(keypb::ClearTokenBudgetRequest {}))
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(cleared.monthly_token_limit, 0);
    assert!(!cleared.exhausted);
    app.gemini.push_reply(ScriptedReply::text("ok"));
    user.send(&session.id, "u-3", "more").await.unwrap();

    let bad = user
        .keys
        .set_token_budget(user.req(keypb::SetTokenBudgetRequest {
            monthly_token_limit: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn sessions_list_update_and_delete() {
    let app = spawn_app().await;
    let mut user = User::new(&app, false).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(user.session().await.id);
    }
    let updated = user
        .chat
        .update_session(user.req(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: ids[0].clone(),
                title: "Pinned one".into(),
                pinned: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into(), "pinned".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(updated.title, "Pinned one");
    assert!(updated.pinned);
    user.chat
        .update_session(user.req(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: ids[1].clone(),
                archived: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["archived".into()],
            }),
        }))
        .await
        .unwrap();

    // Pages of two, newest activity first, archived hidden.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = user
            .chat
            .list_sessions(user.req(pb::ListSessionsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.sessions.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = [4, 3, 2, 0].iter().map(|i| ids[*i].clone()).collect();
    assert_eq!(seen, expected);
    let pinned = user
        .chat
        .list_sessions(user.req(pb::ListSessionsRequest {
            pinned: Some(true),
            archived: pb::ArchivedFilter::Include.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(pinned.len(), 1);
    let archived = user
        .chat
        .list_sessions(user.req(pb::ListSessionsRequest {
            archived: pb::ArchivedFilter::Only.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].id, ids[1]);

    // A token is bound to its filters.
    let page = user
        .chat
        .list_sessions(user.req(pb::ListSessionsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let status = user
        .chat
        .list_sessions(user.req(pb::ListSessionsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            archived: pb::ArchivedFilter::Only.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // Bad masks and values.
    for (paths, session) in [
        (vec![], pb::Session::default()),
        (vec!["message_count".to_owned()], pb::Session::default()),
        (
            vec!["model".to_owned()],
            pb::Session {
                model: "models/Gemini Pro".into(),
                ..Default::default()
            },
        ),
        (
            vec!["title".to_owned()],
            pb::Session {
                title: "x".repeat(201),
                ..Default::default()
            },
        ),
    ] {
        let status = user
            .chat
            .update_session(user.req(pb::UpdateSessionRequest {
                session: Some(pb::Session {
                    id: ids[2].clone(),
                    ..session
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.get_error_details().bad_request().is_some());
    }

    user.chat
        .delete_session(user.req(pb::DeleteSessionRequest {
            session_id: ids[4].clone(),
        }))
        .await
        .unwrap();
    let status = user
        .chat
        .get_session(user.req(pb::GetSessionRequest {
            session_id: ids[4].clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn messages_page_in_both_directions() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    app.gemini.respond_with(|request: &Value| {
        let n = request["contents"].as_array().map_or(0, Vec::len);
        ScriptedReply::text(format!("reply {n}"))
    });
    for i in 0..5 {
        user.send(&session.id, &format!("p-{i}"), &format!("question {i}"))
            .await
            .unwrap();
    }
    let page =
        |direction: pb::ListMessagesDirection, token: String, start: i64| pb::ListMessagesRequest {
            session_id: session.id.clone(),
            page_size: 4,
            page_token: token,
            direction: direction.into(),
            start_sequence: start,
        };
    let mut backward = Vec::new();
    let mut token = String::new();
    loop {
        let response = user
            .chat
            .list_messages(user.req(page(pb::ListMessagesDirection::Backward, token, 0)))
            .await
            .unwrap()
            .into_inner();
        backward.extend(response.messages.iter().map(|m| m.sequence));
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
    }
    assert_eq!(backward, (1..=10).rev().collect::<Vec<i64>>());
    let forward = user
        .chat
        .list_messages(user.req(page(pb::ListMessagesDirection::Forward, String::new(), 7)))
        .await
        .unwrap()
        .into_inner();
    let sequences: Vec<i64> = forward.messages.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, [7, 8, 9, 10]);
    assert!(forward.next_page_token.is_empty());

    // A backward token does not work forward.
    let first = user
        .chat
        .list_messages(user.req(page(pb::ListMessagesDirection::Backward, String::new(), 0)))
        .await
        .unwrap()
        .into_inner();
    let status = user
        .chat
        .list_messages(user.req(page(
            pb::ListMessagesDirection::Forward,
            first.next_page_token,
            0,
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    for bad in [
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            page_size: -1,
            ..Default::default()
        },
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            start_sequence: -3,
            ..Default::default()
        },
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            page_token: "garbage!".into(),
            ..Default::default()
        },
        pb::ListMessagesRequest {
            session_id: "not-a-uuid".into(),
            ..Default::default()
        },
    ] {
        let status = user.chat.list_messages(user.req(bad)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
}

#[tokio::test]
async fn search_finds_the_users_own_messages_with_snippets() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let mut other = User::new(&app, true).await;
    let session = user.session().await;
    let other_session = other.session().await;
    app.gemini
        .push_reply(ScriptedReply::text("Borrow checking is fun."));
    user.send(&session.id, "s-1", "Tell me about the Rust borrow checker")
        .await
        .unwrap();
    app.gemini
        .push_reply(ScriptedReply::text("Nothing about that."));
    other
        .send(&other_session.id, "s-1", "the rust borrow checker is mine")
        .await
        .unwrap();

    let hits = user
        .chat
        .search_messages(user.req(pb::SearchMessagesRequest {
            query: "BORROW rust".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].session_id, session.id);
    assert_eq!(hits[0].role(), pb::MessageRole::User);
    assert!(
        hits[0]
            .snippet_segments
            .iter()
            .any(|s| s.highlighted && s.text.eq_ignore_ascii_case("borrow"))
    );
    let phrase = user
        .chat
        .search_messages(user.req(pb::SearchMessagesRequest {
            query: "\"borrow checking\"".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(phrase.len(), 1);
    assert_eq!(phrase[0].role(), pb::MessageRole::Model);
    for query in ["", "   ", &"x".repeat(257)] {
        let status = user
            .chat
            .search_messages(user.req(pb::SearchMessagesRequest {
                query: query.to_owned(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
    // Operators are words, not syntax.
    let hits = user
        .chat
        .search_messages(user.req(pb::SearchMessagesRequest {
            query: "rust\" OR * NEAR(".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(hits.is_empty());
}

#[tokio::test]
async fn another_users_ids_are_not_found_and_nothing_changes() {
    let app = spawn_app().await;
    app.gemini.respond_with(remembering_model);
    let mut owner = User::new(&app, true).await;
    let mut intruder = User::new(&app, true).await;
    let session = owner.session().await;
    owner
        .send(&session.id, "i-1", "Remember: Likes tea")
        .await
        .unwrap();
    let memory = owner
        .chat
        .list_memories(owner.req(pb::ListMemoriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .memories
        .remove(0);
    let calls = app.gemini.request_count();

    for id in [session.id.clone(), uuid::Uuid::now_v7().to_string()] {
        let chat = &mut intruder.chat;
        let token = intruder.token.clone();
        let statuses = vec![
            chat.get_session(authed(
                pb::GetSessionRequest {
                    session_id: id.clone(),
                },
                &token,
            ))
            .await
            .map(|_| ()),
            chat.update_session(authed(
                pb::UpdateSessionRequest {
                    session: Some(pb::Session {
                        id: id.clone(),
                        title: "mine now".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".into()],
                    }),
                },
                &token,
            ))
            .await
            .map(|_| ()),
            chat.list_messages(authed(
                pb::ListMessagesRequest {
                    session_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .map(|_| ()),
            chat.send_message(authed(
                pb::SendMessageRequest {
                    session_id: id.clone(),
                    client_message_id: "i-1".into(),
                    text: "hi".into(),
                },
                &token,
            ))
            .await
            .map(|_| ()),
            chat.stream_message(authed(
                pb::StreamMessageRequest {
                    session_id: id.clone(),
                    client_message_id: "i-2".into(),
                    text: "hi".into(),
                },
                &token,
            ))
            .await
            .map(|_| ()),
            chat.search_messages(authed(
                pb::SearchMessagesRequest {
                    query: "tea".into(),
                    session_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .map(|_| ()),
            chat.delete_session(authed(
                pb::DeleteSessionRequest {
                    session_id: id.clone(),
                },
                &token,
            ))
            .await
            .map(|_| ()),
        ];
        for status in statuses {
            let status = status.expect_err("another user's session is not found");
            assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        }
    }
    for id in [memory.id.clone(), uuid::Uuid::now_v7().to_string()] {
        let status = intruder
            .chat
            .delete_memory(intruder.req(pb::DeleteMemoryRequest { memory_id: id }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    let hits = intruder
        .chat
        .search_messages(intruder.req(pb::SearchMessagesRequest {
            query: "tea".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(hits.is_empty());

    // Nothing changed for the owner, and no model call was made.
    assert_eq!(app.gemini.request_count(), calls);
    let after = owner
        .chat
        .get_session(owner.req(pb::GetSessionRequest {
            session_id: session.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(after.title, session.title);
    assert_eq!(after.message_count, 4);
    assert_eq!(owner.messages(&session.id).await.len(), 4);
    let memories = owner
        .chat
        .list_memories(owner.req(pb::ListMemoriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .memories;
    assert_eq!(memories.len(), 1);
}

#[tokio::test]
async fn a_title_is_generated_after_the_first_exchange() {
    let app = spawn_app_with(|config| config.chat.generate_titles = true).await;
    app.gemini.respond_with(|request: &Value| {
        let said = request["contents"][0]["parts"][0]["text"]
            .as_str()
            .unwrap_or_default();
        if said.starts_with("Write a title") {
            ScriptedReply::text("\"Planning a trip to Lisbon\"")
        } else {
            ScriptedReply::text("Lisbon is lovely in spring.")
        }
    });
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    user.send(&session.id, "t-1", "Help me plan a trip to Lisbon")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let titled = loop {
        let current = user
            .chat
            .get_session(user.req(pb::GetSessionRequest {
                session_id: session.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        if !current.title.is_empty() {
            break current;
        }
        assert!(Instant::now() < deadline, "no title was generated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(titled.title, "Planning a trip to Lisbon");
    assert!(titled.title_generated);
}

#[tokio::test]
async fn bad_sends_are_invalid_arguments_with_field_violations() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let session = user.session().await;
    for (session_id, id, text, field) in [
        ("", "a", "hi", "session_id"),
        ("nope", "a", "hi", "session_id"),
        (session.id.as_str(), "", "hi", "client_message_id"),
        (session.id.as_str(), "has space", "hi", "client_message_id"),
        (session.id.as_str(), "a", "  \n", "text"),
    ] {
        let status = user.send(session_id, id, text).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(fields, [field]);
    }
    let long = "x".repeat(100_001);
    let status = user.send(&session.id, "a", &long).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(user.messages(&session.id).await.is_empty());
    assert_eq!(generate_bodies(&app).len(), 0);
}

/// The session list a client just read is served again only while nothing changed: a new
/// message (count and order), a rename and a deletion show at once on this server, and on
/// PostgreSQL on another replica too (its list checks the user's chat event head).
#[tokio::test]
async fn a_listed_page_of_sessions_shows_every_change_at_once() {
    let app = spawn_app().await;
    let mut user = User::new(&app, true).await;
    let older = user.session().await;
    let newer = user.session().await;
    let list = |chat: &mut ChatServiceClient<Channel>, token: &str| {
        let mut chat = chat.clone();
        let request = authed(
            pb::ListSessionsRequest {
                page_size: 20,
                ..Default::default()
            },
            token,
        );
        async move {
            chat.list_sessions(request)
                .await
                .unwrap()
                .into_inner()
                .sessions
        }
    };
    let first = list(&mut user.chat, &user.token).await;
    assert_eq!(
        first.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&newer.id, &older.id]
    );
    // Listed twice, the same page.
    assert_eq!(list(&mut user.chat, &user.token).await, first);

    // A message moves the older session to the top and counts.
    app.gemini.push_reply(ScriptedReply::text("Hi."));
    user.send(&older.id, "l-1", "hello").await.unwrap();
    let after_send = list(&mut user.chat, &user.token).await;
    assert_eq!(after_send[0].id, older.id);
    assert_eq!(after_send[0].message_count, 2);

    // A rename shows at once.
    user.chat
        .update_session(user.req(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: newer.id.clone(),
                title: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        }))
        .await
        .unwrap();
    let renamed = list(&mut user.chat, &user.token).await;
    assert_eq!(
        renamed.iter().find(|s| s.id == newer.id).unwrap().title,
        "Renamed"
    );

    // On PostgreSQL a replica that listed the page sees a deletion made on this server.
    if app.config.database.url.starts_with("postgres") {
        let replica = app.replica().await;
        let mut replica_chat = ChatServiceClient::new(replica.channel().await);
        assert_eq!(list(&mut replica_chat, &user.token).await, renamed);
        user.chat
            .delete_session(user.req(pb::DeleteSessionRequest {
                session_id: newer.id.clone(),
            }))
            .await
            .unwrap();
        let seen = list(&mut replica_chat, &user.token).await;
        assert_eq!(seen.iter().map(|s| &s.id).collect::<Vec<_>>(), [&older.id]);
    }

    // Another user's list is their own.
    let other = User::new(&app, false).await;
    assert!(list(&mut user.chat, &other.token).await.is_empty());
}
