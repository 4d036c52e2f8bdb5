//! A client of the Gemini REST API (`v1beta`), called with each user's own API key.
//!
//! [`GeminiClient`] is built once from a [`GeminiConfig`] (base URL, connect and request
//! timeouts, user agent) and shared: it holds one connection pool and no key. Every call takes
//! the caller's [`ApiKey`], which travels only in the `x-goog-api-key` header — never in a URL,
//! where it would end up in proxy and access logs — and which no `Debug` output, error or log
//! line of this crate contains.
//!
//! Calls available now:
//! - [`GeminiClient::list_models`]: `GET /v1beta/models`, free of charge, which is how a key is
//!   validated;
//! - [`GeminiClient::get_model`]: `GET /v1beta/models/{model}`.
//!
//! Every failure is an [`Error`] classified from the HTTP status and the `google.rpc.Status`
//! body Google answers with (its `ErrorInfo.reason`, `RetryInfo.retryDelay` and
//! `QuotaFailure` details), so callers decide on the variant alone: a rejected key, a missing
//! permission, a rate limit with its retry delay, an outage worth retrying, or a bad request.

mod client;
mod config;
mod error;
mod key;
mod model;

pub use client::{API_VERSION, GeminiClient};
pub use config::{ConfigError, DEFAULT_BASE_URL, GeminiConfig};
pub use error::Error;
pub use key::{ApiKey, MalformedApiKey};
pub use model::{Model, ModelPage};
