//! Users' wrapped data keys. Deleting a user's row is crypto-shredding: every secret sealed
//! under that data key becomes unreadable.

use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};

use crate::entity::user_data_keys;
use crate::{Store, db_error};

/// A data key as stored: wrapped, never in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDataKey {
    /// Whose key.
    pub user: UserId,
    /// Which key-encryption key wrapped it.
    pub kek_id: String,
    /// The wrapped key bytes.
    pub wrapped: Vec<u8>,
    /// Version of the data key (bound into every ciphertext sealed under it).
    pub key_version: i32,
}

/// What [`DataKeyRepository::insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The row was written.
    Inserted,
    /// Another writer stored a key for this user first.
    AlreadyExists,
}

/// Reads and writes wrapped data keys.
#[derive(Clone, Debug)]
pub struct DataKeyRepository {
    store: Store,
}

impl Store {
    /// The wrapped data key repository.
    #[must_use]
    pub fn data_keys(&self) -> DataKeyRepository {
        DataKeyRepository {
            store: self.clone(),
        }
    }
}

fn stored(row: user_data_keys::Model) -> StoredDataKey {
    StoredDataKey {
        user: UserId::from_uuid(row.user_id),
        kek_id: row.kek_id,
        wrapped: row.wrapped_key,
        key_version: row.key_version,
    }
}

impl DataKeyRepository {
    /// The user's wrapped data key, if one exists.
    ///
    /// # Errors
    /// The database failed.
    pub async fn get<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
    ) -> Result<Option<StoredDataKey>> {
        Ok(user_data_keys::Entity::find_by_id(user.as_uuid())
            .one(db)
            .await
            .map_err(db_error)?
            .map(stored))
    }

    /// Stores a new wrapped data key for the user, unless one exists.
    ///
    /// # Errors
    /// The database failed.
    pub async fn insert<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &StoredDataKey,
    ) -> Result<InsertOutcome> {
        let now = Utc::now();
        let inserted = user_data_keys::ActiveModel {
            user_id: Set(key.user.as_uuid()),
            kek_id: Set(key.kek_id.clone()),
            wrapped_key: Set(key.wrapped.clone()),
            key_version: Set(key.key_version),
            created_at: Set(now),
            rotated_at: Set(now),
        }
        .insert(db)
        .await;
        match inserted {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(InsertOutcome::AlreadyExists)
            }
            Err(err) => Err(db_error(err)),
        }
    }

    /// Up to `limit` keys not wrapped by `kek_id`, in user id order after `after`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn not_wrapped_by(
        &self,
        kek_id: &str,
        after: Option<UserId>,
        limit: u64,
    ) -> Result<Vec<StoredDataKey>> {
        let mut query = user_data_keys::Entity::find()
            .filter(user_data_keys::Column::KekId.ne(kek_id))
            .order_by_asc(user_data_keys::Column::UserId)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(user_data_keys::Column::UserId.gt(after.as_uuid()));
        }
        Ok(query
            .all(self.store.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(stored)
            .collect())
    }

    /// How many keys are not wrapped by `kek_id`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn count_not_wrapped_by(&self, kek_id: &str) -> Result<u64> {
        use sea_orm::PaginatorTrait as _;
        user_data_keys::Entity::find()
            .filter(user_data_keys::Column::KekId.ne(kek_id))
            .count(self.store.connection())
            .await
            .map_err(db_error)
    }

    /// Replaces the wrapping of `key` (as read) by `new_wrapped` under `new_kek_id`, only if
    /// the row is still as read. Returns whether it changed.
    ///
    /// # Errors
    /// The database failed.
    pub async fn rewrap(
        &self,
        key: &StoredDataKey,
        new_kek_id: &str,
        new_wrapped: Vec<u8>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let result = user_data_keys::Entity::update_many()
            .col_expr(user_data_keys::Column::KekId, Expr::value(new_kek_id))
            .col_expr(user_data_keys::Column::WrappedKey, Expr::value(new_wrapped))
            .col_expr(user_data_keys::Column::RotatedAt, Expr::value(at))
            .filter(user_data_keys::Column::UserId.eq(key.user.as_uuid()))
            .filter(user_data_keys::Column::KekId.eq(key.kek_id.as_str()))
            .filter(user_data_keys::Column::WrappedKey.eq(key.wrapped.clone()))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Destroys the user's data key. Every secret sealed under it becomes unreadable.
    ///
    /// # Errors
    /// The database failed.
    pub async fn destroy<C: ConnectionTrait>(&self, db: &C, user: UserId) -> Result<()> {
        user_data_keys::Entity::delete_by_id(user.as_uuid())
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
