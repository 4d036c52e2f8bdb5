//! Database outages on PostgreSQL: two replicas on a PostgreSQL server of the test's own,
//! under a load of sends and preference updates from several users, while that server is
//! stopped (fast shutdown) and later crashes (immediate shutdown), each time with queries cut
//! off mid-flight. Calls fail fast with UNAVAILABLE, health follows the database, and
//! everything recovers without restarting assistd: no acknowledged message is lost, no send
//! stays locked, and both replicas serve the preferences the database holds.
//!
//! PostgreSQL only: it runs when `ASSISTD_TEST_DATABASE_URL` is set, and starts a server of
//! its own (`initdb` in a temporary directory, a free port), so nothing else is disturbed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::preferences::v1 as prefs;
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd_domain::UserId;
use futures::StreamExt as _;
use sea_orm::{ConnectionTrait as _, DatabaseBackend, Statement, TransactionTrait as _};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, spawn_app_with};

mod postgres;
use postgres::OwnPostgres;

/// `database.acquire_timeout` of both replicas.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// `chat.exchange_lease` of both replicas.
const LEASE: Duration = Duration::from_secs(3);
/// How long Gemini takes to answer during the load: sends spend most of their time in the
/// model call, so when the database stops some of them have an exchange open.
const MODEL_LATENCY: Duration = Duration::from_millis(500);
/// What a call may take beyond its model call and one acquire timeout. Less than a second
/// acquire timeout: a send that waited for the database twice exceeds it.
const MARGIN: Duration = Duration::from_millis(1_500);
/// A call still unanswered after this is hung.
const HANG: Duration = Duration::from_secs(30);
/// Longest wait for health to change, for the load to recover, for replicas to agree.
const SETTLE: Duration = Duration::from_secs(30);
/// Users sending and updating preferences at once.
const USERS: usize = 4;
/// Pause between one user's calls.
const PAUSE: Duration = Duration::from_millis(20);

/// How one call of the load ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed { code: tonic::Code, reason: String },
    Hung,
}

impl Outcome {
    fn of(status: &tonic::Status) -> Self {
        Self::Failed {
            code: status.code(),
            reason: status
                .get_error_details()
                .error_info()
                .map(|info| info.reason.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Send,
    Update,
}

/// One call of the load.
#[derive(Clone, Debug)]
struct Call {
    kind: Kind,
    user: usize,
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

impl Call {
    fn took(&self) -> Duration {
        self.ended - self.started
    }
}

/// One send of the load; `reply` is the id of the reply it was acknowledged with.
#[derive(Clone, Debug)]
struct Sent {
    user: usize,
    id: String,
    text: String,
    reply: Option<String>,
}

/// What the load did.
#[derive(Default)]
struct Log {
    calls: Vec<Call>,
    sends: Vec<Sent>,
    /// Per user: the version and theme of every acknowledged preferences update.
    acked_updates: HashMap<usize, Vec<(i64, i32)>>,
    /// Per user: how many preferences updates failed.
    failed_updates: HashMap<usize, usize>,
}

/// A user of the load: sends on one replica, updates preferences on the other.
#[derive(Clone)]
struct LoadUser {
    index: usize,
    id: UserId,
    token: String,
    session: String,
    chat: ChatServiceClient<Channel>,
    preferences: PreferencesServiceClient<Channel>,
}

impl LoadUser {
    async fn new(index: usize, sends_on: &TestApp, updates_on: &TestApp) -> Self {
        let id = sends_on.create_user().await;
        let token = sends_on.token_for(id);
        let channel = sends_on.channel().await;
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
            .expect("store the key");
        let mut chat = ChatServiceClient::new(channel);
        let session = chat
            .create_session(authed(pb::CreateSessionRequest::default(), &token))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
            .id;
        Self {
            index,
            id,
            token,
            session,
            chat,
            preferences: updates_on.preferences().await,
        }
    }

    /// One send, unary or streamed; the id of its reply.
    async fn send(
        &mut self,
        id: &str,
        text: &str,
        streaming: bool,
    ) -> Result<String, tonic::Status> {
        if !streaming {
            let response = self
                .chat
                .send_message(authed(
                    pb::SendMessageRequest {
                        session_id: self.session.clone(),
                        client_message_id: id.into(),
                        text: text.into(),
                    },
                    &self.token,
                ))
                .await?
                .into_inner();
            return Ok(response.reply.expect("an acknowledged send has a reply").id);
        }
        let mut stream = self
            .chat
            .stream_message(authed(
                pb::StreamMessageRequest {
                    session_id: self.session.clone(),
                    client_message_id: id.into(),
                    text: text.into(),
                },
                &self.token,
            ))
            .await?
            .into_inner();
        while let Some(item) = stream.next().await {
            if let Some(pb::stream_message_response::Event::Completed(completed)) = item?.event {
                return Ok(completed.reply_message_id);
            }
        }
        Err(tonic::Status::internal(
            "the stream ended without a status or a completed event",
        ))
    }

    /// Sets the theme; the version it was stored as.
    async fn update(&mut self, theme: prefs::Theme) -> Result<i64, tonic::Status> {
        let stored = self
            .preferences
            .update_preferences(authed(
                prefs::UpdatePreferencesRequest {
                    preferences: Some(prefs::Preferences {
                        theme: theme.into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["theme".into()],
                    }),
                    etag: String::new(),
                },
                &self.token,
            ))
            .await?
            .into_inner()
            .preferences
            .unwrap();
        Ok(assistd_domain::preferences::parse_etag(&stored.etag).unwrap())
    }

    /// Every message of the user's session, in order.
    async fn messages(&mut self) -> Vec<pb::Message> {
        let mut messages = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .chat
                .list_messages(authed(
                    pb::ListMessagesRequest {
                        session_id: self.session.clone(),
                        page_size: 100,
                        page_token: page_token.clone(),
                        direction: pb::ListMessagesDirection::Forward.into(),
                        ..Default::default()
                    },
                    &self.token,
                ))
                .await
                .unwrap()
                .into_inner();
            messages.extend(page.messages);
            if page.next_page_token.is_empty() {
                return messages;
            }
            page_token = page.next_page_token;
        }
    }
}

/// Sends, alternately unary and streamed, with a fresh client message id each, until
/// `running` turns false.
async fn send_loop(mut user: LoadUser, log: Arc<Mutex<Log>>, running: Arc<AtomicBool>) {
    let mut n = 0;
    while running.load(Ordering::SeqCst) {
        n += 1;
        let id = format!("load-{}-{n}", user.index);
        let text = format!("message {n} from user {}", user.index);
        let started = Instant::now();
        let result = tokio::time::timeout(HANG, user.send(&id, &text, n % 2 == 0)).await;
        let ended = Instant::now();
        let (outcome, reply) = match result {
            Err(_) => (Outcome::Hung, None),
            Ok(Ok(reply)) => (Outcome::Ok, Some(reply)),
            Ok(Err(status)) => (Outcome::of(&status), None),
        };
        {
            let mut log = log.lock().unwrap();
            log.calls.push(Call {
                kind: Kind::Send,
                user: user.index,
                started,
                ended,
                outcome,
            });
            log.sends.push(Sent {
                user: user.index,
                id,
                text,
                reply,
            });
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Updates the theme, alternately light and dark, until `running` turns false.
async fn update_loop(mut user: LoadUser, log: Arc<Mutex<Log>>, running: Arc<AtomicBool>) {
    let mut n = 0;
    while running.load(Ordering::SeqCst) {
        n += 1;
        let theme = if n % 2 == 0 {
            prefs::Theme::Dark
        } else {
            prefs::Theme::Light
        };
        let started = Instant::now();
        let result = tokio::time::timeout(HANG, user.update(theme)).await;
        let ended = Instant::now();
        let outcome = match &result {
            Err(_) => Outcome::Hung,
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(status)) => Outcome::of(status),
        };
        {
            let mut log = log.lock().unwrap();
            match result {
                Ok(Ok(version)) => log
                    .acked_updates
                    .entry(user.index)
                    .or_default()
                    .push((version, theme.into())),
                _ => *log.failed_updates.entry(user.index).or_default() += 1,
            }
            log.calls.push(Call {
                kind: Kind::Update,
                user: user.index,
                started,
                ended,
                outcome,
            });
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Waits until every replica's overall health is `want`; how long that took.
async fn wait_for_health(replicas: &mut [HealthClient<Channel>], want: ServingStatus) -> Duration {
    let began = Instant::now();
    loop {
        let mut all = true;
        for replica in replicas.iter_mut() {
            let status = replica
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("the health service answers whatever the database does")
                .into_inner()
                .status();
            all &= status == want;
        }
        if all {
            return began.elapsed();
        }
        assert!(began.elapsed() < SETTLE, "health did not turn {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every user had a send acknowledged that began after `since`.
async fn wait_for_recovery(log: &Mutex<Log>, since: Instant) {
    let began = Instant::now();
    loop {
        let recovered: HashSet<usize> = log
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|call| {
                call.kind == Kind::Send && call.started >= since && call.outcome == Outcome::Ok
            })
            .map(|call| call.user)
            .collect();
        if recovered.len() == USERS {
            return;
        }
        assert!(began.elapsed() < SETTLE, "the load did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Locks the preferences table, which every send (it reads the preferences) and every update
/// needs, until at least one call waits for the lock: stopping the server then cuts that
/// call's query off mid-flight. The lock goes with the server.
async fn hold_calls_in_flight(
    url: &str,
) -> (sea_orm::DatabaseConnection, sea_orm::DatabaseTransaction) {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE preferences IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let began = Instant::now();
    loop {
        let waiting: i64 = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT count(*) AS waiting FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "waiting")
            .unwrap();
        if waiting > 0 {
            return (db, lock);
        }
        assert!(
            began.elapsed() < SETTLE,
            "no call came to wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One outage as the test saw it.
struct Outage {
    name: &'static str,
    /// `pg_ctl stop` returned: the server is gone.
    down: Instant,
    /// `pg_ctl start` was invoked.
    restarting: Instant,
    not_serving_after: Duration,
    serving_after: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_ride_out_a_stopped_and_a_crashed_postgresql() {
    if std::env::var_os("ASSISTD_TEST_DATABASE_URL").is_none() {
        eprintln!(
            "skipped: a PostgreSQL-only test; set ASSISTD_TEST_DATABASE_URL (the machine then has PostgreSQL's binaries) to run it"
        );
        return;
    }
    let postgres = OwnPostgres::start_new().await;
    let url = postgres.url();
    let app = spawn_app_with(|config| {
        config.database.url.clone_from(&url);
        config.database.acquire_timeout = ACQUIRE_TIMEOUT;
        config.chat.exchange_lease = LEASE;
    })
    .await;
    let replica = app.replica().await;
    let replicas = [&app, &replica];
    app.gemini.allow_key(GOOD_KEY);
    let mut users = Vec::new();
    for index in 0..USERS {
        users.push(LoadUser::new(index, replicas[index % 2], replicas[(index + 1) % 2]).await);
    }
    let mut health = vec![
        HealthClient::new(app.channel().await),
        HealthClient::new(replica.channel().await),
    ];
    wait_for_health(&mut health, ServingStatus::Serving).await;

    app.gemini.set_latency(MODEL_LATENCY);
    let log = Arc::new(Mutex::new(Log::default()));
    let running = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for user in &users {
        load.push(tokio::spawn(send_loop(
            user.clone(),
            log.clone(),
            running.clone(),
        )));
        load.push(tokio::spawn(update_loop(
            user.clone(),
            log.clone(),
            running.clone(),
        )));
    }
    let began = Instant::now();
    wait_for_recovery(&log, began).await;

    let mut outages = Vec::new();
    for (name, mode) in [("fast stop", "fast"), ("crash", "immediate")] {
        let (lock_connection, lock) = hold_calls_in_flight(&url).await;
        postgres.stop(mode).await;
        let down = Instant::now();
        let _ = lock.rollback().await;
        let _ = lock_connection.close().await;
        let not_serving_after = wait_for_health(&mut health, ServingStatus::NotServing).await;
        let restarting = Instant::now();
        postgres.start().await;
        wait_for_health(&mut health, ServingStatus::Serving).await;
        let serving_after = restarting.elapsed();
        wait_for_recovery(&log, restarting).await;
        outages.push(Outage {
            name,
            down,
            restarting,
            not_serving_after,
            serving_after,
        });
    }
    running.store(false, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();

    // Every call ended, fast, and every failure said UNAVAILABLE for the database.
    for call in &log.calls {
        assert_ne!(call.outcome, Outcome::Hung, "{call:?}");
        if let Outcome::Failed { code, reason } = &call.outcome {
            assert_eq!(*code, tonic::Code::Unavailable, "{call:?}");
            assert_eq!(reason, "DEPENDENCY_UNAVAILABLE", "{call:?}");
        }
        let bound = match call.kind {
            Kind::Send => MODEL_LATENCY + ACQUIRE_TIMEOUT + MARGIN,
            Kind::Update => ACQUIRE_TIMEOUT + MARGIN,
        };
        assert!(call.took() <= bound, "{call:?} took {:?}", call.took());
    }
    for outage in &outages {
        let inside: Vec<&Call> = log
            .calls
            .iter()
            .filter(|call| call.started >= outage.down && call.ended <= outage.restarting)
            .collect();
        assert!(
            !inside.is_empty(),
            "no call fell within the {}",
            outage.name
        );
        assert!(
            inside.iter().all(|call| call.outcome != Outcome::Ok),
            "a call succeeded with the database down"
        );
    }

    // Sends that failed after their USER message was committed: their exchange was open when
    // the database went away.
    let mut committed_ids = HashMap::new();
    for user in &mut users {
        for message in user.messages().await {
            if !message.client_message_id.is_empty() {
                *committed_ids
                    .entry(message.client_message_id.clone())
                    .or_insert(0) += 1;
            }
        }
    }
    let failed: Vec<&Sent> = log
        .sends
        .iter()
        .filter(|sent| sent.reply.is_none())
        .collect();
    let cut_off_open = failed
        .iter()
        .filter(|sent| committed_ids.contains_key(&sent.id))
        .count();
    assert!(
        cut_off_open > 0,
        "no send lost the database with its exchange open"
    );

    // Once the leases of exchanges whose failure could not be recorded have lapsed, every
    // failed send goes through when sent again.
    tokio::time::sleep(LEASE).await;
    app.gemini.set_latency(Duration::ZERO);
    let mut resent_replies = Vec::new();
    for sent in &failed {
        let user = &mut users[sent.user];
        let reply = user
            .send(&sent.id, &sent.text, false)
            .await
            .unwrap_or_else(|status| panic!("resending {} failed: {status:?}", sent.id));
        resent_replies.push(reply);
    }

    // Nothing acknowledged was lost; every send holds exactly one USER message.
    let mut stored = HashSet::new();
    let mut user_messages = HashMap::new();
    for user in &mut users {
        for message in user.messages().await {
            stored.insert(message.id.clone());
            if !message.client_message_id.is_empty() {
                *user_messages.entry(message.client_message_id).or_insert(0) += 1;
            }
        }
    }
    let acked: Vec<&Sent> = log
        .sends
        .iter()
        .filter(|sent| sent.reply.is_some())
        .collect();
    for sent in &acked {
        assert!(
            stored.contains(sent.reply.as_ref().unwrap()),
            "the acknowledged reply to {} is lost",
            sent.id
        );
    }
    for reply in &resent_replies {
        assert!(stored.contains(reply), "a resent send's reply is missing");
    }
    for sent in &log.sends {
        assert_eq!(user_messages.get(&sent.id), Some(&1), "{}", sent.id);
    }

    // Preferences: no acknowledged update lost, and both replicas serve what the database
    // holds (their caches were re-read once they listened again).
    for user in &users {
        let stored = app.store.preferences().get(user.id).await.unwrap();
        let acked = log
            .acked_updates
            .get(&user.index)
            .cloned()
            .unwrap_or_default();
        let failed = log.failed_updates.get(&user.index).copied().unwrap_or(0);
        let versions: HashSet<i64> = acked.iter().map(|(version, _)| *version).collect();
        assert_eq!(
            versions.len(),
            acked.len(),
            "two updates acknowledged as one version"
        );
        assert!(versions.iter().all(|version| *version <= stored.version));
        // Beyond the acknowledged updates, only failed ones can have counted.
        let surplus = stored.version - i64::try_from(acked.len()).unwrap();
        assert!(
            (0..=i64::try_from(failed).unwrap()).contains(&surplus),
            "version {} after {} acknowledged and {failed} failed updates",
            stored.version,
            acked.len()
        );
        if let Some((_, theme)) = acked.iter().find(|(version, _)| *version == stored.version) {
            assert_eq!(
                prefs::Theme::try_from(*theme).unwrap().as_str_name(),
                format!("THEME_{}", stored.theme.as_str().to_uppercase())
            );
        }
        for replica in replicas {
            let mut client = replica.preferences().await;
            let began = Instant::now();
            loop {
                let served = client
                    .get_preferences(authed(prefs::GetPreferencesRequest::default(), &user.token))
                    .await
                    .unwrap()
                    .into_inner()
                    .preferences
                    .unwrap();
                let version = assistd_domain::preferences::parse_etag(&served.etag).unwrap();
                if version == stored.version {
                    break;
                }
                assert!(
                    began.elapsed() < SETTLE,
                    "a replica serves version {version}, the database holds {}",
                    stored.version
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let slowest = log.calls.iter().max_by_key(|call| call.took()).unwrap();
    for outage in &outages {
        let first_ok = log
            .calls
            .iter()
            .filter(|call| call.outcome == Outcome::Ok && call.ended > outage.restarting)
            .map(|call| call.ended - outage.restarting)
            .min()
            .unwrap();
        eprintln!(
            "{}: health NOT_SERVING {:?} after the stop, database down {:?}; from its start: first successful call {:?}, health SERVING {:?}",
            outage.name,
            outage.not_serving_after,
            outage.restarting - outage.down,
            first_ok,
            outage.serving_after,
        );
    }
    eprintln!(
        "slowest call: {:?} {:?} ({:?}); sends: {} acknowledged, {} failed ({} with their exchange open), {} resent; preference updates: {} acknowledged, {} failed",
        slowest.kind,
        slowest.took(),
        slowest.outcome,
        acked.len(),
        failed.len(),
        cut_off_open,
        resent_replies.len(),
        log.acked_updates.values().map(Vec::len).sum::<usize>(),
        log.failed_updates.values().sum::<usize>(),
    );
}
