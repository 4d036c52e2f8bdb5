//! The caller gate: whether the account an access token was issued to still exists and, when
//! the token names a sign-in session, whether that session is the account's and still active.
//! Answers are remembered for a few seconds so the authentication layer does not read the
//! database on every call.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use assistd_domain::{AuthSessionId, Clock, Error, ErrorReason, Result, UserId};
use assistd_store::Store;
use moka::sync::Cache;

/// Most callers remembered at once; past it the least useful entries go first.
const CAPACITY: u64 = 100_000;

/// Who a token says is calling: its `sub`, and its `sid` when it was issued in a session. The
/// memory is keyed by both, so a token whose `sub` and `sid` disagree has an entry of its own
/// and can neither borrow the owner's answer nor overwrite it.
type CallerKey = (UserId, Option<AuthSessionId>);

/// What was found for a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// The account exists and the session, if any, is its own and active.
    Admitted,
    /// The account exists; the session is not its own, or was signed out, revoked or ended.
    SessionEnded,
    /// The account was deleted (or never existed).
    AccountGone,
}

/// Remembers for a few seconds whether a caller may make calls, so the authentication layer
/// does not read the database on every call. Revocations and account deletions on this
/// replica clear it at once; other replicas see either within [`SessionGate::TTL`].
pub struct SessionGate {
    store: Store,
    clock: Arc<dyn Clock>,
    /// What was found for each caller, each entry for [`SessionGate::TTL`].
    known: Cache<CallerKey, Standing>,
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
    /// How long a caller's standing is remembered: the longest another replica keeps
    /// admitting a revoked session or a deleted account.
    pub const TTL: Duration = Duration::from_secs(5);

    /// A gate reading accounts and sessions from `store`.
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

    /// Whether `user` may still make calls, in `session` when the token names one.
    ///
    /// # Errors
    /// UNAUTHENTICATED (ACCOUNT_NOT_FOUND) when the account was deleted, whether or not the
    /// token names a session; UNAUTHENTICATED (SESSION_REVOKED) when the session is not the
    /// user's, or was signed out, revoked, deleted or has ended; the database failed.
    pub async fn check(&self, user: UserId, session: Option<AuthSessionId>) -> Result<()> {
        let key = (user, session);
        let standing = match self.known.get(&key) {
            Some(standing) => standing,
            None => {
                let epoch = self.epoch();
                let standing = self.read_standing(user, session).await?;
                self.remember(key, standing, epoch);
                standing
            }
        };
        match standing {
            Standing::Admitted => Ok(()),
            Standing::SessionEnded => Err(Error::Unauthenticated {
                reason: ErrorReason::SessionRevoked,
                message: "this session was signed out or revoked; sign in again".into(),
            }),
            Standing::AccountGone => Err(Error::Unauthenticated {
                reason: ErrorReason::AccountNotFound,
                message: "the account of this token no longer exists".into(),
            }),
        }
    }

    /// Forgets everything remembered, after a revocation or an account deletion.
    pub fn forget_all(&self) {
        let mut epoch = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        *epoch += 1;
        self.known.invalidate_all();
    }

    /// The current epoch, taken before a database read.
    fn epoch(&self) -> u64 {
        *self.epoch.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the database says of the caller now. A session row of the user proves the
    /// account exists (deleting an account deletes its sessions), so the common case is one
    /// read; the account is read only when there is no session or it is not the user's.
    async fn read_standing(
        &self,
        user: UserId,
        session: Option<AuthSessionId>,
    ) -> Result<Standing> {
        let db = self.store.connection();
        if let Some(session) = session {
            let found = self.store.auth().session(db, session).await?;
            if let Some(found) = found.filter(|s| s.user == user) {
                return Ok(if found.is_active(self.clock.now()) {
                    Standing::Admitted
                } else {
                    Standing::SessionEnded
                });
            }
        }
        let exists = self.store.users().exists_in(db, user).await?;
        Ok(match (exists, session) {
            (false, _) => Standing::AccountGone,
            (true, None) => Standing::Admitted,
            (true, Some(_)) => Standing::SessionEnded,
        })
    }

    /// Remembers what a read that started in `epoch` found, unless a revocation came since.
    fn remember(&self, key: CallerKey, standing: Standing, epoch: u64) {
        let current = self.epoch.read().unwrap_or_else(PoisonError::into_inner);
        if *current == epoch {
            self.known.insert(key, standing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assistd_domain::SystemClock;
    use assistd_store::{DatabaseSettings, NewUser};

    async fn gate() -> (SessionGate, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseSettings::sqlite(&dir.path().join("gate.db")))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (SessionGate::new(store, Arc::new(SystemClock)), dir)
    }

    fn reason(err: Error) -> ErrorReason {
        match err {
            Error::Unauthenticated { reason, .. } => reason,
            other => panic!("expected UNAUTHENTICATED, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_read_that_raced_a_revocation_is_not_remembered() {
        let (gate, _dir) = gate().await;
        let key = (UserId::new(), Some(AuthSessionId::new()));
        // A read begins, a revocation happens meanwhile, then the read's answer arrives.
        let epoch = gate.epoch();
        gate.forget_all();
        gate.remember(key, Standing::Admitted, epoch);
        assert_eq!(gate.known.get(&key), None);
        // A read that began after the revocation is remembered.
        gate.remember(key, Standing::Admitted, gate.epoch());
        assert_eq!(gate.known.get(&key), Some(Standing::Admitted));
    }

    #[tokio::test]
    async fn forgetting_clears_what_was_remembered_at_once() {
        let (gate, _dir) = gate().await;
        let user = gate
            .store
            .users()
            .create(NewUser::default())
            .await
            .unwrap()
            .id;
        let session = AuthSessionId::new();
        let key = (user, Some(session));
        gate.remember(key, Standing::Admitted, gate.epoch());
        assert_eq!(gate.known.get(&key), Some(Standing::Admitted));
        gate.forget_all();
        assert_eq!(gate.known.get(&key), None);
        // Unknown sessions of a live account are refused, and the refusal is remembered too.
        let err = gate.check(user, Some(session)).await.unwrap_err();
        assert_eq!(reason(err), ErrorReason::SessionRevoked);
        assert_eq!(gate.known.get(&key), Some(Standing::SessionEnded));
    }

    #[tokio::test]
    async fn a_session_named_with_another_subject_leaves_the_owners_entry_alone() {
        let (gate, _dir) = gate().await;
        let users = gate.store.users();
        let owner = users.create(NewUser::default()).await.unwrap().id;
        let other = users.create(NewUser::default()).await.unwrap().id;
        let now = chrono::Utc::now();
        let session = gate
            .store
            .auth()
            .create_session(
                gate.store.connection(),
                &assistd_store::NewAuthSession {
                    user: owner,
                    device_name: String::new(),
                    user_agent: String::new(),
                    ip_address: String::new(),
                    method: assistd_domain::auth::SignInMethod::GoogleIdToken,
                    now,
                    expires_at: now + chrono::Duration::days(1),
                },
            )
            .await
            .unwrap()
            .id;
        gate.check(owner, Some(session)).await.unwrap();
        let err = gate.check(other, Some(session)).await.unwrap_err();
        assert_eq!(reason(err), ErrorReason::SessionRevoked);
        assert_eq!(
            gate.known.get(&(owner, Some(session))),
            Some(Standing::Admitted)
        );
        assert_eq!(
            gate.known.get(&(other, Some(session))),
            Some(Standing::SessionEnded)
        );
        gate.check(owner, Some(session)).await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_account_is_refused_with_or_without_a_session() {
        let (gate, _dir) = gate().await;
        let stranger = UserId::new();
        for session in [None, Some(AuthSessionId::new())] {
            let err = gate.check(stranger, session).await.unwrap_err();
            assert_eq!(reason(err), ErrorReason::AccountNotFound);
            assert_eq!(
                gate.known.get(&(stranger, session)),
                Some(Standing::AccountGone)
            );
        }
        let user = gate
            .store
            .users()
            .create(NewUser::default())
            .await
            .unwrap()
            .id;
        gate.check(user, None).await.unwrap();
        gate.store.users().delete(user).await.unwrap();
        // Remembered until forgotten: the deletion path forgets at once.
        gate.check(user, None).await.unwrap();
        gate.forget_all();
        let err = gate.check(user, None).await.unwrap_err();
        assert_eq!(reason(err), ErrorReason::AccountNotFound);
    }
}
