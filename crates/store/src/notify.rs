//! Change notifications between replicas sharing one PostgreSQL database, through
//! `LISTEN`/`NOTIFY`.

use std::time::Duration;

use assistd_domain::{Result, UserId};
use sea_orm::sqlx::postgres::PgListener;

use crate::{Backend, Store};

/// The channel on which a replica announces that a user's preferences changed; the payload is
/// the user id.
pub(crate) const PREFERENCES_CHANNEL: &str = "assistd_preferences";

/// What a [`PreferencesChangeFeed`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreferencesChange {
    /// This user's preferences changed on some replica.
    User(UserId),
    /// Notifications may have been lost (the listening connection dropped); every watcher
    /// should re-read its state.
    Resync,
}

/// A stream of preferences changes made by any replica.
#[derive(Debug)]
pub struct PreferencesChangeFeed {
    listener: PgListener,
}

impl Store {
    /// Starts listening for preferences changes from every replica. `None` on SQLite, where
    /// one process owns the database and in-process notification suffices.
    ///
    /// # Errors
    /// The listening connection could not be opened.
    pub async fn preferences_change_feed(&self) -> Result<Option<PreferencesChangeFeed>> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let pool = self.connection().get_postgres_connection_pool();
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(assistd_domain::Error::internal)?;
        listener
            .listen(PREFERENCES_CHANNEL)
            .await
            .map_err(assistd_domain::Error::internal)?;
        Ok(Some(PreferencesChangeFeed { listener }))
    }
}

impl PreferencesChangeFeed {
    /// Reconnects and listens again, retrying every second until the database answers, so
    /// that the re-reads a [`PreferencesChange::Resync`] causes start only once changes are
    /// heard again: a change committed in between is either read or announced.
    async fn listen_again(&mut self) {
        use sea_orm::sqlx::Executor as _;
        // Any statement through the listener reconnects it first, and reconnecting LISTENs
        // on every channel again.
        while let Err(err) = (&mut self.listener).execute("SELECT 1").await {
            tracing::warn!(error = %err, "listening for preferences changes failed; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits for the next change. After a lost connection it listens again (waiting for the
    /// database to come back), then answers [`PreferencesChange::Resync`].
    pub async fn next(&mut self) -> PreferencesChange {
        loop {
            match self.listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse::<UserId>() {
                    Ok(user) => return PreferencesChange::User(user),
                    Err(_) => {
                        tracing::warn!(
                            payload = notification.payload(),
                            "ignoring malformed preferences notification"
                        );
                    }
                },
                Ok(None) => {
                    self.listen_again().await;
                    return PreferencesChange::Resync;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "preferences change feed failed; listening again");
                    self.listen_again().await;
                    return PreferencesChange::Resync;
                }
            }
        }
    }
}
