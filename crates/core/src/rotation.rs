//! Key-encryption key rotation: re-wrapping every user's data key under the current KEK
//! (`assistd admin rotate-kek`) without touching a single sealed secret.
//!
//! The walk reads the keys not yet wrapped by the current KEK in batches, in user id order
//! (keyset pagination: the last batch costs what the first did), re-wraps each with
//! [`Keyring::rewrap`] (which checks the new wrapping opens to the same key) and stores it with
//! a conditional update that applies only while the row is still as read. Hence:
//!
//! - **resumable**: a run killed at any point leaves every row either as it was or fully
//!   re-wrapped, and the next run only sees what is left;
//! - **idempotent**: a second run finds nothing to do;
//! - **safe to race**: when two runs meet, or a user's key is shredded meanwhile, the loser's
//!   update matches no row and the key is skipped.
//!
//! Secrets stay readable throughout as long as every server knows both KEKs (the new one and
//! the old one, in either role), because a server opens a data key with whichever KEK its row
//! names.

use std::time::{Duration, Instant};

use assistd_crypto::{CryptoError, ErrorClass, Keyring, WrappedDataKey};
use assistd_domain::UserId;
use assistd_store::{DataKeyRepository, Store, StoredDataKey};
use chrono::Utc;

/// How many keys of a batch are re-wrapped at once. Keys are independent, and with a KMS KEK
/// each one costs two round trips (`Encrypt`, then the check `Decrypt`), so a few in flight
/// multiply throughput; sixteen stays far below KMS request quotas and the default pool size.
const CONCURRENCY: usize = 16;

/// No KEK id is empty (they read `local:…` or `kms:…`), so the keys "not wrapped by" it are
/// all the keys.
const NO_KEK: &str = "";

/// Where a rotation stands, handed to the progress callback after every few keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationProgress {
    /// Keys handled so far by this run: re-wrapped, or skipped because they changed meanwhile.
    pub done: u64,
    /// Keys that were not under the current KEK when the run started. `done` may exceed it
    /// when servers with an older configuration keep creating keys under an old KEK.
    pub total: u64,
}

/// What a completed rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// The KEK every key is now wrapped by.
    pub kek_id: String,
    /// Keys this run re-wrapped.
    pub rewrapped: u64,
    /// Keys already under `kek_id` when the run started (by an earlier, perhaps interrupted,
    /// run, or created since the KEK became current).
    pub already_current: u64,
    /// Keys that changed between being read and being re-wrapped (another run re-wrapped
    /// them, or the user's key was shredded); left as they were.
    pub changed_meanwhile: u64,
    /// Keys still not under `kek_id` when the run ended: created under an old KEK by a server
    /// that does not have the new one yet. Running again picks them up.
    pub remaining: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Why a rotation stopped. Every key re-wrapped before the failure stays re-wrapped
/// ([`rewrapped`](Self::rewrapped) of them); running again resumes after fixing the cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum RotationError {
    /// A data key names a KEK that the keyring does not hold, so it cannot be unwrapped.
    UnknownKek {
        /// The KEK id stored with the key.
        kek_id: String,
        /// Whose key.
        user: UserId,
        /// Keys re-wrapped before stopping.
        rewrapped: u64,
    },
    /// A KEK failed: unavailable, refusing, or the stored wrapped key does not open.
    Kek {
        /// Whose key was being re-wrapped.
        user: UserId,
        /// What the KEK said.
        source: CryptoError,
        /// Keys re-wrapped before stopping.
        rewrapped: u64,
    },
    /// The database failed.
    Store {
        /// What failed.
        source: assistd_domain::Error,
        /// Keys re-wrapped before stopping.
        rewrapped: u64,
    },
}

impl RotationError {
    /// Keys re-wrapped (and kept) before the run stopped.
    #[must_use]
    pub fn rewrapped(&self) -> u64 {
        match self {
            Self::UnknownKek { rewrapped, .. }
            | Self::Kek { rewrapped, .. }
            | Self::Store { rewrapped, .. } => *rewrapped,
        }
    }
}

impl std::fmt::Display for RotationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKek {
                kek_id,
                user,
                rewrapped,
            } => write!(
                f,
                "the data key of user {user} is wrapped by key-encryption key {kek_id}, which is not configured: add that key under [[keys.previous]] and run again ({rewrapped} data keys were re-wrapped before stopping and stay so)"
            ),
            Self::Kek {
                user,
                source,
                rewrapped,
            } => {
                let advice = match source.class() {
                    ErrorClass::Unavailable => "run again once the key-encryption key is reachable",
                    ErrorClass::FailedPrecondition => {
                        "fix the key-encryption key (permissions, state) and run again"
                    }
                    ErrorClass::InvalidCiphertext => {
                        "the stored wrapped data key does not open: it was altered or belongs to another user"
                    }
                    ErrorClass::Internal => "this is a bug or a misconfigured key",
                };
                write!(
                    f,
                    "re-wrapping the data key of user {user} failed: {source}; {advice} ({rewrapped} data keys were re-wrapped before stopping and stay so)"
                )
            }
            Self::Store { source, rewrapped } => write!(
                f,
                "the database failed: {source} ({rewrapped} data keys were re-wrapped before stopping and stay so)"
            ),
        }
    }
}

impl std::error::Error for RotationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::UnknownKek { .. } => None,
            Self::Kek { source, .. } => Some(source),
            Self::Store { source, .. } => Some(source),
        }
    }
}

/// Why one key failed, before the run's count is attached.
enum KeyFailure {
    Kek(UserId, CryptoError),
    Store(assistd_domain::Error),
}

impl KeyFailure {
    fn into_error(self, rewrapped: u64) -> RotationError {
        match self {
            Self::Kek(user, CryptoError::UnknownKek { kek_id }) => RotationError::UnknownKek {
                kek_id,
                user,
                rewrapped,
            },
            Self::Kek(user, source) => RotationError::Kek {
                user,
                source,
                rewrapped,
            },
            Self::Store(source) => RotationError::Store { source, rewrapped },
        }
    }
}

/// Re-wraps every data key in `store` that is not under the keyring's current KEK, reading
/// `batch` keys per query, and calls `progress` as it goes. Stops at the first failure; what
/// was re-wrapped until then stays re-wrapped (see the module documentation).
///
/// # Errors
/// A key names a KEK the keyring does not hold ([`RotationError::UnknownKek`]), a KEK fails
/// ([`RotationError::Kek`]), or the database fails ([`RotationError::Store`]).
pub async fn rotate_data_keys(
    store: &Store,
    keyring: &Keyring,
    batch: u64,
    mut progress: impl FnMut(RotationProgress),
) -> Result<RotationReport, RotationError> {
    let started = Instant::now();
    let kek_id = keyring.current().id().to_owned();
    let repository = store.data_keys();
    let store_failure = |rewrapped| move |source| RotationError::Store { source, rewrapped };

    let pending = repository
        .count_not_wrapped_by(&kek_id)
        .await
        .map_err(store_failure(0))?;
    let all = repository
        .count_not_wrapped_by(NO_KEK)
        .await
        .map_err(store_failure(0))?;
    let mut rewrapped = 0;
    let mut changed_meanwhile = 0;
    progress(RotationProgress {
        done: 0,
        total: pending,
    });

    let mut after = None;
    loop {
        let keys = repository
            .not_wrapped_by(&kek_id, after, batch.max(1))
            .await
            .map_err(store_failure(rewrapped))?;
        let Some(last) = keys.last() else {
            break;
        };
        after = Some(last.user);
        for chunk in keys.chunks(CONCURRENCY) {
            // Every key of a chunk runs to completion, so the count stays exact on failure.
            let outcomes = futures::future::join_all(
                chunk
                    .iter()
                    .map(|key| rewrap_one(&repository, keyring, key)),
            )
            .await;
            let mut failure = None;
            for outcome in outcomes {
                match outcome {
                    Ok(true) => rewrapped += 1,
                    Ok(false) => changed_meanwhile += 1,
                    Err(err) => {
                        failure.get_or_insert(err);
                    }
                }
            }
            progress(RotationProgress {
                done: rewrapped + changed_meanwhile,
                total: pending,
            });
            if let Some(failure) = failure {
                return Err(failure.into_error(rewrapped));
            }
        }
    }

    let remaining = repository
        .count_not_wrapped_by(&kek_id)
        .await
        .map_err(store_failure(rewrapped))?;
    Ok(RotationReport {
        kek_id,
        rewrapped,
        already_current: all.saturating_sub(pending),
        changed_meanwhile,
        remaining,
        elapsed: started.elapsed(),
    })
}

/// Re-wraps one key and stores it if its row is unchanged. `Ok(false)`: the row changed.
async fn rewrap_one(
    repository: &DataKeyRepository,
    keyring: &Keyring,
    key: &StoredDataKey,
) -> Result<bool, KeyFailure> {
    let wrapped = WrappedDataKey::new(key.kek_id.clone(), key.wrapped.clone());
    let (new_kek_id, new_wrapped) = keyring
        .rewrap(key.user, &wrapped)
        .await
        .map_err(|err| KeyFailure::Kek(key.user, err))?
        .into_parts();
    repository
        .rewrap(key, &new_kek_id, new_wrapped, Utc::now())
        .await
        .map_err(KeyFailure::Store)
}
