//! The event heads that session lists check on PostgreSQL, read for many calls at once.
//!
//! A list served from memory still asks the database for the user's event head (see
//! `session_cache`). Under load many lists want a head at the same moment, and each would
//! take a pooled connection for a round trip of its own. Here the calls that arrive while a
//! read is in flight wait for the next read, which fetches the heads of all their users in
//! one statement; at most one read per process is in flight. A call's read always starts
//! after the call arrived, so it sees every change committed before the call (a list right
//! after one's own write, on any replica, sees the write).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use assistd_domain::{Error, Result, UserId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::oneshot;

use crate::db_error;

/// Most users whose heads one statement reads; more wait for the next.
const MAX_USERS_PER_READ: usize = 500;

type Waiters = Vec<oneshot::Sender<Result<i64>>>;

#[derive(Debug, Default)]
struct State {
    /// Whether a read is in flight (its task then serves everyone waiting).
    reading: bool,
    /// The calls waiting for the next read, by user.
    waiting: HashMap<UserId, Waiters>,
}

/// Reads users' event heads in batches. Shared by every clone of a
/// [`Store`](crate::Store).
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    state: Mutex<State>,
}

impl HeadReader {
    /// The number of the user's last chat event (0 before the first), read after this call.
    ///
    /// # Errors
    /// The database failed.
    pub(crate) async fn head(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        user: UserId,
    ) -> Result<i64> {
        let (sender, receiver) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.waiting.entry(user).or_default().push(sender);
            !std::mem::replace(&mut state.reading, true)
        };
        if start {
            // A task of its own: the read must go on for the others when this call is dropped.
            let reading = Reading {
                reader: Arc::clone(self),
                finished: false,
            };
            tokio::spawn(read_while_waited_for(reading, db.clone()));
        }
        receiver.await.unwrap_or_else(|_| {
            Err(Error::internal(
                "the event head read ended without an answer",
            ))
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reader while its read task runs. A task that stops before it finished (it panicked or
/// was aborted) lets the next call start a read, and answers everyone left waiting with an
/// error rather than leave them hanging.
struct Reading {
    reader: Arc<HeadReader>,
    /// Set when the task found no one waiting and handed over (a later call starts a new
    /// read, whose waiters are not this task's to fail).
    finished: bool,
}

impl Drop for Reading {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.reader.lock();
            state.reading = false;
            // Their senders dropped, the waiting calls fail rather than hang.
            state.waiting.clear();
        }
    }
}

/// Reads heads for whoever waits, until no one does.
async fn read_while_waited_for(mut reading: Reading, db: DatabaseConnection) {
    loop {
        let batch: Vec<(UserId, Waiters)> = {
            let mut state = reading.reader.lock();
            if state.waiting.is_empty() {
                state.reading = false;
                drop(state);
                reading.finished = true;
                return;
            }
            let users: Vec<UserId> = state
                .waiting
                .keys()
                .take(MAX_USERS_PER_READ)
                .copied()
                .collect();
            users
                .into_iter()
                .filter_map(|user| state.waiting.remove_entry(&user))
                .collect()
        };
        let users: Vec<UserId> = batch.iter().map(|(user, _)| *user).collect();
        match read_heads(&db, &users).await {
            Ok(heads) => {
                for (user, waiters) in batch {
                    let head = heads.get(&user).copied().unwrap_or(0);
                    for waiter in waiters {
                        let _ = waiter.send(Ok(head));
                    }
                }
            }
            Err(err) => {
                for waiter in batch.into_iter().flat_map(|(_, waiters)| waiters) {
                    let _ = waiter.send(Err(same_failure(&err)));
                }
            }
        }
    }
}

/// The heads of `users` that have one, in one statement.
async fn read_heads(db: &DatabaseConnection, users: &[UserId]) -> Result<HashMap<UserId, i64>> {
    let list = users
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT user_id, last_seq FROM chat_event_heads \
             WHERE user_id = ANY(string_to_array($1, ',')::uuid[])",
            [list.into()],
        ))
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|row| {
            let user: uuid::Uuid = row.try_get("", "user_id").map_err(db_error)?;
            let head: i64 = row.try_get("", "last_seq").map_err(db_error)?;
            Ok((UserId::from_uuid(user), head))
        })
        .collect()
}

/// The failure of a read, for each call that waited for it.
fn same_failure(err: &Error) -> Error {
    match err {
        Error::Unavailable {
            reason,
            message,
            retry_after,
        } => Error::Unavailable {
            reason: *reason,
            message: message.clone(),
            retry_after: *retry_after,
        },
        other => Error::internal(other.to_string()),
    }
}
