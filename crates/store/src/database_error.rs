//! What a database failure means for the caller: an outage (the database is stopping,
//! restarting, unreachable, out of connections, or SQLite stayed locked) is UNAVAILABLE, so a
//! client retries it; anything else (a constraint, a malformed row, a bug) is INTERNAL.
//!
//! The classification looks at the kind of error and, for errors the database returned, at
//! its code — not at message texts, which change between versions and locales.

use std::time::Duration;

use assistd_domain::{Error, ErrorReason};
use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

/// How long a client is told to wait before retrying a call the database could not serve.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// PostgreSQL SQLSTATEs (besides class 08, connection exception) that say the server is going
/// away or cannot take the connection now: `admin_shutdown` (a fast or smart stop),
/// `crash_shutdown` (another backend crashed; an immediate stop), `cannot_connect_now`
/// (starting up or shutting down), `idle_session_timeout`, and `too_many_connections`.
const POSTGRES_OUTAGE_STATES: [&str; 5] = ["57P01", "57P02", "57P03", "57P05", "53300"];

/// SQLite's primary result codes `SQLITE_BUSY` and `SQLITE_LOCKED`: another connection held
/// the lock past the busy timeout.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;

/// Turns a database error into the domain's error: UNAVAILABLE with reason
/// `DEPENDENCY_UNAVAILABLE` (retryable) when the database cannot serve the call now — see
/// [`is_outage`] — and INTERNAL otherwise. The cause is logged, never shown.
pub fn db_error(err: DbErr) -> Error {
    if is_outage(&err) {
        tracing::warn!(error = %err, "database unavailable");
        return Error::Unavailable {
            reason: ErrorReason::DependencyUnavailable,
            message: "the database is busy or unreachable; retry shortly".into(),
            retry_after: Some(RETRY_AFTER),
        };
    }
    Error::internal(err)
}

/// Whether `err` reports that the database could not serve the call now, rather than that the
/// call itself failed: no pooled connection in time or the pool closed; the connection broke
/// (an I/O error: refused, reset, closed mid-query); PostgreSQL ended the session or refused it
/// (SQLSTATE class 08, 57P01, 57P02, 57P03, 57P05, 53300); SQLite busy or locked.
pub(crate) fn is_outage(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) => true,
        // SeaORM's own connection errors: the connection is gone ("Disconnected").
        DbErr::Conn(RuntimeErr::Internal(_)) => true,
        DbErr::Conn(RuntimeErr::SqlxError(cause))
        | DbErr::Exec(RuntimeErr::SqlxError(cause))
        | DbErr::Query(RuntimeErr::SqlxError(cause)) => sqlx_outage(cause),
        _ => false,
    }
}

fn sqlx_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(returned) => {
            if let Some(postgres) = returned.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres_outage(postgres.code())
            } else if let Some(sqlite) = returned.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                sqlite_outage(sqlite)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Whether a PostgreSQL SQLSTATE says the server is unreachable, going away or full.
fn postgres_outage(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || POSTGRES_OUTAGE_STATES.contains(&sqlstate)
}

/// Whether an SQLite error is `SQLITE_BUSY` or `SQLITE_LOCKED`, in any extended form (e.g.
/// `SQLITE_BUSY_SNAPSHOT`): the low byte of the extended code is the primary code.
fn sqlite_outage(err: &sqlx::sqlite::SqliteError) -> bool {
    use sqlx::error::DatabaseError as _;
    err.code()
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn io(kind: std::io::ErrorKind) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
            kind.into(),
        ))))
    }

    #[test]
    fn sqlstates_of_an_outage_are_recognised() {
        for state in [
            "08006", "08001", "08P01", "57P01", "57P02", "57P03", "57P05", "53300",
        ] {
            assert!(postgres_outage(state), "{state}");
        }
        for state in [
            "23505", "23503", "40001", "42P01", "22P02", "57014", "53100",
        ] {
            assert!(!postgres_outage(state), "{state}");
        }
    }

    #[test]
    fn broken_connections_and_pool_timeouts_are_outages_other_errors_are_not() {
        assert!(is_outage(&io(std::io::ErrorKind::UnexpectedEof)));
        assert!(is_outage(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(is_outage(&DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout
        )));
        assert!(is_outage(&DbErr::Exec(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::PoolClosed
        )))));
        assert!(!is_outage(&DbErr::Query(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::RowNotFound
        )))));
        assert!(!is_outage(&DbErr::Query(RuntimeErr::Internal(
            "a malformed statement".into()
        ))));
        assert!(!is_outage(&DbErr::RecordNotFound("x".into())));
        let unavailable = db_error(io(std::io::ErrorKind::BrokenPipe));
        assert!(
            matches!(
                unavailable,
                Error::Unavailable {
                    reason: ErrorReason::DependencyUnavailable,
                    ..
                }
            ),
            "{unavailable:?}"
        );
        assert!(matches!(
            db_error(DbErr::Custom("bug".into())),
            Error::Internal(_)
        ));
    }

    /// A migrated store on a fresh database: a new PostgreSQL database under
    /// `ASSISTD_TEST_DATABASE_URL` when set, else an SQLite file in `dir`.
    async fn fresh_store(dir: &std::path::Path) -> crate::Store {
        use sea_orm::ConnectionTrait as _;
        let settings = match std::env::var("ASSISTD_TEST_DATABASE_URL") {
            Ok(admin_url) => {
                let name = format!("assistd_test_{}", uuid::Uuid::now_v7().simple());
                let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                admin.close().await.ok();
                let (base, _) = admin_url.rsplit_once('/').unwrap();
                crate::DatabaseSettings::from_url(format!("{base}/{name}"))
            }
            Err(_) => crate::DatabaseSettings::sqlite(&dir.join("store.db")),
        };
        let store = crate::Store::connect(&settings).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    fn assert_unavailable(err: &Error) {
        assert!(
            matches!(
                err,
                Error::Unavailable {
                    reason: ErrorReason::DependencyUnavailable,
                    retry_after: Some(_),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// On PostgreSQL a query is cut off by the server ending its session (what a fast stop
    /// does to every session); on SQLite a writer finds the database locked past its busy
    /// timeout. Both are outages the client may retry, and the pool serves again afterwards.
    #[tokio::test]
    async fn a_query_cut_off_by_the_database_is_unavailable() {
        use sea_orm::{ConnectionTrait as _, DatabaseBackend, Statement};
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(dir.path()).await;
        match store.backend() {
            crate::Backend::Postgres => {
                let txn = store.begin_write().await.unwrap();
                let pid: i32 = txn
                    .query_one_raw(Statement::from_string(
                        DatabaseBackend::Postgres,
                        "SELECT pg_backend_pid() AS pid",
                    ))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get("", "pid")
                    .unwrap();
                // Another session ends this one once it is running its query.
                let db = store.connection().clone();
                let terminator = tokio::spawn(async move {
                    loop {
                        let terminated = db
                            .query_one_raw(Statement::from_sql_and_values(
                                DatabaseBackend::Postgres,
                                "SELECT pg_terminate_backend(pid) AS terminated \
                                 FROM pg_stat_activity \
                                 WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                                [pid.into()],
                            ))
                            .await
                            .unwrap();
                        if terminated.is_some() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
                let cut_off = txn
                    .execute_unprepared("SELECT pg_sleep(60)")
                    .await
                    .expect_err("the session was terminated");
                terminator.await.unwrap();
                eprintln!("the cut-off query failed with: {cut_off}");
                assert_unavailable(&db_error(cut_off));
                drop(txn);
            }
            crate::Backend::Sqlite => {
                let mut settings = crate::DatabaseSettings::sqlite(&dir.path().join("store.db"));
                settings.sqlite_busy_timeout = Duration::from_millis(50);
                let other = crate::Store::connect(&settings).await.unwrap();
                // This store holds the write lock; the other one cannot get it in time.
                let holder = store.begin_write().await.unwrap();
                let err = other
                    .begin_write()
                    .await
                    .expect_err("the database is locked");
                assert_unavailable(&err);
                let locked = other
                    .connection()
                    .execute_unprepared("CREATE TABLE locked_out (x INTEGER)")
                    .await
                    .expect_err("the database is locked");
                eprintln!("the locked-out statement failed with: {locked}");
                assert_unavailable(&db_error(locked));
                holder.rollback().await.unwrap();
                other.close().await;
            }
        }
        // Nothing stays broken: the pool serves the next call.
        store.ping().await.unwrap();
    }
}
