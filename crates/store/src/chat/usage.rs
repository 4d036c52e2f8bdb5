//! Usage and budgets: model calls and tokens added up per user, UTC day and model, and the
//! monthly token budget a user may set.

use assistd_domain::chat::{TokenBudgetSetting, UsageRecord};
use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::rows::{budget_of, usage_of};
use super::{ChatRepository, account_gone, is_foreign_key_violation, micros};
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
        use usage_daily::Column;
        usage_daily::Entity::find()
            .select_only()
            // SUM of BIGINT is NUMERIC on PostgreSQL; the cast brings it back.
            .expr_as(
                Func::cast_as(
                    Func::coalesce([Expr::col(Column::TotalTokens).sum(), Expr::value(0_i64)]),
                    "BIGINT",
                ),
                "tokens",
            )
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::Day.gte(start))
            .filter(Column::Day.lte(end))
            .into_tuple::<i64>()
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("an aggregate query returned no row"))
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
    use usage_daily::Column;
    let row = usage_daily::Model {
        user_id: user.as_uuid(),
        day: usage.day,
        model: usage.model.clone(),
        request_count: usage.requests,
        prompt_tokens: usage.prompt_tokens,
        output_tokens: usage.output_tokens,
        total_tokens: usage.total_tokens,
    };
    // A day and model seen before: each total grows by what this call adds (`excluded` is
    // the row the INSERT proposed).
    let add = |column: Column| {
        (
            column,
            Expr::col((usage_daily::Entity, column)).add(Expr::col(("excluded", column))),
        )
    };
    let upsert = usage_daily::Entity::insert(usage_daily::ActiveModel::from(row)).on_conflict(
        OnConflict::columns([Column::UserId, Column::Day, Column::Model])
            .values([
                add(Column::RequestCount),
                add(Column::PromptTokens),
                add(Column::OutputTokens),
                add(Column::TotalTokens),
            ])
            .to_owned(),
    );
    match upsert.exec_without_returning(db).await {
        Ok(_) => Ok(()),
        Err(err) if is_foreign_key_violation(&err) => Err(account_gone()),
        Err(err) => Err(db_error(err)),
    }
}
