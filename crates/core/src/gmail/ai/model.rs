//! One model call of the AI over mail, counted and refused like chat's: the user's usable
//! key, the monthly budget checked before, each call's usage recorded, an outage retried with
//! jittered backoff, and every failure mapped to the error chat would answer.

use assistd_domain::apikey::Provider;
use assistd_domain::audit::RequestContext;
use assistd_domain::preferences::Language;
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_gemini::{ApiKey, GenerateContentRequest, GenerateContentResponse};
use assistd_store::UsageDelta;
use backon::{BackoffBuilder, ExponentialBuilder};

use super::Inner;
use crate::api_keys::RevealedKey;
use crate::chat::{check_budget, gemini_key, provider_error};

/// Gemini usage of one AI request, summed over its model calls; all zero when stored
/// results answered it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AiUsage {
    /// Model calls made.
    pub model_calls: i64,
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens (answer plus thinking).
    pub output_tokens: i64,
    /// All tokens as Gemini counts them: what the budget counts.
    pub total_tokens: i64,
}

/// The usage a response reports: prompt, output (candidates and thoughts) and total tokens.
fn usage_of(response: &GenerateContentResponse) -> (i64, i64, i64) {
    let Some(usage) = &response.usage_metadata else {
        return (0, 0, 0);
    };
    let prompt = usage.prompt_token_count.unwrap_or_default();
    let output = usage.candidates_token_count.unwrap_or_default()
        + usage.thoughts_token_count.unwrap_or_default();
    let total = usage.total_token_count.unwrap_or(prompt + output);
    (i64::from(prompt), i64::from(output), i64::from(total))
}

/// Whether a failed call may simply be made again.
fn retryable(err: &assistd_gemini::Error) -> bool {
    matches!(
        err,
        assistd_gemini::Error::Unavailable { .. } | assistd_gemini::Error::StreamInterrupted { .. }
    )
}

/// A user ready to call the model for: key revealed, budget checked, language and model
/// chosen. Usage accumulates over its calls.
pub(super) struct ModelSession<'a> {
    inner: &'a Inner,
    user: UserId,
    context: &'a RequestContext,
    key: RevealedKey,
    api_key: ApiKey,
    /// The model called.
    pub(super) model: String,
    /// The user's preferred language.
    pub(super) language: &'static Language,
    /// What the calls so far used.
    pub(super) usage: AiUsage,
}

impl Inner {
    /// Prepares model calls for `user`: FAILED_PRECONDITION `API_KEY_MISSING` /
    /// `API_KEY_INVALID` without a usable key, RESOURCE_EXHAUSTED `TOKEN_BUDGET_EXHAUSTED`
    /// when the month's budget is spent.
    pub(super) async fn model_session<'a>(
        &'a self,
        user: UserId,
        context: &'a RequestContext,
    ) -> Result<ModelSession<'a>> {
        // Read fresh: a change made a moment ago on another replica must count.
        let preferences = Box::pin(self.preferences.get_current(user)).await?;
        let model = preferences
            .default_model
            .clone()
            .filter(|model| !model.is_empty())
            .unwrap_or_else(|| self.default_model.clone());
        let key = Box::pin(self.vault.reveal_usable(user, Provider::Gemini)).await?;
        let api_key = gemini_key(&key)?;
        let store = &self.gmail.inner.store;
        Box::pin(check_budget(store, user, self.gmail.now())).await?;
        Ok(ModelSession {
            inner: self,
            user,
            context,
            key,
            api_key,
            model,
            language: preferences.language,
            usage: AiUsage::default(),
        })
    }
}

impl ModelSession<'_> {
    /// One generateContent call, retried while Gemini is out (at most chat's `max_retries`,
    /// waits doubling from `retry_backoff`, jittered). Each answered call's usage is recorded
    /// for the user's day and model, and added to [`ModelSession::usage`].
    pub(super) async fn generate(
        &mut self,
        request: &GenerateContentRequest,
    ) -> Result<GenerateContentResponse> {
        let inner = self.inner;
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(inner.retry_backoff)
            .with_factor(2.0)
            .without_max_delay()
            .with_max_times(usize::try_from(inner.max_retries).unwrap_or(usize::MAX))
            .with_jitter()
            .build();
        let response = loop {
            match inner
                .gemini
                .generate_content(&self.api_key, &self.model, request)
                .await
            {
                Ok(response) => break response,
                Err(err) if retryable(&err) => {
                    if let Some(delay) = delays.next() {
                        tracing::info!(error = %err, ?delay, "retrying a failed Gemini call");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(self.failure(err).await);
                }
                Err(err) => return Err(self.failure(err).await),
            }
        };
        let (prompt, output, total) = usage_of(&response);
        self.usage.model_calls += 1;
        self.usage.prompt_tokens += prompt;
        self.usage.output_tokens += output;
        self.usage.total_tokens += total;
        let delta = UsageDelta {
            day: inner.gmail.now().date_naive(),
            model: self.model.clone(),
            requests: 1,
            prompt_tokens: prompt,
            output_tokens: output,
            total_tokens: total,
        };
        inner
            .gmail
            .inner
            .store
            .chat()
            .record_usage(self.user, &delta)
            .await?;
        Ok(response)
    }

    async fn failure(&self, err: assistd_gemini::Error) -> Error {
        provider_error(
            &self.inner.vault,
            self.user,
            self.context,
            &self.key,
            err,
            &self.model,
        )
        .await
    }
}

/// The answer's text, or UNAVAILABLE `PROVIDER_UNAVAILABLE` when Gemini gave none (a blocked
/// prompt, an answer stopped before any text).
pub(super) fn answer_text(response: &GenerateContentResponse) -> Result<String> {
    let text = response.text();
    if text.trim().is_empty() {
        let why = response
            .block_reason()
            .or(response.finish_reason())
            .unwrap_or("no text");
        return Err(Error::Unavailable {
            reason: ErrorReason::ProviderUnavailable,
            message: format!("Gemini gave no answer ({why}); try again in a moment"),
            retry_after: None,
        });
    }
    Ok(text)
}
