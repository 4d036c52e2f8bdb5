//! Chat with Gemini on the user's own key, with memory: sessions, history, the exchange loop
//! (user message committed first, the model called with the context window, tools run in a
//! bounded loop, the reply committed with its usage), search, remembered facts, usage and the
//! monthly token budget.
//!
//! An exchange runs in its own task and reports [`ExchangeEvent`]s through a channel, for the
//! unary and the streaming RPC alike. The task notices within moments when the receiver goes
//! away (the client cancelled or disconnected): it drops the Gemini request, which closes the
//! upstream connection, and commits what had arrived as a CANCELLED reply.

mod config;
mod context;
mod tools;
mod turn;

use std::sync::Arc;
use std::time::{Duration, Instant};

use assistd_domain::apikey::Provider;
use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::chat::{
    ChatMessage, ChatSession, ExchangeStart, ExchangeState, FinishReason, Memory, MemoryId,
    MessageContent, MessageError, MessageId, MessageRole, ModelCallMetadata, NewMessage,
    NewSession, SearchHit, SearchQuery, SessionFilter, SessionId, SessionPatch, TokenBudgetSetting,
    UsageRecord, validate_title,
};
use assistd_domain::{Error, ErrorReason, FieldViolation, Result, UserId};
use assistd_gemini::{
    ApiKey, Content, GeminiClient, GenerateContentRequest, ModelPage, Part, Tool,
};
use assistd_store::audit::AuditLog;
use assistd_store::{Store, UsageDelta};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use config::ChatConfig;
pub use tools::{ChatTool, ToolContext, ToolFailure, ToolFuture, ToolRegistry};

use crate::api_keys::RevealedKey;
use crate::{ApiKeyVault, PreferencesService};
use context::GENERATED_CALL_ID_PREFIX;
use turn::Turn;

/// Most stored messages read to build the context window; the budget usually cuts earlier.
const HISTORY_READ: u64 = 500;
/// Events buffered between the exchange task and a slow client.
const EVENT_BUFFER: usize = 64;
/// Longest generated title, in characters.
const GENERATED_TITLE_CHARS: usize = 80;

/// One step of an exchange, in order.
///
/// Messages are boxed: the channel that carries events allocates room for 32 of them per
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
    Completed(ExchangeSummary),
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
    pub client_message_id: String,
    /// The text (validated).
    pub text: String,
    /// Whether text deltas are wanted (streamGenerateContent) or not (generateContent).
    pub streaming: bool,
    /// Who asked, for the audit log.
    pub context: RequestContext,
}

/// The user's monthly token budget and this month's spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBudget {
    /// Tokens per UTC month; `None` without a budget.
    pub monthly_limit: Option<i64>,
    /// Tokens used this UTC month.
    pub used: i64,
    /// First instant of this month.
    pub period_start: DateTime<Utc>,
    /// First instant of next month.
    pub period_end: DateTime<Utc>,
    /// When set or cleared last.
    pub updated_at: Option<DateTime<Utc>>,
}

impl TokenBudget {
    /// Whether a budget is set and spent.
    #[must_use]
    pub fn exhausted(&self) -> bool {
        self.monthly_limit.is_some_and(|limit| self.used >= limit)
    }
}

/// The chat engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChatService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    vault: ApiKeyVault,
    preferences: PreferencesService,
    gemini: GeminiClient,
    audit: AuditLog,
    config: ChatConfig,
    tools: ToolRegistry,
}

/// How one model call ended.
enum Outcome {
    /// Gemini finished the turn.
    Complete(Turn),
    /// The client went away; what had arrived.
    Cancelled(Turn),
    /// The stream broke after text had arrived.
    Interrupted(Turn, assistd_gemini::Error),
    /// The call failed before any text.
    Failed(assistd_gemini::Error),
}

/// How one attempt of a model call ended.
enum Attempt {
    Done(Outcome),
    Retry(assistd_gemini::Error),
}

/// Whether an attempt that failed before any text may be repeated.
fn retryable(err: &assistd_gemini::Error) -> bool {
    matches!(
        err,
        assistd_gemini::Error::Unavailable { .. } | assistd_gemini::Error::StreamInterrupted { .. }
    )
}

/// The first instant of the UTC month holding `at`, and of the next one.
fn month_of(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap_or_default();
    let next = if at.month() == 12 {
        NaiveDate::from_ymd_opt(at.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(at.year(), at.month() + 1, 1)
    }
    .unwrap_or_default();
    let instant = |day: NaiveDate| Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN));
    (instant(first), instant(next))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The message recorded for an error that ended an exchange.
fn message_error(err: &Error) -> MessageError {
    let reason = match err {
        Error::FailedPrecondition { reason, .. }
        | Error::Aborted { reason, .. }
        | Error::ResourceExhausted { reason, .. }
        | Error::Unavailable { reason, .. }
        | Error::Unauthenticated { reason, .. } => reason.as_str(),
        Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
        Error::NotFound { .. } => "NOT_FOUND",
        Error::Internal(_) => "INTERNAL",
    };
    let message = match err {
        Error::Internal(_) => "the server failed while handling this message; try again".into(),
        other => other.to_string(),
    };
    MessageError {
        reason: reason.to_owned(),
        message,
    }
}

impl ChatService {
    /// A chat engine over `store`, calling Gemini with keys from `vault`, auditing budget
    /// changes to `audit`.
    #[must_use]
    pub fn new(
        store: &Store,
        vault: ApiKeyVault,
        preferences: PreferencesService,
        gemini: GeminiClient,
        audit: AuditLog,
        config: ChatConfig,
        tools: ToolRegistry,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: store.clone(),
                vault,
                preferences,
                gemini,
                audit,
                config,
                tools,
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
            .create_session(user, session, Utc::now())
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
            .update_session(user, id, patch, Utc::now())
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

    /// The user's budget and this month's spend.
    ///
    /// # Errors
    /// The database failed.
    pub async fn token_budget(&self, user: UserId) -> Result<TokenBudget> {
        self.inner.token_budget(user, Utc::now()).await
    }

    /// Sets (`Some`) or clears (`None`) the user's monthly token budget, audited in the same
    /// transaction.
    ///
    /// # Errors
    /// The database failed.
    pub async fn set_token_budget(
        &self,
        user: UserId,
        context: &RequestContext,
        limit: Option<i64>,
    ) -> Result<TokenBudget> {
        let now = Utc::now();
        let txn = self.inner.store.begin_write().await?;
        self.inner
            .store
            .chat()
            .set_budget(&txn, user, limit, now)
            .await?;
        self.inner
            .audit
            .append(
                &txn,
                &AuditEvent {
                    actor: Some(user),
                    action: if limit.is_some() {
                        AuditAction::TokenBudgetSet
                    } else {
                        AuditAction::TokenBudgetCleared
                    },
                    target: "token_budget".to_owned(),
                    outcome: AuditOutcome::Success,
                    context: context.clone(),
                    metadata: limit
                        .map(|limit| ("monthly_token_limit".to_owned(), limit.to_string()))
                        .into_iter()
                        .collect(),
                },
            )
            .await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.token_budget(user, now).await
    }

    /// Starts an exchange and returns its events. The exchange runs to its end in its own task;
    /// dropping the receiver cancels it (the partial reply is committed as CANCELLED). The last
    /// item is either [`ExchangeEvent::Completed`] or the error the RPC answers with.
    #[must_use]
    pub fn send(
        &self,
        user: UserId,
        request: SendRequest,
    ) -> mpsc::Receiver<Result<ExchangeEvent>> {
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let mut exchange = Exchange {
                inner: &inner,
                user,
                request: &request,
                events: &events,
                open: None,
            };
            let result = exchange.run().await;
            if let Err(err) = result {
                if let Some(exchange_id) = exchange.open {
                    // The exchange stopped on a failure of the server's own (the database):
                    // let a resend try again rather than wait for the lease.
                    if let Err(mark) = inner
                        .store
                        .chat()
                        .finish_exchange(user, exchange_id, ExchangeState::Failed)
                        .await
                    {
                        tracing::warn!(error = %mark, "could not mark a broken exchange as failed");
                    }
                }
                let _ = events.send(Err(err)).await;
            }
        });
        receiver
    }
}

impl Inner {
    async fn token_budget(&self, user: UserId, now: DateTime<Utc>) -> Result<TokenBudget> {
        let setting = self.store.chat().budget(user).await?;
        self.spend(user, setting, now).await
    }

    /// `setting` with the tokens used in the month of `now`.
    async fn spend(
        &self,
        user: UserId,
        setting: TokenBudgetSetting,
        now: DateTime<Utc>,
    ) -> Result<TokenBudget> {
        let TokenBudgetSetting {
            monthly_limit,
            updated_at,
        } = setting;
        let (period_start, period_end) = month_of(now);
        let used = self
            .store
            .chat()
            .tokens_between(
                user,
                period_start.date_naive(),
                period_end.date_naive() - chrono::Days::new(1),
            )
            .await?;
        Ok(TokenBudget {
            monthly_limit,
            used,
            period_start,
            period_end,
            updated_at,
        })
    }

    /// The error to answer with for a failed Gemini call; a rejected key is marked INVALID.
    async fn provider_error(
        &self,
        user: UserId,
        context: &RequestContext,
        key: &RevealedKey,
        err: assistd_gemini::Error,
        model: &str,
    ) -> Error {
        use assistd_gemini::Error as Gemini;
        match err {
            err if err.rejects_key() => {
                match self
                    .vault
                    .mark_rejected(user, context, key, &err.to_string())
                    .await
                {
                    Ok(answer) | Err(answer) => answer,
                }
            }
            Gemini::RateLimited {
                retry_after,
                quota_id,
                ..
            } => Error::ResourceExhausted {
                reason: ErrorReason::ProviderRateLimited,
                message: format!(
                    "Gemini answered that your API key's quota is exhausted{}; try again {}",
                    quota_id.map(|id| format!(" ({id})")).unwrap_or_default(),
                    retry_after.map_or_else(
                        || "later".to_owned(),
                        |delay| format!("in {} s", delay.as_secs().max(1))
                    ),
                ),
                retry_after,
            },
            Gemini::NotFound { .. } => Error::FailedPrecondition {
                reason: ErrorReason::ModelNotFound,
                message: format!(
                    "Gemini does not serve the model {model:?} to your key; choose another \
                     model for this session (ListModels shows the available ones)"
                ),
            },
            Gemini::InvalidArgument { message } => {
                tracing::error!(%message, "Gemini refused a request the server built");
                Error::internal(format!("Gemini refused the request: {message}"))
            }
            other => {
                tracing::warn!(error = %other, "Gemini failed");
                Error::Unavailable {
                    reason: ErrorReason::ProviderUnavailable,
                    message: "Gemini is unavailable or did not answer in time; try again in a \
                              moment"
                        .into(),
                    retry_after: Some(Duration::from_secs(1)),
                }
            }
        }
    }
}

/// The Gemini form of a revealed key.
fn api_key(key: &RevealedKey) -> Result<ApiKey> {
    let text = key
        .expose_secret()
        .expose_secret_str()
        .map_err(|_| Error::internal("a stored API key is not UTF-8"))?;
    ApiKey::new(text.to_owned()).map_err(|_| Error::FailedPrecondition {
        reason: ErrorReason::ApiKeyInvalid,
        message: "the stored API key is malformed; set a new one in settings (SetApiKey)".into(),
    })
}

/// One exchange in progress.
struct Exchange<'a> {
    inner: &'a Inner,
    user: UserId,
    request: &'a SendRequest,
    events: &'a mpsc::Sender<Result<ExchangeEvent>>,
    /// The USER message of an exchange started or resumed and not yet finished.
    open: Option<MessageId>,
}

impl Exchange<'_> {
    /// Sends an event; a closed channel is noticed by the model call, not here.
    async fn emit(&self, event: ExchangeEvent) {
        let _ = self.events.send(Ok(event)).await;
    }

    async fn run(&mut self) -> Result<()> {
        let chat = self.inner.store.chat();
        let request = self.request;
        let session = Box::pin(chat.get_session(self.user, request.session)).await?;
        let now = Utc::now();
        // A resend gets the stored outcome even if the key or the budget changed since.
        if let Some(found) = Box::pin(chat.peek_exchange(
            self.user,
            session.id,
            &request.client_message_id,
            &request.text,
            now,
        ))
        .await?
        {
            return Box::pin(self.answer_existing(found)).await;
        }
        let preferences = Box::pin(self.inner.preferences.get(self.user)).await?;
        let model = if session.model.is_empty() {
            preferences
                .default_model
                .clone()
                .filter(|model| !model.is_empty())
                .unwrap_or_else(|| self.inner.config.default_model.clone())
        } else {
            session.model.clone()
        };
        let key = Box::pin(self.inner.vault.reveal_usable(self.user, Provider::Gemini)).await?;
        let api_key = api_key(&key)?;
        // Most users set no budget: the month's usage is only summed for those who do.
        let setting = Box::pin(chat.budget(self.user)).await?;
        if let Some(limit) = setting.monthly_limit {
            let budget = Box::pin(self.inner.spend(self.user, setting, now)).await?;
            if budget.exhausted() {
                return Err(Error::ResourceExhausted {
                    reason: ErrorReason::TokenBudgetExhausted,
                    message: format!(
                        "your monthly token budget of {limit} tokens is spent ({} used since {}); \
                         it resets on {}, or raise or clear it with SetTokenBudget",
                        budget.used,
                        budget.period_start.date_naive(),
                        budget.period_end.date_naive(),
                    ),
                    retry_after: (budget.period_end - now).to_std().ok(),
                });
            }
        }
        let lease_until = now
            + chrono::Duration::from_std(self.inner.config.exchange_lease)
                .unwrap_or(chrono::Duration::minutes(15));
        let user_message = match Box::pin(chat.begin_exchange(
            self.user,
            session.id,
            &request.client_message_id,
            &request.text,
            lease_until,
            now,
        ))
        .await?
        {
            ExchangeStart::Started(message)
            | ExchangeStart::Resumed {
                user_message: message,
                ..
            } => message,
            other => return Box::pin(self.answer_existing(other)).await,
        };
        self.open = Some(user_message.id);
        self.emit(ExchangeEvent::UserMessage(Box::new(user_message.clone())))
            .await;
        self.converse(
            &session,
            &preferences,
            &model,
            &key,
            &api_key,
            &user_message,
        )
        .await
    }

    /// Answers a send whose id was seen before without calling the model.
    async fn answer_existing(&self, found: ExchangeStart) -> Result<()> {
        match found {
            ExchangeStart::Finished {
                user_message,
                messages,
            } => {
                self.emit(ExchangeEvent::UserMessage(Box::new(user_message)))
                    .await;
                let mut usage = ExchangeUsage::default();
                let mut reply = None;
                for message in messages {
                    if let Some(metadata) =
                        message.metadata.as_ref().filter(|m| !m.model.is_empty())
                    {
                        usage.add(metadata);
                    }
                    let event = match message.role {
                        MessageRole::FunctionCall => ExchangeEvent::FunctionCall(Box::new(message)),
                        MessageRole::FunctionResult => {
                            ExchangeEvent::FunctionResult(Box::new(message))
                        }
                        MessageRole::Model => {
                            reply = Some((
                                message.id,
                                message
                                    .metadata
                                    .as_ref()
                                    .and_then(|m| m.finish_reason)
                                    .unwrap_or(FinishReason::Stop),
                            ));
                            ExchangeEvent::ModelMessage(Box::new(message))
                        }
                        MessageRole::User | MessageRole::System => continue,
                    };
                    self.emit(event).await;
                }
                let (reply_id, finish_reason) = reply
                    .ok_or_else(|| Error::internal("a finished exchange has no MODEL message"))?;
                self.emit(ExchangeEvent::Completed(ExchangeSummary {
                    reply_id,
                    finish_reason,
                    usage,
                    replayed: true,
                }))
                .await;
                Ok(())
            }
            ExchangeStart::InProgress => Err(Error::Aborted {
                reason: ErrorReason::MessageInProgress,
                message: "an earlier send with this client_message_id is still being answered; \
                          wait for it, then resend to get its outcome"
                    .into(),
            }),
            ExchangeStart::Conflict => Err(Error::InvalidArgument {
                violations: vec![FieldViolation::new(
                    "client_message_id",
                    "was already used for a different message or session; use a fresh id for \
                     a new message",
                )],
                reason: Some(ErrorReason::ClientMessageIdConflict),
            }),
            ExchangeStart::Started(_) | ExchangeStart::Resumed { .. } => Err(Error::internal(
                "an exchange lookup returned a started exchange",
            )),
        }
    }

    /// The model loop of a started (or resumed) exchange.
    async fn converse(
        &mut self,
        session: &ChatSession,
        preferences: &assistd_domain::preferences::Preferences,
        model: &str,
        key: &RevealedKey,
        api_key: &ApiKey,
        user_message: &ChatMessage,
    ) -> Result<()> {
        let chat = self.inner.store.chat();
        let config = &self.inner.config;
        let now = Utc::now();
        let memories =
            Box::pin(chat.list_memories(self.user, None, config.max_memories_in_context)).await?;
        let history = Box::pin(chat.recent_messages(self.user, session.id, HISTORY_READ)).await?;
        let mut contents = context::contents(context::window(
            &history,
            user_message.id,
            config.context_token_budget,
        ));
        let system = context::system_instruction(session, preferences, &memories, now);
        let declarations = self.inner.tools.declarations();
        let tool_context = ToolContext {
            user: self.user,
            session: session.id,
            timezone: preferences.timezone,
            now,
            store: self.inner.store.clone(),
            max_memories: config.max_memories_per_user,
        };
        let exchange_id = user_message.id;
        let mut usage = ExchangeUsage::default();
        let mut depth = 0;
        loop {
            let request = GenerateContentRequest {
                contents: contents.clone(),
                system_instruction: Some(Content {
                    role: None,
                    parts: vec![Part::text(system.clone())],
                }),
                tools: if declarations.is_empty() {
                    Vec::new()
                } else {
                    vec![Tool {
                        function_declarations: declarations.clone(),
                    }]
                },
                ..GenerateContentRequest::default()
            };
            let started = Instant::now();
            let outcome = self.call_model(api_key, model, &request, started).await;
            let latency = millis(started.elapsed());
            let metadata = |turn: &Turn, finish: Option<FinishReason>| ModelCallMetadata {
                model: turn
                    .model_version
                    .clone()
                    .unwrap_or_else(|| model.to_owned()),
                prompt_tokens: turn.prompt_tokens,
                output_tokens: turn.output_tokens,
                total_tokens: turn.total_tokens,
                finish_reason: finish,
                latency_ms: Some(latency),
                first_token_ms: turn.first_text.map(millis),
                error: None,
            };
            let usage_delta = |turn: &Turn| UsageDelta {
                day: Utc::now().date_naive(),
                model: model.to_owned(),
                requests: 1,
                prompt_tokens: turn.prompt_tokens,
                output_tokens: turn.output_tokens,
                total_tokens: turn.total_tokens,
            };
            match outcome {
                Outcome::Complete(turn)
                    if !turn.calls.is_empty() && depth < config.max_tool_depth =>
                {
                    depth += 1;
                    let call_metadata = metadata(&turn, Some(FinishReason::Stop));
                    usage.add(&call_metadata);
                    let mut steps = Vec::new();
                    let mut call_metadata = Some(call_metadata);
                    if let Some(part) = turn.text_part().filter(|_| !turn.text.is_empty()) {
                        steps.push(NewMessage {
                            role: MessageRole::Model,
                            content: MessageContent::Text(turn.text.clone()),
                            exchange_id: Some(exchange_id),
                            parts: Some(json!([part])),
                            metadata: call_metadata.take(),
                        });
                    }
                    let mut calls = Vec::new();
                    for (index, part) in turn.calls.iter().enumerate() {
                        let Some(call) = &part.function_call else {
                            continue;
                        };
                        let call_id = call.id.clone().unwrap_or_else(|| {
                            format!("{GENERATED_CALL_ID_PREFIX}{depth}-{index}")
                        });
                        calls.push((call_id.clone(), call.name.clone(), call.args.clone()));
                        steps.push(NewMessage {
                            role: MessageRole::FunctionCall,
                            content: MessageContent::FunctionCall {
                                call_id,
                                name: call.name.clone(),
                                args: call.args.clone(),
                            },
                            exchange_id: Some(exchange_id),
                            parts: serde_json::to_value(vec![part]).ok(),
                            metadata: call_metadata.take(),
                        });
                    }
                    let committed = Box::pin(chat.append_messages(
                        self.user,
                        session.id,
                        steps,
                        Some(usage_delta(&turn)),
                        Utc::now(),
                    ))
                    .await?;
                    for message in committed {
                        let event = if message.role == MessageRole::Model {
                            ExchangeEvent::ModelMessage(Box::new(message))
                        } else {
                            ExchangeEvent::FunctionCall(Box::new(message))
                        };
                        self.emit(event).await;
                    }
                    let mut results = Vec::new();
                    let mut response_parts = Vec::new();
                    for (call_id, name, args) in calls {
                        let (response, failed) =
                            Box::pin(self.run_tool(&tool_context, &name, &args)).await;
                        response_parts.push(context::function_response_part(
                            &call_id,
                            &name,
                            response.clone(),
                        ));
                        results.push(NewMessage {
                            role: MessageRole::FunctionResult,
                            content: MessageContent::FunctionResult {
                                call_id,
                                name,
                                response,
                                failed,
                            },
                            exchange_id: Some(exchange_id),
                            parts: None,
                            metadata: None,
                        });
                    }
                    let committed = Box::pin(chat.append_messages(
                        self.user,
                        session.id,
                        results,
                        None,
                        Utc::now(),
                    ))
                    .await?;
                    for message in committed {
                        self.emit(ExchangeEvent::FunctionResult(Box::new(message)))
                            .await;
                    }
                    contents.push(Content {
                        role: Some("model".to_owned()),
                        parts: turn.model_parts(),
                    });
                    contents.push(Content {
                        role: Some("user".to_owned()),
                        parts: response_parts,
                    });
                }
                Outcome::Complete(turn) => {
                    let finish = if turn.calls.is_empty() {
                        turn.finish_reason()
                    } else {
                        FinishReason::ToolLimit
                    };
                    let reply_metadata = metadata(&turn, Some(finish));
                    usage.add(&reply_metadata);
                    let reply = self
                        .commit_reply(
                            session.id,
                            exchange_id,
                            &turn,
                            reply_metadata,
                            Some(usage_delta(&turn)),
                        )
                        .await?;
                    self.finish(exchange_id, ExchangeState::Done).await?;
                    self.emit(ExchangeEvent::ModelMessage(Box::new(reply.clone())))
                        .await;
                    self.emit(ExchangeEvent::Completed(ExchangeSummary {
                        reply_id: reply.id,
                        finish_reason: finish,
                        usage,
                        replayed: false,
                    }))
                    .await;
                    if session.title.is_empty() && config.generate_titles {
                        self.spawn_title(session.id, model, api_key, user_message, &turn.text);
                    }
                    return Ok(());
                }
                Outcome::Cancelled(turn) => {
                    let reply_metadata = metadata(&turn, Some(FinishReason::Cancelled));
                    self.commit_reply(
                        session.id,
                        exchange_id,
                        &turn,
                        reply_metadata,
                        Some(usage_delta(&turn)),
                    )
                    .await?;
                    self.finish(exchange_id, ExchangeState::Done).await?;
                    tracing::info!(session = %session.id, "the client cancelled an exchange");
                    return Ok(());
                }
                Outcome::Interrupted(turn, err) => {
                    tracing::warn!(error = %err, "the Gemini stream broke off after text");
                    let error = Error::Unavailable {
                        reason: ErrorReason::ProviderStreamInterrupted,
                        message: "Gemini's answer broke off before it was complete; the partial \
                                  reply was saved. Send your message again for a full answer"
                            .into(),
                        retry_after: Some(Duration::from_secs(1)),
                    };
                    let mut reply_metadata = metadata(&turn, Some(FinishReason::Incomplete));
                    reply_metadata.error = Some(message_error(&error));
                    let delta = turn.has_usage.then(|| usage_delta(&turn));
                    let reply = self
                        .commit_reply(session.id, exchange_id, &turn, reply_metadata, delta)
                        .await?;
                    self.finish(exchange_id, ExchangeState::Done).await?;
                    self.emit(ExchangeEvent::ModelMessage(Box::new(reply)))
                        .await;
                    return Err(error);
                }
                Outcome::Failed(err) => {
                    let error = Box::pin(self.inner.provider_error(
                        self.user,
                        &self.request.context,
                        key,
                        err,
                        model,
                    ))
                    .await;
                    let reply_metadata = ModelCallMetadata {
                        finish_reason: Some(FinishReason::Error),
                        latency_ms: Some(latency),
                        error: Some(message_error(&error)),
                        ..ModelCallMetadata::default()
                    };
                    let reply = self
                        .commit_reply(
                            session.id,
                            exchange_id,
                            &Turn::default(),
                            reply_metadata,
                            None,
                        )
                        .await?;
                    self.finish(exchange_id, ExchangeState::Failed).await?;
                    self.emit(ExchangeEvent::ModelMessage(Box::new(reply)))
                        .await;
                    return Err(error);
                }
            }
        }
    }

    async fn finish(&mut self, exchange_id: MessageId, state: ExchangeState) -> Result<()> {
        let chat = self.inner.store.chat();
        Box::pin(chat.finish_exchange(self.user, exchange_id, state)).await?;
        self.open = None;
        Ok(())
    }

    /// Commits the MODEL message that ends an exchange.
    async fn commit_reply(
        &self,
        session: SessionId,
        exchange_id: MessageId,
        turn: &Turn,
        metadata: ModelCallMetadata,
        usage: Option<UsageDelta>,
    ) -> Result<ChatMessage> {
        let message = NewMessage {
            role: MessageRole::Model,
            content: MessageContent::Text(turn.text.clone()),
            exchange_id: Some(exchange_id),
            parts: turn.text_part().map(|part| json!([part])),
            metadata: Some(metadata),
        };
        let chat = self.inner.store.chat();
        Box::pin(chat.append_messages(self.user, session, vec![message], usage, Utc::now()))
            .await?
            .pop()
            .ok_or_else(|| Error::internal("appending a message returned nothing"))
    }

    /// Runs a tool; a failure becomes an `{"error": …}` result the model can read.
    async fn run_tool(&self, context: &ToolContext, name: &str, args: &Value) -> (Value, bool) {
        let Some(tool) = self.inner.tools.get(name) else {
            return (
                json!({"error": format!("there is no tool called {name:?}")}),
                true,
            );
        };
        let args = if args.is_object() {
            args.clone()
        } else {
            json!({})
        };
        match tool.call(context, &args).await {
            Ok(response) if response.is_object() => (response, false),
            Ok(response) => (json!({"result": response}), false),
            Err(ToolFailure(message)) => (json!({"error": message}), true),
        }
    }

    /// Calls the model, retrying failures before any text with backoff.
    async fn call_model(
        &self,
        key: &ApiKey,
        model: &str,
        request: &GenerateContentRequest,
        started: Instant,
    ) -> Outcome {
        let config = &self.inner.config;
        let mut attempt = 0;
        loop {
            let result = if self.request.streaming {
                self.stream_once(key, model, request, started).await
            } else {
                self.generate_once(key, model, request, started).await
            };
            match result {
                Attempt::Done(outcome) => return outcome,
                Attempt::Retry(err) if attempt >= config.max_retries => {
                    return Outcome::Failed(err);
                }
                Attempt::Retry(err) => {
                    let delay = config.retry_backoff * 2u32.saturating_pow(attempt);
                    attempt += 1;
                    tracing::info!(error = %err, attempt, ?delay, "retrying a failed Gemini call");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.events.closed() => return Outcome::Cancelled(Turn::default()),
                    }
                }
            }
        }
    }

    async fn generate_once(
        &self,
        key: &ApiKey,
        model: &str,
        request: &GenerateContentRequest,
        started: Instant,
    ) -> Attempt {
        let response = tokio::select! {
            response = Box::pin(self.inner.gemini.generate_content(key, model, request)) => response,
            () = self.events.closed() => return Attempt::Done(Outcome::Cancelled(Turn::default())),
        };
        match response {
            Ok(response) => {
                let mut turn = Turn::default();
                turn.absorb(response);
                if !turn.text.is_empty() {
                    turn.first_text = Some(started.elapsed());
                }
                Attempt::Done(Outcome::Complete(turn))
            }
            Err(err) if retryable(&err) => Attempt::Retry(err),
            Err(err) => Attempt::Done(Outcome::Failed(err)),
        }
    }

    async fn stream_once(
        &self,
        key: &ApiKey,
        model: &str,
        request: &GenerateContentRequest,
        started: Instant,
    ) -> Attempt {
        // Boxed, like the other one-off steps of an exchange: an open exchange's task then
        // holds only the state of the step it waits in (here: the next SSE event), not room
        // for the largest step it ever takes. With thousands of idle streams that is most of
        // the server's memory.
        let opened = tokio::select! {
            opened = Box::pin(self.inner.gemini.stream_generate_content(key, model, request)) => opened,
            () = self.events.closed() => return Attempt::Done(Outcome::Cancelled(Turn::default())),
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) if retryable(&err) => return Attempt::Retry(err),
            Err(err) => return Attempt::Done(Outcome::Failed(err)),
        };
        let mut turn = Turn::default();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = self.events.closed() => return Attempt::Done(Outcome::Cancelled(turn)),
            };
            match next {
                None if turn.finished() => return Attempt::Done(Outcome::Complete(turn)),
                None => {
                    let err = assistd_gemini::Error::StreamInterrupted {
                        message: "the stream ended without a finish reason".into(),
                    };
                    return self.broken(turn, err);
                }
                Some(Ok(chunk)) => {
                    let added = turn.absorb(chunk);
                    if !added.is_empty() {
                        turn.first_text.get_or_insert_with(|| started.elapsed());
                        if self
                            .events
                            .send(Ok(ExchangeEvent::TextDelta(added)))
                            .await
                            .is_err()
                        {
                            return Attempt::Done(Outcome::Cancelled(turn));
                        }
                    }
                }
                Some(Err(err)) => return self.broken(turn, err),
            }
        }
    }

    /// A stream that failed: retried while nothing was relayed, else an interrupted reply.
    fn broken(&self, turn: Turn, err: assistd_gemini::Error) -> Attempt {
        if turn.text.is_empty() && turn.calls.is_empty() {
            if retryable(&err) {
                Attempt::Retry(err)
            } else {
                Attempt::Done(Outcome::Failed(err))
            }
        } else {
            Attempt::Done(Outcome::Interrupted(turn, err))
        }
    }

    /// Generates a title for the session in the background, with the user's key.
    fn spawn_title(
        &self,
        session: SessionId,
        model: &str,
        key: &ApiKey,
        user_message: &ChatMessage,
        reply: &str,
    ) {
        let Ok(key) = ApiKey::new(key.expose_secret().to_owned()) else {
            return;
        };
        let inner_store = self.inner.store.clone();
        let gemini = self.inner.gemini.clone();
        let user = self.user;
        let model = model.to_owned();
        let clip = |text: &str| text.chars().take(2_000).collect::<String>();
        let prompt = format!(
            "Write a title of at most six words for the conversation that starts below. \
             Answer with the title only, without quotes or punctuation at the end.\n\n\
             User: {}\n\nAssistant: {}",
            clip(user_message.content.text().unwrap_or_default()),
            clip(reply),
        );
        tokio::spawn(async move {
            let request = GenerateContentRequest {
                contents: vec![Content {
                    role: Some("user".to_owned()),
                    parts: vec![Part::text(prompt)],
                }],
                ..GenerateContentRequest::default()
            };
            let response = match gemini.generate_content(&key, &model, &request).await {
                Ok(response) => response,
                Err(err) => {
                    tracing::info!(error = %err, "no title generated");
                    return;
                }
            };
            let mut turn = Turn::default();
            turn.absorb(response);
            let chat = inner_store.chat();
            let delta = UsageDelta {
                day: Utc::now().date_naive(),
                model,
                requests: 1,
                prompt_tokens: turn.prompt_tokens,
                output_tokens: turn.output_tokens,
                total_tokens: turn.total_tokens,
            };
            if let Err(err) = chat.record_usage(user, &delta).await {
                tracing::warn!(error = %err, "could not record the usage of a title");
            }
            let title: String = turn
                .text
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or_default()
                .trim_matches(|c: char| matches!(c, '"' | '\'' | '*' | '#' | '.' | '“' | '”'))
                .trim()
                .chars()
                .take(GENERATED_TITLE_CHARS)
                .collect();
            if title.is_empty() || validate_title(&title).is_err() {
                return;
            }
            if let Err(err) = chat
                .set_generated_title(user, session, &title, Utc::now())
                .await
            {
                tracing::warn!(error = %err, "could not store a generated title");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_run_from_the_first_to_the_first() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let (start, end) = month_of(at);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }
}
