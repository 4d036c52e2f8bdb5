//! The monthly token budget: what it is, what was spent of it in the current UTC month, who
//! may change it, and the refusal of a send once it is spent.
//!
//! Months are read off the engine's clock, so a budget spent in one month lets sends through
//! again on the first of the next without anything being reset.

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::chat::TokenBudgetSetting;
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_store::Store;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use super::{ChatService, Inner};

/// The user's monthly token budget and this month's spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBudget {
    /// Tokens per UTC month; `None` without a budget.
    pub monthly_limit: Option<i64>,
    /// Tokens used this UTC month.
    pub used: i64,
    /// First instant of this month.
    pub period_start: DateTime<Utc>,
    /// First instant of next month.
    pub period_end: DateTime<Utc>,
    /// When set or cleared last.
    pub updated_at: Option<DateTime<Utc>>,
}

impl TokenBudget {
    /// Whether a budget is set and spent.
    #[must_use]
    pub fn exhausted(&self) -> bool {
        self.monthly_limit.is_some_and(|limit| self.used >= limit)
    }

    /// The answer to a send made while the budget is spent, at `now`.
    fn refusal(&self, limit: i64, now: DateTime<Utc>) -> Error {
        Error::ResourceExhausted {
            reason: ErrorReason::TokenBudgetExhausted,
            message: format!(
                "your monthly token budget of {limit} tokens is spent ({} used since {}); \
                 it resets on {}, or raise or clear it with SetTokenBudget",
                self.used,
                self.period_start.date_naive(),
                self.period_end.date_naive(),
            ),
            retry_after: (self.period_end - now).to_std().ok(),
        }
    }
}

/// The first instant of the UTC month holding `at`, and of the next one.
fn month_of(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap_or_default();
    let next = if at.month() == 12 {
        NaiveDate::from_ymd_opt(at.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(at.year(), at.month() + 1, 1)
    }
    .unwrap_or_default();
    let instant = |day: NaiveDate| Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN));
    (instant(first), instant(next))
}

impl ChatService {
    /// The user's budget and this month's spend.
    ///
    /// # Errors
    /// The database failed.
    pub async fn token_budget(&self, user: UserId) -> Result<TokenBudget> {
        self.inner.token_budget(user, self.inner.clock.now()).await
    }

    /// Sets (`Some`) or clears (`None`) the user's monthly token budget, audited in the same
    /// transaction.
    ///
    /// # Errors
    /// The database failed.
    pub async fn set_token_budget(
        &self,
        user: UserId,
        context: &RequestContext,
        limit: Option<i64>,
    ) -> Result<TokenBudget> {
        let now = self.inner.clock.now();
        let txn = self.inner.store.begin_write().await?;
        self.inner
            .store
            .chat()
            .set_budget(&txn, user, limit, now)
            .await?;
        self.inner
            .audit
            .append(
                &txn,
                &AuditEvent {
                    actor: Some(user),
                    action: if limit.is_some() {
                        AuditAction::TokenBudgetSet
                    } else {
                        AuditAction::TokenBudgetCleared
                    },
                    target: "token_budget".to_owned(),
                    outcome: AuditOutcome::Success,
                    context: context.clone(),
                    metadata: limit
                        .map(|limit| ("monthly_token_limit".to_owned(), limit.to_string()))
                        .into_iter()
                        .collect(),
                },
            )
            .await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.token_budget(user, now).await
    }
}

impl Inner {
    /// The user's budget and the tokens spent in the month of `now`.
    pub(super) async fn token_budget(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenBudget> {
        let setting = self.store.chat().budget(user).await?;
        self.spend(user, setting, now).await
    }

    /// Refuses a send at `now` when the user's budget is spent (RESOURCE_EXHAUSTED
    /// `TOKEN_BUDGET_EXHAUSTED`, retry after the month's end).
    pub(super) async fn check_budget(&self, user: UserId, now: DateTime<Utc>) -> Result<()> {
        check_budget(&self.store, user, now).await
    }

    /// `setting` with the tokens used in the month of `now`.
    async fn spend(
        &self,
        user: UserId,
        setting: TokenBudgetSetting,
        now: DateTime<Utc>,
    ) -> Result<TokenBudget> {
        spend(&self.store, user, setting, now).await
    }
}

/// Refuses a model call at `now` when the user's monthly token budget is spent
/// (RESOURCE_EXHAUSTED `TOKEN_BUDGET_EXHAUSTED`, retry after the month's end). Shared by
/// chat and the AI over synced mail: one budget counts every model call on the user's key.
pub(crate) async fn check_budget(store: &Store, user: UserId, now: DateTime<Utc>) -> Result<()> {
    // Most users set no budget: the month's usage is only summed for those who do.
    let setting = Box::pin(store.chat().budget(user)).await?;
    let Some(limit) = setting.monthly_limit else {
        return Ok(());
    };
    let budget = Box::pin(spend(store, user, setting, now)).await?;
    if budget.exhausted() {
        return Err(budget.refusal(limit, now));
    }
    Ok(())
}

/// `setting` with the tokens used in the month of `now`.
async fn spend(
    store: &Store,
    user: UserId,
    setting: TokenBudgetSetting,
    now: DateTime<Utc>,
) -> Result<TokenBudget> {
    let TokenBudgetSetting {
        monthly_limit,
        updated_at,
    } = setting;
    let (period_start, period_end) = month_of(now);
    let used = store
        .chat()
        .tokens_between(
            user,
            period_start.date_naive(),
            period_end.date_naive() - chrono::Days::new(1),
        )
        .await?;
    Ok(TokenBudget {
        monthly_limit,
        used,
        period_start,
        period_end,
        updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_run_from_the_first_to_the_first() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let (start, end) = month_of(at);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }
}
