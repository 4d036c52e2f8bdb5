//! Per-user preferences, with optimistic concurrency on a version column.

use assistd_domain::preferences::{
    Language, Preferences, PreferencesUpdate, Theme, parse_timezone,
};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    SqlErr, Statement,
};

use crate::notify::PREFERENCES_CHANNEL;
use crate::{Backend, Store, db_error, entity::preferences, entity::users};

/// Reads and writes one user's preferences.
#[derive(Clone, Debug)]
pub struct PreferencesRepository {
    store: Store,
}

impl Store {
    /// The preferences repository.
    #[must_use]
    pub fn preferences(&self) -> PreferencesRepository {
        PreferencesRepository {
            store: self.clone(),
        }
    }
}

fn account_gone() -> Error {
    Error::Unauthenticated {
        reason: ErrorReason::AccountNotFound,
        message: "the account this access token belongs to no longer exists; sign in again".into(),
    }
}

fn etag_mismatch() -> Error {
    Error::Aborted {
        reason: ErrorReason::EtagMismatch,
        message: "the preferences changed since they were read; get them again and reapply \
                  the change with the new etag"
            .into(),
    }
}

fn to_domain(row: preferences::Model) -> Preferences {
    // Values were validated on the way in; a value that no longer parses (a language dropped
    // from the supported list, a timezone renamed) falls back to the default for that field.
    let theme = row.theme.parse::<Theme>().unwrap_or_else(|err| {
        tracing::warn!(user_id = %row.user_id, %err, "stored theme unreadable; using default");
        Theme::default()
    });
    let language = Language::find(&row.language).unwrap_or_else(|| {
        tracing::warn!(user_id = %row.user_id, language = %row.language, "stored language unsupported; using default");
        Language::default_language()
    });
    let timezone = parse_timezone(&row.timezone).unwrap_or_else(|err| {
        tracing::warn!(user_id = %row.user_id, %err, "stored timezone unknown; using UTC");
        chrono_tz::Tz::UTC
    });
    Preferences {
        theme,
        language,
        timezone,
        default_model: row.default_model,
        version: row.version,
        updated_at: Some(row.updated_at),
    }
}

impl PreferencesRepository {
    /// The user's preferences, or the defaults when none were stored.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn get(&self, user: UserId) -> Result<Preferences> {
        let found = users::Entity::find_by_id(user.as_uuid())
            .find_also_related(preferences::Entity)
            .one(self.store.connection())
            .await
            .map_err(db_error)?;
        match found {
            None => Err(account_gone()),
            Some((_, None)) => Ok(Preferences::default()),
            Some((_, Some(row))) => Ok(to_domain(row)),
        }
    }

    /// Applies `update`. With `expected_version`, only if the stored version (0 for defaults)
    /// still equals it. Each write is a single statement, so concurrent writers never
    /// deadlock on SQLite's lock upgrade and the version check is atomic on both engines.
    ///
    /// # Errors
    /// ABORTED (`ETAG_MISMATCH`) when the version moved; UNAUTHENTICATED when the account no
    /// longer exists; the database failed.
    pub async fn update(
        &self,
        user: UserId,
        update: &PreferencesUpdate,
        expected_version: Option<i64>,
    ) -> Result<Preferences> {
        // Two rounds at most: an unconditional update may race with another first write.
        for _ in 0..2 {
            // One write transaction per round: the change and its announcement to other
            // replicas (PostgreSQL delivers a NOTIFY when its transaction commits) happen
            // together or not at all.
            let txn = self.store.begin_write().await?;
            let db = &txn;
            if expected_version != Some(0) {
                let mut statement = preferences::Entity::update_many()
                    .col_expr(
                        preferences::Column::Version,
                        Expr::col(preferences::Column::Version).add(1),
                    )
                    .col_expr(preferences::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(preferences::Column::UserId.eq(user.as_uuid()));
                if let Some(theme) = update.theme {
                    statement =
                        statement.col_expr(preferences::Column::Theme, Expr::value(theme.as_str()));
                }
                if let Some(language) = update.language {
                    statement = statement
                        .col_expr(preferences::Column::Language, Expr::value(language.tag));
                }
                if let Some(timezone) = update.timezone {
                    statement = statement
                        .col_expr(preferences::Column::Timezone, Expr::value(timezone.name()));
                }
                if let Some(model) = &update.default_model {
                    statement = statement.col_expr(
                        preferences::Column::DefaultModel,
                        Expr::value(model.clone()),
                    );
                }
                if let Some(version) = expected_version {
                    statement = statement.filter(preferences::Column::Version.eq(version));
                }
                let updated = statement.exec_with_returning(db).await.map_err(db_error)?;
                if let Some(row) = updated.into_iter().next() {
                    return self.changed(txn, user, to_domain(row)).await;
                }
                if expected_version.is_some() {
                    return Err(etag_mismatch());
                }
            }

            // No row yet: the first write stores the defaults with the update applied.
            let mut initial = Preferences::default();
            initial.apply(update);
            let inserted = preferences::ActiveModel {
                user_id: Set(user.as_uuid()),
                theme: Set(initial.theme.as_str().to_owned()),
                language: Set(initial.language.tag.to_owned()),
                timezone: Set(initial.timezone.name().to_owned()),
                default_model: Set(initial.default_model),
                version: Set(1),
                updated_at: Set(Utc::now()),
            }
            .insert(db)
            .await;
            match inserted {
                Ok(row) => return self.changed(txn, user, to_domain(row)).await,
                Err(err) => match err.sql_err() {
                    Some(SqlErr::UniqueConstraintViolation(_)) if expected_version.is_some() => {
                        return Err(etag_mismatch());
                    }
                    Some(SqlErr::UniqueConstraintViolation(_)) => {}
                    Some(SqlErr::ForeignKeyConstraintViolation(_)) => return Err(account_gone()),
                    _ => return Err(db_error(err)),
                },
            }
        }
        Err(etag_mismatch())
    }

    /// Tells other replicas that `user`'s preferences changed (PostgreSQL only; replicas on
    /// one SQLite file are one process) inside the change's transaction, then commits both:
    /// a change is never committed unannounced.
    async fn changed(
        &self,
        txn: sea_orm::DatabaseTransaction,
        user: UserId,
        preferences: Preferences,
    ) -> Result<Preferences> {
        if self.store.backend() == Backend::Postgres {
            let notify = Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [PREFERENCES_CHANNEL.into(), user.to_string().into()],
            );
            txn.execute_raw(notify).await.map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(preferences)
    }
}
