//! The chat feed: a user's chat events delivered live to every watcher of that user, on any
//! replica, and resumable from a cursor.
//!
//! - **Committed events** (sessions created, updated or deleted, messages committed, exchanges
//!   finished) are rows of `chat_events`, written in the transaction of their change and
//!   numbered per user (`seq`). A watcher that reconnects with the number of the last event it
//!   saw gets every later one from the database, then live ones; none is missed or repeated.
//!   Events keep ids only: a replayed event carries the session or message as it is now (a
//!   session renamed twice replays two updates with the latest title), and the events of
//!   objects deleted since are left out.
//! - **Reply deltas** (the text of a reply being written) are not stored. A watcher gets those
//!   produced while it watches; after a reconnect the committed MODEL message covers the text
//!   it missed.
//!
//! Delivery. Within a process a hub fans events out to the watchers of each user through a
//! bounded broadcast channel ([`WATCH_BUFFER`] items per user). Senders never wait: a watcher
//! that falls more than that behind is dropped (ABORTED, `WATCH_TOO_SLOW`) and resumes from
//! its cursor. On SQLite one process owns the database and the repository publishes into the
//! hub after each commit. On PostgreSQL every change's transaction sends `NOTIFY assistd_chat`
//! with the user and the event numbers (a few dozen bytes, whatever the content); each
//! replica listens, reads the events of users watched there from the database once, and
//! publishes them into its hub. Deltas travel as NOTIFY payloads from a batching task, split
//! into pieces of at most [`DELTA_PIECE_CHARS`] characters to stay under PostgreSQL's 8,000-byte
//! payload limit; when more than [`DELTA_QUEUE`] pieces wait to be sent, further ones are
//! dropped (watchers still get the committed message). After the listening connection is
//! lost, the listener listens again and then tells every watcher to re-read from its cursor.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assistd_domain::chat::{ChatMessage, ChatSession, MessageId, SessionId};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::{broadcast, mpsc, watch};

use crate::{Backend, Store};

/// The channel on which changes and deltas are announced to every replica.
pub(crate) const CHAT_CHANNEL: &str = "assistd_chat";

/// Items a watcher may fall behind (events and deltas) before it is dropped as too slow.
pub const WATCH_BUFFER: usize = 256;

/// Delta pieces waiting to be sent by NOTIFY (PostgreSQL) before further ones are dropped.
pub const DELTA_QUEUE: usize = 4_096;

/// Characters per NOTIFY piece of a delta: at most 4,800 bytes of UTF-8, well under the
/// 8,000-byte payload limit with the ids in front.
pub const DELTA_PIECE_CHARS: usize = 1_200;

/// Pieces sent per NOTIFY round trip.
const NOTIFY_BATCH: usize = 32;

/// How long committed events are kept for replay.
pub const EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often events older than [`EVENT_RETENTION`] are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Events read from the database per round trip while catching up.
const REPLAY_PAGE: u64 = 200;

/// A change in a user's chat.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatChange {
    /// A session was created.
    SessionCreated(ChatSession),
    /// A session's fields changed (by the user, or a generated title).
    SessionUpdated(ChatSession),
    /// A session was deleted with its messages.
    SessionDeleted(SessionId),
    /// A message was committed (boxed: a message is several times the size of the rest).
    MessageCommitted(Box<ChatMessage>),
    /// A send ended: its reply (if any) is committed, or it failed.
    ExchangeFinished {
        /// Its session.
        session: SessionId,
        /// Its USER message.
        exchange: MessageId,
        /// Whether it failed (the error is recorded on its last message).
        failed: bool,
    },
}

/// A committed change with its number in the user's feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    /// The event's number, per user, from 1 without gaps.
    pub seq: i64,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// What changed.
    pub change: ChatChange,
}

/// A piece of the text of a reply being written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyDelta {
    /// The session of the send.
    pub session: SessionId,
    /// The send's USER message.
    pub exchange: MessageId,
    /// Position of the delta in the exchange, from 0. The pieces of a delta split for
    /// transport share it.
    pub index: u32,
    /// Text to append.
    pub text: String,
}

/// What a watcher receives next.
#[derive(Clone, Debug)]
pub enum WatchItem {
    /// A committed change.
    Event(Arc<FeedEvent>),
    /// Reply text in progress.
    Delta(Arc<ReplyDelta>),
    /// Sent once, first or right after the replay: what was committed after the cursor has
    /// been delivered and the watch is live.
    Live,
}

/// What the hub carries to watchers.
#[derive(Clone, Debug)]
enum HubItem {
    Event(Arc<FeedEvent>),
    Delta(Arc<ReplyDelta>),
    /// Notifications may have been lost: re-read from the database.
    Resync,
}

/// The watchers of each user in this process.
#[derive(Debug, Default)]
pub(crate) struct ChatHub {
    channels: Mutex<HashMap<UserId, broadcast::Sender<HubItem>>>,
}

impl ChatHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, broadcast::Sender<HubItem>>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subscribe(&self, user: UserId) -> broadcast::Receiver<HubItem> {
        self.lock()
            .entry(user)
            .or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
            .subscribe()
    }

    fn publish(&self, user: UserId, item: HubItem) {
        if let Some(sender) = self.lock().get(&user) {
            // An error only means every watcher left since; nothing to deliver.
            let _ = sender.send(item);
        }
    }

    /// Hands committed events to the user's watchers here, if any.
    pub(crate) fn publish_events(&self, user: UserId, events: Vec<FeedEvent>) {
        let channels = self.lock();
        if let Some(sender) = channels.get(&user) {
            for event in events {
                let _ = sender.send(HubItem::Event(Arc::new(event)));
            }
        }
    }

    fn is_watched(&self, user: UserId) -> bool {
        self.lock().contains_key(&user)
    }

    fn resync_all(&self) {
        for sender in self.lock().values() {
            let _ = sender.send(HubItem::Resync);
        }
    }

    /// Forgets `user`'s channel when the departing receiver is its last.
    fn leave(&self, user: UserId) {
        let mut channels = self.lock();
        if channels
            .get(&user)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&user);
        }
    }
}

/// Delivers chat events and reply deltas to watchers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChatFeed {
    store: Store,
    /// Deltas waiting for NOTIFY (PostgreSQL only).
    deltas: Option<mpsc::Sender<String>>,
}

impl ChatFeed {
    /// Starts the feed's background work until `shutdown` completes: on PostgreSQL, the
    /// listener that brings other replicas' (and this one's) events and deltas, and the task
    /// that sends deltas; on both engines, pruning events older than [`EVENT_RETENTION`]
    /// every hour.
    ///
    /// # Errors
    /// The listening connection could not be opened.
    pub async fn start(
        store: &Store,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        tokio::spawn(prune_hourly(store.clone(), stopped.clone()));
        let deltas = if store.backend() == Backend::Postgres {
            let pool = store.connection().get_postgres_connection_pool();
            let mut listener = PgListener::connect_with(pool)
                .await
                .map_err(Error::internal)?;
            listener
                .listen(CHAT_CHANNEL)
                .await
                .map_err(Error::internal)?;
            tokio::spawn(listen(store.clone(), listener, stopped.clone()));
            let (sender, receiver) = mpsc::channel(DELTA_QUEUE);
            tokio::spawn(send_deltas(store.clone(), receiver, stopped));
            Some(sender)
        } else {
            None
        };
        Ok(Self {
            store: store.clone(),
            deltas,
        })
    }

    /// Announces reply text to the user's watchers on every replica. Never waits: on
    /// PostgreSQL, pieces that find the send queue full are dropped.
    pub fn publish_delta(&self, user: UserId, delta: ReplyDelta) {
        let Some(queue) = &self.deltas else {
            self.store
                .chat_hub()
                .publish(user, HubItem::Delta(Arc::new(delta)));
            return;
        };
        let chars: Vec<char> = delta.text.chars().collect();
        let pieces: Vec<String> = if chars.is_empty() {
            vec![String::new()]
        } else {
            chars
                .chunks(DELTA_PIECE_CHARS)
                .map(|piece| piece.iter().collect())
                .collect()
        };
        for (number, text) in pieces.into_iter().enumerate() {
            let payload = format!(
                "d|{user}|{}|{}|{}|{number}|{text}",
                delta.session, delta.exchange, delta.index
            );
            if queue.try_send(payload).is_err() {
                tracing::warn!(%user, "reply delta queue full; dropping a delta for watchers");
                return;
            }
        }
    }

    /// Starts watching the user's chat after the event numbered `after` (replaying what was
    /// committed since), or from now when `None`.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a cursor beyond the user's last event (not one of theirs);
    /// FAILED_PRECONDITION (`CURSOR_EXPIRED`) when events after it were pruned; the database
    /// failed.
    pub async fn watch(&self, user: UserId, after: Option<i64>) -> Result<ChatWatch> {
        let hub = Arc::clone(self.store.chat_hub());
        // Subscribe first: whatever commits from here on is either read below or delivered.
        let receiver = hub.subscribe(user);
        let mut watch = ChatWatch {
            store: self.store.clone(),
            hub,
            user,
            receiver,
            last: 0,
            backlog: std::collections::VecDeque::new(),
            catching_up: false,
            live: false,
        };
        let chat = self.store.chat();
        let head = chat.last_event_seq(user).await?;
        let Some(after) = after else {
            watch.last = head;
            return Ok(watch);
        };
        if after > head {
            return Err(Error::invalid_field(
                "cursor",
                "not a cursor of this account's chat feed; watch from now with an empty cursor",
            ));
        }
        if after < head && chat.first_event_after(user, after).await? != Some(after + 1) {
            return Err(Error::FailedPrecondition {
                reason: ErrorReason::CursorExpired,
                message: format!(
                    "events after this cursor were deleted (they are kept {} days); re-read sessions and messages, then watch from now",
                    EVENT_RETENTION.as_secs() / 86_400
                ),
            });
        }
        watch.last = after;
        watch.catching_up = after < head;
        Ok(watch)
    }
}

/// One watcher of one user's chat.
#[derive(Debug)]
pub struct ChatWatch {
    store: Store,
    hub: Arc<ChatHub>,
    user: UserId,
    receiver: broadcast::Receiver<HubItem>,
    /// Number of the last event delivered or passed over.
    last: i64,
    /// Events read from the database, not yet delivered.
    backlog: std::collections::VecDeque<FeedEvent>,
    /// Whether committed events may wait in the database.
    catching_up: bool,
    /// Whether [`WatchItem::Live`] was delivered.
    live: bool,
}

impl ChatWatch {
    /// The number of the last committed event delivered (or passed over); the cursor to
    /// resume after.
    #[must_use]
    pub fn last_seq(&self) -> i64 {
        self.last
    }

    /// The next event or delta; [`WatchItem::Live`] once the replay (if any) is done.
    ///
    /// # Errors
    /// ABORTED (`WATCH_TOO_SLOW`) when the watcher fell more than [`WATCH_BUFFER`] items
    /// behind; the database failed.
    pub async fn next(&mut self) -> Result<WatchItem> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.seq;
                return Ok(WatchItem::Event(Arc::new(event)));
            }
            if self.catching_up {
                let (events, scanned) = self
                    .store
                    .chat()
                    .events_after(self.user, self.last, REPLAY_PAGE)
                    .await?;
                match scanned {
                    Some(scanned) => {
                        if events.is_empty() {
                            self.last = scanned;
                        }
                        self.backlog.extend(events);
                    }
                    None => self.catching_up = false,
                }
                continue;
            }
            if !self.live {
                self.live = true;
                return Ok(WatchItem::Live);
            }
            match self.receiver.recv().await {
                Ok(HubItem::Event(event)) => {
                    if event.seq <= self.last {
                        continue;
                    }
                    if event.seq == self.last + 1 {
                        self.last = event.seq;
                        return Ok(WatchItem::Event(event));
                    }
                    // Announcements overtook each other: read the gap in order.
                    self.catching_up = true;
                }
                Ok(HubItem::Delta(delta)) => return Ok(WatchItem::Delta(delta)),
                Ok(HubItem::Resync) => self.catching_up = true,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Err(Error::Aborted {
                        reason: ErrorReason::WatchTooSlow,
                        message: format!(
                            "this watcher fell more than {WATCH_BUFFER} events behind and was dropped; watch again with the last cursor received"
                        ),
                    });
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Error::Unavailable {
                        reason: ErrorReason::DependencyUnavailable,
                        message: "the chat feed closed; watch again with the last cursor received"
                            .into(),
                        retry_after: Some(Duration::from_secs(1)),
                    });
                }
            }
        }
    }
}

impl Drop for ChatWatch {
    fn drop(&mut self) {
        self.hub.leave(self.user);
    }
}

/// Deletes events older than [`EVENT_RETENTION`] every [`PRUNE_EVERY`], the first time at
/// start.
async fn prune_hourly(store: Store, mut stopped: watch::Receiver<bool>) {
    loop {
        let cutoff = Utc::now() - EVENT_RETENTION;
        match store.prune_chat_events(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned old chat events"),
            Err(err) => tracing::warn!(error = %err, "pruning old chat events failed"),
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// Sends queued delta payloads by NOTIFY, up to [`NOTIFY_BATCH`] per round trip, in order.
async fn send_deltas(
    store: Store,
    mut queue: mpsc::Receiver<String>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(NOTIFY_BATCH);
    loop {
        let received = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            received = queue.recv_many(&mut batch, NOTIFY_BATCH) => received,
        };
        if received == 0 {
            return;
        }
        let calls: Vec<String> = (0..batch.len())
            .map(|i| format!("pg_notify($1, ${})", i + 2))
            .collect();
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(batch.len() + 1);
        values.push(CHAT_CHANNEL.into());
        values.extend(batch.drain(..).map(sea_orm::Value::from));
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT {}", calls.join(", ")),
            values,
        );
        if let Err(err) = store.connection().execute_raw(statement).await {
            tracing::warn!(error = %err, "sending reply deltas failed; watchers get the committed message");
        }
    }
}

/// Relays NOTIFYs on [`CHAT_CHANNEL`] to this process's watchers.
async fn listen(store: Store, mut listener: PgListener, mut stopped: watch::Receiver<bool>) {
    let hub = Arc::clone(store.chat_hub());
    loop {
        let received = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => relay(&store, &hub, notification.payload()).await,
            Ok(None) | Err(_) => {
                if let Err(err) = &received {
                    tracing::warn!(error = %err, "chat feed listener failed; listening again");
                }
                listen_again(&mut listener).await;
                hub.resync_all();
            }
        }
    }
}

/// Reconnects the listener (which LISTENs again), retrying every second.
async fn listen_again(listener: &mut PgListener) {
    use sea_orm::sqlx::Executor as _;
    while let Err(err) = (&mut *listener).execute("SELECT 1").await {
        tracing::warn!(error = %err, "listening for chat events failed; retrying in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Delivers one NOTIFY payload: `e|user|first|last` (committed events, read from the
/// database) or `d|user|session|exchange|index|piece|text` (a delta piece).
async fn relay(store: &Store, hub: &ChatHub, payload: &str) {
    let mut fields = payload.splitn(7, '|');
    let kind = fields.next();
    let Some(user) = fields.next().and_then(|user| user.parse::<UserId>().ok()) else {
        tracing::warn!("ignoring a malformed chat notification");
        return;
    };
    if !hub.is_watched(user) {
        return;
    }
    match kind {
        Some("e") => {
            let first = fields.next().and_then(|n| n.parse::<i64>().ok());
            let last = fields.next().and_then(|n| n.parse::<i64>().ok());
            let (Some(first), Some(last)) = (first, last) else {
                tracing::warn!("ignoring a malformed chat notification");
                return;
            };
            let count = u64::try_from(last - first + 1).unwrap_or(1);
            match store.chat().events_after(user, first - 1, count).await {
                Ok((events, _)) => hub.publish_events(user, events),
                Err(err) => {
                    // The watchers notice the gap at the next event and read it themselves.
                    tracing::warn!(%user, error = %err, "reading announced chat events failed");
                }
            }
        }
        Some("d") => {
            let session = fields.next().and_then(|id| id.parse::<SessionId>().ok());
            let exchange = fields.next().and_then(|id| id.parse::<MessageId>().ok());
            let index = fields.next().and_then(|n| n.parse::<u32>().ok());
            let _piece = fields.next();
            let (Some(session), Some(exchange), Some(index), Some(text)) =
                (session, exchange, index, fields.next())
            else {
                tracing::warn!("ignoring a malformed chat notification");
                return;
            };
            hub.publish(
                user,
                HubItem::Delta(Arc::new(ReplyDelta {
                    session,
                    exchange,
                    index,
                    text: text.to_owned(),
                })),
            );
        }
        _ => tracing::warn!("ignoring a malformed chat notification"),
    }
}
