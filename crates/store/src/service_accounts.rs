//! Service accounts and the users each may act for.

use assistd_domain::service_account::{NewServiceAccount, ServiceAccount, UserScope};
use assistd_domain::{Error, FieldViolation, Result, ServiceAccountId, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};

use crate::entity::{service_account_users, service_accounts};
use crate::{Store, db_error};

/// Reads and writes service accounts. Administrative: nothing here is scoped to a user.
#[derive(Clone, Debug)]
pub struct ServiceAccountRepository {
    store: Store,
}

impl Store {
    /// The service account repository.
    #[must_use]
    pub fn service_accounts(&self) -> ServiceAccountRepository {
        ServiceAccountRepository {
            store: self.clone(),
        }
    }
}

impl ServiceAccountRepository {
    /// Stores a new account with `public_key` (raw Ed25519, 32 bytes) inside `db`'s
    /// transaction.
    ///
    /// # Errors
    /// INVALID_ARGUMENT when the name is taken or a listed user has no account; the database
    /// failed.
    pub async fn create<C: ConnectionTrait>(
        &self,
        db: &C,
        new: &NewServiceAccount,
        public_key: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ServiceAccount> {
        let id = ServiceAccountId::new();
        let row = service_accounts::ActiveModel {
            id: Set(id.as_uuid()),
            name: Set(new.name.clone()),
            public_key: Set(public_key.to_vec()),
            allowed_methods: Set(new.allowed_methods.join("\n")),
            any_user: Set(matches!(new.users, UserScope::Any)),
            created_at: Set(now),
            revoked_at: Set(None),
        };
        match service_accounts::Entity::insert(row).exec(db).await {
            Ok(_) => {}
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(FieldViolation::new(
                    "name",
                    format!("a service account named {:?} already exists", new.name),
                )
                .into());
            }
            Err(err) => return Err(db_error(err)),
        }
        if let UserScope::Listed(users) = &new.users {
            for (index, user) in users.iter().enumerate() {
                let row = service_account_users::ActiveModel {
                    service_account_id: Set(id.as_uuid()),
                    user_id: Set(user.as_uuid()),
                };
                match service_account_users::Entity::insert(row).exec(db).await {
                    Ok(_) => {}
                    Err(err)
                        if matches!(
                            err.sql_err(),
                            Some(SqlErr::ForeignKeyConstraintViolation(_))
                        ) =>
                    {
                        return Err(FieldViolation::new(
                            format!("users[{index}]"),
                            format!("there is no account with id {user}"),
                        )
                        .into());
                    }
                    Err(err) => return Err(db_error(err)),
                }
            }
        }
        Ok(ServiceAccount {
            id,
            name: new.name.clone(),
            public_key: public_key.to_vec(),
            allowed_methods: new.allowed_methods.clone(),
            users: new.users.clone(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// The account with this id, revoked or not.
    ///
    /// # Errors
    /// The database failed.
    pub async fn get(&self, id: ServiceAccountId) -> Result<Option<ServiceAccount>> {
        let db = self.store.connection();
        let Some(row) = service_accounts::Entity::find_by_id(id.as_uuid())
            .one(db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let users = self.users_of(db, &row).await?;
        Ok(Some(account(row, users)))
    }

    /// Every account, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list(&self) -> Result<Vec<ServiceAccount>> {
        let db = self.store.connection();
        let rows = service_accounts::Entity::find()
            .order_by_asc(service_accounts::Column::CreatedAt)
            .order_by_asc(service_accounts::Column::Id)
            .all(db)
            .await
            .map_err(db_error)?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let users = self.users_of(db, &row).await?;
            accounts.push(account(row, users));
        }
        Ok(accounts)
    }

    /// Marks the account revoked at `now` inside `db`'s transaction; revoking twice keeps the
    /// first time.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn revoke<C: ConnectionTrait>(
        &self,
        db: &C,
        id: ServiceAccountId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let exists = service_accounts::Entity::find_by_id(id.as_uuid())
            .one(db)
            .await
            .map_err(db_error)?
            .is_some();
        if !exists {
            return Err(Error::NotFound {
                resource: "service account",
                id: id.to_string(),
            });
        }
        service_accounts::Entity::update_many()
            .col_expr(service_accounts::Column::RevokedAt, Expr::value(now))
            .filter(service_accounts::Column::Id.eq(id.as_uuid()))
            .filter(service_accounts::Column::RevokedAt.is_null())
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The users a listed account may act for; `None` for an account that may act for anyone.
    async fn users_of<C: ConnectionTrait>(
        &self,
        db: &C,
        row: &service_accounts::Model,
    ) -> Result<Option<Vec<UserId>>> {
        if row.any_user {
            return Ok(None);
        }
        let users = service_account_users::Entity::find()
            .filter(service_account_users::Column::ServiceAccountId.eq(row.id))
            .order_by_asc(service_account_users::Column::UserId)
            .all(db)
            .await
            .map_err(db_error)?;
        Ok(Some(
            users
                .into_iter()
                .map(|row| UserId::from_uuid(row.user_id))
                .collect(),
        ))
    }
}

fn account(row: service_accounts::Model, users: Option<Vec<UserId>>) -> ServiceAccount {
    ServiceAccount {
        id: ServiceAccountId::from_uuid(row.id),
        name: row.name,
        public_key: row.public_key,
        allowed_methods: row
            .allowed_methods
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        users: users.map_or(UserScope::Any, UserScope::Listed),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}
