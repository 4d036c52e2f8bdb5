//! Settings of the chat engine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the chat engine talks to the model and how much history it sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Model of sessions that name none, when the user has no default model preference.
    pub default_model: String,
    /// Estimated tokens of history sent with each message (about four characters a token).
    /// Older turns are dropped from the request (they stay stored and searchable with the
    /// `search_conversations` tool).
    pub context_token_budget: usize,
    /// Most remembered facts put into each request, newest first.
    pub max_memories_in_context: u64,
    /// Most facts one user may have remembered; `remember` fails beyond it.
    pub max_memories_per_user: u64,
    /// Most rounds of tool calls in one exchange before the reply ends with TOOL_LIMIT.
    pub max_tool_depth: u32,
    /// Retries of a failed model call (5xx, timeout, dropped connection) before any text
    /// arrived.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one. Each wait is stretched by a
    /// random share of itself (jitter: between the wait and twice it), so that exchanges
    /// failing together, e.g. when Gemini is overloaded, do not all retry at the same moment.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How long a send's lease lasts. The server answering it renews the lease every third of
    /// this while it works, so a send outlives its lease only when its server stopped; then
    /// another request may take it over once the lease runs out.
    #[serde(with = "humantime_serde")]
    pub exchange_lease: Duration,
    /// Whether sessions without a title get one generated after the first exchange.
    pub generate_titles: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            default_model: "gemini-2.5-flash".to_owned(),
            context_token_budget: 32_000,
            max_memories_in_context: 100,
            max_memories_per_user: 1_000,
            max_tool_depth: 6,
            max_retries: 2,
            retry_backoff: Duration::from_millis(250),
            exchange_lease: Duration::from_secs(30),
            generate_titles: true,
        }
    }
}
