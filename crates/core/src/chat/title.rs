//! Titles generated for untitled sessions after their first exchange: one background model
//! call with the user's key, its usage counted like any other, its answer cleaned into a
//! title or dropped.

use std::sync::Arc;

use assistd_domain::chat::{ChatMessage, SessionId, validate_title};
use assistd_gemini::{ApiKey, Content, GenerateContentRequest, Part};
use assistd_store::UsageDelta;

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
        let inner_store = self.inner.store.clone();
        let clock = Arc::clone(&self.inner.clock);
        let gemini = self.inner.gemini.clone();
        let user = self.user;
        let model = model.to_owned();
        let clip = |text: &str| text.chars().take(2_000).collect::<String>();
        let prompt = format!(
            "Write a title of at most six words for the conversation that starts below. \
             Answer with the title only, without quotes or punctuation at the end.\n\n\
             User: {}\n\nAssistant: {}",
            clip(user_message.content.text().unwrap_or_default()),
            clip(reply),
        );
        tokio::spawn(async move {
            let request = GenerateContentRequest {
                contents: vec![Content {
                    role: Some("user".to_owned()),
                    parts: vec![Part::text(prompt)],
                }],
                ..GenerateContentRequest::default()
            };
            let response = match gemini.generate_content(&key, &model, &request).await {
                Ok(response) => response,
                Err(err) => {
                    tracing::info!(error = %err, "no title generated");
                    return;
                }
            };
            let mut turn = Turn::default();
            turn.absorb(response);
            let chat = inner_store.chat();
            let delta = UsageDelta {
                day: clock.now().date_naive(),
                model,
                requests: 1,
                prompt_tokens: turn.prompt_tokens,
                output_tokens: turn.output_tokens,
                total_tokens: turn.total_tokens,
            };
            if let Err(err) = chat.record_usage(user, &delta).await {
                tracing::warn!(error = %err, "could not record the usage of a title");
            }
            let Some(title) = clean_title(&turn.text) else {
                return;
            };
            if let Err(err) = chat
                .set_generated_title(user, session, &title, clock.now())
                .await
            {
                tracing::warn!(error = %err, "could not store a generated title");
            }
        });
    }
}
