//! `generateContent` and `streamGenerateContent` as they travel (`v1beta` JSON, camelCase).
//!
//! Every type tolerates fields it does not name, so a newer API does not break decoding, and
//! a [`Part`] keeps those fields ([`Part::other`]): a model turn sent back in a later request
//! is the turn Google sent, `thoughtSignature` and all, as Gemini requires.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `models.generateContent` and `models.streamGenerateContent`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    /// The conversation so far, oldest first: `user` turns (text, function responses) and
    /// `model` turns (echoed verbatim).
    pub contents: Vec<Content>,
    /// The system prompt (a content without role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// How the model may call them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    /// Per-category blocking thresholds; Google's defaults when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_settings: Vec<SafetySetting>,
    /// Sampling, length and thinking settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
}

/// One turn of the conversation, or the system instruction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// `user` or `model`; none for the system instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What the turn holds, in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

impl Content {
    /// A `user` turn of one text part.
    #[must_use]
    pub fn user(text: impl Into<String>) -> Self {
        Self::user_parts(vec![Part::text(text)])
    }

    /// A `user` turn of `parts` (e.g. function responses).
    #[must_use]
    pub fn user_parts(parts: Vec<Part>) -> Self {
        Self {
            role: Some("user".to_owned()),
            parts,
        }
    }

    /// A `model` turn of `parts`, as the model sent them.
    #[must_use]
    pub fn model(parts: Vec<Part>) -> Self {
        Self {
            role: Some("model".to_owned()),
            parts,
        }
    }

    /// A system instruction of one text part (no role).
    #[must_use]
    pub fn system(text: impl Into<String>) -> Self {
        Self {
            role: None,
            parts: vec![Part::text(text)],
        }
    }

    /// The concatenated text of the parts that are not thoughts.
    #[must_use]
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|part| !part.is_thought())
            .filter_map(|part| part.text.as_deref())
            .collect()
    }
}

/// One piece of a turn: text, a function call or response, or anything else Gemini sends
/// (kept in [`Part::other`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text (a thought summary when [`Part::thought`] is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A call of one of the request's functions, from the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// The result of a function call, from the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// Whether the text is a summary of the model's thinking rather than answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque state of the model's reasoning. Parts carrying one (function calls of Gemini
    /// 2.5 and 3) must go back unchanged in the next request, or Gemini 3 answers 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    /// Every other field (`inlineData`, `executableCode`, `videoMetadata`, …), kept as
    /// received so the part can be sent back verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Part {
    /// A text part.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// A function response part (goes in a `user` turn).
    #[must_use]
    pub fn function_response(response: FunctionResponse) -> Self {
        Self {
            function_response: Some(response),
            ..Self::default()
        }
    }

    /// Whether this is a thought summary.
    #[must_use]
    pub fn is_thought(&self) -> bool {
        self.thought == Some(true)
    }
}

/// A function call the model asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCall {
    /// The call's id, when Google gives one; the response carries it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function's name, as declared.
    pub name: String,
    /// The arguments, a JSON object matching the declared parameters (`{}` if absent).
    #[serde(default = "empty_object")]
    pub args: Value,
}

impl FunctionCall {
    /// The response to this call carrying `response` (a JSON object, e.g.
    /// `{"result": …}` or `{"error": …}`), with the call's id and name.
    #[must_use]
    pub fn respond(&self, response: Value) -> FunctionResponse {
        FunctionResponse {
            id: self.id.clone(),
            name: self.name.clone(),
            response,
        }
    }
}

/// The result of a function call, sent back in a `user` turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponse {
    /// The id of the call answered, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function's name.
    pub name: String,
    /// The result, a JSON object.
    #[serde(default = "empty_object")]
    pub response: Value,
}

/// Tools the model may use; only function declarations here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// The functions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// A function the model may call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    /// Name: letters, digits, `_`, `-`, `.`, `:`; at most 64 characters.
    pub name: String,
    /// What it does and when to call it; the model reads this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its parameters, an OpenAPI-subset schema object (`{"type": "object", …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// How the model may call functions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    /// The function calling settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_calling_config: Option<FunctionCallingConfig>,
}

/// `toolConfig.functionCallingConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    /// Whether the model may, must or must not call functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FunctionCallingMode>,
    /// With [`FunctionCallingMode::Any`], the functions it may choose from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_function_names: Vec<String>,
}

/// `functionCallingConfig.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FunctionCallingMode {
    /// The model decides between text and a call (the default).
    Auto,
    /// The model must call a function.
    Any,
    /// The model must not call functions.
    None,
    /// Like `Auto`, with calls checked against the schemas.
    Validated,
}

/// A blocking threshold for one harm category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SafetySetting {
    /// E.g. `HARM_CATEGORY_HARASSMENT`.
    pub category: String,
    /// E.g. `BLOCK_MEDIUM_AND_ABOVE`, `BLOCK_NONE`.
    pub threshold: String,
}

/// `generationConfig`: every field optional, Google's defaults when absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Most tokens of answer (thinking excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// How many candidates to generate (1 unless asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    /// Strings that end the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    /// `text/plain` or `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    /// The schema of a JSON answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// Fixed seed for sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// How much the model thinks, and whether it sends thought summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

/// `generationConfig.thinkingConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    /// Thinking tokens allowed (Gemini 2.5): 0 turns thinking off where possible, -1 lets
    /// the model decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<i32>,
    /// Thinking effort (Gemini 3): `low`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<String>,
    /// Whether to send thought summaries (parts with `thought: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
}

/// The answer of `generateContent`, and each event of `streamGenerateContent` (a piece of the
/// answer; the last carries `finishReason` and the final usage).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// The answers; one unless more were asked for, none when the prompt was blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Present when the prompt was blocked (then there are no candidates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    /// The model that answered, e.g. `gemini-2.5-flash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Google's id of the answer (the same in every event of a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
}

impl GenerateContentResponse {
    /// The first candidate, if any.
    #[must_use]
    pub fn candidate(&self) -> Option<&Candidate> {
        self.candidates.first()
    }

    /// The first candidate's parts (none without a candidate or content).
    #[must_use]
    pub fn parts(&self) -> &[Part] {
        self.candidate()
            .and_then(|candidate| candidate.content.as_ref())
            .map_or(&[], |content| &content.parts)
    }

    /// The concatenated text of the first candidate, thought summaries excluded.
    #[must_use]
    pub fn text(&self) -> String {
        self.parts()
            .iter()
            .filter(|part| !part.is_thought())
            .filter_map(|part| part.text.as_deref())
            .collect()
    }

    /// The function calls of the first candidate, in order.
    #[must_use]
    pub fn function_calls(&self) -> Vec<&FunctionCall> {
        self.parts()
            .iter()
            .filter_map(|part| part.function_call.as_ref())
            .collect()
    }

    /// Why the first candidate ended (`STOP`, `MAX_TOKENS`, `SAFETY`, …); `None` in the
    /// events of a stream before the last.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&str> {
        self.candidate()
            .and_then(|candidate| candidate.finish_reason.as_deref())
    }

    /// Why the prompt was blocked (`SAFETY`, `OTHER`, `BLOCKLIST`, `PROHIBITED_CONTENT`, …).
    #[must_use]
    pub fn block_reason(&self) -> Option<&str> {
        self.prompt_feedback
            .as_ref()
            .and_then(|feedback| feedback.block_reason.as_deref())
    }

    /// Whether this answer (or stream event) is the last: a candidate finished or the
    /// prompt was blocked.
    #[must_use]
    pub fn is_final(&self) -> bool {
        self.block_reason().is_some()
            || self
                .candidates
                .iter()
                .any(|candidate| candidate.finish_reason.is_some())
    }
}

/// One answer of the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The `model` turn (absent when blocked before any output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Why it ended: `STOP`, `MAX_TOKENS`, `SAFETY`, `RECITATION`, `LANGUAGE`, `OTHER`,
    /// `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `MALFORMED_FUNCTION_CALL`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Google's explanation of the finish reason, sometimes given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_message: Option<String>,
    /// Position among the candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// How harmful the answer was rated, per category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_ratings: Vec<SafetyRating>,
}

/// Feedback on the prompt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// Why the prompt was blocked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
    /// How harmful the prompt was rated, per category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_ratings: Vec<SafetyRating>,
}

/// The rating of one harm category.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SafetyRating {
    /// E.g. `HARM_CATEGORY_HARASSMENT`.
    #[serde(default)]
    pub category: String,
    /// `NEGLIGIBLE`, `LOW`, `MEDIUM` or `HIGH`.
    #[serde(default)]
    pub probability: String,
    /// Whether this category blocked the content.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

/// Token counts of a call; `None` where Google leaves a count out (e.g. no
/// `candidatesTokenCount` for a blocked prompt, no `thoughtsTokenCount` without thinking).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Tokens of the prompt (cached ones included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_token_count: Option<u32>,
    /// Tokens of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates_token_count: Option<u32>,
    /// All tokens billed; can exceed prompt + candidates by the thinking tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_token_count: Option<u32>,
    /// Tokens spent thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thoughts_token_count: Option<u32>,
    /// Prompt tokens served from the context cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_content_token_count: Option<u32>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use assistd_testkit::gemini::bodies;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_example_request_round_trips() {
        let request: GenerateContentRequest =
            serde_json::from_str(bodies::GENERATE_CONTENT_REQUEST).unwrap();
        assert_eq!(request.contents.len(), 3);
        assert_eq!(
            request.system_instruction.as_ref().unwrap().text(),
            "You are a concise assistant for the user's inbox."
        );
        let config = request.generation_config.as_ref().unwrap();
        assert_eq!(config.max_output_tokens, Some(1024));
        assert_eq!(
            config.thinking_config.as_ref().unwrap().thinking_budget,
            Some(0)
        );
        assert_eq!(
            request
                .tool_config
                .as_ref()
                .unwrap()
                .function_calling_config
                .as_ref()
                .unwrap()
                .mode,
            Some(FunctionCallingMode::Auto)
        );
        assert_eq!(
            request.tools[0].function_declarations[0].name,
            "search_mail"
        );
        let original: Value = serde_json::from_str(bodies::GENERATE_CONTENT_REQUEST).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), original);
    }

    #[test]
    fn a_minimal_request_sends_only_what_is_set() {
        let request = GenerateContentRequest {
            contents: vec![Content::user("Hi")],
            ..GenerateContentRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
        );
    }

    #[test]
    fn decodes_text_usage_and_finish() {
        let response: GenerateContentResponse =
            serde_json::from_str(bodies::GENERATE_CONTENT_RESPONSE).unwrap();
        assert_eq!(
            response.text(),
            "Bob asked you to confirm the Q3 numbers before Friday."
        );
        assert_eq!(response.finish_reason(), Some("STOP"));
        assert!(response.is_final());
        assert_eq!(response.block_reason(), None);
        let usage = response.usage_metadata.unwrap();
        assert_eq!(
            (
                usage.prompt_token_count,
                usage.candidates_token_count,
                usage.total_token_count,
                usage.thoughts_token_count
            ),
            (Some(41), Some(12), Some(53), None)
        );
        assert_eq!(response.model_version.as_deref(), Some("gemini-2.5-flash"));

        let cut: GenerateContentResponse =
            serde_json::from_str(bodies::MAX_TOKENS_RESPONSE).unwrap();
        assert_eq!(cut.finish_reason(), Some("MAX_TOKENS"));
    }

    #[test]
    fn decodes_a_function_call_and_echoes_its_part_verbatim() {
        let response: GenerateContentResponse =
            serde_json::from_str(bodies::FUNCTION_CALL_RESPONSE).unwrap();
        let calls = response.function_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "search_mail");
        assert_eq!(
            calls[0].args,
            json!({"query": "from:bob.jones", "max_results": 1})
        );
        assert_eq!(response.text(), "");
        assert_eq!(
            response.usage_metadata.unwrap().thoughts_token_count,
            Some(60)
        );

        // The model turn goes back as it came: the follow-up example holds it unchanged.
        let turn = response.candidates[0].content.clone().unwrap();
        let followup: Value =
            serde_json::from_str(bodies::FUNCTION_RESPONSE_FOLLOWUP_REQUEST).unwrap();
        assert_eq!(
            serde_json::to_value(&turn).unwrap(),
            followup["contents"][1]
        );

        let answer = Part::function_response(calls[0].respond(json!({"messages": []})));
        assert_eq!(
            serde_json::to_value(answer).unwrap(),
            json!({"functionResponse": {"name": "search_mail", "response": {"messages": []}}})
        );
    }

    #[test]
    fn unknown_part_fields_survive_a_round_trip() {
        let part = json!({
            "inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="},
            "thoughtSignature": "c2lnbmF0dXJl",
            "futureField": [1, 2.5, "x", null, {"nested": true}]
        });
        let decoded: Part = serde_json::from_value(part.clone()).unwrap();
        assert_eq!(decoded.thought_signature.as_deref(), Some("c2lnbmF0dXJl"));
        assert_eq!(decoded.other.len(), 2);
        assert_eq!(serde_json::to_value(&decoded).unwrap(), part);

        let thought: Part =
            serde_json::from_value(json!({"text": "Pondering", "thought": true})).unwrap();
        let response = GenerateContentResponse {
            candidates: vec![Candidate {
                content: Some(Content::model(vec![thought, Part::text("Answer")])),
                ..Candidate::default()
            }],
            ..GenerateContentResponse::default()
        };
        assert_eq!(response.text(), "Answer");
        assert!(!response.is_final());
    }

    #[test]
    fn decodes_blocked_prompts_and_candidates() {
        let blocked: GenerateContentResponse =
            serde_json::from_str(bodies::PROMPT_BLOCKED_RESPONSE).unwrap();
        assert!(blocked.candidates.is_empty());
        assert_eq!(blocked.block_reason(), Some("SAFETY"));
        assert!(blocked.is_final());
        assert_eq!(blocked.text(), "");
        let feedback = blocked.prompt_feedback.unwrap();
        assert!(feedback.safety_ratings.iter().any(|r| r.blocked
            && r.category == "HARM_CATEGORY_HARASSMENT"
            && r.probability == "HIGH"));

        let stopped: GenerateContentResponse =
            serde_json::from_str(bodies::CANDIDATE_SAFETY_BLOCKED_RESPONSE).unwrap();
        assert_eq!(stopped.finish_reason(), Some("SAFETY"));
        assert!(stopped.candidates[0].content.is_none());
        assert_eq!(stopped.usage_metadata.unwrap().candidates_token_count, None);
        assert_eq!(stopped.candidates[0].safety_ratings.len(), 4);
    }

    #[test]
    fn tolerates_unknown_and_missing_fields() {
        let response: GenerateContentResponse = serde_json::from_str(
            r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f"}}]}, "citationMetadata": {}, "avgLogprobs": -0.1}], "sdkHttpResponse": {}}"#,
        )
        .unwrap();
        assert_eq!(response.function_calls()[0].args, json!({}));
        let empty: GenerateContentResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.parts(), &[]);
    }
}
