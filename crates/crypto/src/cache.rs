//! Unwrapped data keys kept in memory for a bounded time and number of uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use assistd_domain::UserId;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::{CryptoError, DataKey, KeyEncryptionKey, SealContext, Secret, WrappedDataKey};

/// How long and how often one unwrapped data key may be reused before the KEK is asked again.
///
/// Defaults: **5 minutes** and **10,000 uses**. Five minutes keeps a chatting user at about
/// one KMS `Decrypt` per five minutes (KMS bills and rate-limits per request) while a
/// disabled KEK, a revoked grant or a shredded account takes effect within five minutes
/// everywhere, and limits how long a key sits in memory. 10,000 uses bounds what one cached
/// key serves even for a very busy user. Either at zero turns caching off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Longest time an unwrapped key is served after it was unwrapped.
    pub max_age: Duration,
    /// Most requests one unwrapped key serves (the request that unwrapped it included).
    pub max_uses: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(5 * 60),
            max_uses: 10_000,
        }
    }
}

/// Counters of a [`DataKeyCache`] since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests served from memory.
    pub hits: u64,
    /// Requests that had to ask the KEK.
    pub misses: u64,
    /// Calls made to the KEK's `unwrap` (failed ones included).
    pub unwraps: u64,
    /// Keys dropped (and zeroized) for age or use count.
    pub evictions: u64,
    /// Entries currently held (some may be empty or expired until swept).
    pub entries: usize,
}

struct Entry {
    key: Arc<DataKey>,
    loaded_at: Instant,
    uses: u64,
}

/// One cache line: the mutex makes concurrent misses for the same key wait for the first
/// unwrap instead of each calling the KEK (single flight).
type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    owner: UserId,
    wrapped: [u8; 32],
}

impl CacheKey {
    fn new(owner: UserId, wrapped: &WrappedDataKey) -> Self {
        let mut hasher = Sha256::new();
        hasher.update((wrapped.kek_id().len() as u64).to_be_bytes());
        hasher.update(wrapped.kek_id().as_bytes());
        hasher.update(wrapped.ciphertext());
        Self {
            owner,
            wrapped: hasher.finalize().into(),
        }
    }
}

/// Unwrapped data keys in memory, keyed by owner and a hash of the wrapped key, so a busy
/// user costs one KEK call per [`CachePolicy`] period instead of one per request.
///
/// - Concurrent misses for one key make a single `unwrap` call; the others wait for it.
/// - A key is dropped after `max_age` or `max_uses`, and zeroized as soon as the last request
///   using it finishes. Expired entries are swept at most once per `max_age`, on a miss.
/// - [`forget_user`](Self::forget_user) drops a user's keys at once (account deletion).
/// - Failures are not cached: the next request asks the KEK again.
pub struct DataKeyCache {
    kek: Arc<dyn KeyEncryptionKey>,
    policy: CachePolicy,
    slots: Mutex<HashMap<CacheKey, Slot>>,
    last_sweep: Mutex<Instant>,
    hits: AtomicU64,
    misses: AtomicU64,
    unwraps: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("kek", &self.kek.id())
            .field("policy", &self.policy)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DataKeyCache {
    /// A cache in front of `kek` (typically a [`Keyring`](crate::Keyring)).
    pub fn new(kek: Arc<dyn KeyEncryptionKey>, policy: CachePolicy) -> Self {
        Self {
            kek,
            policy,
            slots: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            unwraps: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The KEK behind the cache.
    #[must_use]
    pub fn kek(&self) -> &Arc<dyn KeyEncryptionKey> {
        &self.kek
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> CachePolicy {
        self.policy
    }

    /// Makes a new data key for `owner` through the KEK and caches it, so sealing the first
    /// secret right after costs nothing more.
    ///
    /// # Errors
    /// The KEK is unavailable or refuses.
    pub async fn generate_data_key(
        &self,
        owner: UserId,
    ) -> Result<(Arc<DataKey>, WrappedDataKey), CryptoError> {
        let (key, wrapped) = self.kek.generate_data_key(owner).await?;
        let key = Arc::new(key);
        let slot = self.slot(CacheKey::new(owner, &wrapped));
        *slot.lock().await = Some(Entry {
            key: Arc::clone(&key),
            loaded_at: Instant::now(),
            uses: 1,
        });
        Ok((key, wrapped))
    }

    /// `owner`'s data key, from memory when a fresh copy is there, otherwise unwrapped by the
    /// KEK (once, however many requests ask at the same time).
    ///
    /// # Errors
    /// Whatever the KEK's `unwrap` fails with.
    pub async fn data_key(
        &self,
        owner: UserId,
        wrapped: &WrappedDataKey,
    ) -> Result<Arc<DataKey>, CryptoError> {
        let slot = self.slot(CacheKey::new(owner, wrapped));
        let mut entry = slot.lock().await;
        let now = Instant::now();
        if let Some(cached) = entry.as_mut() {
            if self.is_fresh(cached, now) {
                cached.uses += 1;
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::clone(&cached.key));
            }
            *entry = None;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.maybe_sweep(now);
        self.unwraps.fetch_add(1, Ordering::Relaxed);
        let key = Arc::new(self.kek.unwrap(owner, wrapped).await?);
        *entry = Some(Entry {
            key: Arc::clone(&key),
            loaded_at: Instant::now(),
            uses: 1,
        });
        Ok(key)
    }

    /// Opens a sealed value of `context.owner` whose data key is `wrapped`.
    ///
    /// # Errors
    /// The data key cannot be had (see [`data_key`](Self::data_key)) or the value does not
    /// open ([`CryptoError::InvalidCiphertext`]).
    pub async fn open(
        &self,
        wrapped: &WrappedDataKey,
        context: &SealContext<'_>,
        sealed: &[u8],
    ) -> Result<Secret, CryptoError> {
        let key = self.data_key(context.owner, wrapped).await?;
        crate::open(&key, context, sealed)
    }

    /// Seals `plaintext` for `context.owner` under the data key `wrapped`.
    ///
    /// # Errors
    /// The data key cannot be had (see [`data_key`](Self::data_key)).
    pub async fn seal(
        &self,
        wrapped: &WrappedDataKey,
        context: &SealContext<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.data_key(context.owner, wrapped).await?;
        Ok(crate::seal(&key, context, plaintext))
    }

    /// Drops every cached key of `owner` now (crypto-shredding on account deletion, or after
    /// their data key was replaced). A request already holding the key finishes with it.
    pub fn forget_user(&self, owner: UserId) {
        let removed: Vec<Slot> = {
            let mut slots = self.lock_slots();
            let keys: Vec<CacheKey> = slots.keys().filter(|k| k.owner == owner).copied().collect();
            keys.iter().filter_map(|k| slots.remove(k)).collect()
        };
        for slot in removed {
            if let Ok(mut entry) = slot.try_lock() {
                *entry = None;
            }
        }
    }

    /// Drops every cached key.
    pub fn clear(&self) {
        let removed: Vec<Slot> = self.lock_slots().drain().map(|(_, slot)| slot).collect();
        for slot in removed {
            if let Ok(mut entry) = slot.try_lock() {
                *entry = None;
            }
        }
    }

    /// Drops expired keys now (they are also swept on misses, at most once per `max_age`).
    pub fn evict_expired(&self) {
        self.sweep(Instant::now());
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            unwraps: self.unwraps.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.lock_slots().len(),
        }
    }

    fn is_fresh(&self, entry: &Entry, now: Instant) -> bool {
        entry.uses < self.policy.max_uses
            && now.saturating_duration_since(entry.loaded_at) < self.policy.max_age
    }

    fn slot(&self, key: CacheKey) -> Slot {
        Arc::clone(self.lock_slots().entry(key).or_default())
    }

    fn lock_slots(&self) -> MutexGuard<'_, HashMap<CacheKey, Slot>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn maybe_sweep(&self, now: Instant) {
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.saturating_duration_since(*last) < self.policy.max_age {
                return;
            }
            *last = now;
        }
        self.sweep(now);
    }

    /// Removes empty and expired slots that no request holds (a held slot is in use and will be
    /// refreshed by its holder). Checking the reference count under the map lock means no
    /// request can pick up a slot as it is being removed.
    fn sweep(&self, now: Instant) {
        let mut evicted = 0;
        self.lock_slots().retain(|_, slot| {
            if Arc::strong_count(slot) > 1 {
                return true;
            }
            let Ok(mut entry) = slot.try_lock() else {
                return true;
            };
            match entry.as_ref() {
                Some(cached) if self.is_fresh(cached, now) => true,
                Some(_) => {
                    *entry = None;
                    evicted += 1;
                    false
                }
                None => false,
            }
        });
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }
}
