//! What the mail-tool tests share: users signed in with Gmail (and optionally the drafting
//! consent), synced mail with a stored Gemini key, a chat send, and readers of what the
//! Gemini peer received.

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as chatpb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::gmail::v1 as gmailpb;
use assistd_testkit::gemini::{ScriptedReply, TriageAnswer, schema_message_ids, triage_reply};
use assistd_testkit::gmail::NewMessage;
use serde_json::{Value, json};

use crate::apikey::GOOD_KEY;
use crate::helpers::{GmailTestApp, GmailUser, authed};

/// Signs `sub` in with Gmail read access and, with `compose`, the drafting consent.
pub(super) async fn sign_in(app: &GmailTestApp, sub: &str, compose: bool) -> GmailUser {
    if !compose {
        return app.sign_in_with_gmail(sub).await;
    }
    use assistd::proto::auth::v1 as auth;
    let email = format!("{sub}@example.com");
    app.provider
        .set_user(assistd_testkit::oidc::TestUser::new(sub, email.clone()));
    let mut client = auth::auth_service_client::AuthServiceClient::new(app.app.channel().await);
    let begun = client
        .begin_login(auth::BeginLoginRequest {
            redirect_uri: assistd_testkit::oidc::OidcProvider::REDIRECT_URI.into(),
            request_gmail_access: false,
            request_gmail_compose: true,
            login_hint: String::new(),
        })
        .await
        .expect("BeginLogin")
        .into_inner();
    let url = &begun.authorization_url;
    assert!(
        url.contains("gmail.compose") && url.contains("gmail.readonly"),
        "{url}"
    );
    assert!(url.contains("include_granted_scopes=true"), "{url}");
    let (state, code) = crate::signin::authorize(&begun.authorization_url).await;
    let signed = client
        .complete_login(auth::CompleteLoginRequest {
            state,
            code,
            device_name: "laptop".into(),
        })
        .await
        .expect("CompleteLogin")
        .into_inner();
    assert!(signed.gmail_access_granted);
    GmailUser {
        id: signed.user.expect("user").id.parse().expect("user id"),
        token: signed.tokens.expect("tokens").access_token,
        sub: sub.to_owned(),
        email,
    }
}

/// Syncs the user's mailbox.
pub(super) async fn sync(app: &GmailTestApp, user: &GmailUser) {
    app.gmail_client()
        .await
        .sync_mailbox(authed(
            gmailpb::SyncMailboxRequest { full_sync: true },
            &user.token,
        ))
        .await
        .expect("SyncMailbox");
}

/// Stores the Gemini key the peer accepts.
pub(super) async fn set_key(app: &GmailTestApp, user: &GmailUser) {
    app.app.gemini.allow_key(GOOD_KEY);
    UserApiKeyServiceClient::new(app.app.channel().await)
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

/// Syncs the user's mailbox and stores their Gemini key.
pub(super) async fn ready(app: &GmailTestApp, user: &GmailUser) {
    sync(app, user).await;
    set_key(app, user).await;
}

/// A new chat session of `user`: its id.
pub(super) async fn new_session(app: &GmailTestApp, user: &GmailUser) -> String {
    ChatServiceClient::new(app.app.channel().await)
        .create_session(authed(chatpb::CreateSessionRequest::default(), &user.token))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .id
}

/// Sends `text` in `session`.
pub(super) async fn send_in(
    app: &GmailTestApp,
    user: &GmailUser,
    session: &str,
    text: &str,
) -> Result<chatpb::SendMessageResponse, tonic::Status> {
    ChatServiceClient::new(app.app.channel().await)
        .send_message(authed(
            chatpb::SendMessageRequest {
                session_id: session.to_owned(),
                client_message_id: uuid::Uuid::now_v7().to_string(),
                text: text.into(),
            },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Sends `text` in a new session.
pub(super) async fn send(
    app: &GmailTestApp,
    user: &GmailUser,
    text: &str,
) -> chatpb::SendMessageResponse {
    let session = new_session(app, user).await;
    send_in(app, user, &session, text)
        .await
        .expect("SendMessage")
}

/// Every message of `session`, oldest first.
pub(super) async fn history(
    app: &GmailTestApp,
    user: &GmailUser,
    session: &str,
) -> Vec<chatpb::Message> {
    ChatServiceClient::new(app.app.channel().await)
        .list_messages(authed(
            chatpb::ListMessagesRequest {
                session_id: session.to_owned(),
                page_size: 200,
                direction: chatpb::ListMessagesDirection::Forward.into(),
                ..Default::default()
            },
            &user.token,
        ))
        .await
        .expect("ListMessages")
        .into_inner()
        .messages
}

/// A mail from Ana to `user`, in a thread of its own: its id and thread id.
pub(super) fn mail_from_ana(app: &GmailTestApp, user: &GmailUser, body: &str) -> (String, String) {
    let raw = format!(
        "From: Ana Lima <ana@example.com>\r\nTo: {}\r\nSubject: Dinner on Friday?\r\nMessage-ID: <dinner-1@example.com>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n",
        user.email
    );
    let id = app.gmail.add_message(&user.sub, NewMessage::new(raw));
    (id.clone(), id)
}

/// A plain-text inbox mail from `sender` (a name; the address is `{name}@example.com`
/// lowercased) received `minutes_ago` minutes before now.
pub(super) fn recent_mail(sender: &str, subject: &str, body: &str, minutes_ago: i64) -> NewMessage {
    let address = format!("{}@example.com", sender.to_lowercase());
    NewMessage::new(format!(
        "From: {sender} <{address}>\r\nTo: me@example.com\r\nSubject: {subject}\r\nDate: Mon, 1 Jan 2024 09:30:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n"
    ))
    .internal_date_ms(chrono::Utc::now().timestamp_millis() - minutes_ago * 60_000)
}

/// Bodies of the generate calls the Gemini peer received.
pub(super) fn generate_bodies(app: &GmailTestApp) -> Vec<Value> {
    app.app.gemini.generate_requests()
}

/// The generate calls of the chat itself (they declare tools), not the mail AI's.
pub(super) fn chat_bodies(app: &GmailTestApp) -> Vec<Value> {
    generate_bodies(app)
        .into_iter()
        .filter(|body| body.get("tools").is_some())
        .collect()
}

/// The generate calls of the mail AI (they ask for JSON and declare no tools).
pub(super) fn assistant_bodies(app: &GmailTestApp) -> Vec<Value> {
    generate_bodies(app)
        .into_iter()
        .filter(|body| body.get("tools").is_none())
        .collect()
}

pub(super) fn system_text(body: &Value) -> String {
    body["systemInstruction"].to_string()
}

pub(super) fn declared_tools(body: &Value) -> Vec<String> {
    body["tools"][0]["functionDeclarations"]
        .as_array()
        .map(|declarations| {
            declarations
                .iter()
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The function results among an exchange's steps: name, failed, response as JSON.
pub(super) fn results(sent: &chatpb::SendMessageResponse) -> Vec<(String, bool, Value)> {
    function_results(&sent.steps)
}

/// The function results among `messages`: name, failed, response as JSON.
pub(super) fn function_results(messages: &[chatpb::Message]) -> Vec<(String, bool, Value)> {
    messages
        .iter()
        .filter_map(|step| match &step.content {
            Some(chatpb::message::Content::FunctionResult(result)) => Some((
                result.name.clone(),
                result.failed,
                result.response.as_ref().map_or(Value::Null, struct_json),
            )),
            _ => None,
        })
        .collect()
}

/// The text of a chat message.
pub(super) fn text_of(message: &chatpb::Message) -> &str {
    match &message.content {
        Some(chatpb::message::Content::Text(text)) => text,
        _ => "",
    }
}

fn struct_json(value: &prost_types::Struct) -> Value {
    Value::Object(
        value
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), value_json(value)))
            .collect(),
    )
}

fn value_json(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::StringValue(text)) => json!(text),
        Some(Kind::NumberValue(number)) => json!(number),
        Some(Kind::BoolValue(flag)) => json!(flag),
        Some(Kind::StructValue(inner)) => struct_json(inner),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(value_json).collect()),
        Some(Kind::NullValue(_)) | None => Value::Null,
    }
}

/// The function responses in one generate body, by name, in order.
pub(super) fn function_responses(body: &Value) -> Vec<(String, Value)> {
    body["contents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|content| content["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part.get("functionResponse").cloned())
        .map(|response| {
            (
                response["name"].as_str().unwrap_or_default().to_owned(),
                response["response"].clone(),
            )
        })
        .collect()
}

/// The function response the model got for `name` in the generate bodies (the first).
pub(super) fn response_sent(app: &GmailTestApp, name: &str) -> Value {
    generate_bodies(app)
        .iter()
        .flat_map(function_responses)
        .find(|(called, _)| called == name)
        .map(|(_, response)| response)
        .unwrap_or(Value::Null)
}

/// The function responses of the last turn of a generate body, by name, in order.
pub(super) fn last_turn_responses(body: &Value) -> Vec<(String, Value)> {
    let last = body["contents"]
        .as_array()
        .and_then(|contents| contents.last())
        .cloned()
        .unwrap_or_default();
    function_responses(&json!({"contents": [last]}))
}

/// Whether the last turn of a generate body holds a function response.
pub(super) fn answers_a_tool(body: &Value) -> bool {
    body["contents"]
        .as_array()
        .and_then(|contents| contents.last())
        .and_then(|last| last["parts"].as_array())
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()))
}

/// No system instruction the model ever got holds any of `texts`.
pub(super) fn assert_not_in_system(app: &GmailTestApp, texts: &[&str]) {
    for body in generate_bodies(app) {
        let system = system_text(&body);
        for text in texts {
            assert!(!system.contains(text), "{text:?} in {system}");
        }
    }
}

pub(super) async fn audit_count(app: &GmailTestApp, user: &GmailUser, action: &str) -> i64 {
    use sea_orm::ConnectionTrait as _;
    let db = app.app.store.connection();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT count(*) FROM audit_events WHERE action = '{action}' AND target = 'user/{}/gmail'",
                user.id
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// The user's model calls recorded this month (GetUsage).
pub(super) async fn recorded_calls(app: &GmailTestApp, user: &GmailUser) -> i64 {
    UserApiKeyServiceClient::new(app.app.channel().await)
        .get_usage(authed(keypb::GetUsageRequest::default(), &user.token))
        .await
        .expect("GetUsage")
        .into_inner()
        .total_request_count
}

/// A summary answer of the mail AI as Gemini gives it (JSON text).
pub(super) fn summary_json(summary: &str) -> String {
    json!({
        "summary": summary,
        "key_points": ["Dinner on Friday at eight."],
        "action_items": ["Answer Ana."],
    })
    .to_string()
}

/// Plays both models on the Gemini peer. The chat's calls (they declare tools) take `chat`
/// in order, then a plain text; the mail AI's calls (no tools) get a whole, valid triage
/// when they ask for one and `summary` (as [`summary_json`]) otherwise.
pub(super) fn play_models(app: &GmailTestApp, chat: Vec<ScriptedReply>, summary: &str) {
    let chat = std::sync::Mutex::new(std::collections::VecDeque::from(chat));
    let summary = summary_json(summary);
    app.app.gemini.respond_with(move |request| {
        if request.get("tools").is_none() {
            return if schema_message_ids(request).is_empty() {
                ScriptedReply::text(summary.clone())
            } else {
                triage_reply(request, TriageAnswer::Valid)
            };
        }
        chat.lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| ScriptedReply::text("That is all."))
    });
}
