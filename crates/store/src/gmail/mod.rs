//! Gmail: a user's connection (state, granted scopes, sync progress, the sync lease, the
//! sealed mail key) and the synced copy of their mail with its labels and blind index.
//!
//! The store keeps what it is given: sealing (the mail key under the data key, headers and
//! bodies under the mail key) and the blind index tokens are made by the layer that holds
//! the keys. Every method takes the id of the user from a verified token (or the scheduler's
//! own list) and filters by it: another user's message is indistinguishable from a missing
//! one.
//!
//! [`GmailStore`] is one type; its methods live with their operation group:
//! - `connection`: the connection row, connecting, its state, disconnecting;
//! - `due`: when users are synced, and failed syncs;
//! - `lease`: the sync lease and a sync's progress under it;
//! - `mail_key`: the sealed mail key;
//! - `messages`: writing, reading, listing and searching the synced messages.
//!
//! One sync per user runs at a time across every replica: it holds the lease in the
//! connection row (`sync_lease_owner`, `sync_lease_expires_at`), taken by a conditional
//! UPDATE that only one writer can win, renewed while the sync runs and released at its end.
//! A replica that dies leaves a lease that expires; another then takes it over. The progress
//! writes of a sync (`begin_full_sync`, `save_full_sync_progress`, `complete_sync`) apply only
//! while its owner still holds the lease, so a sync that lost it cannot move the history id.
//! Messages are written only while the connection is `connected` (checked in the writing
//! transaction, with the connection row share-locked on PostgreSQL), so a sync still running
//! when the user disconnects cannot put mail back.

mod connection;
mod due;
mod lease;
mod mail_key;
mod messages;
mod search_plan;
mod summaries;
mod triage;

use assistd_domain::{Error, ErrorReason, UserId};
use chrono::{DateTime, Timelike, Utc};
use sea_orm::{DbErr, SqlErr};

use crate::Store;

pub use connection::{
    FullSyncProgress, GmailConnection, GmailConnectionState, SealedMailKey, SyncError, SyncLease,
};
pub use messages::{MessageFilter, NewGmailMessage, SearchTerm, StoredGmailMessage};
pub use summaries::{StoredMessageSummary, StoredThreadSummary, ThreadState};
pub use triage::StoredTriageResult;

/// Resource names in NOT_FOUND errors.
const CONNECTION: &str = "Gmail connection";

/// Reads and writes users' Gmail connections and synced mail.
#[derive(Clone, Debug)]
pub struct GmailStore {
    store: Store,
}

impl Store {
    /// The Gmail repository.
    #[must_use]
    pub fn gmail(&self) -> GmailStore {
        GmailStore {
            store: self.clone(),
        }
    }
}

/// NOT_FOUND for the user's Gmail connection.
fn connection_not_found(user: UserId) -> Error {
    Error::NotFound {
        resource: CONNECTION,
        id: user.to_string(),
    }
}

/// UNAUTHENTICATED for a write whose user row is gone (a foreign key refused it).
fn account_gone() -> Error {
    Error::Unauthenticated {
        reason: ErrorReason::AccountNotFound,
        message: "the account this access token belongs to no longer exists; sign in again".into(),
    }
}

/// Whether the write referred to a row that no longer exists.
fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// `at` truncated to microseconds, the precision both engines store: what is written reads
/// back equal, and SQLite's text timestamps keep comparing like times.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

/// A history id as stored: decimal text (Gmail's are unsigned 64-bit numbers, which BIGINT
/// cannot hold in full).
fn history_text(history_id: u64) -> String {
    history_id.to_string()
}

/// A stored history id read back.
fn history_value(text: &str) -> assistd_domain::Result<u64> {
    text.parse()
        .map_err(|_| Error::internal(format!("history id {text:?} in the database is no number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_ids_keep_all_64_bits() {
        assert_eq!(history_value(&history_text(u64::MAX)).unwrap(), u64::MAX);
        assert_eq!(history_value("0").unwrap(), 0);
        assert!(history_value("-1").is_err());
        assert!(history_value("").is_err());
    }

    #[test]
    fn timestamps_keep_microseconds() {
        let at = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        assert_eq!(micros(at).nanosecond(), 123_456_000);
    }
}
