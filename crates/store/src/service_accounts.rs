//! Service accounts and the users each may act for.

use assistd_domain::service_account::{NewServiceAccount, ServiceAccount, UserScope};
use assistd_domain::{Error, FieldViolation, Result, ServiceAccountId, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};

use crate::entity::{service_account_users, service_accounts, users};
use crate::{Store, db_error};

/// A service account as one call sees it: the account, and what it may do for the one user
/// the call names. Read by [`ServiceAccountRepository::get_acting_for`] without the account's
/// user list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActingFor {
    /// The account's id.
    pub id: ServiceAccountId,
    /// Its name.
    pub name: String,
    /// The raw 32-byte Ed25519 public key its tokens are checked with.
    pub public_key: Vec<u8>,
    /// Full gRPC method paths it may call.
    pub allowed_methods: Vec<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether it may act for the user asked about: it may act for any user, or that user is
    /// on its list. False when no user was asked about.
    pub user_allowed: bool,
    /// Whether the user asked about has an account. False when no user was asked about.
    pub user_exists: bool,
}

impl ActingFor {
    /// Whether the account may still make calls.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// Whether `method` (a full gRPC path) is on its allowlist.
    #[must_use]
    pub fn allows_method(&self, method: &str) -> bool {
        self.allowed_methods.iter().any(|allowed| allowed == method)
    }
}

/// The row [`ServiceAccountRepository::get_acting_for`] reads: the account's columns and two
/// answers about the user.
#[derive(Debug, FromQueryResult)]
struct ActingForRow {
    id: uuid::Uuid,
    name: String,
    public_key: Vec<u8>,
    allowed_methods: String,
    any_user: bool,
    revoked_at: Option<DateTime<Utc>>,
    user_listed: bool,
    user_exists: bool,
}

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

    /// The account with this id as a call for `user` sees it, revoked or not, in one query on
    /// primary keys: the account's row, whether `user` is on its list and whether `user` has
    /// an account. The account's user list (up to a thousand ids) is not read. With no `user`
    /// (the call named none, or not a well-formed one) only the account is read.
    ///
    /// # Errors
    /// The database failed.
    pub async fn get_acting_for(
        &self,
        id: ServiceAccountId,
        user: Option<UserId>,
    ) -> Result<Option<ActingFor>> {
        let db = self.store.connection();
        let mut select = service_accounts::Entity::find_by_id(id.as_uuid());
        select = match user {
            Some(user) => select
                .column_as(
                    Expr::exists(
                        Query::select()
                            .expr(Expr::val(1))
                            .from(service_account_users::Entity)
                            .and_where(
                                service_account_users::Column::ServiceAccountId.eq(id.as_uuid()),
                            )
                            .and_where(service_account_users::Column::UserId.eq(user.as_uuid()))
                            .to_owned(),
                    ),
                    "user_listed",
                )
                .column_as(
                    Expr::exists(
                        Query::select()
                            .expr(Expr::val(1))
                            .from(users::Entity)
                            .and_where(users::Column::Id.eq(user.as_uuid()))
                            .to_owned(),
                    ),
                    "user_exists",
                ),
            None => select
                .column_as(Expr::val(false), "user_listed")
                .column_as(Expr::val(false), "user_exists"),
        };
        let Some(row) = select
            .into_model::<ActingForRow>()
            .one(db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        Ok(Some(ActingFor {
            id: ServiceAccountId::from_uuid(row.id),
            name: row.name,
            public_key: row.public_key,
            allowed_methods: methods(&row.allowed_methods),
            revoked_at: row.revoked_at,
            user_allowed: user.is_some() && (row.any_user || row.user_listed),
            user_exists: row.user_exists,
        }))
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
        allowed_methods: methods(&row.allowed_methods),
        users: users.map_or(UserScope::Any, UserScope::Listed),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

/// The allowlist as stored: full method paths, one per line.
fn methods(stored: &str) -> Vec<String> {
    stored
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}
