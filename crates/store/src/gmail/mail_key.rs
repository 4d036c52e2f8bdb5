//! The user's mail key, sealed under their data key: installed once by the first sync that
//! needs it, resealed when the data key is replaced.

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::connection::of_user;
use super::{GmailStore, SealedMailKey, connection_not_found, micros};
use crate::db_error;
use crate::entity::gmail_connections;

impl GmailStore {
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
        let update = gmail_connections::Entity::update_many()
            .col_expr(Column::SealedMailKey, Expr::value(new.sealed.clone()))
            .col_expr(Column::MailKeyVersion, Expr::value(new_version))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(
                of_user(user)
                    .add(Column::SealedMailKey.eq(old.sealed.clone()))
                    .add(Column::MailKeyVersion.eq(old_version)),
            );
        self.changed(update).await
    }
}
