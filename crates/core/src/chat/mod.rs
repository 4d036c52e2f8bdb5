//! Chat with Gemini on the user's own key, with memory: sessions, history, the exchange loop
//! (user message committed first, the model called with the context window, tools run in a
//! bounded loop, the reply committed with its usage), search, remembered facts, usage and the
//! monthly token budget.
//!
//! An exchange runs in its own task and reports [`ExchangeEvent`]s through a channel, for the
//! unary and the streaming RPC alike. The task notices within moments when the receiver goes
//! away (the client cancelled or disconnected): it drops the Gemini request, which closes the
//! upstream connection, and commits what had arrived as a CANCELLED reply. A server that shuts
//! down stops its running exchanges the same way ([`ChatService::stop_exchanges`]) and tells
//! their clients to resend (UNAVAILABLE `SERVER_SHUTTING_DOWN`).
//!
//! Where to look:
//!
//! | question | module |
//! | --- | --- |
//! | sessions, messages, search, memories, models, usage (plain reads and writes) | this one |
//! | how a send starts, is answered from a stored outcome, or ends | `exchange` |
//! | renewing the leases of running exchanges | `leases` |
//! | the model/tool loop of a started exchange | `converse` |
//! | the tool framework and the built-in tools | `tools` |
//! | the mail tools (offered while Gmail is connected) and their injection containment | `mail_tools` |
//! | one model call: unary or streamed, retries with backoff | `model_call` |
//! | the monthly token budget | `budget` |
//! | generated session titles | `title` |
//! | which error a provider failure becomes | `errors` |

mod budget;
mod config;
mod context;
mod converse;
mod errors;
mod exchange;
mod leases;
mod mail_tools;
mod model_call;
mod title;
mod tools;
mod turn;

use std::sync::Arc;

use assistd_domain::apikey::Provider;
use assistd_domain::audit::RequestContext;
use assistd_domain::chat::{
    ChatMessage, ChatSession, ClientMessageId, FinishReason, Memory, MemoryId, MessageId,
    ModelCallMetadata, NewSession, SearchHit, SearchQuery, SessionFilter, SessionId, SessionPatch,
    UsageRecord,
};
use assistd_domain::{Clock, Result, UserId};
use assistd_gemini::{GeminiClient, ModelPage};
use assistd_store::Store;
use assistd_store::audit::AuditLog;
use chrono::{DateTime, NaiveDate, Utc};

pub use budget::TokenBudget;
pub use config::ChatConfig;
pub use exchange::ExchangeEvents;
pub use mail_tools::MailTools;
pub use tools::{
    ChatTool, ExchangeFacts, ProvideFuture, ProvidedTools, ToolContext, ToolFailure, ToolFuture,
    ToolProvider, ToolRegistry,
};

use crate::{ApiKeyVault, PreferencesService};
use errors::api_key;

pub(crate) use budget::check_budget;
pub(crate) use errors::{api_key as gemini_key, provider_error};

/// One step of an exchange, in order.
///
/// Payloads are boxed: the channel that carries events allocates room for 32 of them per
/// open exchange, and a message is ~350 bytes where a pointer is 8.
#[derive(Clone, Debug, PartialEq)]
pub enum ExchangeEvent {
    /// The committed USER message (always first).
    UserMessage(Box<ChatMessage>),
    /// A piece of model text as it arrived (streaming sends only).
    TextDelta(String),
    /// A committed MODEL message.
    ModelMessage(Box<ChatMessage>),
    /// A committed FUNCTION_CALL message.
    FunctionCall(Box<ChatMessage>),
    /// A committed FUNCTION_RESULT message.
    FunctionResult(Box<ChatMessage>),
    /// The exchange finished (always last when it succeeded).
    Completed(Box<ExchangeSummary>),
}

/// How an exchange ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeSummary {
    /// The final MODEL message.
    pub reply_id: MessageId,
    /// Its finish reason.
    pub finish_reason: FinishReason,
    /// Model usage of the whole exchange.
    pub usage: ExchangeUsage,
    /// Whether this is the stored outcome of an earlier send.
    pub replayed: bool,
}

/// Model usage of an exchange, summed over its model calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeUsage {
    /// Model calls.
    pub model_calls: i64,
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// All tokens.
    pub total_tokens: i64,
}

impl ExchangeUsage {
    fn add(&mut self, metadata: &ModelCallMetadata) {
        self.model_calls += 1;
        self.prompt_tokens += metadata.prompt_tokens;
        self.output_tokens += metadata.output_tokens;
        self.total_tokens += metadata.total_tokens;
    }
}

/// A send: the user's text for a session.
#[derive(Clone, Debug)]
pub struct SendRequest {
    /// The session.
    pub session: SessionId,
    /// The client's id of this send (validated).
    pub client_message_id: ClientMessageId,
    /// The text (validated).
    pub text: String,
    /// Whether text deltas are wanted (streamGenerateContent) or not (generateContent).
    pub streaming: bool,
    /// Who asked, for the audit log.
    pub context: RequestContext,
}

/// The chat engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChatService {
    inner: Arc<Inner>,
}

/// What every clone of a [`ChatService`] and every exchange task shares.
#[derive(Debug)]
struct Inner {
    store: Store,
    vault: ApiKeyVault,
    preferences: PreferencesService,
    gemini: GeminiClient,
    audit: AuditLog,
    config: ChatConfig,
    tools: ToolRegistry,
    /// The time every rule of the engine goes by; tests move it by hand.
    clock: Arc<dyn Clock>,
    /// Cancelled when the server shuts down: running exchanges stop and store what they have.
    stopping: tokio_util::sync::CancellationToken,
    /// How many exchange tasks are alive, so a stopping server can wait until they stored
    /// their end.
    running: tokio::sync::watch::Sender<usize>,
    /// Renews the leases of the running exchanges.
    leases: Arc<leases::LeaseKeeper>,
}

impl ChatService {
    /// A chat engine over `store`, calling Gemini with keys from `vault`, auditing budget
    /// changes to `audit`, reading the time from `clock` (leases, the budget's month, the
    /// usage day and every stored timestamp).
    #[must_use]
    #[allow(clippy::too_many_arguments)] // each is one independent dependency of the engine
    pub fn new(
        store: &Store,
        vault: ApiKeyVault,
        preferences: PreferencesService,
        gemini: GeminiClient,
        audit: AuditLog,
        config: ChatConfig,
        tools: ToolRegistry,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: store.clone(),
                vault,
                preferences,
                gemini,
                audit,
                tools,
                leases: Arc::new(leases::LeaseKeeper::new(
                    store.clone(),
                    Arc::clone(&clock),
                    config.exchange_lease,
                )),
                config,
                clock,
                stopping: tokio_util::sync::CancellationToken::new(),
                running: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The engine's settings.
    #[must_use]
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    /// Creates a session.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_session(&self, user: UserId, session: &NewSession) -> Result<ChatSession> {
        self.inner
            .store
            .chat()
            .create_session(user, session, self.inner.clock.now())
            .await
    }

    /// One of the user's sessions.
    ///
    /// # Errors
    /// NOT_FOUND; the database failed.
    pub async fn session(&self, user: UserId, id: SessionId) -> Result<ChatSession> {
        self.inner.store.chat().get_session(user, id).await
    }

    /// A page of the user's sessions, most recent activity first, after `after`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn sessions(
        &self,
        user: UserId,
        filter: SessionFilter,
        after: Option<(DateTime<Utc>, SessionId)>,
        limit: u64,
    ) -> Result<Vec<ChatSession>> {
        self.inner
            .store
            .chat()
            .list_sessions(user, filter, after, limit)
            .await
    }

    /// Changes a session.
    ///
    /// # Errors
    /// NOT_FOUND; the database failed.
    pub async fn update_session(
        &self,
        user: UserId,
        id: SessionId,
        patch: &SessionPatch,
    ) -> Result<ChatSession> {
        self.inner
            .store
            .chat()
            .update_session(user, id, patch, self.inner.clock.now())
            .await
    }

    /// Deletes a session with its messages.
    ///
    /// # Errors
    /// NOT_FOUND; the database failed.
    pub async fn delete_session(&self, user: UserId, id: SessionId) -> Result<()> {
        self.inner.store.chat().delete_session(user, id).await
    }

    /// A page of a session's messages: ascending from `start` when `forward`, else descending.
    ///
    /// # Errors
    /// NOT_FOUND; the database failed.
    pub async fn messages(
        &self,
        user: UserId,
        session: SessionId,
        forward: bool,
        start: Option<i64>,
        limit: u64,
    ) -> Result<Vec<ChatMessage>> {
        self.inner
            .store
            .chat()
            .list_messages(user, session, forward, start, limit)
            .await
    }

    /// Full-text search over the user's USER and MODEL messages, newest first.
    ///
    /// # Errors
    /// NOT_FOUND for an unknown `session`; the database failed.
    pub async fn search(
        &self,
        user: UserId,
        query: &SearchQuery,
        session: Option<SessionId>,
        after: Option<(DateTime<Utc>, MessageId)>,
        limit: u64,
    ) -> Result<Vec<SearchHit>> {
        let chat = self.inner.store.chat();
        if let Some(session) = session {
            chat.get_session(user, session).await?;
        }
        chat.search_messages(user, query, session, after, limit)
            .await
    }

    /// A page of remembered facts, newest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn memories(
        &self,
        user: UserId,
        after: Option<(DateTime<Utc>, MemoryId)>,
        limit: u64,
    ) -> Result<Vec<Memory>> {
        self.inner
            .store
            .chat()
            .list_memories(user, after, limit)
            .await
    }

    /// Forgets a fact.
    ///
    /// # Errors
    /// NOT_FOUND; the database failed.
    pub async fn delete_memory(&self, user: UserId, id: MemoryId) -> Result<()> {
        self.inner.store.chat().delete_memory(user, id).await
    }

    /// The model a session uses now: its own, else the user's default, else the server's.
    ///
    /// # Errors
    /// The preferences could not be read.
    pub async fn default_model(&self, user: UserId) -> Result<String> {
        let preferences = self.inner.preferences.get(user).await?;
        Ok(preferences
            .default_model
            .filter(|model| !model.is_empty())
            .unwrap_or_else(|| self.inner.config.default_model.clone()))
    }

    /// A page of the models the user's key can use, from Gemini.
    ///
    /// # Errors
    /// FAILED_PRECONDITION `API_KEY_MISSING` / `API_KEY_INVALID`; provider failures.
    pub async fn models(
        &self,
        user: UserId,
        context: &RequestContext,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<ModelPage> {
        let key = self
            .inner
            .vault
            .reveal_usable(user, Provider::Gemini)
            .await?;
        let api_key = api_key(&key)?;
        match self
            .inner
            .gemini
            .list_models(&api_key, page_size, page_token)
            .await
        {
            Ok(page) => Ok(page),
            Err(err) => Err(self
                .inner
                .provider_error(user, context, &key, err, "")
                .await),
        }
    }

    /// Today's UTC date on this service's clock: the day usage is counted under, and the
    /// default end of a usage report.
    #[must_use]
    pub fn today(&self) -> chrono::NaiveDate {
        self.inner.clock.now().date_naive()
    }

    /// The user's usage between two UTC days, inclusive.
    ///
    /// # Errors
    /// The database failed.
    pub async fn usage(
        &self,
        user: UserId,
        start: NaiveDate,
        end: NaiveDate,
        model: Option<&str>,
    ) -> Result<Vec<UsageRecord>> {
        self.inner
            .store
            .chat()
            .usage_between(user, start, end, model)
            .await
    }
}
