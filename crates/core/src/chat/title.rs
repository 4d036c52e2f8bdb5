//! Titles generated for untitled sessions after their first exchange: one background model
//! call with the user's key, its usage counted like any other, its answer cleaned into a
//! title or dropped.

use std::sync::Arc;

use assistd_domain::chat::{ChatMessage, SessionId, validate_title};
use assistd_domain::{Clock, UserId};
use assistd_gemini::{ApiKey, Content, GeminiClient, GenerateContentRequest, Part};
use assistd_store::{Store, UsageDelta};

use super::exchange::Exchange;
use super::turn::Turn;

/// Longest generated title, in characters.
const GENERATED_TITLE_CHARS: usize = 80;

/// The title in a model's answer: its first non-empty line without quotes, markdown or a
/// final period, clipped; `None` when nothing valid is left.
fn clean_title(answer: &str) -> Option<String> {
    let title: String = answer
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '*' | '#' | '.' | '“' | '”'))
        .trim()
        .chars()
        .take(GENERATED_TITLE_CHARS)
        .collect();
    (!title.is_empty() && validate_title(&title).is_ok()).then_some(title)
}

/// The request that asks the model for a title of the exchange `user_text` → `reply`.
fn title_request(user_text: &str, reply: &str) -> GenerateContentRequest {
    // The start of a long exchange is enough to name it, and keeps the call cheap.
    let clip = |text: &str| text.chars().take(2_000).collect::<String>();
    let prompt = format!(
        "Write a title of at most six words for the conversation that starts below. \
         Answer with the title only, without quotes or punctuation at the end.\n\n\
         User: {}\n\nAssistant: {}",
        clip(user_text),
        clip(reply),
    );
    GenerateContentRequest {
        contents: vec![Content {
            role: Some("user".to_owned()),
            parts: vec![Part::text(prompt)],
        }],
        ..GenerateContentRequest::default()
    }
}

/// What the background title call needs, owned: it outlives the exchange.
struct TitleJob {
    store: Store,
    gemini: GeminiClient,
    clock: Arc<dyn Clock>,
    key: ApiKey,
    user: UserId,
    session: SessionId,
    model: String,
    request: GenerateContentRequest,
}

impl TitleJob {
    /// Asks the model, counts the call's usage, and stores the title if one came back.
    /// Failures are only logged: the session simply stays untitled.
    async fn run(self) {
        let response = match self
            .gemini
            .generate_content(&self.key, &self.model, &self.request)
            .await
        {
            Ok(response) => response,
            Err(err) => {
                tracing::info!(error = %err, "no title generated");
                return;
            }
        };
        let mut turn = Turn::default();
        turn.absorb(response);
        let chat = self.store.chat();
        let delta = UsageDelta {
            day: self.clock.now().date_naive(),
            model: self.model,
            requests: 1,
            prompt_tokens: turn.prompt_tokens,
            output_tokens: turn.output_tokens,
            total_tokens: turn.total_tokens,
        };
        if let Err(err) = chat.record_usage(self.user, &delta).await {
            tracing::warn!(error = %err, "could not record the usage of a title");
        }
        let Some(title) = clean_title(&turn.text) else {
            return;
        };
        if let Err(err) = chat
            .set_generated_title(self.user, self.session, &title, self.clock.now())
            .await
        {
            tracing::warn!(error = %err, "could not store a generated title");
        }
    }
}

impl Exchange<'_> {
    /// Generates a title for the session in the background, with the user's key.
    pub(super) fn spawn_title(
        &self,
        session: SessionId,
        model: &str,
        key: &ApiKey,
        user_message: &ChatMessage,
        reply: &str,
    ) {
        let Ok(key) = ApiKey::new(key.expose_secret().to_owned()) else {
            return;
        };
        let job = TitleJob {
            store: self.inner.store.clone(),
            gemini: self.inner.gemini.clone(),
            clock: Arc::clone(&self.inner.clock),
            key,
            user: self.user,
            session,
            model: model.to_owned(),
            request: title_request(user_message.content.text().unwrap_or_default(), reply),
        };
        tokio::spawn(job.run());
    }
}
