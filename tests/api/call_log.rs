//! The call log: one line per call once it is over, with the whole call's latency, its gRPC
//! code (CANCELLED when the client went away), request id, caller and sizes. The lines are
//! captured in-process from the `assistd::call` target and told apart by request id.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as chatpb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::preferences::v1 as pb;
use assistd::telemetry::CALL_LOG_TARGET;
use tokio_stream::StreamExt as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, spawn_app};

/// One captured call log line: its fields by name, values as text.
pub(crate) type CallLine = BTreeMap<String, String>;

static LINES: LazyLock<Mutex<Vec<CallLine>>> = LazyLock::new(Mutex::default);

/// The `tracing` layer that keeps every call log line of this test process.
pub(crate) struct CapturedCalls;

impl CapturedCalls {
    /// The capturing layer, listening to the call log's target only.
    pub(crate) fn layer<S>() -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        CapturedCalls.with_filter(Targets::new().with_target(CALL_LOG_TARGET, tracing::Level::INFO))
    }
}

#[derive(Default)]
struct Fields(CallLine);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for CapturedCalls {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        LINES.lock().unwrap().push(fields.0);
    }
}

/// The captured lines of the call with `request_id`.
pub(crate) fn lines_of(request_id: &str) -> Vec<CallLine> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.get("request_id").map(String::as_str) == Some(request_id))
        .cloned()
        .collect()
}

/// Waits (at most 20 s, which only a broken server reaches) until the call with `request_id`
/// was logged, and returns its first line.
pub(crate) async fn logged(request_id: &str) -> CallLine {
    for _ in 0..400 {
        if let Some(line) = lines_of(request_id).into_iter().next() {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no call log line for request {request_id}");
}

/// A fresh request id.
pub(crate) fn request_id() -> String {
    format!("test-{}", uuid::Uuid::now_v7())
}

/// `message` with a bearer token and the request id `id`.
fn call<T>(message: T, token: &str, id: &str) -> tonic::Request<T> {
    let mut request = authed(message, token);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

/// Makes a unary call with its own request id and waits for its line: every line the server
/// wrote for calls that ended before it is then captured too.
async fn another_call_is_logged(app: &TestApp, token: &str) {
    let id = request_id();
    app.preferences()
        .await
        .get_preferences(call(pb::GetPreferencesRequest::default(), token, &id))
        .await
        .unwrap();
    logged(&id).await;
}

#[tokio::test]
async fn a_cancelled_watch_stream_is_logged_once_as_cancelled() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let id = request_id();
    let mut client = app.preferences().await;
    let mut stream = client
        .watch_preferences(call(pb::WatchPreferencesRequest {}, &token, &id))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    assert!(lines_of(&id).is_empty(), "an open stream is not logged yet");
    drop(stream);

    let line = logged(&id).await;
    assert_eq!(line["grpc_code"], "Cancelled", "{line:?}");
    assert_eq!(
        line["method"],
        "/assistd.preferences.v1.PreferencesService/WatchPreferences"
    );
    assert_eq!(line["caller"], format!("user:{user}"));
    assert!(line["bytes_out"].parse::<u64>().unwrap() > 0, "{line:?}");
    another_call_is_logged(&app, &token).await;
    assert_eq!(lines_of(&id).len(), 1, "logged exactly once");
}

#[tokio::test]
async fn a_grpc_web_watch_stream_closed_by_the_browser_is_logged_as_cancelled() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let id = request_id();
    let mut stream = app
        .preferences_web()
        .watch_preferences(call(pb::WatchPreferencesRequest {}, &token, &id))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    // The browser closes the tab: its HTTP/1.1 connection goes away with the stream.
    drop(stream);
    // The server learns of it when it next writes to the stream: a change from another device.
    app.preferences()
        .await
        .update_preferences(authed(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::Preferences {
                    theme: pb::Theme::Dark.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["theme".into()],
                }),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();

    let line = logged(&id).await;
    assert_eq!(line["grpc_code"], "Cancelled", "{line:?}");
    another_call_is_logged(&app, &token).await;
    assert_eq!(lines_of(&id).len(), 1, "logged exactly once");
}

#[tokio::test]
async fn a_slow_send_logs_its_whole_latency_and_no_token() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let channel = app.channel().await;
    app.gemini.allow_key(GOOD_KEY);
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
        .unwrap();
    let mut chat = ChatServiceClient::new(channel);
    let session = chat
        .create_session(authed(chatpb::CreateSessionRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    app.gemini.set_latency(Duration::from_millis(1500));

    let id = request_id();
    chat.send_message(call(
        chatpb::SendMessageRequest {
            session_id: session.id,
            client_message_id: "slow-1".into(),
            text: "Take your time.".into(),
        },
        &token,
        &id,
    ))
    .await
    .unwrap();

    let line = logged(&id).await;
    assert_eq!(line["grpc_code"], "Ok", "{line:?}");
    assert_eq!(line["method"], "/assistd.chat.v1.ChatService/SendMessage");
    let latency_us: u64 = line["latency_us"].parse().unwrap();
    assert!(latency_us >= 1_500_000, "latency_us = {latency_us}");
    assert_eq!(line["caller"], format!("user:{user}"));
    assert!(line["bytes_in"].parse::<u64>().unwrap() > 0, "{line:?}");
    assert!(line["bytes_out"].parse::<u64>().unwrap() > 0, "{line:?}");
    let text = format!("{line:?}");
    assert!(!text.contains(&token), "the token is not logged");
    assert!(!text.contains(GOOD_KEY), "the key is not logged");
}

#[tokio::test]
async fn refused_and_failed_calls_log_their_codes_over_both_protocols() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);

    // Refused by the bearer layer (a trailers-only answer), over grpc-web: no caller.
    let id = request_id();
    let status = app
        .preferences_web()
        .get_preferences(call(
            pb::GetPreferencesRequest::default(),
            "not-a-token",
            &id,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let line = logged(&id).await;
    assert_eq!(line["grpc_code"], "Unauthenticated", "{line:?}");
    assert_eq!(line["caller"], "-");

    // A handler's error, over native gRPC.
    let id = request_id();
    let status = app
        .preferences()
        .await
        .update_preferences(call(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::Preferences::default()),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["no_such_field".into()],
                }),
                etag: String::new(),
            },
            &token,
            &id,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let line = logged(&id).await;
    assert_eq!(line["grpc_code"], "InvalidArgument", "{line:?}");

    // A success over grpc-web: the status travels in the body's trailer frame.
    let id = request_id();
    app.preferences_web()
        .get_preferences(call(pb::GetPreferencesRequest::default(), &token, &id))
        .await
        .unwrap();
    let line = logged(&id).await;
    assert_eq!(line["grpc_code"], "Ok", "{line:?}");
    assert_eq!(lines_of(&id).len(), 1);
}
