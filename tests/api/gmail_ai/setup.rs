//! What the AI tests share: a signed-in user with synced mail and a Gemini key, the three
//! RPCs, and row counts of the AI tables.

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::gmail::v1 as pb;
use assistd_testkit::gmail::NewMessage;

use crate::apikey::GOOD_KEY;
use crate::helpers::{GmailTestApp, GmailUser, authed};

/// Signs `sub` in with Gmail, puts `messages` in the mailbox, syncs, and (with `key`) stores
/// a Gemini key the peer accepts. Returns the user and the message ids, in `messages` order.
pub(super) async fn user_with_mail(
    app: &GmailTestApp,
    sub: &str,
    messages: Vec<NewMessage>,
    key: bool,
) -> (GmailUser, Vec<String>) {
    let user = app.sign_in_with_gmail(sub).await;
    let ids = messages
        .into_iter()
        .map(|message| app.gmail.add_message(&user.sub, message))
        .collect();
    sync(app, &user).await;
    if key {
        set_key(app, &user).await;
    }
    (user, ids)
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

/// An incremental (or first) sync.
pub(super) async fn sync(app: &GmailTestApp, user: &GmailUser) {
    app.gmail_client()
        .await
        .sync_mailbox(authed(
            pb::SyncMailboxRequest { full_sync: false },
            &user.token,
        ))
        .await
        .expect("sync");
}

/// A text message in the inbox, dated by the peer after the previous one.
pub(super) fn mail(subject: &str, body: &str) -> NewMessage {
    NewMessage::text(subject, body)
}

pub(super) async fn summarize_message(
    app: &GmailTestApp,
    user: &GmailUser,
    id: &str,
    refresh: bool,
) -> Result<pb::SummarizeMessageResponse, tonic::Status> {
    app.gmail_client()
        .await
        .summarize_message(authed(
            pb::SummarizeMessageRequest {
                message_id: id.into(),
                refresh,
            },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub(super) async fn summarize_thread(
    app: &GmailTestApp,
    user: &GmailUser,
    id: &str,
    refresh: bool,
) -> Result<pb::SummarizeThreadResponse, tonic::Status> {
    app.gmail_client()
        .await
        .summarize_thread(authed(
            pb::SummarizeThreadRequest {
                thread_id: id.into(),
                refresh,
            },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// TriageInbox over every synced INBOX message (start at the epoch), at most `max`.
pub(super) async fn triage(
    app: &GmailTestApp,
    user: &GmailUser,
    max: i32,
    refresh: bool,
) -> Result<pb::TriageInboxResponse, tonic::Status> {
    app.gmail_client()
        .await
        .triage_inbox(authed(
            pb::TriageInboxRequest {
                max_messages: max,
                start_time: Some(prost_types::Timestamp::default()),
                unread_only: false,
                refresh,
            },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The thread id of the user's synced message `id`.
pub(super) async fn thread_of(app: &GmailTestApp, user: &GmailUser, id: &str) -> String {
    app.gmail_client()
        .await
        .get_message(authed(
            pb::GetMessageRequest {
                message_id: id.into(),
            },
            &user.token,
        ))
        .await
        .expect("the message is synced")
        .into_inner()
        .message
        .unwrap()
        .thread_id
}

/// Rows of `table` (one of the AI tables) belonging to `user`.
pub(super) async fn rows(app: &GmailTestApp, table: &str, user: &GmailUser) -> i64 {
    crate::gmail_sync::setup::count(
        &app.app.store,
        &format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?"),
        user.id,
    )
    .await
}

/// A summary answer as Gemini gives it (JSON text).
pub(super) fn summary_json(summary: &str) -> String {
    serde_json::json!({
        "summary": summary,
        "key_points": ["First point."],
        "action_items": ["Reply by Friday."],
    })
    .to_string()
}
