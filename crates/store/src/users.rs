//! User accounts: the rows behind [`User`], which the domain defines.

use assistd_domain::auth::User;
use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect,
};

use crate::{Store, db_error, entity::users};

/// What is needed to create an account.
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    /// Name shown in clients.
    pub display_name: Option<String>,
    /// Email address from the identity provider.
    pub email: Option<String>,
}

/// Reads and writes user accounts.
#[derive(Clone, Debug)]
pub struct UserRepository {
    store: Store,
}

impl Store {
    /// The user account repository.
    #[must_use]
    pub fn users(&self) -> UserRepository {
        UserRepository {
            store: self.clone(),
        }
    }
}

impl From<users::Model> for User {
    fn from(row: users::Model) -> Self {
        Self {
            id: UserId::from_uuid(row.id),
            display_name: row.display_name,
            email: row.email,
            email_verified: row.email_verified,
            picture_url: row.picture_url,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_sign_in_at: row.last_sign_in_at,
        }
    }
}

impl UserRepository {
    /// Creates an account with a new id.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create(&self, new_user: NewUser) -> Result<User> {
        let now = Utc::now();
        let row = users::ActiveModel {
            id: Set(UserId::new().as_uuid()),
            display_name: Set(new_user.display_name),
            email: Set(new_user.email),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(self.store.connection())
        .await
        .map_err(db_error)?;
        Ok(row.into())
    }

    /// The account with this id.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn get(&self, id: UserId) -> Result<User> {
        self.get_in(self.store.connection(), id).await
    }

    /// Deletes the account and, through foreign keys, every row that belongs to it.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn delete(&self, id: UserId) -> Result<()> {
        self.delete_in(self.store.connection(), id).await
    }

    /// Changes the display name; returns the account as it is now.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn set_display_name<C: ConnectionTrait>(
        &self,
        db: &C,
        id: UserId,
        display_name: &str,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let updated = users::Entity::update_many()
            .col_expr(users::Column::DisplayName, Expr::value(display_name))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(id.as_uuid()))
            .exec(db)
            .await
            .map_err(db_error)?;
        if updated.rows_affected == 0 {
            return Err(Error::NotFound {
                resource: "user",
                id: id.to_string(),
            });
        }
        self.get_in(db, id).await
    }

    /// The account with this id, read through `db` (e.g. inside a transaction).
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn get_in<C: ConnectionTrait>(&self, db: &C, id: UserId) -> Result<User> {
        users::Entity::find_by_id(id.as_uuid())
            .one(db)
            .await
            .map_err(db_error)?
            .map(User::from)
            .ok_or_else(|| Error::NotFound {
                resource: "user",
                id: id.to_string(),
            })
    }

    /// Whether the account with this id exists, read through `db`; reads its key only.
    ///
    /// # Errors
    /// The database failed.
    pub async fn exists_in<C: ConnectionTrait>(&self, db: &C, id: UserId) -> Result<bool> {
        let found: Option<uuid::Uuid> = users::Entity::find_by_id(id.as_uuid())
            .select_only()
            .column(users::Column::Id)
            .into_tuple()
            .one(db)
            .await
            .map_err(db_error)?;
        Ok(found.is_some())
    }

    /// Deletes the account inside `db`'s transaction; foreign keys remove every row that
    /// belongs to it.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn delete_in<C: ConnectionTrait>(&self, db: &C, id: UserId) -> Result<()> {
        let deleted = users::Entity::delete_by_id(id.as_uuid())
            .exec(db)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            return Err(Error::NotFound {
                resource: "user",
                id: id.to_string(),
            });
        }
        Ok(())
    }
}
