//! The connection row: connecting, the mail key, the lease, progress, the schedule, and what
//! disconnecting and deleting do.

use std::time::Duration;

use assistd_store::{GmailConnectionState, SealedMailKey};

use super::*;

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn connecting_creates_and_reconnecting_resets_the_connection() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = new_user(&store).await;
    assert!(gmail.connection(user).await.unwrap().is_none());
    let scopes = ["openid".to_owned(), "gmail.readonly".to_owned()];
    let connection = gmail
        .connect(user, "a@example.com", &scopes, at(0))
        .await
        .unwrap();
    assert_eq!(connection.state, GmailConnectionState::Connected);
    assert_eq!(connection.email_address.as_deref(), Some("a@example.com"));
    assert_eq!(connection.scopes, scopes);
    assert_eq!(connection.connected_at, Some(at(0)));
    assert_eq!(connection.next_sync_due_at, Some(at(0)));
    assert_eq!(connection.history_id, None);
    assert!(connection.mail_key.is_none() && connection.full_sync.is_none());

    // A new consent while connected changes the scopes, not the connect time.
    let more = [
        "openid".to_owned(),
        "gmail.readonly".to_owned(),
        "email".to_owned(),
    ];
    let again = gmail
        .connect(user, "a@example.com", &more, at(10))
        .await
        .unwrap();
    assert_eq!(again.connected_at, Some(at(0)));
    assert_eq!(again.scopes, more);

    // A broken grant, then a reconnect: connected anew, the error cleared.
    assert!(
        gmail
            .set_state(user, GmailConnectionState::ReauthRequired, at(20))
            .await
            .unwrap()
    );
    assert!(
        gmail
            .record_sync_error(
                user,
                "GMAIL_REAUTH_REQUIRED",
                "Google refused the grant",
                at(20),
                None
            )
            .await
            .unwrap()
    );
    let broken = gmail.connection(user).await.unwrap().unwrap();
    assert_eq!(broken.state, GmailConnectionState::ReauthRequired);
    assert_eq!(
        broken.last_error.as_ref().unwrap().reason,
        "GMAIL_REAUTH_REQUIRED"
    );
    assert_eq!(broken.last_error.as_ref().unwrap().at, at(20));
    let back = gmail
        .connect(user, "a@example.com", &more, at(30))
        .await
        .unwrap();
    assert_eq!(back.state, GmailConnectionState::Connected);
    assert_eq!(back.connected_at, Some(at(30)));
    assert!(back.last_error.is_none());
    assert_eq!(back.next_sync_due_at, Some(at(30)));

    // Without a user row there is nothing to connect.
    let gone = UserId::new();
    let err = gmail
        .connect(gone, "x@example.com", &scopes, at(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, assistd_domain::Error::Unauthenticated { .. }),
        "{err:?}"
    );
    assert!(
        !gmail
            .set_state(gone, GmailConnectionState::Connected, at(0))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_first_mail_key_stored_wins() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let first = SealedMailKey {
        sealed: vec![1; 61],
        key_version: 1,
    };
    let second = SealedMailKey {
        sealed: vec![2; 61],
        key_version: 1,
    };
    assert_eq!(
        gmail.install_mail_key(user, &first, at(1)).await.unwrap(),
        first
    );
    assert_eq!(
        gmail.install_mail_key(user, &second, at(2)).await.unwrap(),
        first
    );
    assert_eq!(
        gmail.connection(user).await.unwrap().unwrap().mail_key,
        Some(first.clone())
    );
    // Resealing applies only over the key it replaces.
    let resealed = SealedMailKey {
        sealed: vec![3; 61],
        key_version: 2,
    };
    assert!(
        !gmail
            .reseal_mail_key(user, &second, &resealed, at(3))
            .await
            .unwrap()
    );
    assert!(
        gmail
            .reseal_mail_key(user, &first, &resealed, at(3))
            .await
            .unwrap()
    );
    assert_eq!(
        gmail.connection(user).await.unwrap().unwrap().mail_key,
        Some(resealed)
    );
    // No connection, no key.
    let other = new_user(&store).await;
    let err = gmail
        .install_mail_key(other, &first, at(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, assistd_domain::Error::NotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn of_two_racing_owners_exactly_one_takes_the_lease() {
    let (store, _dir) = fresh_store().await;
    for round in 0..5 {
        let user = connected_user(&store).await;
        let tries = (0..4).map(|replica| {
            let gmail = store.gmail();
            tokio::spawn(async move {
                let owner = format!("replica-{replica}");
                let won = gmail
                    .try_take_sync_lease(user, &owner, at(1), LEASE)
                    .await
                    .unwrap();
                (owner, won)
            })
        });
        let mut winners = Vec::new();
        for outcome in futures_join(tries).await {
            if outcome.1 {
                winners.push(outcome.0);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let lease = store
            .gmail()
            .connection(user)
            .await
            .unwrap()
            .unwrap()
            .sync_lease
            .unwrap();
        assert_eq!(lease.owner, winners[0]);
        assert_eq!(lease.expires_at, at(61));
    }
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn leases_expire_renew_and_release_only_for_their_owner() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    assert!(
        gmail
            .try_take_sync_lease(user, "a", at(0), LEASE)
            .await
            .unwrap()
    );
    // Held: another cannot take, renew or release it; the holder may take it again.
    assert!(
        !gmail
            .try_take_sync_lease(user, "b", at(59), LEASE)
            .await
            .unwrap()
    );
    assert!(
        !gmail
            .renew_sync_lease(user, "b", at(30), LEASE)
            .await
            .unwrap()
    );
    assert!(!gmail.release_sync_lease(user, "b").await.unwrap());
    assert!(
        gmail
            .renew_sync_lease(user, "a", at(30), LEASE)
            .await
            .unwrap()
    );
    assert_eq!(
        gmail
            .connection(user)
            .await
            .unwrap()
            .unwrap()
            .sync_lease
            .unwrap()
            .expires_at,
        at(90)
    );
    assert!(
        !gmail
            .try_take_sync_lease(user, "b", at(89), LEASE)
            .await
            .unwrap()
    );
    // Expired: taken over; the old owner's renewal and progress then fail.
    assert!(
        gmail
            .try_take_sync_lease(user, "b", at(90), LEASE)
            .await
            .unwrap()
    );
    assert!(
        !gmail
            .renew_sync_lease(user, "a", at(91), LEASE)
            .await
            .unwrap()
    );
    assert!(!gmail.begin_full_sync(user, "a", 5, at(91)).await.unwrap());
    assert!(
        !gmail
            .complete_sync(user, "a", 7, at(91), at(200))
            .await
            .unwrap()
    );
    assert_eq!(
        gmail.connection(user).await.unwrap().unwrap().history_id,
        None
    );
    // Released: free for anyone.
    assert!(gmail.release_sync_lease(user, "b").await.unwrap());
    assert!(
        gmail
            .connection(user)
            .await
            .unwrap()
            .unwrap()
            .sync_lease
            .is_none()
    );
    assert!(
        gmail
            .try_take_sync_lease(user, "c", at(92), LEASE)
            .await
            .unwrap()
    );
    assert!(gmail.release_sync_lease(user, "c").await.unwrap());
    // Only a connected user's lease can be taken; users without a connection have none.
    assert!(
        gmail
            .set_state(user, GmailConnectionState::ReauthRequired, at(93))
            .await
            .unwrap()
    );
    assert!(
        !gmail
            .try_take_sync_lease(user, "a", at(94), LEASE)
            .await
            .unwrap()
    );
    let stranger = new_user(&store).await;
    assert!(
        !gmail
            .try_take_sync_lease(stranger, "a", at(0), LEASE)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn full_sync_progress_resumes_and_completion_moves_the_history_id() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    assert!(
        gmail
            .try_take_sync_lease(user, "a", at(0), LEASE)
            .await
            .unwrap()
    );
    // Gmail's history ids are unsigned 64-bit: the largest survives.
    let start = u64::MAX - 1;
    assert!(
        gmail
            .begin_full_sync(user, "a", start, at(1))
            .await
            .unwrap()
    );
    assert!(
        gmail
            .save_full_sync_progress(user, "a", Some("page-2"), 100, at(2))
            .await
            .unwrap()
    );
    assert!(
        !gmail
            .save_full_sync_progress(user, "b", Some("page-9"), 900, at(2))
            .await
            .unwrap()
    );
    let progress = gmail
        .connection(user)
        .await
        .unwrap()
        .unwrap()
        .full_sync
        .unwrap();
    assert_eq!(progress.start_history_id, start);
    assert_eq!(progress.page_token.as_deref(), Some("page-2"));
    assert_eq!(progress.fetched, 100);
    assert_eq!(progress.started_at, at(1));
    // A failure keeps the progress and the (absent) history id.
    assert!(
        gmail
            .record_sync_error(
                user,
                "GMAIL_UNAVAILABLE",
                "Gmail answered 503",
                at(3),
                Some(at(63))
            )
            .await
            .unwrap()
    );
    let failed = gmail.connection(user).await.unwrap().unwrap();
    assert_eq!(
        failed.full_sync.as_ref().unwrap().page_token.as_deref(),
        Some("page-2")
    );
    assert_eq!(failed.history_id, None);
    assert_eq!(failed.next_sync_due_at, Some(at(63)));
    // The listing exhausted, then completion.
    assert!(
        gmail
            .save_full_sync_progress(user, "a", None, 250, at(4))
            .await
            .unwrap()
    );
    assert!(
        gmail
            .complete_sync(user, "a", start, at(5), at(305))
            .await
            .unwrap()
    );
    let done = gmail.connection(user).await.unwrap().unwrap();
    assert_eq!(done.history_id, Some(start));
    assert!(done.full_sync.is_none());
    assert!(done.last_error.is_none());
    assert_eq!(done.last_sync_at, Some(at(5)));
    assert_eq!(done.next_sync_due_at, Some(at(305)));
    // The lease stays held until released.
    assert_eq!(done.sync_lease.unwrap().owner, "a");
    // No full sync under way: progress has nothing to update.
    assert!(
        !gmail
            .save_full_sync_progress(user, "a", Some("x"), 1, at(6))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn due_users_are_connected_unleased_and_due() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let due_early = connected_user(&store).await;
    let due_late = connected_user(&store).await;
    let not_yet = connected_user(&store).await;
    let broken = connected_user(&store).await;
    let leased = connected_user(&store).await;
    let gone = connected_user(&store).await;
    let never = new_user(&store).await;
    assert!(gmail.set_next_sync_due(due_early, at(-50)).await.unwrap());
    assert!(gmail.set_next_sync_due(due_late, at(-10)).await.unwrap());
    assert!(gmail.set_next_sync_due(not_yet, at(500)).await.unwrap());
    assert!(gmail.set_next_sync_due(broken, at(-60)).await.unwrap());
    assert!(
        gmail
            .set_state(broken, GmailConnectionState::ReauthRequired, at(0))
            .await
            .unwrap()
    );
    assert!(gmail.set_next_sync_due(leased, at(-70)).await.unwrap());
    assert!(
        gmail
            .try_take_sync_lease(leased, "x", at(0), LEASE)
            .await
            .unwrap()
    );
    assert!(gmail.disconnect(gone, false, at(0)).await.unwrap());
    assert!(!gmail.set_next_sync_due(never, at(0)).await.unwrap());

    let due = gmail.users_due_for_sync(at(1), 100).await.unwrap();
    assert_eq!(due, vec![due_early, due_late]);
    assert_eq!(
        gmail.users_due_for_sync(at(1), 1).await.unwrap(),
        vec![due_early]
    );
    // Once the lease expires, its user is due again (soonest first).
    let later = gmail.users_due_for_sync(at(60), 100).await.unwrap();
    assert_eq!(later, vec![leased, due_early, due_late]);
    let much_later = gmail.users_due_for_sync(at(600), 100).await.unwrap();
    assert_eq!(much_later, vec![leased, due_early, due_late, not_yet]);
}

#[tokio::test]
async fn deleting_all_mail_removes_messages_labels_terms_and_the_mail_key() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let bystander = connected_user(&store).await;
    let key = SealedMailKey {
        sealed: vec![9; 61],
        key_version: 1,
    };
    gmail.install_mail_key(user, &key, at(0)).await.unwrap();
    gmail
        .install_mail_key(bystander, &key, at(0))
        .await
        .unwrap();
    for who in [user, bystander] {
        upsert(
            &gmail,
            who,
            &message("m1", "t1", &["INBOX"], at(1)),
            &[term(1), term(2)],
        )
        .await;
        upsert(
            &gmail,
            who,
            &message("m2", "t1", &["INBOX", "UNREAD"], at(2)),
            &[term(2)],
        )
        .await;
    }
    assert!(
        gmail
            .try_take_sync_lease(user, "a", at(0), LEASE)
            .await
            .unwrap()
    );
    assert!(
        gmail
            .complete_sync(user, "a", 42, at(3), at(100))
            .await
            .unwrap()
    );
    assert_eq!(rows_of(&store, "gmail_search_terms", user).await, 3);
    assert_eq!(rows_of(&store, "gmail_message_labels", user).await, 3);

    gmail.delete_all_mail(user, at(4)).await.unwrap();
    for table in [
        "gmail_messages",
        "gmail_message_labels",
        "gmail_search_terms",
    ] {
        assert_eq!(rows_of(&store, table, user).await, 0, "{table}");
        assert!(rows_of(&store, table, bystander).await > 0, "{table}");
    }
    let connection = gmail.connection(user).await.unwrap().unwrap();
    assert!(connection.mail_key.is_none());
    assert_eq!(connection.history_id, None);
    assert_eq!(connection.state, GmailConnectionState::Connected);
    assert_eq!(gmail.message_count(user).await.unwrap(), 0);
    assert_eq!(gmail.message_count(bystander).await.unwrap(), 2);
    assert!(
        gmail
            .connection(bystander)
            .await
            .unwrap()
            .unwrap()
            .mail_key
            .is_some()
    );
}

#[tokio::test]
async fn disconnecting_keeps_or_deletes_the_mail_and_stops_writes() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let keeper = connected_user(&store).await;
    let deleter = connected_user(&store).await;
    for who in [keeper, deleter] {
        gmail
            .install_mail_key(
                who,
                &SealedMailKey {
                    sealed: vec![5; 61],
                    key_version: 1,
                },
                at(0),
            )
            .await
            .unwrap();
        upsert(
            &gmail,
            who,
            &message("m1", "t1", &["INBOX"], at(1)),
            &[term(1)],
        )
        .await;
        assert!(
            gmail
                .try_take_sync_lease(who, "sync", at(1), LEASE)
                .await
                .unwrap()
        );
    }

    assert!(gmail.disconnect(keeper, false, at(2)).await.unwrap());
    let kept = gmail.connection(keeper).await.unwrap().unwrap();
    assert_eq!(kept.state, GmailConnectionState::NotConnected);
    assert!(kept.sync_lease.is_none() && kept.next_sync_due_at.is_none());
    assert!(kept.mail_key.is_some());
    assert_eq!(gmail.message_count(keeper).await.unwrap(), 1);
    // A sync still running can neither write messages nor move progress.
    let late = message("m2", "t1", &["INBOX"], at(3));
    assert!(
        !gmail
            .upsert_message(keeper, &late, &[term(2)], at(3))
            .await
            .unwrap()
    );
    assert!(
        !gmail
            .renew_sync_lease(keeper, "sync", at(3), LEASE)
            .await
            .unwrap()
    );
    assert_eq!(gmail.message_count(keeper).await.unwrap(), 1);

    assert!(gmail.disconnect(deleter, true, at(2)).await.unwrap());
    assert!(gmail.connection(deleter).await.unwrap().is_none());
    for table in [
        "gmail_messages",
        "gmail_message_labels",
        "gmail_search_terms",
    ] {
        assert_eq!(rows_of(&store, table, deleter).await, 0, "{table}");
    }
    assert!(
        !gmail
            .upsert_message(deleter, &late, &[term(2)], at(3))
            .await
            .unwrap()
    );
    assert_eq!(gmail.message_count(deleter).await.unwrap(), 0);
    assert!(!gmail.disconnect(deleter, true, at(4)).await.unwrap());
}

#[tokio::test]
async fn deleting_the_account_removes_every_gmail_row() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let bystander = connected_user(&store).await;
    for who in [user, bystander] {
        upsert(
            &gmail,
            who,
            &message("m1", "t1", &["INBOX"], at(1)),
            &[term(1), term(3)],
        )
        .await;
    }
    store.users().delete(user).await.unwrap();
    assert!(gmail.connection(user).await.unwrap().is_none());
    for table in [
        "gmail_messages",
        "gmail_message_labels",
        "gmail_search_terms",
    ] {
        assert_eq!(rows_of(&store, table, user).await, 0, "{table}");
        assert!(rows_of(&store, table, bystander).await > 0, "{table}");
    }
}
