//! Opening the database: picking the backend from the URL, SQLite's pragmas, pool sizes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assistd_domain::{Error, Result};
use assistd_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use crate::db_error;

/// Which database engine a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (or in-memory database).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How to reach the database.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long to wait for a connection from the pool.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for another writer's lock before failing.
    pub sqlite_busy_timeout: Duration,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for logs and Debug output.
#[must_use]
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl DatabaseSettings {
    /// Settings for an SQLite file at `path`, with default pool limits.
    #[must_use]
    pub fn sqlite(path: &Path) -> Self {
        Self::from_url(format!("sqlite://{}", path.display()))
    }

    /// Settings for `url` with default pool limits.
    #[must_use]
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }

    /// The backend the URL names.
    ///
    /// # Errors
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    pub fn backend(&self) -> Result<Backend> {
        if self.url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::internal(format!(
                "unsupported database URL {}: use sqlite://PATH or postgres://…",
                redact_url_password(&self.url)
            )))
        }
    }

    /// The SQLite file the URL names, if it names a file.
    fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }
}

/// How long a pooled connection may sit unused before it is pinged at checkout.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

/// A pool of database connections, and the repositories built on it.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// How this store connected, so migrations can open a connection of their own. Shared:
    /// the options are most of a `Store`'s size, and many long-waiting futures hold one.
    options: std::sync::Arc<ConnectOptions>,
    /// This process's chat watchers (see `chat_feed`).
    chat_hub: std::sync::Arc<crate::chat_feed::ChatHub>,
    /// Session-list pages read recently (see `chat::session_cache`).
    session_lists: std::sync::Arc<crate::chat::SessionListCache>,
    /// Reads of users' event heads for session lists (see `chat::heads`).
    event_heads: std::sync::Arc<crate::chat::HeadReader>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connect options: their URL may hold the database password.
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database.
    ///
    /// SQLite runs in WAL mode (readers never block the writer), with foreign keys enforced, a
    /// busy timeout so concurrent writers queue instead of failing, and `synchronous=NORMAL`:
    /// in WAL mode that never corrupts the database and survives a crash of the process; a
    /// power loss may undo the last commits. FULL would add an fsync to every commit, which
    /// costs far more than preferences and chat history are worth losing in that rare case.
    /// A missing SQLite file is created with mode 0600.
    ///
    /// # Errors
    /// The URL is unsupported, or the database cannot be reached.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self> {
        let backend = settings.backend()?;
        if backend == Backend::Sqlite
            && let Some(path) = settings.sqlite_path()
        {
            create_private_file(&path).map_err(Error::internal)?;
        }
        let mut options = ConnectOptions::new(settings.url.clone());
        options
            .max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            // By default every checkout first pings the connection: one more round trip to
            // the database per statement (or transaction). A connection that served a call a
            // moment ago is taken as it is; one idle longer is pinged first. A connection that
            // broke meanwhile (the database restarted) fails its next statement, which answers
            // UNAVAILABLE like any statement cut off by an outage, and is then discarded.
            .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
            .sqlx_logging(false);
        let busy_timeout = settings.sqlite_busy_timeout;
        options.map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(busy_timeout)
        });
        let db = Database::connect(options.clone()).await.map_err(db_error)?;
        Ok(Self {
            db,
            backend,
            options: std::sync::Arc::new(options),
            chat_hub: std::sync::Arc::default(),
            session_lists: std::sync::Arc::default(),
            event_heads: std::sync::Arc::default(),
        })
    }

    /// Applies every pending migration.
    ///
    /// # Errors
    /// A migration failed; the database is left at the last one that succeeded.
    pub async fn migrate(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            return Migrator::up(&self.db, None).await.map_err(db_error);
        }
        // On SQLite the migrator runs each statement on whichever pooled connection is free,
        // outside a transaction; a pooled connection that took part could afterwards answer
        // "no such table" once. Migrating on a connection of its own keeps the pool out of it.
        let mut options = ConnectOptions::clone(&self.options);
        options.max_connections(1).min_connections(1);
        let db = Database::connect(options).await.map_err(db_error)?;
        let result = Migrator::up(&db, None).await.map_err(db_error);
        db.close().await.map_err(db_error)?;
        result
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<()> {
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes queues behind other
    /// writers (busy timeout) instead of failing when a concurrent commit makes its snapshot
    /// stale. On PostgreSQL it is a plain `BEGIN`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction> {
        use sea_orm::TransactionTrait as _;
        self.db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(db_error)
    }

    /// The engine behind this store.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's chat watchers.
    pub(crate) fn chat_hub(&self) -> &std::sync::Arc<crate::chat_feed::ChatHub> {
        &self.chat_hub
    }

    /// Session-list pages read recently.
    pub(crate) fn session_lists(&self) -> &crate::chat::SessionListCache {
        &self.session_lists
    }

    /// Where session lists read users' event heads (PostgreSQL).
    pub(crate) fn event_heads(&self) -> &std::sync::Arc<crate::chat::HeadReader> {
        &self.event_heads
    }

    /// The underlying connection, for repositories and tests that inspect rows directly.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes every pooled connection.
    pub async fn close(self) {
        if let Err(err) = self.db.close().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
    }
}

/// Creates `path` (and its parent directory) readable by the owner only, if it is missing.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://app:s3cret@db:5432/assistd"),
            "postgres://app:***@db:5432/assistd"
        );
        assert_eq!(
            redact_url_password("postgres://db/assistd"),
            "postgres://db/assistd"
        );
        let settings = DatabaseSettings::from_url("postgres://app:s3cret@db/x");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn sqlite_paths_are_extracted() {
        let settings = DatabaseSettings::from_url("sqlite://data/assistd.db?mode=rwc");
        assert_eq!(
            settings.sqlite_path(),
            Some(PathBuf::from("data/assistd.db"))
        );
        assert_eq!(
            DatabaseSettings::from_url("sqlite::memory:").sqlite_path(),
            None
        );
        assert!(DatabaseSettings::from_url("mysql://x").backend().is_err());
    }
}
