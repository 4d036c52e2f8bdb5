//! The session gate: whether the session named by an access token may still make calls,
//! remembered for a few seconds so the authentication layer does not read the database on
//! every call.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use assistd_domain::{AuthSessionId, Clock, Error, ErrorReason, Result, UserId};
use assistd_store::Store;
use moka::sync::Cache;

/// Most sessions remembered at once; past it the least useful entries go first.
const CAPACITY: u64 = 100_000;

/// Remembers for a few seconds whether a session is active, so the authentication layer
/// does not read the database on every call. Revocations on this replica clear it at once;
/// other replicas see a revocation within [`SessionGate::TTL`].
pub struct SessionGate {
    store: Store,
    clock: Arc<dyn Clock>,
    /// Session id to whether it was active, each entry for [`SessionGate::TTL`].
    known: Cache<AuthSessionId, bool>,
    /// Bumped by every [`SessionGate::forget_all`]: a database read that started before a
    /// revocation must not put its (stale) answer into the memory after it. Readers hold the
    /// read lock while they compare and insert, `forget_all` the write lock while it bumps and
    /// clears, so no insert can fall between the bump and the clearing.
    epoch: RwLock<u64>,
}

impl std::fmt::Debug for SessionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGate")
            .field("remembered", &self.known.entry_count())
            .finish_non_exhaustive()
    }
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
            known: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(Self::TTL)
                .build(),
            epoch: RwLock::new(0),
        }
    }

    /// Whether the session may still make calls.
    ///
    /// # Errors
    /// UNAUTHENTICATED (SESSION_REVOKED) when it was signed out, revoked, deleted or has
    /// ended; the database failed.
    pub async fn check(&self, user: UserId, session: AuthSessionId) -> Result<()> {
        let active = match self.known.get(&session) {
            Some(active) => active,
            None => {
                let epoch = self.epoch();
                let active = self.read_active(user, session).await?;
                self.remember(session, active, epoch);
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
        let mut epoch = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        *epoch += 1;
        self.known.invalidate_all();
    }

    /// The current epoch, taken before a database read.
    fn epoch(&self) -> u64 {
        *self.epoch.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the database has the session as the user's and active now.
    async fn read_active(&self, user: UserId, session: AuthSessionId) -> Result<bool> {
        let now = self.clock.now();
        Ok(self
            .store
            .auth()
            .session(self.store.connection(), session)
            .await?
            .is_some_and(|s| s.user == user && s.is_active(now)))
    }

    /// Remembers what a read that started in `epoch` found, unless a revocation came since.
    fn remember(&self, session: AuthSessionId, active: bool, epoch: u64) {
        let current = self.epoch.read().unwrap_or_else(PoisonError::into_inner);
        if *current == epoch {
            self.known.insert(session, active);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assistd_domain::SystemClock;
    use assistd_store::DatabaseSettings;

    async fn gate() -> (SessionGate, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseSettings::sqlite(&dir.path().join("gate.db")))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (SessionGate::new(store, Arc::new(SystemClock)), dir)
    }

    #[tokio::test]
    async fn a_read_that_raced_a_revocation_is_not_remembered() {
        let (gate, _dir) = gate().await;
        let session = AuthSessionId::new();
        // A read begins, a revocation happens meanwhile, then the read's answer arrives.
        let epoch = gate.epoch();
        gate.forget_all();
        gate.remember(session, true, epoch);
        assert_eq!(gate.known.get(&session), None);
        // A read that began after the revocation is remembered.
        gate.remember(session, true, gate.epoch());
        assert_eq!(gate.known.get(&session), Some(true));
    }

    #[tokio::test]
    async fn forgetting_clears_what_was_remembered_at_once() {
        let (gate, _dir) = gate().await;
        let session = AuthSessionId::new();
        gate.remember(session, true, gate.epoch());
        assert_eq!(gate.known.get(&session), Some(true));
        gate.forget_all();
        assert_eq!(gate.known.get(&session), None);
        // Unknown sessions are refused, and the refusal is remembered too.
        let err = gate.check(UserId::new(), session).await.unwrap_err();
        assert!(matches!(
            err,
            Error::Unauthenticated {
                reason: ErrorReason::SessionRevoked,
                ..
            }
        ));
        assert_eq!(gate.known.get(&session), Some(false));
    }
}
