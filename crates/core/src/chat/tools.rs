//! Tools the model may call, executed by the server. Adding a tool is one
//! [`ToolRegistry::register`] call with a [`ChatTool`]. Tools that depend on the user or on
//! the exchange (the mail tools, offered only while Gmail is connected) come from a
//! [`ToolProvider`], asked once per exchange ([`ToolRegistry::for_exchange`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use assistd_domain::UserId;
use assistd_domain::audit::RequestContext;
use assistd_domain::chat::{SearchQuery, SessionId, validate_memory};
use assistd_gemini::FunctionDeclaration;
use assistd_store::Store;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

/// What a tool call runs with: the user, where the call happens, and the store.
#[derive(Clone, Debug)]
pub struct ToolContext {
    /// The user the model works for. Tools touch this user's data only.
    pub user: UserId,
    /// Session of the exchange.
    pub session: SessionId,
    /// The user's timezone.
    pub timezone: Tz,
    /// The time of the call.
    pub now: DateTime<Utc>,
    /// The database.
    pub store: Store,
    /// Most facts one user may have remembered.
    pub max_memories: u64,
}

/// A tool refused or failed; the message goes to the model (and the history), so it must
/// say what went wrong without internals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolFailure(pub String);

/// The future a tool call returns.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, ToolFailure>> + Send + 'a>>;

/// A tool the model can call.
pub trait ChatTool: Send + Sync + std::fmt::Debug {
    /// The declaration sent to Gemini: name, description, parameter schema.
    fn declaration(&self) -> FunctionDeclaration;

    /// Runs the tool with the model's arguments (a JSON object) and returns a JSON object.
    fn call<'a>(&'a self, context: &'a ToolContext, args: &'a Value) -> ToolFuture<'a>;

    /// What the chat history keeps of a result this tool returned (the model got all of
    /// `response`). By default all of it; a tool whose results hold data sealed elsewhere
    /// (mail) keeps only references, so the history holds no copy in the clear.
    fn stored_response(&self, response: &Value) -> Value {
        response.clone()
    }
}

/// The exchange a [`ToolProvider`] is asked about.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeFacts<'a> {
    /// The user the model works for.
    pub user: UserId,
    /// The text of the USER message that opened the exchange: the only place a request for
    /// an action may come from.
    pub user_text: &'a str,
    /// Who sent it, for the audit log.
    pub context: &'a RequestContext,
}

/// Tools and system-instruction notes a provider adds to one exchange.
#[derive(Debug, Default)]
pub struct ProvidedTools {
    /// Tools offered in this exchange.
    pub tools: Vec<Arc<dyn ChatTool>>,
    /// Lines for the system instruction (fixed text of the server's, never user or mail
    /// content), e.g. how to grant a missing permission.
    pub notes: Vec<String>,
}

/// The future [`ToolProvider::provide`] returns.
pub type ProvideFuture<'a> = Pin<Box<dyn Future<Output = ProvidedTools> + Send + 'a>>;

/// A source of tools that depend on the user and the exchange. It cannot fail: a provider
/// that cannot tell offers nothing (and logs why).
pub trait ToolProvider: Send + Sync + std::fmt::Debug {
    /// The tools and notes for `exchange`.
    fn provide<'a>(&'a self, exchange: ExchangeFacts<'a>) -> ProvideFuture<'a>;
}

/// The tools of a chat engine, by name, and the providers of per-exchange tools.
#[derive(Clone, Debug, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn ChatTool>>,
    providers: Vec<Arc<dyn ToolProvider>>,
}

impl ToolRegistry {
    /// The built-in tools: `remember`, `recall`, `search_conversations`, `current_time`.
    #[must_use]
    pub fn standard() -> Self {
        let mut registry = Self::default();
        registry.register(Remember);
        registry.register(Recall);
        registry.register(SearchConversations);
        registry.register(CurrentTime);
        registry
    }

    /// Adds `tool` (replacing one of the same name).
    pub fn register(&mut self, tool: impl ChatTool + 'static) {
        self.tools.insert(tool.declaration().name, Arc::new(tool));
    }

    /// This registry, also asking `provider` for tools at every exchange.
    #[must_use]
    pub fn with_provider(mut self, provider: impl ToolProvider + 'static) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// The tools of one exchange: the fixed ones plus what each provider adds for it, and
    /// the providers' notes for the system instruction.
    pub async fn for_exchange(&self, exchange: ExchangeFacts<'_>) -> (Self, Vec<String>) {
        let mut tools = self.tools.clone();
        let mut notes = Vec::new();
        for provider in &self.providers {
            let provided = provider.provide(exchange).await;
            for tool in provided.tools {
                tools.insert(tool.declaration().name, tool);
            }
            notes.extend(provided.notes);
        }
        (
            Self {
                tools,
                providers: Vec::new(),
            },
            notes,
        )
    }

    /// The tool called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ChatTool>> {
        self.tools.get(name)
    }

    /// Every declaration, for the request.
    #[must_use]
    pub fn declarations(&self) -> Vec<FunctionDeclaration> {
        self.tools.values().map(|tool| tool.declaration()).collect()
    }

    /// Whether no tool is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

pub(super) fn declaration(name: &str, description: &str, parameters: Value) -> FunctionDeclaration {
    FunctionDeclaration {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters: Some(parameters),
    }
}

/// A string argument, trimmed; a failure naming it when missing.
pub(super) fn string_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolFailure> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ToolFailure(format!("the string argument {name:?} is required")))
}

/// A store failure as the model sees it; the cause goes to the log.
fn unavailable(err: &assistd_domain::Error) -> ToolFailure {
    tracing::warn!(error = %err, "a chat tool could not reach the database");
    ToolFailure("the memory store is unavailable right now".into())
}

/// `remember`: saves a fact for every later session.
#[derive(Debug)]
struct Remember;

impl ChatTool for Remember {
    fn declaration(&self) -> FunctionDeclaration {
        declaration(
            "remember",
            "Save a lasting fact about the user (a preference, a detail of their life or work) \
             so that it is known in every later conversation. Call it when the user shares \
             something worth keeping or asks you to remember something. One short fact per call.",
            json!({
                "type": "object",
                "properties": {
                    "fact": {
                        "type": "string",
                        "description": "The fact, in one sentence, e.g. \"Prefers metric units\"."
                    }
                },
                "required": ["fact"]
            }),
        )
    }

    fn call<'a>(&'a self, context: &'a ToolContext, args: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let fact = string_arg(args, "fact")?;
            validate_memory(fact).map_err(|err| ToolFailure(format!("fact {err}")))?;
            let chat = context.store.chat();
            let count = chat
                .count_memories(context.user)
                .await
                .map_err(|err| unavailable(&err))?;
            if count >= context.max_memories {
                return Err(ToolFailure(format!(
                    "the memory is full ({count} facts); the user can delete facts in settings"
                )));
            }
            let memory = chat
                .add_memory(context.user, fact, Some(context.session), context.now)
                .await
                .map_err(|err| unavailable(&err))?;
            Ok(json!({"remembered": memory.content, "id": memory.id.to_string()}))
        })
    }
}

/// `recall`: finds remembered facts.
#[derive(Debug)]
struct Recall;

/// Most facts `recall` returns.
const RECALL_LIMIT: u64 = 50;

impl ChatTool for Recall {
    fn declaration(&self) -> FunctionDeclaration {
        declaration(
            "recall",
            "Look up facts remembered about the user in earlier conversations. Give words to \
             match, or no query for the most recent facts.",
            json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "Words to look for; facts containing any of them match."
                    }
                }
            }),
        )
    }

    fn call<'a>(&'a self, context: &'a ToolContext, args: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let words: Vec<String> = args
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(|c: char| !c.is_alphanumeric())
                .filter(|word| word.chars().count() > 1)
                .map(str::to_lowercase)
                .collect();
            let memories = context
                .store
                .chat()
                .find_memories(context.user, &words, RECALL_LIMIT)
                .await
                .map_err(|err| unavailable(&err))?;
            let facts: Vec<Value> = memories
                .into_iter()
                .map(|memory| {
                    json!({
                        "fact": memory.content,
                        "remembered_on": memory.created_at.date_naive().to_string(),
                    })
                })
                .collect();
            Ok(json!({"facts": facts}))
        })
    }
}

/// `search_conversations`: full-text search over the user's past messages.
#[derive(Debug)]
struct SearchConversations;

/// Most hits `search_conversations` returns.
const SEARCH_LIMIT: u64 = 10;

impl ChatTool for SearchConversations {
    fn declaration(&self) -> FunctionDeclaration {
        declaration(
            "search_conversations",
            "Search the user's earlier conversations (their messages and your replies) by \
             words, for things said before that are not in the current context. Returns \
             snippets, newest first.",
            json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "Words that must all occur; \"quotes\" for a phrase."
                    }
                },
                "required": ["query"]
            }),
        )
    }

    fn call<'a>(&'a self, context: &'a ToolContext, args: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let query: SearchQuery = string_arg(args, "query")?
                .parse()
                .map_err(|err| ToolFailure(format!("query {err}")))?;
            let hits = context
                .store
                .chat()
                .search_messages(context.user, &query, None, None, SEARCH_LIMIT)
                .await
                .map_err(|err| unavailable(&err))?;
            let results: Vec<Value> = hits
                .into_iter()
                .map(|hit| {
                    let snippet: String = hit
                        .snippet
                        .iter()
                        .map(|segment| segment.text.as_str())
                        .collect();
                    json!({
                        "session_title": hit.session_title,
                        "from": hit.message.role.as_str(),
                        "date": hit
                            .message
                            .created_at
                            .with_timezone(&context.timezone)
                            .date_naive()
                            .to_string(),
                        "snippet": snippet,
                    })
                })
                .collect();
            Ok(json!({"results": results}))
        })
    }
}

/// `current_time`: the time in the user's timezone.
#[derive(Debug)]
struct CurrentTime;

impl ChatTool for CurrentTime {
    fn declaration(&self) -> FunctionDeclaration {
        declaration(
            "current_time",
            "The current date and time in the user's timezone.",
            json!({"type": "object", "properties": {}}),
        )
    }

    fn call<'a>(&'a self, context: &'a ToolContext, _args: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let local = context.now.with_timezone(&context.timezone);
            Ok(json!({
                "time": local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                "timezone": context.timezone.name(),
                "weekday": local.format("%A").to_string(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_tools_are_declared_with_object_schemas() {
        let registry = ToolRegistry::standard();
        let names: Vec<String> = registry
            .declarations()
            .into_iter()
            .map(|declaration| {
                assert_eq!(
                    declaration.parameters.as_ref().and_then(|p| p.get("type")),
                    Some(&json!("object"))
                );
                declaration.name
            })
            .collect();
        assert_eq!(
            names,
            ["current_time", "recall", "remember", "search_conversations"]
        );
    }
}
