//! The Gemini API's example bodies, byte for byte as in `peers/gemini/` (copied from the
//! shared peer description; see its README for their provenance).

/// 400 `INVALID_ARGUMENT` with `ErrorInfo.reason` `API_KEY_INVALID`: an unknown key.
pub const ERROR_400_API_KEY_INVALID: &str =
    include_str!("../../peers/gemini/error_400_api_key_invalid.json");
/// 400 `INVALID_ARGUMENT`: a generateContent request without `contents`.
pub const ERROR_400_INVALID_ARGUMENT: &str =
    include_str!("../../peers/gemini/error_400_invalid_argument.json");
/// 403 `PERMISSION_DENIED`: a request without a key.
pub const ERROR_403_NO_KEY: &str = include_str!("../../peers/gemini/error_403_no_key.json");
/// 404 `NOT_FOUND`: an unknown or retired model (`models/gemini-1.5-flash`).
pub const ERROR_404_MODEL_NOT_FOUND: &str =
    include_str!("../../peers/gemini/error_404_model_not_found.json");
/// 429 `RESOURCE_EXHAUSTED` with `QuotaFailure`, `Help` and `RetryInfo` (`33s`).
pub const ERROR_429_RESOURCE_EXHAUSTED: &str =
    include_str!("../../peers/gemini/error_429_resource_exhausted.json");
/// 500 `INTERNAL`.
pub const ERROR_500_INTERNAL: &str = include_str!("../../peers/gemini/error_500_internal.json");
/// 503 `UNAVAILABLE`: the model is overloaded.
pub const ERROR_503_UNAVAILABLE: &str =
    include_str!("../../peers/gemini/error_503_unavailable.json");
/// 504 `DEADLINE_EXCEEDED`.
pub const ERROR_504_DEADLINE_EXCEEDED: &str =
    include_str!("../../peers/gemini/error_504_deadline_exceeded.json");
/// `models.list`: two models and a next page token.
pub const MODELS_LIST: &str = include_str!("../../peers/gemini/models_list_response.json");
/// `models.get` of `models/gemini-2.5-flash`.
pub const MODELS_GET: &str = include_str!("../../peers/gemini/models_get_response.json");
/// A generateContent request: system instruction, three turns, a tool, settings.
pub const GENERATE_CONTENT_REQUEST: &str =
    include_str!("../../peers/gemini/generate_content_request.json");
/// A generateContent answer: one text candidate with usage metadata.
pub const GENERATE_CONTENT_RESPONSE: &str =
    include_str!("../../peers/gemini/generate_content_response.json");
/// A streamGenerateContent `alt=sse` answer: three events framed by `\r\n\r\n`.
pub const STREAM_GENERATE_CONTENT_SSE: &str =
    include_str!("../../peers/gemini/stream_generate_content.sse");
/// A generateContent answer that stopped at `MAX_TOKENS` mid-sentence.
pub const MAX_TOKENS_RESPONSE: &str = include_str!("../../peers/gemini/max_tokens_response.json");
/// A generateContent answer that calls a function: one `functionCall` part with a
/// `thoughtSignature`, usage with `thoughtsTokenCount`.
pub const FUNCTION_CALL_RESPONSE: &str =
    include_str!("../../peers/gemini/function_call_response.json");
/// The request after a function call: the model turn echoed with its `thoughtSignature`, then
/// a `user` turn with the `functionResponse`.
pub const FUNCTION_RESPONSE_FOLLOWUP_REQUEST: &str =
    include_str!("../../peers/gemini/function_response_followup_request.json");
/// A blocked prompt: `promptFeedback.blockReason` `SAFETY` and no candidates.
pub const PROMPT_BLOCKED_RESPONSE: &str =
    include_str!("../../peers/gemini/prompt_blocked_response.json");
/// A candidate stopped for safety: `finishReason` `SAFETY`, `safetyRatings`, no content.
pub const CANDIDATE_SAFETY_BLOCKED_RESPONSE: &str =
    include_str!("../../peers/gemini/candidate_safety_blocked_response.json");
