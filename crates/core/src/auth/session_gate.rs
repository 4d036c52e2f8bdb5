//! The session gate: whether the session named by an access token may still make calls,
//! remembered for a few seconds so the authentication layer does not read the database on
//! every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use assistd_domain::{Clock, Error, ErrorReason, Result, UserId};
use assistd_store::Store;
use uuid::Uuid;

/// Remembers for a few seconds whether a session is active, so the authentication layer
/// does not read the database on every call. Revocations on this replica clear it at once;
/// other replicas see a revocation within [`SessionGate::TTL`].
#[derive(Debug)]
pub struct SessionGate {
    store: Store,
    clock: Arc<dyn Clock>,
    known: Mutex<HashMap<Uuid, (bool, Instant)>>,
    /// Bumped by every [`SessionGate::forget_all`]: a database read that started before a
    /// revocation must not put its (stale) answer into the memory after it.
    epoch: AtomicU64,
}

impl SessionGate {
    /// How long a session's state is remembered.
    pub const TTL: Duration = Duration::from_secs(5);

    /// A gate reading sessions from `store`.
    #[must_use]
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            known: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Whether the session may still make calls.
    ///
    /// # Errors
    /// UNAUTHENTICATED (SESSION_REVOKED) when it was signed out, revoked, deleted or has
    /// ended; the database failed.
    pub async fn check(&self, user: UserId, session: Uuid) -> Result<()> {
        let remembered = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(active, _)| *active);
        let active = match remembered {
            Some(active) => active,
            None => {
                let epoch = self.epoch.load(Ordering::Acquire);
                let now = self.clock.now();
                let active = self
                    .store
                    .auth()
                    .session(self.store.connection(), session)
                    .await?
                    .is_some_and(|s| s.user == user && s.is_active(now));
                let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
                if known.len() > 100_000 {
                    known.clear();
                }
                if self.epoch.load(Ordering::Acquire) == epoch {
                    known.insert(session, (active, Instant::now()));
                }
                active
            }
        };
        if active {
            Ok(())
        } else {
            Err(Error::Unauthenticated {
                reason: ErrorReason::SessionRevoked,
                message: "this session was signed out or revoked; sign in again".into(),
            })
        }
    }

    /// Forgets everything remembered, after a revocation.
    pub fn forget_all(&self) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        known.clear();
    }
}
