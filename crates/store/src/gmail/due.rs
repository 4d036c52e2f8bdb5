//! When users are due for a sync: the background scheduler's due times, the users due now,
//! and a failed sync, which records its error and when to try again.

use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::connection::of_user;
use super::{GmailConnectionState, GmailStore, micros};
use crate::db_error;
use crate::entity::gmail_connections;

impl GmailStore {
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
        self.changed(update.filter(of_user(user))).await
    }

    /// Sets when the background scheduler syncs the user next. Returns whether the user has
    /// a connection.
    ///
    /// # Errors
    /// The database failed.
    pub async fn set_next_sync_due(&self, user: UserId, at: DateTime<Utc>) -> Result<bool> {
        use gmail_connections::Column;
        let update = gmail_connections::Entity::update_many()
            .col_expr(Column::NextSyncDueAt, Expr::value(micros(at)))
            .filter(of_user(user));
        self.changed(update).await
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
}
