//! `gmail.auto_triage`: the background sync triages the INBOX mail it added, once, with the
//! user's key; off by default; a user without a key is synced and left alone; a failed
//! triage is not retried by later syncs.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use assistd::proto::gmail::v1 as pb;
use assistd_core::gmail::AUTO_TRIAGE_BATCHES;
use assistd_testkit::gemini::{ErrorBody, TriageAnswer};

use super::setup::{mail, rows, set_key};
use crate::helpers::{GmailTestApp, GmailUser, authed, spawn_gmail_app_with};

/// Messages per model call in these tests.
const BATCH: usize = 3;

/// A server whose background sync polls every 50 ms and syncs each mailbox every second
/// (±10%), with automatic triage as `auto_triage` says (and `None` leaving the default).
async fn app(auto_triage: Option<bool>) -> GmailTestApp {
    spawn_gmail_app_with(move |config| {
        config.gmail.background_sync = true;
        config.gmail.sync_poll_interval = Duration::from_millis(50);
        config.gmail.sync_interval = Duration::from_secs(1);
        config.gmail.triage_batch_size = BATCH;
        if let Some(on) = auto_triage {
            config.gmail.auto_triage = on;
        }
    })
    .await
}

/// Signs `sub` in, stores a Gemini key when `key` is set, and only then connects Gmail (a
/// second sign-in granting it), so the first background sync already finds the key.
async fn connect(app: &GmailTestApp, sub: &str, key: bool) -> GmailUser {
    if key {
        let before = app.sign_in(sub, false).await;
        set_key(app, &before).await;
    }
    app.sign_in_with_gmail(sub).await
}

async fn connection(app: &GmailTestApp, user: &GmailUser) -> pb::GmailConnection {
    app.gmail_client()
        .await
        .get_connection(authed(pb::GetConnectionRequest {}, &user.token))
        .await
        .expect("GetConnection")
        .into_inner()
        .connection
        .expect("a connection")
}

/// When the last sync completed, in microseconds (0 before the first).
async fn last_sync(app: &GmailTestApp, user: &GmailUser) -> i64 {
    connection(app, user)
        .await
        .last_sync_time
        .map_or(0, |t| t.seconds * 1_000_000 + i64::from(t.nanos / 1_000))
}

/// Polls `check` every 25 ms for up to 20 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..800 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Waits for `n` background syncs of `user` completed after now. The background task does
/// not sync a mailbox again before the triage after its previous sync ended, so this also
/// waits for any such triage.
async fn syncs(app: &GmailTestApp, user: &GmailUser, n: usize) {
    for _ in 0..n {
        let before = last_sync(app, user).await;
        until("a later background sync completed", || async {
            last_sync(app, user).await > before
        })
        .await;
    }
}

async fn triaged_rows(app: &GmailTestApp, user: &GmailUser) -> i64 {
    rows(app, "gmail_triage_results", user).await
}

/// The ids of the user's synced messages that carry a stored triage.
async fn triaged_ids(app: &GmailTestApp, user: &GmailUser) -> HashSet<String> {
    app.gmail_client()
        .await
        .list_messages(authed(
            pb::ListMessagesRequest {
                page_size: 1_000,
                ..Default::default()
            },
            &user.token,
        ))
        .await
        .expect("ListMessages")
        .into_inner()
        .messages
        .into_iter()
        .filter(|m| m.triage.is_some())
        .map(|m| m.id)
        .collect()
}

fn inbox(from: usize, n: usize) -> Vec<assistd_testkit::gmail::NewMessage> {
    (from..from + n)
        .map(|i| mail(&format!("Message {i}"), &format!("Body of message {i}.")))
        .collect()
}

#[tokio::test]
async fn new_inbox_mail_is_triaged_after_a_background_sync_and_stays_triaged() {
    let app = app(Some(true)).await;
    let gemini = &app.app.gemini;
    gemini.answer_triage(TriageAnswer::Valid);
    let user = connect(&app, "alice", true).await;
    // The first sync finds an empty mailbox: nothing to triage.
    until("the first sync completed", || async {
        last_sync(&app, &user).await > 0
    })
    .await;
    assert_eq!(gemini.generate_requests().len(), 0);

    // Seven INBOX messages and one sent message arrive.
    let new: Vec<String> = inbox(0, 7)
        .into_iter()
        .map(|m| app.gmail.add_message(&user.sub, m))
        .collect();
    let sent = app.gmail.add_message(
        &user.sub,
        mail("Sent by me", "Not in the inbox.").labels(&["SENT"]),
    );
    until("the new INBOX mail is triaged", || async {
        triaged_rows(&app, &user).await == 7
    })
    .await;
    // ⌈7 / 3⌉ = 3 model calls, counted at the peer (7 split over two syncs needs 3 too).
    assert_eq!(gemini.triage_call_count(), 3);
    assert_eq!(gemini.generate_requests().len(), 3);
    let triaged = triaged_ids(&app, &user).await;
    assert_eq!(triaged, new.iter().cloned().collect::<HashSet<_>>());
    assert!(!triaged.contains(&sent));
    assert_eq!(connection(&app, &user).await.synced_message_count, 8);

    // Later syncs find nothing new: no model call; the results stay.
    syncs(&app, &user, 2).await;
    assert_eq!(gemini.generate_requests().len(), 3);
    assert_eq!(triaged_ids(&app, &user).await, triaged);

    // The stored triage is what TriageInbox answers with, without a model call.
    let answer = super::setup::triage(&app, &user, 20, false).await.unwrap();
    assert_eq!(answer.triaged_count, 0);
    assert_eq!(answer.usage.unwrap().model_call_count, 0);
    assert_eq!(answer.messages.len(), 7);
    assert!(answer.messages.iter().all(|m| m.triage.is_some()));
    assert_eq!(gemini.generate_requests().len(), 3);
}

#[tokio::test]
async fn a_first_sync_of_a_large_mailbox_triages_only_its_newest_mail() {
    let app = app(Some(true)).await;
    let gemini = &app.app.gemini;
    gemini.answer_triage(TriageAnswer::Valid);
    // Added oldest first: the last ones are the newest.
    let ids: Vec<String> = inbox(0, 40)
        .into_iter()
        .map(|m| app.gmail.add_message("carol", m))
        .collect();
    let user = connect(&app, "carol", true).await;
    let cap = BATCH * AUTO_TRIAGE_BATCHES;
    until("the newest mail is triaged", || async {
        triaged_rows(&app, &user).await == i64::try_from(cap).unwrap()
    })
    .await;
    syncs(&app, &user, 1).await;
    assert_eq!(connection(&app, &user).await.synced_message_count, 40);
    // ⌈15 / 3⌉ = 5 calls for the newest 15 of 40; the older 25 are left for TriageInbox.
    assert_eq!(gemini.triage_call_count(), AUTO_TRIAGE_BATCHES);
    assert_eq!(
        triaged_ids(&app, &user).await,
        ids[40 - cap..].iter().cloned().collect::<HashSet<_>>()
    );
}

#[tokio::test]
async fn without_auto_triage_no_model_is_called() {
    // Off by default.
    let app = app(None).await;
    let gemini = &app.app.gemini;
    gemini.answer_triage(TriageAnswer::Valid);
    for message in inbox(0, 5) {
        app.gmail.add_message("dave", message);
    }
    let user = connect(&app, "dave", true).await;
    until("the first sync stored the mail", || async {
        connection(&app, &user).await.synced_message_count == 5
    })
    .await;
    for message in inbox(5, 3) {
        app.gmail.add_message(&user.sub, message);
    }
    until("a later sync stored the new mail", || async {
        connection(&app, &user).await.synced_message_count == 8
    })
    .await;
    syncs(&app, &user, 1).await;
    assert_eq!(gemini.generate_requests().len(), 0);
    assert_eq!(triaged_rows(&app, &user).await, 0);
}

#[tokio::test]
async fn a_user_without_a_key_is_synced_but_not_triaged() {
    let app = app(Some(true)).await;
    let gemini = &app.app.gemini;
    gemini.answer_triage(TriageAnswer::Valid);
    for message in inbox(0, 4) {
        app.gmail.add_message("erin", message);
    }
    for message in inbox(0, 5) {
        app.gmail.add_message("frank", message);
    }
    let keyless = connect(&app, "erin", false).await;
    let keyed = connect(&app, "frank", true).await;
    until("the keyed user's mail is triaged", || async {
        triaged_rows(&app, &keyed).await == 5
    })
    .await;
    until("the keyless user's mail is synced", || async {
        connection(&app, &keyless).await.synced_message_count == 4
    })
    .await;
    // New mail for the keyless user, synced like any other.
    for message in inbox(4, 2) {
        app.gmail.add_message(&keyless.sub, message);
    }
    until("the keyless user's new mail is synced", || async {
        connection(&app, &keyless).await.synced_message_count == 6
    })
    .await;
    syncs(&app, &keyless, 1).await;

    let state = connection(&app, &keyless).await;
    assert_eq!(state.state(), pb::GmailConnectionState::Connected);
    assert!(state.last_sync_error.is_none(), "{state:?}");
    assert_eq!(triaged_rows(&app, &keyless).await, 0);
    // ⌈5 / 3⌉ = 2 calls, all for the keyed user.
    assert_eq!(gemini.triage_call_count(), 2);
    assert_eq!(gemini.generate_requests().len(), 2);
}

#[tokio::test]
async fn a_failed_triage_is_not_retried_and_later_syncs_triage_only_their_new_mail() {
    let app = app(Some(true)).await;
    let gemini = &app.app.gemini;
    gemini.answer_triage(TriageAnswer::Valid);
    let first: Vec<String> = inbox(0, 4)
        .into_iter()
        .map(|m| app.gmail.add_message("gina", m))
        .collect();
    // The key is stored (and validated) first; then Gemini goes down, and Gmail connects.
    let before = app.sign_in("gina", false).await;
    set_key(&app, &before).await;
    gemini.fail_always(ErrorBody::Unavailable);
    let user = app.sign_in_with_gmail("gina").await;
    until("the triage was tried", || async {
        !gemini.generate_requests().is_empty()
    })
    .await;
    // The failed triage ended (the next sync waits for it); later syncs do not try again.
    syncs(&app, &user, 1).await;
    let tried = gemini.generate_requests().len();
    syncs(&app, &user, 2).await;
    assert_eq!(gemini.generate_requests().len(), tried);
    let state = connection(&app, &user).await;
    assert_eq!(state.state(), pb::GmailConnectionState::Connected);
    assert!(state.last_sync_error.is_none(), "{state:?}");
    assert_eq!(state.synced_message_count, 4);
    assert_eq!(triaged_rows(&app, &user).await, 0);

    // Gemini is back: the next sync's new mail is triaged, the earlier mail is not.
    gemini.clear_faults();
    let second: Vec<String> = inbox(4, 2)
        .into_iter()
        .map(|m| app.gmail.add_message(&user.sub, m))
        .collect();
    until("the new mail is triaged", || async {
        triaged_rows(&app, &user).await == 2
    })
    .await;
    syncs(&app, &user, 1).await;
    assert_eq!(gemini.generate_requests().len(), tried + 1);
    let triaged = triaged_ids(&app, &user).await;
    assert_eq!(triaged, second.iter().cloned().collect::<HashSet<_>>());
    assert!(first.iter().all(|id| !triaged.contains(id)));
}
