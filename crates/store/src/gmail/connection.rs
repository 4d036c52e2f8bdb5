//! The connection row: connecting and disconnecting, the sealed mail key, the sync lease,
//! full-sync progress, errors and the background scheduler's due times.

use std::time::Duration;

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    GmailStore, account_gone, connection_not_found, history_text, history_value,
    is_foreign_key_violation, micros,
};
use crate::db_error;
use crate::entity::{gmail_connections, gmail_message_labels, gmail_messages, gmail_search_terms};

/// Where a user's Gmail connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmailConnectionState {
    /// Connected: synced in the background.
    Connected,
    /// Google refused the grant (revoked, expired, scope withdrawn): not synced until the
    /// user connects again.
    ReauthRequired,
    /// Disconnected, with the synced mail kept.
    NotConnected,
}

impl GmailConnectionState {
    /// The stored form.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::ReauthRequired => "reauth_required",
            Self::NotConnected => "not_connected",
        }
    }

    /// Parses the stored form.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "connected" => Some(Self::Connected),
            "reauth_required" => Some(Self::ReauthRequired),
            "not_connected" => Some(Self::NotConnected),
            _ => None,
        }
    }
}

/// The mail key as stored: sealed under the user's data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedMailKey {
    /// The sealed key (purpose `gmail_mail_key`, record = the user id).
    pub sealed: Vec<u8>,
    /// The version of the data key that sealed it.
    pub key_version: u32,
}

/// A full sync under way: where it resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullSyncProgress {
    /// The mailbox's history id read when the full sync started; it becomes the connection's
    /// history id when the full sync completes.
    pub start_history_id: u64,
    /// The `messages.list` page to fetch next; `None` for the first page.
    pub page_token: Option<String>,
    /// Messages stored by this full sync so far.
    pub fetched: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// The last sync failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncError {
    /// Machine-readable reason (e.g. `GMAIL_REAUTH_REQUIRED`).
    pub reason: String,
    /// For humans; never mail content or tokens.
    pub message: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Who holds the sync lease, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncLease {
    /// The holder (e.g. a replica id and a sync id).
    pub owner: String,
    /// When another may take it over.
    pub expires_at: DateTime<Utc>,
}

/// A user's Gmail connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmailConnection {
    /// The user.
    pub user: UserId,
    /// Where the connection stands.
    pub state: GmailConnectionState,
    /// The Gmail address (from the Gmail profile).
    pub email_address: Option<String>,
    /// The OAuth scopes granted.
    pub scopes: Vec<String>,
    /// When the user last connected (from not connected or reauth required).
    pub connected_at: Option<DateTime<Utc>>,
    /// The mail key, once the first message was synced.
    pub mail_key: Option<SealedMailKey>,
    /// The history id the last completed sync reached; `None` until a full sync completed.
    pub history_id: Option<u64>,
    /// The full sync under way, if any.
    pub full_sync: Option<FullSyncProgress>,
    /// When the last sync completed.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The last failure since the last completed sync.
    pub last_error: Option<SyncError>,
    /// The sync lease, if one was taken and not released (it may have expired).
    pub sync_lease: Option<SyncLease>,
    /// When the background scheduler syncs this user next.
    pub next_sync_due_at: Option<DateTime<Utc>>,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

fn connection_of(row: gmail_connections::Model) -> Result<GmailConnection> {
    let state = GmailConnectionState::parse(&row.state).ok_or_else(|| {
        Error::internal(format!(
            "unknown state {:?} in gmail_connections",
            row.state
        ))
    })?;
    let mail_key = match (row.sealed_mail_key, row.mail_key_version) {
        (Some(sealed), Some(version)) => Some(SealedMailKey {
            sealed,
            key_version: u32::try_from(version).map_err(Error::internal)?,
        }),
        _ => None,
    };
    let full_sync = match (row.full_sync_history_id, row.full_sync_started_at) {
        (Some(history), Some(started_at)) => Some(FullSyncProgress {
            start_history_id: history_value(&history)?,
            page_token: row.full_sync_page_token,
            fetched: row.full_sync_fetched,
            started_at,
        }),
        _ => None,
    };
    let last_error = match (
        row.last_error_reason,
        row.last_error_message,
        row.last_error_at,
    ) {
        (Some(reason), message, Some(at)) => Some(SyncError {
            reason,
            message: message.unwrap_or_default(),
            at,
        }),
        _ => None,
    };
    let sync_lease = match (row.sync_lease_owner, row.sync_lease_expires_at) {
        (Some(owner), Some(expires_at)) => Some(SyncLease { owner, expires_at }),
        _ => None,
    };
    Ok(GmailConnection {
        user: UserId::from_uuid(row.user_id),
        state,
        email_address: row.email_address,
        scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        connected_at: row.connected_at,
        mail_key,
        history_id: row.history_id.as_deref().map(history_value).transpose()?,
        full_sync,
        last_sync_at: row.last_sync_at,
        last_error,
        sync_lease,
        next_sync_due_at: row.next_sync_due_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The longest lease: an absurd duration is cut to this rather than failing, and stays a
/// four-digit year (SQLite compares timestamps as text).
const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `now + ttl`, with `ttl` at most [`MAX_LEASE`].
fn lease_end(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let ttl = chrono::TimeDelta::from_std(ttl.min(MAX_LEASE)).unwrap_or(chrono::TimeDelta::zero());
    micros(now.checked_add_signed(ttl).unwrap_or(now))
}

/// Rows of `user` in the connections table.
fn of_user(user: UserId) -> Condition {
    Condition::all().add(gmail_connections::Column::UserId.eq(user.as_uuid()))
}

/// The lease is held by `owner`.
fn held_by(owner: &str) -> Condition {
    Condition::all().add(gmail_connections::Column::SyncLeaseOwner.eq(owner))
}

impl GmailStore {
    /// The user's connection, if they ever connected (and did not disconnect deleting mail).
    ///
    /// # Errors
    /// The database failed.
    pub async fn connection(&self, user: UserId) -> Result<Option<GmailConnection>> {
        gmail_connections::Entity::find_by_id(user.as_uuid())
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .map(connection_of)
            .transpose()
    }

    /// Records that the user connected Gmail with `scopes` as `email_address`: creates the
    /// connection or sets it `connected`, clears the last error and makes a sync due `now`.
    /// `connected_at` becomes `now` unless the connection was already `connected` (a new
    /// consent while connected only changes the scopes). Synced mail, the mail key and the
    /// history id are kept: a reconnect resumes where the last sync stopped.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the user no longer exists; the database failed.
    pub async fn connect(
        &self,
        user: UserId,
        email_address: &str,
        scopes: &[String],
        now: DateTime<Utc>,
    ) -> Result<GmailConnection> {
        use gmail_connections::Column;
        let now = micros(now);
        let scopes = scopes.join(" ");
        let connected = gmail_connections::Model {
            user_id: user.as_uuid(),
            state: GmailConnectionState::Connected.as_str().to_owned(),
            email_address: Some(email_address.to_owned()),
            scopes: scopes.clone(),
            connected_at: Some(now),
            sealed_mail_key: None,
            mail_key_version: None,
            history_id: None,
            full_sync_history_id: None,
            full_sync_page_token: None,
            full_sync_fetched: 0,
            full_sync_started_at: None,
            last_sync_at: None,
            last_error_reason: None,
            last_error_message: None,
            last_error_at: None,
            sync_lease_owner: None,
            sync_lease_expires_at: None,
            next_sync_due_at: Some(now),
            created_at: now,
            updated_at: now,
        };
        let table = gmail_connections::Entity;
        let upsert = Query::insert()
            .into_table(table)
            .columns([
                Column::UserId,
                Column::State,
                Column::EmailAddress,
                Column::Scopes,
                Column::ConnectedAt,
                Column::FullSyncFetched,
                Column::NextSyncDueAt,
                Column::CreatedAt,
                Column::UpdatedAt,
            ])
            .values_panic([
                connected.user_id.into(),
                connected.state.clone().into(),
                connected.email_address.clone().into(),
                connected.scopes.clone().into(),
                connected.connected_at.into(),
                0i64.into(),
                connected.next_sync_due_at.into(),
                now.into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::column(Column::UserId)
                    .value(
                        Column::ConnectedAt,
                        Expr::case(
                            Expr::col((table, Column::State))
                                .eq(GmailConnectionState::Connected.as_str()),
                            Expr::col((table, Column::ConnectedAt)),
                        )
                        .finally(Expr::value(now)),
                    )
                    .value(Column::State, GmailConnectionState::Connected.as_str())
                    .value(Column::EmailAddress, email_address)
                    .value(Column::Scopes, scopes)
                    .value(Column::LastErrorReason, Option::<String>::None)
                    .value(Column::LastErrorMessage, Option::<String>::None)
                    .value(Column::LastErrorAt, Option::<DateTime<Utc>>::None)
                    .value(Column::NextSyncDueAt, now)
                    .value(Column::UpdatedAt, now)
                    .to_owned(),
            )
            .to_owned();
        match self.store.connection().execute(&upsert).await {
            Ok(_) => {}
            Err(err) if is_foreign_key_violation(&err) => return Err(account_gone()),
            Err(err) => return Err(db_error(err)),
        }
        self.connection(user)
            .await?
            .ok_or_else(|| connection_not_found(user))
    }

    /// Sets the connection's state (e.g. `ReauthRequired` when Google refused the grant).
    /// Returns whether the user has a connection.
    ///
    /// # Errors
    /// The database failed.
    pub async fn set_state(
        &self,
        user: UserId,
        state: GmailConnectionState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::State, Expr::value(state.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(of_user(user))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Stores `key` as the user's mail key unless one is stored already, and returns the key
    /// stored afterwards: `key` itself, or the one a concurrent sync stored first (use that
    /// one, and drop yours).
    ///
    /// # Errors
    /// NOT_FOUND when the user has no connection; the database failed.
    pub async fn install_mail_key(
        &self,
        user: UserId,
        key: &SealedMailKey,
        now: DateTime<Utc>,
    ) -> Result<SealedMailKey> {
        use gmail_connections::Column;
        let version = i32::try_from(key.key_version).map_err(Error::internal)?;
        gmail_connections::Entity::update_many()
            .col_expr(Column::SealedMailKey, Expr::value(key.sealed.clone()))
            .col_expr(Column::MailKeyVersion, Expr::value(version))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(of_user(user).add(Column::SealedMailKey.is_null()))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        self.connection(user)
            .await?
            .ok_or_else(|| connection_not_found(user))?
            .mail_key
            .ok_or_else(|| Error::internal("the mail key vanished after it was stored"))
    }

    /// Replaces the mail key `old` by `new` (the same key sealed under a replaced data key),
    /// only while `old` is still the stored one. Returns whether it was replaced.
    ///
    /// # Errors
    /// The database failed.
    pub async fn reseal_mail_key(
        &self,
        user: UserId,
        old: &SealedMailKey,
        new: &SealedMailKey,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let old_version = i32::try_from(old.key_version).map_err(Error::internal)?;
        let new_version = i32::try_from(new.key_version).map_err(Error::internal)?;
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::SealedMailKey, Expr::value(new.sealed.clone()))
            .col_expr(Column::MailKeyVersion, Expr::value(new_version))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(
                of_user(user)
                    .add(Column::SealedMailKey.eq(old.sealed.clone()))
                    .add(Column::MailKeyVersion.eq(old_version)),
            )
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Takes the user's sync lease for `owner` until `now + ttl` if the connection is
    /// `connected` and the lease is free, expired at `now`, or already `owner`'s. One
    /// conditional UPDATE: of concurrent callers exactly one wins. Returns whether `owner`
    /// holds the lease now.
    ///
    /// # Errors
    /// The database failed.
    pub async fn try_take_sync_lease(
        &self,
        user: UserId,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let now = micros(now);
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::SyncLeaseOwner, Expr::value(owner))
            .col_expr(Column::SyncLeaseExpiresAt, Expr::value(lease_end(now, ttl)))
            .filter(
                of_user(user)
                    .add(Column::State.eq(GmailConnectionState::Connected.as_str()))
                    .add(
                        Condition::any()
                            .add(Column::SyncLeaseOwner.is_null())
                            .add(Column::SyncLeaseExpiresAt.is_null())
                            .add(Column::SyncLeaseExpiresAt.lte(now))
                            .add(Column::SyncLeaseOwner.eq(owner)),
                    ),
            )
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Extends `owner`'s lease to `now + ttl` (the heartbeat of a running sync). Returns
    /// `false` when `owner` no longer holds it (another took it over after it expired, or the
    /// user disconnected): the sync must stop.
    ///
    /// # Errors
    /// The database failed.
    pub async fn renew_sync_lease(
        &self,
        user: UserId,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let now = micros(now);
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::SyncLeaseExpiresAt, Expr::value(lease_end(now, ttl)))
            .filter(of_user(user).add(held_by(owner)))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Releases `owner`'s lease. Returns whether `owner` held it.
    ///
    /// # Errors
    /// The database failed.
    pub async fn release_sync_lease(&self, user: UserId, owner: &str) -> Result<bool> {
        use gmail_connections::Column;
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::SyncLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::SyncLeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(of_user(user).add(held_by(owner)))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Starts (or restarts) a full sync under `owner`'s lease: remembers the history id read
    /// from the profile at its start, from the first page, nothing fetched. Returns `false`
    /// when `owner` does not hold the lease.
    ///
    /// # Errors
    /// The database failed.
    pub async fn begin_full_sync(
        &self,
        user: UserId,
        owner: &str,
        start_history_id: u64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let now = micros(now);
        let result = gmail_connections::Entity::update_many()
            .col_expr(
                Column::FullSyncHistoryId,
                Expr::value(history_text(start_history_id)),
            )
            .col_expr(
                Column::FullSyncPageToken,
                Expr::value(Option::<String>::None),
            )
            .col_expr(Column::FullSyncFetched, Expr::value(0i64))
            .col_expr(Column::FullSyncStartedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(of_user(user).add(held_by(owner)))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Records how far the full sync got: the next page to fetch (`None` when the listing is
    /// exhausted) and how many messages it stored. Returns `false` when `owner` does not hold
    /// the lease or no full sync is under way.
    ///
    /// # Errors
    /// The database failed.
    pub async fn save_full_sync_progress(
        &self,
        user: UserId,
        owner: &str,
        page_token: Option<&str>,
        fetched: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let result = gmail_connections::Entity::update_many()
            .col_expr(
                Column::FullSyncPageToken,
                Expr::value(page_token.map(str::to_owned)),
            )
            .col_expr(Column::FullSyncFetched, Expr::value(fetched))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(
                of_user(user)
                    .add(held_by(owner))
                    .add(Column::FullSyncHistoryId.is_not_null()),
            )
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Completes a sync under `owner`'s lease: the history id becomes `history_id`, any full
    /// sync progress is cleared, `last_sync_at` is `now`, the last error is cleared and the
    /// next sync is due at `next_sync_due_at`. The lease stays held (release it after).
    /// Returns `false` when `owner` does not hold the lease: nothing changed.
    ///
    /// # Errors
    /// The database failed.
    pub async fn complete_sync(
        &self,
        user: UserId,
        owner: &str,
        history_id: u64,
        now: DateTime<Utc>,
        next_sync_due_at: DateTime<Utc>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let now = micros(now);
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::HistoryId, Expr::value(history_text(history_id)))
            .col_expr(
                Column::FullSyncHistoryId,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                Column::FullSyncPageToken,
                Expr::value(Option::<String>::None),
            )
            .col_expr(Column::FullSyncFetched, Expr::value(0i64))
            .col_expr(
                Column::FullSyncStartedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::LastSyncAt, Expr::value(now))
            .col_expr(Column::LastErrorReason, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LastErrorMessage,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                Column::LastErrorAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::NextSyncDueAt, Expr::value(micros(next_sync_due_at)))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(of_user(user).add(held_by(owner)))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Records a failed sync: its reason and message (never mail content or tokens) at `now`,
    /// and when to try again (`None` leaves the due time as it is). Progress and history id
    /// stay as they were. Returns whether the user has a connection.
    ///
    /// # Errors
    /// The database failed.
    pub async fn record_sync_error(
        &self,
        user: UserId,
        reason: &str,
        message: &str,
        now: DateTime<Utc>,
        next_sync_due_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let now = micros(now);
        let mut update = gmail_connections::Entity::update_many()
            .col_expr(Column::LastErrorReason, Expr::value(reason))
            .col_expr(Column::LastErrorMessage, Expr::value(message))
            .col_expr(Column::LastErrorAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now));
        if let Some(due) = next_sync_due_at {
            update = update.col_expr(Column::NextSyncDueAt, Expr::value(micros(due)));
        }
        let result = update
            .filter(of_user(user))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Sets when the background scheduler syncs the user next. Returns whether the user has
    /// a connection.
    ///
    /// # Errors
    /// The database failed.
    pub async fn set_next_sync_due(&self, user: UserId, at: DateTime<Utc>) -> Result<bool> {
        use gmail_connections::Column;
        let result = gmail_connections::Entity::update_many()
            .col_expr(Column::NextSyncDueAt, Expr::value(micros(at)))
            .filter(of_user(user))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    /// Up to `limit` users to sync now, soonest due first: `connected`, due at or before
    /// `now`, and with no lease or an expired one. Taking the lease decides who syncs; this
    /// list only says who to try.
    ///
    /// # Errors
    /// The database failed.
    pub async fn users_due_for_sync(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<UserId>> {
        use gmail_connections::Column;
        let now = micros(now);
        let rows: Vec<uuid::Uuid> = gmail_connections::Entity::find()
            .select_only()
            .column(Column::UserId)
            .filter(Column::State.eq(GmailConnectionState::Connected.as_str()))
            .filter(Column::NextSyncDueAt.lte(now))
            .filter(
                Condition::any()
                    .add(Column::SyncLeaseOwner.is_null())
                    .add(Column::SyncLeaseExpiresAt.is_null())
                    .add(Column::SyncLeaseExpiresAt.lte(now)),
            )
            .order_by_asc(Column::NextSyncDueAt)
            .order_by_asc(Column::UserId)
            .limit(limit)
            .into_tuple()
            .all(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(UserId::from_uuid).collect())
    }

    /// Deletes the user's synced mail and everything derived from it: messages, labels, the
    /// blind index, the mail key (so a sealed copy taken earlier never opens again), the
    /// history id and any full-sync progress. The connection itself stays as it is; the next
    /// sync is a full one.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_all_mail(&self, user: UserId, now: DateTime<Utc>) -> Result<()> {
        use gmail_connections::Column;
        let txn = self.store.begin_write().await?;
        delete_mail_rows(&txn, user).await?;
        gmail_connections::Entity::update_many()
            .col_expr(Column::SealedMailKey, Expr::value(Option::<Vec<u8>>::None))
            .col_expr(Column::MailKeyVersion, Expr::value(Option::<i32>::None))
            .col_expr(Column::HistoryId, Expr::value(Option::<String>::None))
            .col_expr(
                Column::FullSyncHistoryId,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                Column::FullSyncPageToken,
                Expr::value(Option::<String>::None),
            )
            .col_expr(Column::FullSyncFetched, Expr::value(0i64))
            .col_expr(
                Column::FullSyncStartedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(of_user(user))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    /// Disconnects the user. With `delete_mail` the connection row goes too, with the synced
    /// mail, its index and the mail key: nothing of the mailbox is left. Without, the state
    /// becomes `not_connected`, the lease is dropped and nothing is scheduled; the mail stays
    /// readable. Either way a sync still running stops at its next write (it no longer holds
    /// the lease, and messages are written only while connected). Returns whether the user
    /// had a connection.
    ///
    /// # Errors
    /// The database failed.
    pub async fn disconnect(
        &self,
        user: UserId,
        delete_mail: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use gmail_connections::Column;
        let txn = self.store.begin_write().await?;
        let existed = if delete_mail {
            // The row first: on PostgreSQL that waits for a message write holding it
            // share-locked, so its message is committed before the deletes below look.
            let deleted = gmail_connections::Entity::delete_many()
                .filter(of_user(user))
                .exec(&txn)
                .await
                .map_err(db_error)?;
            // The foreign keys cascade; deleting explicitly does not depend on them.
            delete_mail_rows(&txn, user).await?;
            deleted.rows_affected > 0
        } else {
            gmail_connections::Entity::update_many()
                .col_expr(
                    Column::State,
                    Expr::value(GmailConnectionState::NotConnected.as_str()),
                )
                .col_expr(Column::SyncLeaseOwner, Expr::value(Option::<String>::None))
                .col_expr(
                    Column::SyncLeaseExpiresAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(
                    Column::NextSyncDueAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
                .filter(of_user(user))
                .exec(&txn)
                .await
                .map_err(db_error)?
                .rows_affected
                > 0
        };
        txn.commit().await.map_err(db_error)?;
        Ok(existed)
    }
}

/// Deletes the user's messages, labels and search terms.
async fn delete_mail_rows<C: ConnectionTrait>(db: &C, user: UserId) -> Result<()> {
    gmail_search_terms::Entity::delete_many()
        .filter(gmail_search_terms::Column::UserId.eq(user.as_uuid()))
        .exec(db)
        .await
        .map_err(db_error)?;
    gmail_message_labels::Entity::delete_many()
        .filter(gmail_message_labels::Column::UserId.eq(user.as_uuid()))
        .exec(db)
        .await
        .map_err(db_error)?;
    gmail_messages::Entity::delete_many()
        .filter(gmail_messages::Column::UserId.eq(user.as_uuid()))
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for state in [
            GmailConnectionState::Connected,
            GmailConnectionState::ReauthRequired,
            GmailConnectionState::NotConnected,
        ] {
            assert_eq!(GmailConnectionState::parse(state.as_str()), Some(state));
        }
        assert_eq!(GmailConnectionState::parse("CONNECTED"), None);
    }

    #[test]
    fn absurd_lease_durations_saturate() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            lease_end(now, Duration::from_secs(30)),
            DateTime::from_timestamp(1_800_000_030, 0).unwrap()
        );
        assert_eq!(lease_end(now, Duration::MAX), lease_end(now, MAX_LEASE),);
    }
}
