//! Chat: sessions, their messages, sends (exchanges) made idempotent by client message ids,
//! full-text search, remembered facts, daily usage and token budgets.
//!
//! Every method takes the id of the user from a verified token and filters by it: another
//! user's session, message or memory is indistinguishable from one that does not exist.
//!
//! Messages are numbered per session by an allocator on the session row (`last_sequence`):
//! a write bumps it by the number of messages it adds and uses the numbers it got, inside
//! the transaction that inserts them. The bump locks the session row on PostgreSQL, and
//! SQLite's write transactions take the database lock up front, so concurrent writers get
//! consecutive, disjoint ranges.
//!
//! [`ChatRepository`] is one type; its methods live with their operation group:
//! - `sessions`: creating, reading, listing, changing and deleting sessions;
//! - `session_cache`: pages of session lists served again while the user's chat is unchanged;
//! - `heads`: the event heads those lists check on PostgreSQL, read for many calls at once;
//! - `messages`: the sequence allocator, appending and paging through history;
//! - `exchanges`: idempotent sends, their leases and what a resend finds;
//! - `search`: full-text search over USER and MODEL text, with snippets;
//! - `memories`: remembered facts;
//! - `usage`: daily usage and the monthly token budget;
//! - `events`: the chat feed's events, written in the transaction of each change;
//! - `rows`: how rows map to the domain's types and back.

mod events;
mod exchanges;
mod heads;
mod memories;
mod messages;
mod rows;
mod search;
mod session_cache;
mod sessions;
mod usage;

use assistd_domain::{Error, ErrorReason};
use chrono::{DateTime, Timelike, Utc};
use sea_orm::{DbErr, SqlErr};

use crate::Store;

pub(crate) use heads::HeadReader;
pub(crate) use session_cache::SessionListCache;
pub use usage::UsageDelta;

/// Resource names in NOT_FOUND errors.
const SESSION: &str = "chat session";
const MESSAGE: &str = "message";
const MEMORY: &str = "memory";

/// Reads and writes one user's chat sessions, messages, memories, usage and budget.
#[derive(Clone, Debug)]
pub struct ChatRepository {
    store: Store,
}

impl Store {
    /// The chat repository.
    #[must_use]
    pub fn chat(&self) -> ChatRepository {
        ChatRepository {
            store: self.clone(),
        }
    }
}

/// NOT_FOUND for `resource` `id`: also what another user's id gets, so ids leak nothing.
fn not_found(resource: &'static str, id: impl std::fmt::Display) -> Error {
    Error::NotFound {
        resource,
        id: id.to_string(),
    }
}

/// UNAUTHENTICATED for a write whose user row is gone (a foreign key refused it).
fn account_gone() -> Error {
    Error::Unauthenticated {
        reason: ErrorReason::AccountNotFound,
        message: "the account this access token belongs to no longer exists; sign in again".into(),
    }
}

/// Whether the write hit a unique index (a concurrent writer got there first).
fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether the write referred to a row that no longer exists.
fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// `at` truncated to microseconds, the precision both engines store: what is written reads
/// back equal, and SQLite's text timestamps keep sorting like times.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds() {
        let at = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        assert_eq!(micros(at).nanosecond(), 123_456_000);
    }
}
