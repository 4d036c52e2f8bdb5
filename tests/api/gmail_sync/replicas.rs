//! Background sync on three `assistd serve` replicas sharing one PostgreSQL database: each
//! connected mailbox is synced once per interval by whichever replica takes its lease, never
//! by two at once, and the lease of a replica killed mid-sync is taken over.
//!
//! PostgreSQL only: it runs when `ASSISTD_TEST_DATABASE_URL` is set (several processes on one
//! SQLite file are not a deployment assistd supports).

use std::time::{Duration, Instant, SystemTime};

use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd_testkit::gmail::{Fault, FaultRule, Operation};
use sea_orm::{ConnectionTrait as _, Statement};

use crate::gmail_sync::setup::{
    GmailUser, GmailWorld, PATIENCE, connection, on_postgres, sync, test_log, wait_until,
};

/// `gmail.sync_interval` of the replicas.
const INTERVAL: Duration = Duration::from_secs(2);
/// Syncs each user must have had in the observed window.
const SYNCS: usize = 4;
/// How long history.list stalls while the first replica syncs: it is killed meanwhile.
const KILLED_STALL: Duration = Duration::from_secs(4);
/// How long every history.list takes afterwards, so two syncs of one mailbox at once would
/// overlap at the peer.
const STALL: Duration = Duration::from_millis(300);

/// The lease owner recorded for `user`, if a lease is held.
async fn lease_owner(store: &assistd_store::Store, user: &GmailUser) -> Option<String> {
    let db = store.connection();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT sync_lease_owner FROM gmail_connections WHERE user_id = $1",
            [user.id.as_uuid().into()],
        ))
        .await
        .unwrap()
        .expect("the user's connection row");
    row.try_get_by_index::<Option<String>>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_sync_each_mailbox_once_per_interval_never_at_once_and_take_over_a_killed_ones_lease()
 {
    if !on_postgres() {
        eprintln!(
            "skipped: a PostgreSQL-only test (three server processes on one database); set \
             ASSISTD_TEST_DATABASE_URL to run it"
        );
        return;
    }
    let mut world = GmailWorld::start(|config| {
        config.gmail.quota_units_per_second = 5_000;
        // The first syncs below schedule the next one an interval later.
        config.gmail.sync_interval = INTERVAL;
    })
    .await;
    world.gmail.set_quota(5_000);
    let mut users = Vec::new();
    for name in ["ada", "grace", "alan"] {
        let user = world.sign_in_as(name).await;
        world.add_generated(&user, 0, 5);
        users.push(user);
    }
    let mut client = world.gmail_client().await;
    for user in &users {
        let first = sync(&mut client, user, false)
            .await
            .expect("the first sync");
        assert_eq!(first.messages_added_count, 5);
    }
    world.app.stop().await.expect("the set-up server stops");
    let store = assistd_store::Store::connect(&world.app.config.database_settings())
        .await
        .expect("open the database");
    let interval = format!("{}ms", INTERVAL.as_millis());
    let envs = [
        ("ASSISTD_GMAIL__BACKGROUND_SYNC", "true"),
        ("ASSISTD_GMAIL__SYNC_INTERVAL", interval.as_str()),
        ("ASSISTD_GMAIL__SYNC_POLL_INTERVAL", "100ms"),
        ("ASSISTD_GMAIL__SYNC_LEASE", "3s"),
        ("ASSISTD_GMAIL__QUOTA_UNITS_PER_SECOND", "5000"),
        ("ASSISTD_GMAIL__REQUEST_TIMEOUT", "1m"),
    ];

    // One replica alone first, its syncs held at history.list: it is killed holding leases.
    world.gmail.inject(
        FaultRule::always(Fault::Stall(KILLED_STALL)).for_operation(Operation::ListHistory),
    );
    world.gmail.reset_counters();
    let mut killed = world.serve(&envs, None).await;
    let deadline = Instant::now() + PATIENCE;
    let held = loop {
        let mut held = Vec::new();
        for user in &users {
            if world.gmail.calls(&user.sub, Operation::ListHistory) > 0
                && let Some(owner) = lease_owner(&store, user).await
            {
                held.push((user.clone(), owner));
            }
        }
        if !held.is_empty() {
            break held;
        }
        assert!(Instant::now() < deadline, "the first replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    killed.stop("KILL").await;
    let killed_at = SystemTime::now();
    let killed_instant = Instant::now();

    // Two more replicas; from now on history.list answers after a short stall.
    world.gmail.clear_faults();
    world
        .gmail
        .inject(FaultRule::always(Fault::Stall(STALL)).for_operation(Operation::ListHistory));
    let mut others = vec![
        world.serve(&envs, None).await,
        world.serve(&envs, None).await,
    ];
    // The killed replica's requests the peer still holds end before counting starts.
    let ghosts_end = killed_instant + KILLED_STALL + Duration::from_millis(100);
    tokio::time::sleep(ghosts_end.saturating_duration_since(Instant::now())).await;
    world.gmail.reset_counters();
    let window = Instant::now();
    // A new message for everyone: each mailbox must pick it up in the background.
    for user in &users {
        world.add_generated(user, 5, 1);
    }
    wait_until("every mailbox was synced several times", || async {
        users
            .iter()
            .all(|user| world.gmail.calls(&user.sub, Operation::ListHistory) >= SYNCS)
    })
    .await;
    let observed = window.elapsed();

    let mut client = GmailServiceClient::new(others[0].channel().await);
    // At most one sync per interval (jittered by up to 10%), plus one begun at the window's
    // start; three replicas each syncing on their own would make about three times as many.
    let most = (observed.as_secs_f64() / (INTERVAL.as_secs_f64() * 0.9)).floor() as usize + 1;
    for user in &users {
        let syncs = world.gmail.calls(&user.sub, Operation::ListHistory);
        assert!(
            syncs <= most,
            "{}: {syncs} syncs in {observed:?}, more than one per {INTERVAL:?}",
            user.email
        );
        assert_eq!(
            world.gmail.max_concurrent_requests(&user.sub),
            1,
            "{}: two syncs at once",
            user.email
        );
        let state = connection(&mut client, user).await;
        assert_eq!(state.synced_message_count, 6, "{}", user.email);
        assert!(state.last_sync_error.is_none(), "{}", user.email);
        if test_log() {
            eprintln!(
                "gmail replicas: {}: {syncs} syncs in {observed:?} (at most {most} allowed)",
                user.email
            );
        }
    }
    // The mailboxes the killed replica was syncing were taken over once its lease lapsed.
    for (user, owner) in &held {
        let state = connection(&mut client, user).await;
        let last = state.last_sync_time.expect("a sync finished since");
        let last = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(last.seconds).unwrap(),
                u32::try_from(last.nanos).unwrap(),
            );
        assert!(
            last > killed_at,
            "{}: no sync finished after its replica was killed",
            user.email
        );
        assert_ne!(
            lease_owner(&store, user).await.as_deref(),
            Some(owner.as_str()),
            "{}: the killed replica's lease is no longer recorded",
            user.email
        );
    }
    for other in &mut others {
        assert_eq!(other.stop("TERM").await.code(), Some(0));
    }
    store.close().await;
}
