//! The sync lease and what a sync records while it holds it: taking, renewing and releasing
//! the lease, starting a full sync, saving its progress and completing a sync. Every write
//! but the take applies only while its owner still holds the lease.

use std::time::Duration;

use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, UpdateMany};

use super::connection::{clearing_full_sync, of_user};
use super::{GmailConnectionState, GmailStore, history_text, micros};
use crate::entity::gmail_connections;

/// The longest lease: an absurd duration is cut to this rather than failing, and stays a
/// four-digit year (SQLite compares timestamps as text).
const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `now + ttl`, with `ttl` at most [`MAX_LEASE`].
fn lease_end(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let ttl = chrono::TimeDelta::from_std(ttl.min(MAX_LEASE)).unwrap_or(chrono::TimeDelta::zero());
    micros(now.checked_add_signed(ttl).unwrap_or(now))
}

/// The lease is held by `owner`.
fn held_by(owner: &str) -> Condition {
    Condition::all().add(gmail_connections::Column::SyncLeaseOwner.eq(owner))
}

impl GmailStore {
    /// Runs `update` on the user's row while `owner` holds the lease. Returns whether it did.
    async fn update_under_lease(
        &self,
        user: UserId,
        owner: &str,
        update: UpdateMany<gmail_connections::Entity>,
    ) -> Result<bool> {
        self.changed(update.filter(of_user(user).add(held_by(owner))))
            .await
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
        let update = gmail_connections::Entity::update_many()
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
            );
        self.changed(update).await
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
        let update = gmail_connections::Entity::update_many()
            .col_expr(Column::SyncLeaseExpiresAt, Expr::value(lease_end(now, ttl)));
        self.update_under_lease(user, owner, update).await
    }

    /// Releases `owner`'s lease. Returns whether `owner` held it.
    ///
    /// # Errors
    /// The database failed.
    pub async fn release_sync_lease(&self, user: UserId, owner: &str) -> Result<bool> {
        use gmail_connections::Column;
        let update = gmail_connections::Entity::update_many()
            .col_expr(Column::SyncLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::SyncLeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        self.update_under_lease(user, owner, update).await
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
        let update = gmail_connections::Entity::update_many()
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
            .col_expr(Column::UpdatedAt, Expr::value(now));
        self.update_under_lease(user, owner, update).await
    }

    /// Stores the mailbox's address as Gmail's getProfile gives it, under `owner`'s lease;
    /// GetConnection shows it from then on (the sign-in's address may be another of the
    /// account's). An empty address changes nothing. Returns `false` when `owner` does not
    /// hold the lease.
    ///
    /// # Errors
    /// The database failed.
    pub async fn record_mailbox_address(
        &self,
        user: UserId,
        owner: &str,
        email_address: &str,
    ) -> Result<bool> {
        use gmail_connections::Column;
        if email_address.is_empty() {
            return Ok(true);
        }
        let update = gmail_connections::Entity::update_many()
            .col_expr(Column::EmailAddress, Expr::value(email_address));
        self.update_under_lease(user, owner, update).await
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
        let update = gmail_connections::Entity::update_many()
            .col_expr(
                Column::FullSyncPageToken,
                Expr::value(page_token.map(str::to_owned)),
            )
            .col_expr(Column::FullSyncFetched, Expr::value(fetched))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(Column::FullSyncHistoryId.is_not_null());
        self.update_under_lease(user, owner, update).await
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
        let update = clearing_full_sync(gmail_connections::Entity::update_many())
            .col_expr(Column::HistoryId, Expr::value(history_text(history_id)))
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
            .col_expr(Column::UpdatedAt, Expr::value(now));
        self.update_under_lease(user, owner, update).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
