//! What generateContent and streamGenerateContent answer.

use assistd_devkit::model::api::word_count;
use serde_json::{Map, Value, json};

/// A model reply the server gives to a generate call, streamed or not: thought summaries,
/// text, function calls, a finish reason, or a blocked prompt. `usageMetadata` token counts
/// are word counts (deterministic, and enough for budget arithmetic in tests) unless
/// [overridden](ScriptedReply::usage).
///
/// Streamed, a reply is one SSE event per thought summary, one per text piece, then one
/// event holding every function call; the last event carries `finishReason` and the final
/// usage, like Gemini's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedReply {
    thoughts: Vec<String>,
    chunks: Vec<String>,
    calls: Vec<ScriptedCall>,
    finish_reason: String,
    block_reason: Option<String>,
    usage: Option<Usage>,
}

/// A function call the model makes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScriptedCall {
    name: String,
    args: Value,
}

/// Token counts that replace the word counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    prompt: u64,
    candidates: u64,
    thoughts: u64,
}

/// The id and `thoughtSignature` the server issued for one function call of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CallTag {
    pub(super) id: String,
    pub(super) signature: String,
}

/// Everything a reply needs besides itself to become a `GenerateContentResponse`.
pub(super) struct Render<'a> {
    /// Words of the request's text parts, unless the reply overrides usage.
    pub(super) prompt_tokens: u64,
    /// The model id, for `modelVersion`.
    pub(super) model: &'a str,
    pub(super) response_id: &'a str,
    /// One per function call of the reply, in order.
    pub(super) calls: &'a [CallTag],
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
            ..Self::empty()
        }
    }

    /// A reply that only calls function `name` with `args` (a JSON object). The call's part
    /// carries an `id` and a `thoughtSignature` the server remembers; see
    /// [`GeminiServer::require_thought_signatures`](super::GeminiServer::require_thought_signatures).
    pub fn function_call(name: impl Into<String>, args: Value) -> Self {
        Self::empty().with_function_call(name, args)
    }

    /// Adds a call of function `name` with `args` after the text and the calls already in the
    /// reply (several calls are parallel function calls).
    #[must_use]
    pub fn with_function_call(mut self, name: impl Into<String>, args: Value) -> Self {
        // A text reply made by `chunks([])` holds one empty piece; a call replaces it.
        if self.chunks.iter().all(String::is_empty) {
            self.chunks.clear();
        }
        self.calls.push(ScriptedCall {
            name: name.into(),
            args,
        });
        self
    }

    /// Adds a thought summary (a part with `"thought": true`) before the answer, as Gemini
    /// sends with `thinkingConfig.includeThoughts`.
    #[must_use]
    pub fn with_thought(mut self, summary: impl Into<String>) -> Self {
        self.thoughts.push(summary.into());
        self
    }

    /// A prompt Google refuses: `promptFeedback.blockReason` `reason` (`SAFETY`, `OTHER`,
    /// `BLOCKLIST`, `PROHIBITED_CONTENT`, …) and no candidates, like the peer example
    /// `prompt_blocked_response.json`. One event when streamed.
    pub fn blocked_prompt(reason: impl Into<String>) -> Self {
        Self {
            block_reason: Some(reason.into()),
            ..Self::empty()
        }
    }

    /// Ends the reply with `reason` (`MAX_TOKENS`, `SAFETY`, …) instead of `STOP`. A `SAFETY`
    /// finish adds `safetyRatings` to the candidate, and without text the candidate has no
    /// `content`, like `candidate_safety_blocked_response.json`.
    #[must_use]
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = reason.into();
        self
    }

    /// Reports these token counts instead of word counts; `thoughts` above zero adds
    /// `thoughtsTokenCount`. `totalTokenCount` is their sum.
    #[must_use]
    pub fn usage(mut self, prompt: u64, candidates: u64, thoughts: u64) -> Self {
        self.usage = Some(Usage {
            prompt,
            candidates,
            thoughts,
        });
        self
    }

    /// The whole text (thought summaries excluded).
    #[must_use]
    pub fn full_text(&self) -> String {
        self.chunks.concat()
    }

    /// The text pieces.
    #[must_use]
    pub fn pieces(&self) -> &[String] {
        &self.chunks
    }

    /// Names and arguments of the function calls, in order.
    #[must_use]
    pub fn function_calls(&self) -> Vec<(&str, &Value)> {
        self.calls
            .iter()
            .map(|call| (call.name.as_str(), &call.args))
            .collect()
    }

    fn empty() -> Self {
        Self {
            thoughts: Vec::new(),
            chunks: Vec::new(),
            calls: Vec::new(),
            finish_reason: "STOP".to_owned(),
            block_reason: None,
            usage: None,
        }
    }

    /// Prompt, candidate and thought token counts.
    fn counts(&self, prompt_tokens: u64) -> Usage {
        self.usage.unwrap_or_else(|| Usage {
            prompt: prompt_tokens,
            candidates: if self.block_reason.is_some() {
                0
            } else {
                word_count(&self.full_text()) + self.calls.len() as u64
            },
            thoughts: self.thoughts.iter().map(|t| word_count(t)).sum(),
        })
    }

    /// The `GenerateContentResponse` of a generateContent call.
    pub(super) fn response(&self, render: &Render<'_>) -> Value {
        let counts = self.counts(render.prompt_tokens);
        if let Some(reason) = &self.block_reason {
            return self.blocked(reason, counts, render);
        }
        let mut parts: Vec<Value> = self.thoughts.iter().map(|t| thought_part(t)).collect();
        let text = self.full_text();
        if !text.is_empty() || (self.calls.is_empty() && self.finish_reason != "SAFETY") {
            parts.push(json!({ "text": text }));
        }
        parts.extend(self.call_parts(render.calls));
        let candidate = self.final_candidate(parts);
        let usage = final_usage(counts, has_output(&candidate));
        envelope(Some(candidate), usage, render)
    }

    /// The `GenerateContentResponse` chunks of a streamGenerateContent call, shaped like the
    /// peer example: every chunk reports the prompt usage, the last one adds `finishReason`
    /// and the final usage.
    pub(super) fn stream_chunks(&self, render: &Render<'_>) -> Vec<Value> {
        let counts = self.counts(render.prompt_tokens);
        if let Some(reason) = &self.block_reason {
            return vec![self.blocked(reason, counts, render)];
        }
        let mut events: Vec<Vec<Value>> = self
            .thoughts
            .iter()
            .map(|t| vec![thought_part(t)])
            .collect();
        events.extend(
            self.chunks
                .iter()
                .map(|piece| vec![json!({ "text": piece })]),
        );
        if !self.calls.is_empty() {
            events.push(self.call_parts(render.calls));
        }
        let last = events.len().saturating_sub(1);
        events
            .into_iter()
            .enumerate()
            .map(|(index, parts)| {
                if index < last {
                    let candidate = json!({
                        "content": {"parts": parts, "role": "model"},
                        "index": 0
                    });
                    return envelope(Some(candidate), running_usage(counts.prompt), render);
                }
                // An empty last piece of a reply stopped for safety carries no content.
                let parts = if self.finish_reason == "SAFETY" {
                    parts
                        .into_iter()
                        .filter(|part| part.get("text").is_none_or(|text| text != ""))
                        .collect()
                } else {
                    parts
                };
                let candidate = self.final_candidate(parts);
                let usage = final_usage(counts, has_output(&candidate));
                envelope(Some(candidate), usage, render)
            })
            .collect()
    }

    fn call_parts(&self, tags: &[CallTag]) -> Vec<Value> {
        self.calls
            .iter()
            .zip(tags)
            .map(|(call, tag)| {
                json!({
                    "functionCall": {"id": tag.id, "name": call.name, "args": call.args},
                    "thoughtSignature": tag.signature
                })
            })
            .collect()
    }

    /// The candidate that ends the reply: `finishReason`, and `safetyRatings` for `SAFETY`.
    fn final_candidate(&self, parts: Vec<Value>) -> Value {
        let mut candidate = Map::new();
        if !parts.is_empty() {
            candidate.insert(
                "content".to_owned(),
                json!({"parts": parts, "role": "model"}),
            );
        }
        candidate.insert("finishReason".to_owned(), json!(self.finish_reason));
        candidate.insert("index".to_owned(), json!(0));
        if self.finish_reason == "SAFETY" {
            candidate.insert("safetyRatings".to_owned(), safety_ratings("MEDIUM"));
        }
        Value::Object(candidate)
    }

    fn blocked(&self, reason: &str, counts: Usage, render: &Render<'_>) -> Value {
        let mut feedback = json!({ "blockReason": reason });
        if reason == "SAFETY" {
            feedback["safetyRatings"] = safety_ratings("HIGH");
        }
        let mut body = envelope(None, final_usage(counts, false), render);
        body["promptFeedback"] = feedback;
        body
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

fn thought_part(summary: &str) -> Value {
    json!({ "text": summary, "thought": true })
}

/// Whether a candidate has content (then `candidatesTokenCount` is reported).
fn has_output(candidate: &Value) -> bool {
    candidate.get("content").is_some()
}

/// `{candidates?, usageMetadata, modelVersion, responseId}`.
fn envelope(candidate: Option<Value>, usage: Value, render: &Render<'_>) -> Value {
    let mut body = Map::new();
    if let Some(candidate) = candidate {
        body.insert("candidates".to_owned(), json!([candidate]));
    }
    body.insert("usageMetadata".to_owned(), usage);
    body.insert("modelVersion".to_owned(), json!(render.model));
    body.insert("responseId".to_owned(), json!(render.response_id));
    Value::Object(body)
}

/// Usage of a chunk before the last: the prompt only.
fn running_usage(prompt: u64) -> Value {
    json!({
        "promptTokenCount": prompt,
        "totalTokenCount": prompt,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]
    })
}

/// Usage of a whole reply. `candidatesTokenCount` is absent when nothing was generated (a
/// blocked prompt, a candidate stopped for safety before any text), as Google does.
fn final_usage(counts: Usage, output: bool) -> Value {
    let mut usage = Map::new();
    usage.insert("promptTokenCount".to_owned(), json!(counts.prompt));
    if output || counts.candidates > 0 {
        usage.insert("candidatesTokenCount".to_owned(), json!(counts.candidates));
    }
    usage.insert(
        "totalTokenCount".to_owned(),
        json!(counts.prompt + counts.candidates + counts.thoughts),
    );
    if counts.thoughts > 0 {
        usage.insert("thoughtsTokenCount".to_owned(), json!(counts.thoughts));
    }
    usage.insert(
        "promptTokensDetails".to_owned(),
        json!([{"modality": "TEXT", "tokenCount": counts.prompt}]),
    );
    Value::Object(usage)
}

/// The four categories Gemini rates, harassment at `level` and blocked.
fn safety_ratings(level: &str) -> Value {
    json!([
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": level, "blocked": true},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"}
    ])
}
