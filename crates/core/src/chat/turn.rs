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
    /// Thought parts that carry a signature, verbatim: they go back to Gemini as they came.
    pub(crate) signed_thoughts: Vec<Part>,
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
                if part.is_thought() {
                    if part.thought_signature.is_some() {
                        self.signed_thoughts.push(part);
                    }
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

    /// The signed thought parts, as stored with the turn's first message.
    pub(crate) fn thought_parts(&self) -> Vec<Value> {
        self.signed_thoughts
            .iter()
            .filter_map(|part| serde_json::to_value(part).ok())
            .collect()
    }

    /// The parts stored with the turn's text: its signed thoughts, then its text part.
    pub(crate) fn reply_parts(&self) -> Option<Value> {
        let mut parts = self.thought_parts();
        parts.extend(self.text_part());
        (!parts.is_empty()).then_some(Value::Array(parts))
    }

    /// The turn's parts as they go back to Gemini: the signed thoughts, the text, then the
    /// calls, each verbatim.
    pub(crate) fn model_parts(&self) -> Vec<Part> {
        let mut parts: Vec<Part> = self.signed_thoughts.clone();
        parts.extend(
            self.text_part()
                .and_then(|part| serde_json::from_value(part).ok()),
        );
        parts.extend(self.calls.iter().cloned());
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_thoughts_go_back_verbatim_and_unsigned_ones_do_not() {
        let response: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Weighing it up…", "thought": true, "thoughtSignature": "dGhvdWdodA=="},
                    {"text": "An unsigned summary", "thought": true},
                    {"text": "The answer."}
                ]},
                "finishReason": "STOP"
            }]
        }))
        .unwrap();
        let mut turn = Turn::default();
        assert_eq!(turn.absorb(response), "The answer.");
        let parts = turn.model_parts();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].is_thought());
        assert_eq!(parts[0].thought_signature.as_deref(), Some("dGhvdWdodA=="));
        assert_eq!(parts[1].text.as_deref(), Some("The answer."));
        assert_eq!(
            turn.reply_parts().unwrap(),
            json!([
                {"text": "Weighing it up…", "thought": true, "thoughtSignature": "dGhvdWdodA=="},
                {"text": "The answer."}
            ])
        );
    }
}
