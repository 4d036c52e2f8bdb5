//! The connection row: what it holds, connecting, the connection's state, disconnecting and
//! deleting the synced mail. The other operation groups on the row are `lease` (the sync
//! lease and a sync's progress), `mail_key` and `due` (when users are synced).

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, UpdateMany};

use super::{
    GmailStore, account_gone, connection_not_found, history_value, is_foreign_key_violation, micros,
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

/// Rows of `user` in the connections table.
pub(super) fn of_user(user: UserId) -> Condition {
    Condition::all().add(gmail_connections::Column::UserId.eq(user.as_uuid()))
}

/// `update` also clearing any full-sync progress.
pub(super) fn clearing_full_sync(
    update: UpdateMany<gmail_connections::Entity>,
) -> UpdateMany<gmail_connections::Entity> {
    use gmail_connections::Column;
    update
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
}

impl GmailStore {
    /// Runs `update` (filtered by the caller) on the connections table. Returns whether it
    /// changed a row.
    pub(super) async fn changed(
        &self,
        update: UpdateMany<gmail_connections::Entity>,
    ) -> Result<bool> {
        let result = update
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

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
    /// A connection that already has an address keeps it (a sync stores the mailbox's own,
    /// from Gmail's getProfile, over the sign-in's).
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
                    // The address a sync read from Gmail's getProfile stays: it is the
                    // mailbox's own, where `email_address` is the sign-in's.
                    .value(
                        Column::EmailAddress,
                        Expr::case(
                            Expr::col((table, Column::EmailAddress))
                                .is_null()
                                .or(Expr::col((table, Column::EmailAddress)).eq("")),
                            Expr::value(email_address),
                        )
                        .finally(Expr::col((table, Column::EmailAddress))),
                    )
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
        let update = gmail_connections::Entity::update_many()
            .col_expr(Column::State, Expr::value(state.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(of_user(user));
        self.changed(update).await
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
        clearing_full_sync(gmail_connections::Entity::update_many())
            .col_expr(Column::SealedMailKey, Expr::value(Option::<Vec<u8>>::None))
            .col_expr(Column::MailKeyVersion, Expr::value(Option::<i32>::None))
            .col_expr(Column::HistoryId, Expr::value(Option::<String>::None))
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
}
