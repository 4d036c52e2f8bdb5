//! One model turn assembled from a generateContent response or the chunks of a stream.

use std::time::Duration;

use assistd_domain::chat::FinishReason;
use assistd_gemini::{GenerateContentResponse, Part};
use serde_json::{Value, json};

/// What the model produced in one call, so far.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Visible text (thought parts excluded).
    pub(crate) text: String,
    /// The last thought signature Gemini attached to a text part.
    pub(crate) text_signature: Option<String>,
    /// Function-call parts, verbatim.
    pub(crate) calls: Vec<Part>,
    /// Gemini's `finishReason`, once given.
    pub(crate) finish: Option<String>,
    /// `promptFeedback.blockReason`: the prompt was blocked.
    pub(crate) block_reason: Option<String>,
    /// Latest usage metadata.
    pub(crate) prompt_tokens: i64,
    /// Output tokens: candidates plus thoughts.
    pub(crate) output_tokens: i64,
    /// Total as Gemini counts it.
    pub(crate) total_tokens: i64,
    /// Whether any usage metadata arrived.
    pub(crate) has_usage: bool,
    /// `modelVersion`.
    pub(crate) model_version: Option<String>,
    /// Time from the request to the first text.
    pub(crate) first_text: Option<Duration>,
}

impl Turn {
    /// Adds a response or stream chunk and returns the text it adds.
    pub(crate) fn absorb(&mut self, response: GenerateContentResponse) -> String {
        if let Some(usage) = response.usage_metadata {
            let prompt = usage.prompt_token_count.unwrap_or_default();
            let output = usage.candidates_token_count.unwrap_or_default()
                + usage.thoughts_token_count.unwrap_or_default();
            self.prompt_tokens = i64::from(prompt);
            self.output_tokens = i64::from(output);
            self.total_tokens = i64::from(usage.total_token_count.unwrap_or(prompt + output));
            self.has_usage = true;
        }
        if let Some(version) = response.model_version {
            self.model_version = Some(version);
        }
        if let Some(reason) = response.prompt_feedback.and_then(|f| f.block_reason) {
            self.block_reason = Some(reason);
        }
        let mut added = String::new();
        if let Some(candidate) = response.candidates.into_iter().next() {
            if let Some(reason) = candidate.finish_reason {
                self.finish = Some(reason);
            }
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if part.function_call.is_some() {
                    self.calls.push(part);
                    continue;
                }
                if part.thought == Some(true) {
                    continue;
                }
                if let Some(signature) = &part.thought_signature {
                    self.text_signature = Some(signature.clone());
                }
                if let Some(text) = &part.text {
                    added.push_str(text);
                }
            }
        }
        self.text.push_str(&added);
        added
    }

    /// Whether Gemini said the turn is over.
    pub(crate) fn finished(&self) -> bool {
        self.finish.is_some() || self.block_reason.is_some()
    }

    /// Our finish reason for a complete turn without function calls.
    pub(crate) fn finish_reason(&self) -> FinishReason {
        if self.block_reason.is_some() {
            return FinishReason::Safety;
        }
        self.finish
            .as_deref()
            .map_or(FinishReason::Stop, FinishReason::from_gemini)
    }

    /// The text part to store and send back, if the turn has text.
    pub(crate) fn text_part(&self) -> Option<Value> {
        if self.text.is_empty() && self.text_signature.is_none() {
            return None;
        }
        let mut part = json!({"text": self.text});
        if let Some(signature) = &self.text_signature {
            part["thoughtSignature"] = json!(signature);
        }
        Some(part)
    }

    /// The turn's parts as they go back to Gemini: the text, then the calls verbatim.
    pub(crate) fn model_parts(&self) -> Vec<Part> {
        let mut parts: Vec<Part> = self
            .text_part()
            .and_then(|part| serde_json::from_value(part).ok())
            .into_iter()
            .collect();
        parts.extend(self.calls.iter().cloned());
        parts
    }
}
