//! Users' provider API keys, sealed. The repository stores and returns ciphertext only; sealing
//! and opening happen in the layer that holds the data keys.

use assistd_domain::apikey::{ApiKeyInfo, ApiKeyStatus, Provider};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, SqlErr,
};

use crate::entity::api_keys;
use crate::{Store, db_error};

/// A stored key: what may be shown, plus the ciphertext and the row id it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredApiKey {
    /// Row id, bound into the ciphertext.
    pub id: uuid::Uuid,
    /// What may be shown.
    pub info: ApiKeyInfo,
    /// The sealed key.
    pub sealed: Vec<u8>,
}

/// A key to store (insert or replace).
#[derive(Clone, Debug)]
pub struct NewApiKey {
    /// Row id the ciphertext is bound to: the existing row's when replacing.
    pub id: uuid::Uuid,
    /// Provider.
    pub provider: Provider,
    /// The sealed key.
    pub sealed: Vec<u8>,
    /// `…` and the last four characters.
    pub hint: String,
    /// Validity after the check done before storing.
    pub status: ApiKeyStatus,
    /// Why the check failed or was skipped.
    pub status_detail: Option<String>,
    /// When the provider confirmed it, if it did.
    pub validated_at: Option<DateTime<Utc>>,
}

/// Reads and writes one user's sealed API keys.
#[derive(Clone, Debug)]
pub struct ApiKeyRepository {
    store: Store,
}

impl Store {
    /// The API key repository.
    #[must_use]
    pub fn api_keys(&self) -> ApiKeyRepository {
        ApiKeyRepository {
            store: self.clone(),
        }
    }
}

fn stored(row: api_keys::Model) -> Result<StoredApiKey> {
    let provider = Provider::parse(&row.provider).ok_or_else(|| {
        Error::internal(format!("unknown provider {:?} in api_keys", row.provider))
    })?;
    let status = ApiKeyStatus::parse(&row.status)
        .ok_or_else(|| Error::internal(format!("unknown status {:?} in api_keys", row.status)))?;
    Ok(StoredApiKey {
        id: row.id,
        sealed: row.sealed_key,
        info: ApiKeyInfo {
            provider,
            hint: row.key_hint,
            status,
            status_detail: row.status_detail,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_validated_at: row.last_validated_at,
            last_used_at: row.last_used_at,
        },
    })
}

impl ApiKeyRepository {
    /// The user's key for `provider`, if stored.
    ///
    /// # Errors
    /// The database failed.
    pub async fn get<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        provider: Provider,
    ) -> Result<Option<StoredApiKey>> {
        api_keys::Entity::find()
            .filter(api_keys::Column::UserId.eq(user.as_uuid()))
            .filter(api_keys::Column::Provider.eq(provider.as_str()))
            .one(db)
            .await
            .map_err(db_error)?
            .map(stored)
            .transpose()
    }

    /// Every key of the user, ordered by provider.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list(&self, user: UserId) -> Result<Vec<StoredApiKey>> {
        api_keys::Entity::find()
            .filter(api_keys::Column::UserId.eq(user.as_uuid()))
            .order_by_asc(api_keys::Column::Provider)
            .all(self.store.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(stored)
            .collect()
    }

    /// Inserts the key, or replaces the user's key for that provider (keeping its creation
    /// time). Returns the stored key and whether one was replaced.
    ///
    /// # Errors
    /// ABORTED when another request stored a key for the same provider at the same moment;
    /// the database failed.
    pub async fn put<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        key: NewApiKey,
    ) -> Result<(StoredApiKey, bool)> {
        let now = Utc::now();
        let existing = self.get(db, user, key.provider).await?;
        let replaced = existing.is_some();
        let mut row = api_keys::ActiveModel {
            id: Set(key.id),
            user_id: Set(user.as_uuid()),
            provider: Set(key.provider.as_str().to_owned()),
            sealed_key: Set(key.sealed),
            key_hint: Set(key.hint),
            status: Set(key.status.as_str().to_owned()),
            status_detail: Set(key.status_detail.as_deref().map(clip)),
            created_at: Set(now),
            updated_at: Set(now),
            last_validated_at: Set(key.validated_at),
            last_used_at: Set(None),
        };
        let written = match existing {
            Some(existing) if existing.id == key.id => {
                row.created_at = Set(existing.info.created_at);
                row.update(db).await
            }
            Some(_) => return Err(concurrent_change()),
            None => row.insert(db).await,
        };
        match written {
            Ok(model) => Ok((stored(model)?, replaced)),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(concurrent_change())
            }
            Err(err) => Err(db_error(err)),
        }
    }

    /// Records the outcome of a validation of the key whose ciphertext is `checked`. Returns
    /// `None` when the stored key is no longer that one (replaced or deleted meanwhile).
    ///
    /// # Errors
    /// The database failed.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_status<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        provider: Provider,
        checked: &[u8],
        status: ApiKeyStatus,
        detail: Option<String>,
        validated_at: Option<DateTime<Utc>>,
    ) -> Result<Option<StoredApiKey>> {
        let now = Utc::now();
        let mut update = api_keys::Entity::update_many()
            .col_expr(api_keys::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                api_keys::Column::StatusDetail,
                Expr::value(detail.map(|d| clip(&d))),
            )
            .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
            .filter(api_keys::Column::UserId.eq(user.as_uuid()))
            .filter(api_keys::Column::Provider.eq(provider.as_str()))
            .filter(api_keys::Column::SealedKey.eq(checked.to_vec()));
        if let Some(at) = validated_at {
            update = update.col_expr(api_keys::Column::LastValidatedAt, Expr::value(at));
        }
        update
            .exec_with_returning(db)
            .await
            .map_err(db_error)?
            .into_iter()
            .next()
            .map(stored)
            .transpose()
    }

    /// Stamps the key as used at `at`, unless it was stamped less than `min_interval` before.
    ///
    /// # Errors
    /// The database failed.
    pub async fn touch_used(
        &self,
        user: UserId,
        provider: Provider,
        at: DateTime<Utc>,
        min_interval: chrono::TimeDelta,
    ) -> Result<()> {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUsedAt, Expr::value(at))
            .filter(api_keys::Column::UserId.eq(user.as_uuid()))
            .filter(api_keys::Column::Provider.eq(provider.as_str()))
            .filter(
                api_keys::Column::LastUsedAt
                    .is_null()
                    .or(api_keys::Column::LastUsedAt.lt(at - min_interval)),
            )
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Deletes the user's key for `provider`. Returns whether there was one.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        provider: Provider,
    ) -> Result<bool> {
        let result = api_keys::Entity::delete_many()
            .filter(api_keys::Column::UserId.eq(user.as_uuid()))
            .filter(api_keys::Column::Provider.eq(provider.as_str()))
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }
}

/// Longest status detail stored (the column's width).
const MAX_STATUS_DETAIL: usize = 500;

fn clip(detail: &str) -> String {
    detail.chars().take(MAX_STATUS_DETAIL).collect()
}

fn concurrent_change() -> Error {
    Error::Aborted {
        reason: ErrorReason::ConcurrentChange,
        message: "another request changed this API key at the same moment; retry".into(),
    }
}
