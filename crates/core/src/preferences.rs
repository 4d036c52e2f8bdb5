//! Preferences: read, validated conditional update, and live watching across connections and
//! (on PostgreSQL) across replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assistd_domain::preferences::{Preferences, PreferencesUpdate};
use assistd_domain::{Result, UserId};
use assistd_store::{PreferencesChange, PreferencesRepository, Store};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many unread changes a slow watcher may fall behind before it re-reads the latest state.
const WATCH_BUFFER: usize = 16;

/// Longest time a cached read is served without asking the database again. Changes made
/// through any replica invalidate the cache at once (in memory, or by LISTEN/NOTIFY on
/// PostgreSQL); this bound only limits the damage of a notification that never arrives.
const READ_CACHE_TTL: Duration = Duration::from_secs(30);

/// Most users whose preferences are cached; the cache is emptied when it fills up.
const READ_CACHE_CAPACITY: usize = 100_000;

/// Recently read preferences, so the hot read path (every client start, every device) does not
/// go to the database. Entries only move forward in version, so a slow read that started
/// before a local update can never replace the update's result; and a read that started
/// before an invalidation (a change on another replica) is never stored, because every
/// invalidation advances `epoch` and reads are offered with the epoch they started in.
#[derive(Debug, Default)]
struct ReadCache {
    entries: Mutex<HashMap<UserId, (Preferences, Instant)>>,
    epoch: std::sync::atomic::AtomicU64,
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (Preferences, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, user: UserId) -> Option<Preferences> {
        let entries = self.lock();
        let (preferences, stored_at) = entries.get(&user)?;
        (stored_at.elapsed() < READ_CACHE_TTL).then(|| preferences.clone())
    }

    /// The invalidation epoch; pass it to [`ReadCache::offer_read`] with what was read.
    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stores what a database read that started in `epoch` returned, unless something was
    /// invalidated since.
    fn offer_read(&self, epoch: u64, user: UserId, preferences: &Preferences) {
        let entries = self.lock();
        // Checked under the lock that invalidations also take, so none can slip between.
        if self.epoch() == epoch {
            self.store(entries, user, preferences);
        }
    }

    /// Stores the result of a local write (newer than anything cached).
    fn offer(&self, user: UserId, preferences: &Preferences) {
        self.store(self.lock(), user, preferences);
    }

    fn store(
        &self,
        mut entries: std::sync::MutexGuard<'_, HashMap<UserId, (Preferences, Instant)>>,
        user: UserId,
        preferences: &Preferences,
    ) {
        if entries.len() >= READ_CACHE_CAPACITY {
            entries.clear();
        }
        let newer = entries
            .get(&user)
            .is_none_or(|(cached, _)| preferences.version >= cached.version);
        if newer {
            entries.insert(user, (preferences.clone(), Instant::now()));
        }
    }

    fn forget(&self, user: UserId) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.remove(&user);
    }

    fn clear(&self) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.clear();
    }
}

/// Reads, updates and watches users' preferences.
#[derive(Clone, Debug)]
pub struct PreferencesService {
    repository: PreferencesRepository,
    hub: Arc<Hub>,
    cache: Arc<ReadCache>,
}

/// Fan-out of new preferences to the watchers of each user in this process.
#[derive(Debug, Default)]
struct Hub {
    channels: Mutex<HashMap<UserId, broadcast::Sender<Arc<Preferences>>>>,
}

impl Hub {
    fn subscribe(&self, user: UserId) -> broadcast::Receiver<Arc<Preferences>> {
        let mut channels = self.channels.lock().expect("hub lock poisoned");
        channels
            .entry(user)
            .or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
            .subscribe()
    }

    fn publish(&self, user: UserId, preferences: Preferences) {
        let channels = self.channels.lock().expect("hub lock poisoned");
        if let Some(sender) = channels.get(&user) {
            // An error only means every watcher left since; nothing to deliver.
            let _ = sender.send(Arc::new(preferences));
        }
    }

    fn is_watched(&self, user: UserId) -> bool {
        self.channels
            .lock()
            .expect("hub lock poisoned")
            .contains_key(&user)
    }

    fn watched_users(&self) -> Vec<UserId> {
        self.channels
            .lock()
            .expect("hub lock poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Forgets `user`'s channel when the departing receiver is its last.
    fn leave(&self, user: UserId) {
        let mut channels = self.channels.lock().expect("hub lock poisoned");
        if channels
            .get(&user)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&user);
        }
    }
}

impl PreferencesService {
    /// A service over `store`. Call [`PreferencesService::follow_other_replicas`] to also see
    /// changes other replicas make.
    #[must_use]
    pub fn new(store: &Store) -> Self {
        Self {
            repository: store.preferences(),
            hub: Arc::new(Hub::default()),
            cache: Arc::new(ReadCache::default()),
        }
    }

    /// On PostgreSQL, listens for changes made by other replicas sharing the database and
    /// relays them to this process's watchers until `shutdown` fires. A no-op on SQLite.
    ///
    /// # Errors
    /// The listening connection could not be opened.
    pub async fn follow_other_replicas(
        &self,
        store: &Store,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let Some(mut feed) = store.preferences_change_feed().await? else {
            return Ok(());
        };
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    () = shutdown.cancelled() => break,
                    change = feed.next() => change,
                };
                let users = match change {
                    PreferencesChange::User(user) => {
                        service.cache.forget(user);
                        vec![user]
                    }
                    PreferencesChange::Resync => {
                        service.cache.clear();
                        service.hub.watched_users()
                    }
                };
                for user in users
                    .into_iter()
                    .filter(|user| service.hub.is_watched(*user))
                {
                    match service.get(user).await {
                        Ok(preferences) => service.hub.publish(user, preferences),
                        Err(err) => {
                            tracing::warn!(%user, error = %err, "re-reading changed preferences failed");
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// The user's preferences, or the defaults.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account is gone; the database failed.
    pub async fn get(&self, user: UserId) -> Result<Preferences> {
        self.get_at_least(user, None).await
    }

    /// The user's preferences, at least as new as `min_version` when one is given (the
    /// version of a write the client made, perhaps through another replica): a cached state
    /// older than it is not served, the database is read instead.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account is gone; the database failed.
    pub async fn get_at_least(
        &self,
        user: UserId,
        min_version: Option<i64>,
    ) -> Result<Preferences> {
        if let Some(cached) = self.cache.get(user)
            && min_version.is_none_or(|min| cached.version >= min)
        {
            return Ok(cached);
        }
        self.get_current(user).await
    }

    /// The user's preferences as the database holds them now, never from the cache (what a
    /// send works with: a change made a moment ago through another replica counts).
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account is gone; the database failed.
    pub async fn get_current(&self, user: UserId) -> Result<Preferences> {
        let epoch = self.cache.epoch();
        let preferences = self.repository.get(user).await?;
        self.cache.offer_read(epoch, user, &preferences);
        Ok(preferences)
    }

    /// Drops whatever this process remembers of the user's preferences (after the account
    /// was deleted, or its rows changed behind the service's back).
    pub fn forget(&self, user: UserId) {
        self.cache.forget(user);
    }

    /// Applies `update`, only if the stored version still equals `expected_version` when one
    /// is given, and notifies every watcher.
    ///
    /// # Errors
    /// ABORTED on a version mismatch; UNAUTHENTICATED when the account is gone; the database
    /// failed.
    pub async fn update(
        &self,
        user: UserId,
        update: &PreferencesUpdate,
        expected_version: Option<i64>,
    ) -> Result<Preferences> {
        let updated = self
            .repository
            .update(user, update, expected_version)
            .await?;
        self.cache.offer(user, &updated);
        self.hub.publish(user, updated.clone());
        Ok(updated)
    }

    /// Starts watching the user's preferences: the first item is the current state, then each
    /// newer state.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account is gone; the database failed.
    pub async fn watch(&self, user: UserId) -> Result<PreferencesWatch> {
        // Subscribe before reading, so no change between the read and the subscription is
        // missed; versions discard anything older than what was already sent.
        let receiver = self.hub.subscribe(user);
        let mut watch = PreferencesWatch {
            user,
            receiver,
            pending: None,
            last_version: -1,
            service: self.clone(),
        };
        // On error the watch drops here and leaves the hub.
        watch.pending = Some(self.repository.get(user).await?);
        Ok(watch)
    }
}

/// A live view of one user's preferences: yields the current state first, then every newer
/// one, in version order.
#[derive(Debug)]
pub struct PreferencesWatch {
    user: UserId,
    receiver: broadcast::Receiver<Arc<Preferences>>,
    /// The initial state, not yet handed out.
    pending: Option<Preferences>,
    last_version: i64,
    service: PreferencesService,
}

impl PreferencesWatch {
    /// Waits for the next state newer than the last one returned. A watcher that fell more
    /// than a few changes behind skips to the latest state.
    ///
    /// # Errors
    /// Re-reading after falling behind failed.
    pub async fn next(&mut self) -> Result<Preferences> {
        if let Some(initial) = self.pending.take() {
            return Ok(self.hand_out(initial));
        }
        loop {
            let candidate = match self.receiver.recv().await {
                Ok(preferences) => (*preferences).clone(),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.service.repository.get(self.user).await?
                }
                // The hub keeps a sender for as long as any watch of this user exists.
                Err(broadcast::error::RecvError::Closed) => {
                    self.receiver = self.service.hub.subscribe(self.user);
                    continue;
                }
            };
            if candidate.version > self.last_version {
                return Ok(self.hand_out(candidate));
            }
        }
    }

    fn hand_out(&mut self, preferences: Preferences) -> Preferences {
        self.last_version = preferences.version;
        preferences
    }
}

impl Drop for PreferencesWatch {
    fn drop(&mut self) {
        self.service.hub.leave(self.user);
    }
}
