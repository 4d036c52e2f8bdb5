//! What generateContent and streamGenerateContent answer.

use serde_json::{Value, json};

/// A model reply the server gives to the next generate call, streamed or not. Text only for
/// now, with `usageMetadata` whose token counts are word counts (deterministic, and enough for
/// budget arithmetic in tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedReply {
    chunks: Vec<String>,
    finish_reason: String,
}

impl ScriptedReply {
    /// A reply of one piece of text: one SSE event when streamed.
    pub fn text(text: impl Into<String>) -> Self {
        Self::chunks([text.into()])
    }

    /// A reply in pieces: one SSE event per piece when streamed, their concatenation when not.
    pub fn chunks<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut chunks: Vec<String> = chunks.into_iter().map(Into::into).collect();
        if chunks.is_empty() {
            chunks.push(String::new());
        }
        Self {
            chunks,
            finish_reason: "STOP".to_owned(),
        }
    }

    /// Ends the reply with `reason` (`MAX_TOKENS`, `SAFETY`, …) instead of `STOP`.
    #[must_use]
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = reason.into();
        self
    }

    /// The whole text.
    #[must_use]
    pub fn full_text(&self) -> String {
        self.chunks.concat()
    }

    /// The pieces.
    #[must_use]
    pub fn pieces(&self) -> &[String] {
        &self.chunks
    }

    /// The `GenerateContentResponse` of a generateContent call.
    pub(super) fn response(&self, prompt_tokens: u64, model: &str, response_id: &str) -> Value {
        let text = self.full_text();
        let output_tokens = word_count(&text);
        json!({
            "candidates": [{
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": self.finish_reason,
                "index": 0
            }],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]
            },
            "modelVersion": model,
            "responseId": response_id
        })
    }

    /// The `GenerateContentResponse` chunks of a streamGenerateContent call, shaped like the
    /// peer example: every chunk reports the prompt usage, the last one adds `finishReason`
    /// and the output tokens.
    pub(super) fn stream_chunks(
        &self,
        prompt_tokens: u64,
        model: &str,
        response_id: &str,
    ) -> Vec<Value> {
        let last = self.chunks.len() - 1;
        self.chunks
            .iter()
            .enumerate()
            .map(|(index, piece)| {
                let mut candidate = json!({
                    "content": {"parts": [{"text": piece}], "role": "model"},
                    "index": 0
                });
                let mut usage = json!({
                    "promptTokenCount": prompt_tokens,
                    "totalTokenCount": prompt_tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]
                });
                if index == last {
                    let output_tokens = word_count(&self.full_text());
                    candidate["finishReason"] = json!(self.finish_reason);
                    usage["candidatesTokenCount"] = json!(output_tokens);
                    usage["totalTokenCount"] = json!(prompt_tokens + output_tokens);
                }
                json!({
                    "candidates": [candidate],
                    "usageMetadata": usage,
                    "modelVersion": model,
                    "responseId": response_id
                })
            })
            .collect()
    }
}

impl Default for ScriptedReply {
    /// The reply of the peer examples, in the example stream's three pieces.
    fn default() -> Self {
        Self::chunks([
            "Bob asked you",
            " to confirm the Q3 numbers",
            " before Friday.",
        ])
    }
}

/// The server's stand-in for a tokenizer.
pub(super) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The prompt's "tokens": words of every text part of `contents` and `systemInstruction`.
pub(super) fn prompt_tokens(request: &Value) -> u64 {
    let parts_of = |content: &Value| -> u64 {
        content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(word_count)
            .sum()
    };
    let contents: u64 = request
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(parts_of)
        .sum();
    contents + request.get("systemInstruction").map_or(0, parts_of)
}
