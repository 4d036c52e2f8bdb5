//! A full sync killed with SIGKILL half-way, in a real `assistd serve` process: the next sync,
//! by a restarted process on the same database, completes it without duplicates and ends at
//! the mailbox's history id.

use std::time::{Duration, Instant};

use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd_testkit::gmail::{Fault, FaultRule, Operation};

use crate::gmail_sync::setup::{
    GmailWorld, count, list_all, sync, test_log, unique_ids, wait_until,
};
use crate::helpers::reason;

/// Messages in the mailbox: more than one messages.list page (at most 500).
const MESSAGES: usize = 1_000;
/// messages.get calls answered before the peer stalls the rest: past the first page.
const ANSWERED: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_half_way_is_completed_by_the_next_one_without_duplicates() {
    let mut world = GmailWorld::start(|config| config.gmail.quota_units_per_second = 10_000).await;
    world.gmail.set_quota(10_000);
    let user = world.sign_in_as("ada").await;
    world.add_generated(&user, 0, MESSAGES);
    world.app.stop().await.expect("the set-up server stops");
    let envs = [
        ("ASSISTD_GMAIL__QUOTA_UNITS_PER_SECOND", "10000"),
        // The lease the killed process leaves behind lapses soon.
        ("ASSISTD_GMAIL__SYNC_LEASE", "3s"),
        // A stalled messages.get must hold the sync, not fail it.
        ("ASSISTD_GMAIL__REQUEST_TIMEOUT", "10m"),
    ];

    // The first half of the messages is answered, then every messages.get stalls.
    world.gmail.inject(
        FaultRule::next(ANSWERED, Fault::Stall(Duration::ZERO))
            .for_operation(Operation::GetMessage),
    );
    world.gmail.inject(
        FaultRule::always(Fault::Stall(Duration::from_secs(3_600)))
            .for_operation(Operation::GetMessage),
    );
    let mut killed = world.serve(&envs, None).await;
    let mut client = GmailServiceClient::new(killed.channel().await);
    let running = tokio::spawn({
        let user = user.clone();
        async move { sync(&mut client, &user, false).await }
    });
    // The set-up server closed its pool; the test reads the database through one of its own.
    let store = &assistd_store::Store::connect(&world.app.config.database_settings())
        .await
        .expect("open the database");
    let user_id = user.id;
    let stored = || async {
        count(
            store,
            "SELECT COUNT(*) FROM gmail_messages WHERE user_id = ?",
            user_id,
        )
        .await
    };
    wait_until("the sync fetched half the mailbox and stalls", || async {
        world.gmail.calls(&user.sub, Operation::GetMessage) > ANSWERED
    })
    .await;
    let before_kill = stored().await;
    let exit = killed.stop("KILL").await;
    assert!(!exit.success());
    assert!(
        running.await.unwrap().is_err(),
        "the killed server answers nothing"
    );
    assert!(
        before_kill < MESSAGES as i64,
        "the sync was half-way: {before_kill} of {MESSAGES} messages stored"
    );

    // A new process on the same database finishes the job.
    world.gmail.clear_faults();
    world.gmail.reset_counters();
    let mut restarted = world.serve(&envs, None).await;
    let mut client = GmailServiceClient::new(restarted.channel().await);
    let deadline = Instant::now() + crate::gmail_sync::setup::PATIENCE;
    let mut refused = 0;
    let done = loop {
        match sync(&mut client, &user, false).await {
            Ok(done) => break done,
            // The killed process's lease has not lapsed yet.
            Err(status) if reason(&status) == "SYNC_IN_PROGRESS" => {
                assert_eq!(status.code(), tonic::Code::Aborted);
                assert!(Instant::now() < deadline, "the lease never lapsed");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("the next sync failed: {status:?}"),
        }
    };
    assert!(done.full_sync, "the interrupted full sync is completed");
    let state = done.connection.unwrap();
    assert_eq!(state.synced_message_count, MESSAGES as i64);
    assert_eq!(
        state.history_id,
        world.gmail.history_id(&user.sub).to_string(),
        "the history id is the mailbox's"
    );
    assert_eq!(stored().await, MESSAGES as i64);
    let listed = list_all(&mut client, &user, "", 100).await;
    assert_eq!(unique_ids(&listed), world.peer_ids(&user));
    // What the killed sync stored was kept: not every message was fetched again.
    let fetched_again = world.gmail.calls(&user.sub, Operation::GetMessage);
    assert!(
        fetched_again < MESSAGES,
        "the next sync resumed: {fetched_again} messages.get calls for {MESSAGES} messages"
    );
    if test_log() {
        eprintln!(
            "gmail sync: killed with {before_kill} of {MESSAGES} messages stored; the next sync \
             fetched {fetched_again} (after {refused} SYNC_IN_PROGRESS answers)"
        );
    }
    // And the one after is incremental.
    let next = sync(&mut client, &user, false)
        .await
        .expect("the next sync");
    assert!(!next.full_sync);
    assert_eq!(next.messages_added_count, 0);
    restarted.stop("TERM").await;
}
