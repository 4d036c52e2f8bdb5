//! Usage and budgets: model calls and tokens added up per user, UTC day and model, and the
//! monthly token budget a user may set.

use assistd_domain::chat::{TokenBudgetSetting, UsageRecord};
use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::rows::{budget_of, usage_of};
use super::{ChatRepository, Sql, account_gone, is_foreign_key_violation, micros};
use crate::db_error;
use crate::entity::{token_budgets, usage_daily};

/// Usage to add to a user's daily totals for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// The UTC day the calls were made.
    pub day: NaiveDate,
    /// Model name as sent to the provider.
    pub model: String,
    /// Model calls.
    pub requests: i64,
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// All tokens as the provider counts them.
    pub total_tokens: i64,
}

impl ChatRepository {
    /// Adds `usage` to the user's daily totals on its own (e.g. for generating a title).
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn record_usage(&self, user: UserId, usage: &UsageDelta) -> Result<()> {
        add_usage(self.store.connection(), user, usage).await
    }

    /// The user's daily usage from `start` to `end` (both included), of one model or all,
    /// ordered by day, then model.
    ///
    /// # Errors
    /// The database failed.
    pub async fn usage_between(
        &self,
        user: UserId,
        start: NaiveDate,
        end: NaiveDate,
        model: Option<&str>,
    ) -> Result<Vec<UsageRecord>> {
        use usage_daily::Column;
        let mut query = usage_daily::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::Day.gte(start))
            .filter(Column::Day.lte(end))
            .order_by_asc(Column::Day)
            .order_by_asc(Column::Model);
        if let Some(model) = model {
            query = query.filter(Column::Model.eq(model));
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(usage_of).collect())
    }

    /// The user's total tokens from `start` to `end` (both included), over all models.
    ///
    /// # Errors
    /// The database failed.
    pub async fn tokens_between(
        &self,
        user: UserId,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<i64> {
        let db = self.store.connection();
        let mut sql = Sql::new(db.get_database_backend());
        // SUM of BIGINT is NUMERIC on PostgreSQL; the cast brings it back.
        sql.push(
            "SELECT CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS tokens \
             FROM usage_daily WHERE user_id = ",
        )
        .bind(user.as_uuid())
        .push(" AND day >= ")
        .bind(start)
        .push(" AND day <= ")
        .bind(end);
        let row = db
            .query_one_raw(sql.build())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("an aggregate query returned no row"))?;
        row.try_get::<i64>("", "tokens").map_err(db_error)
    }

    /// The user's monthly token budget setting (no budget, never set, by default).
    ///
    /// # Errors
    /// The database failed.
    pub async fn budget(&self, user: UserId) -> Result<TokenBudgetSetting> {
        Ok(token_budgets::Entity::find_by_id(user.as_uuid())
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .map(budget_of)
            .unwrap_or_default())
    }

    /// Sets the monthly token budget, or clears it with `None` (the row stays, so the time
    /// of clearing is kept). Takes the connection to write on, so that the change and its
    /// audit event can share a transaction.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn set_budget<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        monthly_limit: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<TokenBudgetSetting> {
        use token_budgets::Column;
        let row = token_budgets::Model {
            user_id: user.as_uuid(),
            monthly_limit,
            updated_at: micros(now),
        };
        let written = token_budgets::Entity::insert(token_budgets::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::column(Column::UserId)
                    .update_columns([Column::MonthlyLimit, Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await;
        match written {
            Ok(_) => Ok(budget_of(row)),
            Err(err) if is_foreign_key_violation(&err) => Err(account_gone()),
            Err(err) => Err(db_error(err)),
        }
    }
}

/// Adds `usage` to the user's totals for its day and model.
pub(super) async fn add_usage<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    usage: &UsageDelta,
) -> Result<()> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO usage_daily (user_id, day, model, request_count, prompt_tokens, \
         output_tokens, total_tokens) VALUES (",
    )
    .bind(user.as_uuid())
    .push(", ")
    .bind(usage.day)
    .push(", ")
    .bind(usage.model.clone())
    .push(", ")
    .bind(usage.requests)
    .push(", ")
    .bind(usage.prompt_tokens)
    .push(", ")
    .bind(usage.output_tokens)
    .push(", ")
    .bind(usage.total_tokens)
    .push(
        ") ON CONFLICT (user_id, day, model) DO UPDATE SET \
         request_count = usage_daily.request_count + excluded.request_count, \
         prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, \
         output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
         total_tokens = usage_daily.total_tokens + excluded.total_tokens",
    );
    match db.execute_raw(sql.build()).await {
        Ok(_) => Ok(()),
        Err(err) if is_foreign_key_violation(&err) => Err(account_gone()),
        Err(err) => Err(db_error(err)),
    }
}
