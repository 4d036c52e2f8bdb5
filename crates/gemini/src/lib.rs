//! A client of the Gemini REST API (`v1beta`), called with each user's own API key.
//!
//! [`GeminiClient`] is built once from a [`GeminiConfig`] (base URL, connect and request
//! timeouts, user agent, HTTP/1.1 or HTTP/2) and shared: it holds one connection pool and no
//! key. Every call takes
//! the caller's [`ApiKey`], which travels only in the `x-goog-api-key` header — never in a URL,
//! where it would end up in proxy and access logs — and which no `Debug` output, error or log
//! line of this crate contains.
//!
//! Calls:
//! - [`GeminiClient::list_models`]: `GET /v1beta/models`, free of charge, which is how a key is
//!   validated;
//! - [`GeminiClient::get_model`]: `GET /v1beta/models/{model}`;
//! - [`GeminiClient::generate_content`]: `POST /v1beta/models/{model}:generateContent`, the
//!   whole answer at once;
//! - [`GeminiClient::stream_generate_content`]:
//!   `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`, the answer as generated: a
//!   [`ContentStream`] of server-sent events, each yielded the moment its blank line arrives,
//!   bounded by an idle timeout rather than a total one, and cut when dropped (closing its
//!   connection over HTTP/1.1, resetting its stream over HTTP/2).
//!
//! The wire types ([`GenerateContentRequest`], [`Content`], [`Part`],
//! [`GenerateContentResponse`], …) follow the `v1beta` JSON. They tolerate unknown fields,
//! and a [`Part`] keeps them, so a model turn goes back to Gemini verbatim, with the
//! `thoughtSignature` its function calls need.
//!
//! Every failure is an [`Error`] classified from the HTTP status and the `google.rpc.Status`
//! body Google answers with (its `ErrorInfo.reason`, `RetryInfo.retryDelay` and
//! `QuotaFailure` details), so callers decide on the variant alone: a rejected key, a missing
//! permission, a rate limit with its retry delay, an outage worth retrying, a stream that
//! broke off, or a bad request ([`Error::is_retryable`] says which may simply be sent again).

mod client;
mod config;
mod error;
mod generate;
mod key;
mod model;
mod sse;
mod stream;

pub use client::{API_VERSION, CallObserver, EncodedRequest, GeminiClient, RequestBody};
pub use config::{ConfigError, DEFAULT_BASE_URL, GeminiConfig, HttpVersion};
pub use error::Error;
pub use generate::{
    Candidate, Content, FunctionCall, FunctionCallingConfig, FunctionCallingMode,
    FunctionDeclaration, FunctionResponse, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, Part, PromptFeedback, SafetyRating, SafetySetting, ThinkingConfig, Tool,
    ToolConfig, UsageMetadata,
};
pub use key::{ApiKey, MalformedApiKey};
pub use model::{Model, ModelPage};
pub use stream::ContentStream;
