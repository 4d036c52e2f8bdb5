//! A first sync of 1,000 messages at Gmail's default quota, then incremental syncs that pick
//! up exactly what changed; an expired history id; rate-limit answers.

use std::time::{Duration, Instant};

use assistd::proto::gmail::v1 as pb;
use assistd_testkit::gmail::{ErrorBody, Fault, FaultRule, NewMessage, Operation};

use crate::gmail_sync::mail::{corpus, serial};
use crate::gmail_sync::setup::{GmailWorld, connection, list_all, sync, test_log, unique_ids};
use crate::helpers::authed;

/// Gmail's per-user quota, units per second, the server's default.
const QUOTA: u32 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_of_a_thousand_messages_stays_within_gmails_per_user_quota() {
    let world = GmailWorld::start(|_| {}).await;
    let user = world.sign_in_as("ada").await;
    world.add_generated(&user, 0, 1_000);
    let mut client = world.gmail_client().await;
    let started = Instant::now();
    let first = sync(&mut client, &user, false)
        .await
        .expect("the first sync");
    let took = started.elapsed();
    assert_eq!(first.messages_added_count, 1_000);
    // Gmail's per-user quota held over the whole full sync, as the peer counted it (by
    // arrival, in every one-second window).
    let peak = world.gmail.max_units_in_one_second(&user.sub);
    assert!(
        peak <= QUOTA,
        "the peer saw {peak} units in one second, over the quota of {QUOTA}"
    );
    assert_eq!(world.gmail.rate_limited_answers(&user.sub), 0);
    assert_eq!(world.gmail.calls(&user.sub, Operation::GetMessage), 1_000);
    if test_log() {
        let units = 5 * 1_000 + 5 * world.gmail.calls(&user.sub, Operation::ListMessages) + 1;
        eprintln!(
            "gmail sync: full sync of 1,000 messages took {took:?} (quota lower bound {:.1} s), \
             peak {peak} units in one second",
            units as f64 / f64::from(QUOTA)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_of_a_thousand_messages_then_incremental_syncs_pick_up_exactly_what_changed() {
    // The quota is raised on both sides: the test above holds the default one.
    let world = GmailWorld::start(|config| config.gmail.quota_units_per_second = 10_000).await;
    world.gmail.set_quota(10_000);
    let user = world.sign_in_as("ada").await;
    let mut ids = world.add_generated(&user, 0, 995);
    let mut corpus_ids = Vec::new();
    for (name, raw, word) in corpus() {
        let id = world.gmail.add_message(&user.sub, NewMessage::new(raw));
        corpus_ids.push((name, id.clone(), word));
        ids.push(id);
    }
    assert_eq!(ids.len(), 1_000);
    let mut client = world.gmail_client().await;

    let first = sync(&mut client, &user, false)
        .await
        .expect("the first sync");
    assert!(first.full_sync, "the first sync is a full one");
    assert_eq!(
        (
            first.messages_added_count,
            first.messages_updated_count,
            first.messages_deleted_count
        ),
        (1_000, 0, 0)
    );
    let state = first.connection.expect("the connection after the sync");
    assert_eq!(state.state(), pb::GmailConnectionState::Connected);
    assert_eq!(state.email_address, user.email);
    assert_eq!(state.synced_message_count, 1_000);
    assert_eq!(
        state.history_id,
        world.gmail.history_id(&user.sub).to_string()
    );
    assert!(!state.sync_in_progress);
    assert!(state.last_sync_error.is_none());
    assert_eq!(world.gmail.calls(&user.sub, Operation::GetMessage), 1_000);

    // Paging over everything lists every message once, newest first.
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(expected, world.peer_ids(&user));
    let listed = list_all(&mut client, &user, "", 100).await;
    assert_eq!(listed.len(), 1_000);
    assert_eq!(unique_ids(&listed), expected);
    let odd_pages = list_all(&mut client, &user, "", 37).await;
    assert_eq!(unique_ids(&odd_pages), expected);
    // Every template's serial word finds its message, and only that one; labels came along.
    for index in [0, 1, 2, 3, 4, 5, 6, 500, 994] {
        let found = list_all(&mut client, &user, &serial(index), 25).await;
        assert_eq!(found.len(), 1, "search for {}", serial(index));
        assert_eq!(found[0].id, ids[index]);
        let mail = crate::gmail_sync::mail::generated(index);
        let mut labels = found[0].label_ids.clone();
        labels.sort();
        let mut want = mail.labels.clone();
        want.sort();
        assert_eq!(labels, want, "labels of {}", serial(index));
        assert_eq!(found[0].unread, want.iter().any(|l| l == "UNREAD"));
    }
    // The corpus messages were decoded: a word of each finds it.
    for (name, id, word) in &corpus_ids {
        let found = list_all(&mut client, &user, word, 100).await;
        assert!(
            found.iter().any(|message| &message.id == id),
            "{name}: searching {word:?} finds it"
        );
    }

    // Gmail changes: 3 new messages, one relabelled (archived and starred), one deleted.
    let added = world.add_generated(&user, 1_000, 3);
    let relabelled = ids[10].clone();
    assert!(
        world
            .gmail
            .modify_labels(&user.sub, &relabelled, &["STARRED", "Label_7"], &["INBOX"])
    );
    let deleted = ids[20].clone();
    assert!(world.gmail.delete_message(&user.sub, &deleted));
    world.gmail.reset_counters();
    let second = sync(&mut client, &user, false)
        .await
        .expect("the incremental sync");
    assert!(!second.full_sync, "an incremental sync");
    assert_eq!(
        (
            second.messages_added_count,
            second.messages_updated_count,
            second.messages_deleted_count
        ),
        (3, 1, 1)
    );
    let state = second.connection.unwrap();
    assert_eq!(
        state.history_id,
        world.gmail.history_id(&user.sub).to_string()
    );
    assert_eq!(state.synced_message_count, 1_002);
    // Only the new messages were fetched.
    assert_eq!(world.gmail.calls(&user.sub, Operation::GetMessage), 3);
    assert_eq!(world.gmail.calls(&user.sub, Operation::ListMessages), 0);

    let listed = list_all(&mut client, &user, "", 100).await;
    let listed_ids = unique_ids(&listed);
    assert_eq!(listed_ids, world.peer_ids(&user));
    assert!(!listed_ids.contains(&deleted));
    for id in &added {
        assert!(listed_ids.contains(id));
    }
    let relabelled_now = listed.iter().find(|m| m.id == relabelled).unwrap();
    let mut labels = relabelled_now.label_ids.clone();
    labels.sort();
    let mut want = world.gmail.labels(&user.sub, &relabelled).unwrap();
    want.sort();
    assert_eq!(labels, want);
    assert!(relabelled_now.starred);
    assert!(!labels.contains(&"INBOX".to_owned()));
    // The newest message is the last one added.
    assert_eq!(listed[0].id, added[2]);
    let found = list_all(&mut client, &user, &serial(1_001), 25).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, added[1]);
    let gone = list_all(&mut client, &user, &serial(20), 25).await;
    assert!(
        gone.is_empty(),
        "the deleted message is not found by search"
    );

    // A message moved to TRASH leaves the synced copy.
    let trashed = ids[30].clone();
    assert!(
        world
            .gmail
            .modify_labels(&user.sub, &trashed, &["TRASH"], &["INBOX"])
    );
    let third = sync(&mut client, &user, false)
        .await
        .expect("the third sync");
    assert!(!third.full_sync);
    assert_eq!(
        (
            third.messages_added_count,
            third.messages_updated_count,
            third.messages_deleted_count
        ),
        (0, 0, 1)
    );
    assert_eq!(third.connection.unwrap().synced_message_count, 1_001);
    let listed = list_all(&mut client, &user, "", 100).await;
    assert_eq!(unique_ids(&listed), world.peer_ids(&user));
    assert!(!listed.iter().any(|m| m.id == trashed));
    let status = client
        .get_message(authed(
            pb::GetMessageRequest {
                message_id: trashed,
            },
            &user.token,
        ))
        .await
        .expect_err("a trashed message is gone");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // Nothing changed: nothing to do.
    let fourth = sync(&mut client, &user, false)
        .await
        .expect("the fourth sync");
    assert_eq!(
        (
            fourth.full_sync,
            fourth.messages_added_count,
            fourth.messages_updated_count,
            fourth.messages_deleted_count
        ),
        (false, 0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_history_id_forces_a_full_resync_without_duplicates() {
    let world = GmailWorld::start(|config| config.gmail.quota_units_per_second = 5_000).await;
    world.gmail.set_quota(5_000);
    let user = world.sign_in_as("ada").await;
    let ids = world.add_generated(&user, 0, 150);
    let mut client = world.gmail_client().await;
    let first = sync(&mut client, &user, false)
        .await
        .expect("the first sync");
    assert_eq!(first.messages_added_count, 150);

    // While the copy is out of date, Gmail forgets the history it started from.
    let added = world.add_generated(&user, 150, 2);
    assert!(world.gmail.delete_message(&user.sub, &ids[5]));
    assert!(
        world
            .gmail
            .modify_labels(&user.sub, &ids[7], &["STARRED"], &[])
    );
    world.gmail.expire_history(&user.sub);
    world.gmail.reset_counters();

    let resync = sync(&mut client, &user, false).await.expect("the resync");
    assert!(resync.full_sync, "history 404 means a full sync");
    assert_eq!(
        (resync.messages_added_count, resync.messages_deleted_count),
        (2, 1),
        "only what is new is added, only what is gone deleted"
    );
    assert!(
        world.gmail.calls(&user.sub, Operation::ListHistory) >= 1,
        "the stored history id was tried first"
    );
    let state = resync.connection.unwrap();
    assert_eq!(state.synced_message_count, 151);
    assert_eq!(
        state.history_id,
        world.gmail.history_id(&user.sub).to_string()
    );
    let listed = list_all(&mut client, &user, "", 100).await;
    let listed_ids = unique_ids(&listed);
    assert_eq!(listed_ids, world.peer_ids(&user));
    assert!(!listed_ids.contains(&ids[5]));
    assert!(added.iter().all(|id| listed_ids.contains(id)));
    let starred = listed.iter().find(|m| m.id == ids[7]).unwrap();
    assert!(starred.starred, "the full resync brought the new labels");
    for index in [0, 7, 151] {
        assert_eq!(
            list_all(&mut client, &user, &serial(index), 25).await.len(),
            1,
            "{} is indexed once",
            serial(index)
        );
    }

    // From here on the new history id works.
    world.add_generated(&user, 152, 1);
    let next = sync(&mut client, &user, false)
        .await
        .expect("the next sync");
    assert!(!next.full_sync);
    assert_eq!(next.messages_added_count, 1);
    assert_eq!(next.connection.unwrap().synced_message_count, 152);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_are_waited_out_and_the_sync_completes() {
    /// The `Retry-After` the peer answers with, in seconds.
    const RETRY_AFTER: u64 = 2;
    let world = GmailWorld::start(|_| {}).await;
    let user = world.sign_in_as("ada").await;
    world.add_generated(&user, 0, 40);
    let mut client = world.gmail_client().await;

    // 429 rateLimitExceeded on two messages.get calls.
    world.gmail.inject(
        FaultRule::next(
            2,
            Fault::error_with_retry_after(ErrorBody::TooManyRequests, RETRY_AFTER.to_string()),
        )
        .for_operation(Operation::GetMessage),
    );
    let started = Instant::now();
    let first = sync(&mut client, &user, false)
        .await
        .expect("the sync completes after the 429s");
    let took = started.elapsed();
    assert_eq!(first.messages_added_count, 40);
    assert!(
        took >= Duration::from_secs(RETRY_AFTER),
        "Retry-After was waited: the sync took {took:?}"
    );
    // Each refused call was made again, once.
    assert_eq!(world.gmail.calls(&user.sub, Operation::GetMessage), 42);
    assert_eq!(
        unique_ids(&list_all(&mut client, &user, "", 100).await).len(),
        40
    );

    // 403 userRateLimitExceeded on history.list and messages.get.
    world.add_generated(&user, 40, 3);
    world.gmail.reset_counters();
    world.gmail.inject(
        FaultRule::next(
            1,
            Fault::error_with_retry_after(ErrorBody::UserRateLimit, RETRY_AFTER.to_string()),
        )
        .for_operation(Operation::ListHistory),
    );
    world.gmail.inject(
        FaultRule::next(
            1,
            Fault::error_with_retry_after(ErrorBody::UserRateLimit, RETRY_AFTER.to_string()),
        )
        .for_operation(Operation::GetMessage),
    );
    let started = Instant::now();
    let second = sync(&mut client, &user, false)
        .await
        .expect("the sync completes after the 403s");
    let took = started.elapsed();
    assert!(!second.full_sync);
    assert_eq!(second.messages_added_count, 3);
    assert!(
        took >= Duration::from_secs(2 * RETRY_AFTER),
        "both Retry-Afters were waited, one after the other: the sync took {took:?}"
    );
    assert_eq!(world.gmail.calls(&user.sub, Operation::GetMessage), 4);
    let state = connection(&mut client, &user).await;
    assert_eq!(state.synced_message_count, 43);
    assert!(state.last_sync_error.is_none());
    assert_eq!(
        state.history_id,
        world.gmail.history_id(&user.sub).to_string()
    );
    if test_log() {
        eprintln!("gmail sync: two 403 rate-limit answers waited out, sync took {took:?}");
    }
}
