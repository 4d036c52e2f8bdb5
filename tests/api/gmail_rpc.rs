//! GmailService over gRPC against the in-tree OpenID provider and the Gmail API peer: a sync,
//! list, search and read round trip, and every error case the contract names (status, reason,
//! and nothing changed).

use assistd::proto::gmail::v1 as pb;
use assistd_testkit::gmail::{ErrorBody, Fault, FaultRule, NewMessage};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{GmailTestApp, GmailUser, authed, reason, spawn_gmail_app};

async fn sync(
    app: &GmailTestApp,
    user: &GmailUser,
    full: bool,
) -> Result<pb::SyncMailboxResponse, tonic::Status> {
    app.gmail_client()
        .await
        .sync_mailbox(authed(
            pb::SyncMailboxRequest { full_sync: full },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn connection(app: &GmailTestApp, user: &GmailUser) -> pb::GmailConnection {
    app.gmail_client()
        .await
        .get_connection(authed(pb::GetConnectionRequest {}, &user.token))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap()
}

async fn list(
    app: &GmailTestApp,
    user: &GmailUser,
    request: pb::ListMessagesRequest,
) -> Result<pb::ListMessagesResponse, tonic::Status> {
    app.gmail_client()
        .await
        .list_messages(authed(request, &user.token))
        .await
        .map(tonic::Response::into_inner)
}

async fn query(app: &GmailTestApp, user: &GmailUser, text: &str) -> Vec<String> {
    list(
        app,
        user,
        pb::ListMessagesRequest {
            query: text.into(),
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .messages
    .into_iter()
    .map(|m| m.id)
    .collect()
}

async fn get(
    app: &GmailTestApp,
    user: &GmailUser,
    id: &str,
) -> Result<pb::MailMessage, tonic::Status> {
    app.gmail_client()
        .await
        .get_message(authed(
            pb::GetMessageRequest {
                message_id: id.into(),
            },
            &user.token,
        ))
        .await
        .map(|r| r.into_inner().message.unwrap())
}

/// Audit rows of `action` about `user`.
async fn audit_rows(app: &GmailTestApp, user: &GmailUser, action: &str) -> i64 {
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

fn state(connection: &pb::GmailConnection) -> pb::GmailConnectionState {
    connection.state()
}

#[tokio::test]
async fn a_sync_lists_searches_and_reads_mail_then_follows_changes() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("alice").await;
    let before = connection(&app, &user).await;
    assert_eq!(state(&before), pb::GmailConnectionState::Connected);
    assert!(before.scopes.iter().any(|s| s.ends_with("gmail.readonly")));
    assert_eq!(before.email_address, user.email);

    let invoice = app.gmail.add_message(
        &user.sub,
        NewMessage::text(
            "Invoice 42 from Zyxwv",
            "Please pay the quarterly invoice soon.",
        )
        .labels(&["INBOX", "UNREAD"]),
    );
    let lunch = app.gmail.add_message(
        &user.sub,
        NewMessage::text("Lunch", "The invoice can wait; lunch at noon?")
            .labels(&["INBOX", "STARRED"]),
    );
    let newest = app.gmail.add_message(
        &user.sub,
        NewMessage::text("Pay day", "Quarterly pay arrives soon.").labels(&["INBOX"]),
    );
    app.gmail.add_message(
        &user.sub,
        NewMessage::text("Spam", "buy now").labels(&["SPAM"]),
    );

    let first = sync(&app, &user, false).await.unwrap();
    assert!(first.full_sync);
    assert_eq!(first.messages_added_count, 3);
    let after = first.connection.unwrap();
    assert_eq!(after.synced_message_count, 3);
    assert_eq!(
        after.history_id,
        app.gmail.history_id(&user.sub).to_string()
    );
    assert!(after.last_sync_time.is_some());
    assert!(!after.sync_in_progress);

    // Newest first, all of them, page by page.
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &app,
            &user,
            pb::ListMessagesRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.messages.iter().all(|m| m.body_text.is_empty()));
        ids.extend(page.messages.into_iter().map(|m| m.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, [newest.clone(), lunch.clone(), invoice.clone()]);

    // Every word must match, case-insensitively; phrases are checked in order.
    assert_eq!(
        query(&app, &user, "INVOICE").await,
        [lunch.clone(), invoice.clone()]
    );
    assert_eq!(
        query(&app, &user, "invoice zyxwv").await,
        std::slice::from_ref(&invoice)
    );
    assert_eq!(
        query(&app, &user, "\"quarterly invoice\"").await,
        std::slice::from_ref(&invoice)
    );
    assert_eq!(
        query(&app, &user, "\"invoice quarterly\"").await,
        Vec::<String>::new()
    );
    assert_eq!(query(&app, &user, "nosuchword").await, Vec::<String>::new());
    // A word too long to be indexed matches nothing, rather than being dropped from the query.
    assert_eq!(
        query(&app, &user, &format!("invoice {}", "w".repeat(65))).await,
        Vec::<String>::new()
    );
    let starred = list(
        &app,
        &user,
        pb::ListMessagesRequest {
            label_ids: vec!["STARRED".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(starred.messages.len(), 1);
    assert!(starred.messages[0].starred);

    let message = get(&app, &user, &invoice).await.unwrap();
    assert_eq!(message.subject, "Invoice 42 from Zyxwv");
    assert_eq!(message.sender.unwrap().address, "sender@example.com");
    assert!(message.body_text.contains("quarterly invoice"));
    assert!(message.unread);

    // Changes in Gmail: one new message, one relabelled, one deleted, one to the trash.
    let later = app
        .gmail
        .add_message(&user.sub, NewMessage::text("Later", "another one"));
    assert!(
        app.gmail
            .modify_labels(&user.sub, &invoice, &[], &["UNREAD"])
    );
    assert!(app.gmail.delete_message(&user.sub, &lunch));
    assert!(
        app.gmail
            .modify_labels(&user.sub, &newest, &["TRASH"], &["INBOX"])
    );
    let second = sync(&app, &user, false).await.unwrap();
    assert!(!second.full_sync);
    assert_eq!(second.messages_added_count, 1);
    assert_eq!(second.messages_updated_count, 1);
    assert_eq!(second.messages_deleted_count, 2);
    assert_eq!(query(&app, &user, "").await, [later, invoice.clone()]);
    assert!(!get(&app, &user, &invoice).await.unwrap().unread);
    assert_eq!(
        second.connection.unwrap().history_id,
        app.gmail.history_id(&user.sub).to_string()
    );

    // Gmail no longer has the stored history: a full sync, without duplicates.
    let after_expiry = app
        .gmail
        .add_message(&user.sub, NewMessage::text("After", "expiry"));
    assert!(app.gmail.delete_message(&user.sub, &invoice));
    app.gmail.expire_history(&user.sub);
    let third = sync(&app, &user, false).await.unwrap();
    assert!(third.full_sync);
    assert_eq!(third.messages_added_count, 1);
    assert_eq!(
        third.messages_deleted_count, 1,
        "the repair drops what Gmail deleted"
    );
    assert_eq!(third.connection.unwrap().synced_message_count, 2);
    let listed = query(&app, &user, "").await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], after_expiry);
}

#[tokio::test]
async fn without_a_gmail_grant_sync_is_not_connected_and_disconnect_succeeds() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in("bob", false).await;
    let before = connection(&app, &user).await;
    assert_eq!(state(&before), pb::GmailConnectionState::NotConnected);
    assert!(before.scopes.is_empty());
    let status = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "GMAIL_NOT_CONNECTED");
    assert_eq!(connection(&app, &user).await, before, "nothing changed");
    assert_eq!(app.gmail.total_calls(&user.sub), 0);

    let disconnected = app
        .gmail_client()
        .await
        .disconnect(authed(pb::DisconnectRequest::default(), &user.token))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(state(&disconnected), pb::GmailConnectionState::NotConnected);
    // A user that never signed in with Google at all.
    let plain = app.app.create_user().await;
    let token = app.app.token_for(plain);
    app.gmail_client()
        .await
        .disconnect(authed(pb::DisconnectRequest::default(), &token))
        .await
        .unwrap();
    let listed = app
        .gmail_client()
        .await
        .list_messages(authed(pb::ListMessagesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.messages.is_empty());
}

#[tokio::test]
async fn a_grant_revoked_at_google_needs_reauth_and_keeps_the_copy() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("carol").await;
    app.gmail
        .add_message(&user.sub, NewMessage::text("Kept", "still here"));
    sync(&app, &user, false).await.unwrap();
    for token in app.provider.issued_refresh_tokens() {
        app.provider.revoke_refresh_token(&token);
    }
    app.provider.expire_access_tokens();
    app.gmail
        .add_message(&user.sub, NewMessage::text("New", "not synced"));
    let status = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "GOOGLE_REAUTH_REQUIRED");
    let after = connection(&app, &user).await;
    assert_eq!(state(&after), pb::GmailConnectionState::ReauthRequired);
    assert_eq!(after.synced_message_count, 1);
    assert_eq!(
        after.last_sync_error.unwrap().reason,
        "GOOGLE_REAUTH_REQUIRED"
    );
    assert_eq!(audit_rows(&app, &user, "google_reauth_required").await, 1);
    // Asked again, it answers the same without calling Google or Gmail.
    let calls = app.gmail.total_calls(&user.sub);
    let again = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(reason(&again), "GOOGLE_REAUTH_REQUIRED");
    assert_eq!(app.gmail.total_calls(&user.sub), calls);
    assert_eq!(query(&app, &user, "").await.len(), 1);
    // A new consent heals the link.
    let user = app.sign_in_with_gmail("carol").await;
    assert_eq!(
        state(&connection(&app, &user).await),
        pb::GmailConnectionState::Connected
    );
    let healed = sync(&app, &user, false).await.unwrap();
    assert_eq!(healed.messages_added_count, 1);
}

#[tokio::test]
async fn a_grant_without_the_gmail_scope_is_scope_missing() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("dave").await;
    app.gmail.inject(FaultRule::always(Fault::error(
        ErrorBody::InsufficientScope,
    )));
    let status = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "GMAIL_SCOPE_MISSING");
    let after = connection(&app, &user).await;
    assert_eq!(state(&after), pb::GmailConnectionState::ReauthRequired);
    assert_eq!(after.synced_message_count, 0);
    assert_eq!(after.history_id, "");
    assert_eq!(after.last_sync_error.unwrap().reason, "GMAIL_SCOPE_MISSING");
    let again = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(reason(&again), "GMAIL_SCOPE_MISSING");
}

#[tokio::test]
async fn a_held_lease_is_sync_in_progress() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("erin").await;
    app.gmail
        .add_message(&user.sub, NewMessage::text("One", "x"));
    assert!(
        app.app
            .store
            .gmail()
            .try_take_sync_lease(
                user.id,
                "another-replica",
                chrono::Utc::now(),
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
    );
    let status = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(reason(&status), "SYNC_IN_PROGRESS");
    let after = connection(&app, &user).await;
    assert!(after.sync_in_progress);
    assert_eq!(after.synced_message_count, 0);
    assert!(after.last_sync_error.is_none());
    assert_eq!(app.gmail.total_calls(&user.sub), 0);
    // Released, the next sync runs.
    app.app
        .store
        .gmail()
        .release_sync_lease(user.id, "another-replica")
        .await
        .unwrap();
    assert_eq!(
        sync(&app, &user, false).await.unwrap().messages_added_count,
        1
    );
}

#[tokio::test]
async fn rate_limits_beyond_the_budget_are_resource_exhausted_with_retry_info() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("frank").await;
    app.gmail
        .inject(FaultRule::always(Fault::error_with_retry_after(
            ErrorBody::TooManyRequests,
            "30",
        )));
    let status = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "GMAIL_RATE_LIMITED");
    assert!(status.get_error_details().retry_info().is_some());
    let after = connection(&app, &user).await;
    assert_eq!(state(&after), pb::GmailConnectionState::Connected);
    assert_eq!(after.synced_message_count, 0);
    assert_eq!(after.last_sync_error.unwrap().reason, "GMAIL_RATE_LIMITED");
}

#[tokio::test]
async fn gmail_failures_are_unavailable_and_recorded_until_a_sync_succeeds() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("grace").await;
    app.gmail
        .add_message(&user.sub, NewMessage::text("One", "x"));
    app.gmail
        .inject(FaultRule::always(Fault::error(ErrorBody::BackendError)));
    let status = sync(&app, &user, false).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "GMAIL_UNAVAILABLE");
    let after = connection(&app, &user).await;
    assert_eq!(state(&after), pb::GmailConnectionState::Connected);
    assert_eq!(after.synced_message_count, 0);
    assert_eq!(after.last_sync_error.unwrap().reason, "GMAIL_UNAVAILABLE");
    app.gmail.clear_faults();
    let fine = sync(&app, &user, false).await.unwrap();
    assert_eq!(fine.messages_added_count, 1);
    assert!(fine.connection.unwrap().last_sync_error.is_none());
}

#[tokio::test]
async fn list_messages_names_every_invalid_field() {
    let app = spawn_gmail_app().await;
    let user = app.sign_in_with_gmail("heidi").await;
    let status = list(
        &app,
        &user,
        pb::ListMessagesRequest {
            query: "x".repeat(257),
            label_ids: vec!["INBOX".into(), "not a label".into()],
            thread_id: "../x".into(),
            page_size: -1,
            page_token: "not-a-token".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    for field in [
        "query",
        "label_ids[1]",
        "thread_id",
        "page_size",
        "page_token",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    let too_many = list(
        &app,
        &user,
        pb::ListMessagesRequest {
            label_ids: (0..11).map(|i| format!("Label_{i}")).collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    // A token of another query is refused.
    app.gmail
        .add_message(&user.sub, NewMessage::text("a word", "x"));
    app.gmail
        .add_message(&user.sub, NewMessage::text("a word", "y"));
    sync(&app, &user, false).await.unwrap();
    let first = list(
        &app,
        &user,
        pb::ListMessagesRequest {
            query: "word".into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!first.next_page_token.is_empty());
    let other = list(
        &app,
        &user,
        pb::ListMessagesRequest {
            query: "other".into(),
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);
    let missing = get(&app, &user, "").await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn another_users_message_is_not_found_like_a_random_one() {
    let app = spawn_gmail_app().await;
    let alice = app.sign_in_with_gmail("ivan").await;
    let id = app
        .gmail
        .add_message(&alice.sub, NewMessage::text("Private", "for ivan only"));
    sync(&app, &alice, false).await.unwrap();
    let mallory = app.sign_in_with_gmail("judy").await;
    sync(&app, &mallory, false).await.unwrap();
    let foreign = get(&app, &mallory, &id).await.unwrap_err();
    let random = get(&app, &mallory, "18f3c2a1b4d5e6f7").await.unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(random.code(), Code::NotFound);
    assert_eq!(
        foreign.message().replace(&id, "ID"),
        random.message().replace("18f3c2a1b4d5e6f7", "ID")
    );
    assert!(query(&app, &mallory, "private").await.is_empty());
    assert_eq!(query(&app, &alice, "private").await, [id]);
}

#[tokio::test]
async fn disconnect_deletes_the_mail_by_default_and_keeps_it_when_asked() {
    let app = spawn_gmail_app().await;
    let keeper = app.sign_in_with_gmail("kim").await;
    let kept = app
        .gmail
        .add_message(&keeper.sub, NewMessage::text("Keep me", "body"));
    sync(&app, &keeper, false).await.unwrap();
    let disconnected = app
        .gmail_client()
        .await
        .disconnect(authed(
            pb::DisconnectRequest {
                keep_synced_mail: true,
            },
            &keeper.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(state(&disconnected), pb::GmailConnectionState::NotConnected);
    assert_eq!(audit_rows(&app, &keeper, "gmail_connected").await, 1);
    assert_eq!(audit_rows(&app, &keeper, "gmail_disconnected").await, 1);
    assert!(
        !app.provider.revocation_requests().is_empty(),
        "the grant is revoked at Google"
    );
    assert_eq!(
        query(&app, &keeper, "keep").await,
        std::slice::from_ref(&kept)
    );
    assert_eq!(get(&app, &keeper, &kept).await.unwrap().subject, "Keep me");
    let status = sync(&app, &keeper, false).await.unwrap_err();
    assert_eq!(reason(&status), "GMAIL_NOT_CONNECTED");

    let leaver = app.sign_in_with_gmail("lee").await;
    let gone = app
        .gmail
        .add_message(&leaver.sub, NewMessage::text("Delete me", "body"));
    sync(&app, &leaver, false).await.unwrap();
    app.gmail_client()
        .await
        .disconnect(authed(pb::DisconnectRequest::default(), &leaver.token))
        .await
        .unwrap();
    assert!(query(&app, &leaver, "").await.is_empty());
    assert_eq!(
        get(&app, &leaver, &gone).await.unwrap_err().code(),
        Code::NotFound
    );
    let after = connection(&app, &leaver).await;
    assert_eq!(after.synced_message_count, 0);
    assert_eq!(after.history_id, "");
    // Disconnecting again succeeds and changes nothing.
    app.gmail_client()
        .await
        .disconnect(authed(pb::DisconnectRequest::default(), &leaver.token))
        .await
        .unwrap();
    assert_eq!(connection(&app, &leaver).await, after);
}

#[tokio::test]
async fn the_background_sync_picks_up_a_new_connection() {
    let app = crate::helpers::spawn_gmail_app_with(|config| {
        config.gmail.background_sync = true;
        config.gmail.sync_poll_interval = std::time::Duration::from_millis(50);
        config.gmail.sync_interval = std::time::Duration::from_secs(3600);
    })
    .await;
    app.gmail
        .add_message("nora", NewMessage::text("Waiting", "for the background"));
    let user = app.sign_in_with_gmail("nora").await;
    let mut synced = connection(&app, &user).await;
    for _ in 0..400 {
        if synced.synced_message_count == 1 && !synced.history_id.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        synced = connection(&app, &user).await;
    }
    assert_eq!(synced.synced_message_count, 1);
    assert_eq!(
        synced.history_id,
        app.gmail.history_id(&user.sub).to_string()
    );
    assert!(synced.last_sync_error.is_none());
    assert_eq!(query(&app, &user, "background").await.len(), 1);
}

#[tokio::test]
async fn get_connection_shows_the_mailbox_address_from_gmail_after_a_sync() {
    let app = spawn_gmail_app().await;
    // The Google account signs in as one address; its Gmail profile gives another.
    app.gmail.set_address("olga", "olga.mailbox@gmail.example");
    let user = app.sign_in_with_gmail("olga").await;
    assert_eq!(connection(&app, &user).await.email_address, user.email);

    let synced = sync(&app, &user, false).await.unwrap();
    assert!(synced.full_sync);
    assert_eq!(
        synced.connection.unwrap().email_address,
        "olga.mailbox@gmail.example"
    );
    assert_eq!(
        connection(&app, &user).await.email_address,
        "olga.mailbox@gmail.example"
    );

    // A later sign-in (a new consent) and an incremental sync keep the mailbox's address.
    let again = app.sign_in_with_gmail("olga").await;
    assert_eq!(
        connection(&app, &again).await.email_address,
        "olga.mailbox@gmail.example"
    );
    assert!(!sync(&app, &again, false).await.unwrap().full_sync);
    assert_eq!(
        connection(&app, &again).await.email_address,
        "olga.mailbox@gmail.example"
    );
}
