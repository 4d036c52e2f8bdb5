//! Chat: sessions, their messages, sends (exchanges) made idempotent by client message ids,
//! full-text search, remembered facts, daily usage and token budgets.
//!
//! Every method takes the id of the user from a verified token and filters by it: another
//! user's session, message or memory is indistinguishable from one that does not exist.
//!
//! Messages are numbered per session by an allocator on the session row (`last_sequence`):
//! a write bumps it by the number of messages it adds and uses the numbers it got, inside
//! the transaction that inserts them. The bump locks the session row on PostgreSQL, and
//! SQLite's write transactions take the database lock up front, so concurrent writers get
//! consecutive, disjoint ranges.

use assistd_domain::chat::{
    ArchivedFilter, ChatMessage, ChatSession, ExchangeStart, ExchangeState, FinishReason, Memory,
    MemoryId, MessageContent, MessageError, MessageId, MessageRole, ModelCallMetadata, NewMessage,
    NewSession, SearchHit, SearchQuery, SessionFilter, SessionId, SessionPatch, SnippetSegment,
    TokenBudgetSetting, UsageRecord,
};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    IdenStatic, Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement,
    Value,
};
use serde_json::json;

use crate::entity::{chat_memories, chat_messages, chat_sessions, token_budgets, usage_daily};
use crate::{Backend, Store, db_error};

const SESSION: &str = "chat session";
const MESSAGE: &str = "message";
const MEMORY: &str = "memory";

/// `exchange_state` values.
const RUNNING: &str = "running";
const DONE: &str = "done";
const FAILED: &str = "failed";

/// Marks the start of a highlighted run in raw snippets (a private-use character).
const HIGHLIGHT_START: char = '\u{E000}';
/// Marks the end of a highlighted run in raw snippets.
const HIGHLIGHT_END: char = '\u{E001}';
/// Added where a snippet cuts the message short.
const ELLIPSIS: &str = "…";

/// Rounds of [`ChatRepository::begin_exchange`] before giving up on a send that other
/// requests keep changing.
const EXCHANGE_ATTEMPTS: usize = 5;
/// Rows per multi-row INSERT (well below either engine's bound-parameter limit).
const INSERT_BATCH: usize = 200;
/// Memories read per query while matching them.
const MEMORY_SCAN_BATCH: u64 = 256;

/// Usage to add to a user's daily totals for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// The UTC day the calls were made.
    pub day: NaiveDate,
    /// Model name as sent to the provider.
    pub model: String,
    /// Model calls.
    pub requests: i64,
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// All tokens as the provider counts them.
    pub total_tokens: i64,
}

/// Reads and writes one user's chat sessions, messages, memories, usage and budget.
#[derive(Clone, Debug)]
pub struct ChatRepository {
    store: Store,
}

impl Store {
    /// The chat repository.
    #[must_use]
    pub fn chat(&self) -> ChatRepository {
        ChatRepository {
            store: self.clone(),
        }
    }
}

fn not_found(resource: &'static str, id: impl std::fmt::Display) -> Error {
    Error::NotFound {
        resource,
        id: id.to_string(),
    }
}

fn account_gone() -> Error {
    Error::Unauthenticated {
        reason: ErrorReason::AccountNotFound,
        message: "the account this access token belongs to no longer exists; sign in again".into(),
    }
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// `at` truncated to microseconds, the precision both engines store: what is written reads
/// back equal, and SQLite's text timestamps keep sorting like times.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

fn limit_value(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A raw statement under construction, with bound values and the backend's placeholders.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        if self.backend == DbBackend::Postgres {
            self.text.push_str(&format!("${}", self.values.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// The message columns, qualified by `table`, for raw SELECTs that map rows to the entity.
fn message_columns(table: &str) -> String {
    chat_messages::Column::iter()
        .map(|column| format!("{table}.\"{}\"", column.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn session_of(row: chat_sessions::Model) -> ChatSession {
    ChatSession {
        id: SessionId::from_uuid(row.id),
        title: row.title,
        title_generated: row.title_generated,
        system_instruction: row.system_instruction,
        model: row.model,
        pinned: row.pinned,
        archived: row.archived,
        message_count: row.message_count,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_activity_at: row.last_activity_at,
    }
}

fn memory_of(row: chat_memories::Model) -> Memory {
    Memory {
        id: MemoryId::from_uuid(row.id),
        content: row.content,
        created_at: row.created_at,
        source_session_id: row.source_session_id.map(SessionId::from_uuid),
    }
}

fn usage_of(row: usage_daily::Model) -> UsageRecord {
    UsageRecord {
        day: row.day,
        model: row.model,
        request_count: row.request_count,
        prompt_tokens: row.prompt_tokens,
        output_tokens: row.output_tokens,
        total_tokens: row.total_tokens,
    }
}

fn budget_of(row: token_budgets::Model) -> TokenBudgetSetting {
    TokenBudgetSetting {
        monthly_limit: row.monthly_limit,
        updated_at: Some(row.updated_at),
    }
}

/// The `text` and `payload` columns of a message body, refusing a body its role cannot hold.
fn content_columns(
    role: MessageRole,
    content: &MessageContent,
) -> Result<(Option<String>, Option<String>)> {
    match (role, content) {
        (
            MessageRole::User | MessageRole::Model | MessageRole::System,
            MessageContent::Text(text),
        ) => Ok((Some(text.clone()), None)),
        (
            MessageRole::FunctionCall,
            MessageContent::FunctionCall {
                call_id,
                name,
                args,
            },
        ) => Ok((
            None,
            Some(json!({ "call_id": call_id, "name": name, "args": args }).to_string()),
        )),
        (
            MessageRole::FunctionResult,
            MessageContent::FunctionResult {
                call_id,
                name,
                response,
                failed,
            },
        ) => Ok((
            None,
            Some(
                json!({
                    "call_id": call_id,
                    "name": name,
                    "response": response,
                    "failed": failed,
                })
                .to_string(),
            ),
        )),
        (role, _) => Err(Error::internal(format!(
            "a {} message cannot hold this content",
            role.as_str()
        ))),
    }
}

/// A string field of a stored payload.
fn payload_str(payload: &serde_json::Value, field: &str, id: uuid::Uuid) -> Result<String> {
    payload
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::internal(format!("message {id}: payload lacks {field:?}")))
}

fn content_of(row: &chat_messages::Model, role: MessageRole) -> Result<MessageContent> {
    match role {
        MessageRole::User | MessageRole::Model | MessageRole::System => row
            .text
            .clone()
            .map(MessageContent::Text)
            .ok_or_else(|| Error::internal(format!("message {}: text is missing", row.id))),
        MessageRole::FunctionCall | MessageRole::FunctionResult => {
            let raw = row.payload.as_deref().ok_or_else(|| {
                Error::internal(format!("message {}: payload is missing", row.id))
            })?;
            let payload: serde_json::Value = serde_json::from_str(raw).map_err(|err| {
                Error::internal(format!("message {}: payload is not JSON: {err}", row.id))
            })?;
            let call_id = payload_str(&payload, "call_id", row.id)?;
            let name = payload_str(&payload, "name", row.id)?;
            let field = |key: &str| payload.get(key).cloned().unwrap_or_default();
            Ok(if role == MessageRole::FunctionCall {
                MessageContent::FunctionCall {
                    call_id,
                    name,
                    args: field("args"),
                }
            } else {
                MessageContent::FunctionResult {
                    call_id,
                    name,
                    response: field("response"),
                    failed: payload
                        .get("failed")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false),
                }
            })
        }
    }
}

fn message_of(row: chat_messages::Model) -> Result<ChatMessage> {
    let role = MessageRole::parse(&row.role).ok_or_else(|| {
        Error::internal(format!("message {}: unknown role {:?}", row.id, row.role))
    })?;
    let content = content_of(&row, role)?;
    let parts = row
        .parts
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|err| Error::internal(format!("message {}: parts are not JSON: {err}", row.id)))?;
    let finish_reason = row
        .finish_reason
        .as_deref()
        .map(|reason| {
            FinishReason::parse(reason).ok_or_else(|| {
                Error::internal(format!(
                    "message {}: unknown finish reason {reason:?}",
                    row.id
                ))
            })
        })
        .transpose()?;
    let metadata = row.model.map(|model| ModelCallMetadata {
        model,
        prompt_tokens: row.prompt_tokens.unwrap_or(0),
        output_tokens: row.output_tokens.unwrap_or(0),
        total_tokens: row.total_tokens.unwrap_or(0),
        finish_reason,
        latency_ms: row.latency_ms,
        first_token_ms: row.first_token_ms,
        error: row.error_reason.map(|reason| MessageError {
            reason,
            message: row.error_message.unwrap_or_default(),
        }),
    });
    Ok(ChatMessage {
        id: MessageId::from_uuid(row.id),
        session_id: SessionId::from_uuid(row.session_id),
        sequence: row.sequence,
        role,
        content,
        client_message_id: row.client_message_id,
        exchange_id: row.exchange_id.map(MessageId::from_uuid),
        parts,
        metadata,
        created_at: row.created_at,
    })
}

fn messages_of(rows: Vec<chat_messages::Model>) -> Result<Vec<ChatMessage>> {
    rows.into_iter().map(message_of).collect()
}

/// Where the send recorded on a USER message stands; `None` for messages that are no send.
fn exchange_state_of(row: &chat_messages::Model) -> Result<Option<ExchangeState>> {
    Ok(match row.exchange_state.as_deref() {
        None => None,
        // A running send without a lease can be taken over at once.
        Some(RUNNING) => Some(ExchangeState::Running {
            lease_until: row.lease_until.unwrap_or(DateTime::<Utc>::MIN_UTC),
        }),
        Some(DONE) => Some(ExchangeState::Done),
        Some(FAILED) => Some(ExchangeState::Failed),
        Some(other) => {
            return Err(Error::internal(format!(
                "message {}: unknown exchange state {other:?}",
                row.id
            )));
        }
    })
}

fn no_exchange_state(row: &chat_messages::Model) -> Error {
    Error::internal(format!(
        "message {} has a client message id but no exchange state",
        row.id
    ))
}

/// The row of a new message; its sequence is set once allocated.
fn new_row(
    user: UserId,
    session: SessionId,
    message: &NewMessage,
    now: DateTime<Utc>,
) -> Result<chat_messages::Model> {
    let (text, payload) = content_columns(message.role, &message.content)?;
    let parts = message
        .parts
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(Error::internal)?;
    let metadata = message.metadata.as_ref();
    let error = metadata.and_then(|m| m.error.as_ref());
    Ok(chat_messages::Model {
        id: MessageId::new().as_uuid(),
        user_id: user.as_uuid(),
        session_id: session.as_uuid(),
        sequence: 0,
        role: message.role.as_str().to_owned(),
        text,
        payload,
        parts,
        client_message_id: None,
        exchange_id: message.exchange_id.map(|id| id.as_uuid()),
        exchange_state: None,
        lease_until: None,
        model: metadata.map(|m| m.model.clone()),
        prompt_tokens: metadata.map(|m| m.prompt_tokens),
        output_tokens: metadata.map(|m| m.output_tokens),
        total_tokens: metadata.map(|m| m.total_tokens),
        finish_reason: metadata
            .and_then(|m| m.finish_reason)
            .map(|reason| reason.as_str().to_owned()),
        latency_ms: metadata.and_then(|m| m.latency_ms),
        first_token_ms: metadata.and_then(|m| m.first_token_ms),
        error_reason: error.map(|e| e.reason.clone()),
        error_message: error.map(|e| e.message.clone()),
        created_at: now,
    })
}

async fn insert_messages<C: ConnectionTrait>(db: &C, rows: &[chat_messages::Model]) -> Result<()> {
    for batch in rows.chunks(INSERT_BATCH) {
        chat_messages::Entity::insert_many(
            batch.iter().cloned().map(chat_messages::ActiveModel::from),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// Whether `session` exists and belongs to `user`.
async fn session_owned<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    session: SessionId,
) -> Result<bool> {
    let found = chat_sessions::Entity::find()
        .select_only()
        .column(chat_sessions::Column::Id)
        .filter(chat_sessions::Column::Id.eq(session.as_uuid()))
        .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
        .into_tuple::<uuid::Uuid>()
        .one(db)
        .await
        .map_err(db_error)?;
    Ok(found.is_some())
}

/// Hands out `count` sequence numbers of the user's session and records the activity;
/// returns the last number handed out, or `None` when there is no such session. On
/// PostgreSQL it locks the session row until the transaction ends.
async fn allocate<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    session: SessionId,
    count: i64,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("UPDATE chat_sessions SET last_sequence = last_sequence + ")
        .bind(count)
        .push(", message_count = message_count + ")
        .bind(count)
        // Never backwards: concurrent writers may commit out of order.
        .push(", last_activity_at = CASE WHEN last_activity_at < ")
        .bind(now)
        .push(" THEN ")
        .bind(now)
        .push(" ELSE last_activity_at END WHERE id = ")
        .bind(session.as_uuid())
        .push(" AND user_id = ")
        .bind(user.as_uuid())
        .push(" RETURNING last_sequence");
    let row = db.query_one_raw(sql.build()).await.map_err(db_error)?;
    row.map(|row| row.try_get::<i64>("", "last_sequence").map_err(db_error))
        .transpose()
}

/// Adds `usage` to the user's totals for its day and model.
async fn add_usage<C: ConnectionTrait>(db: &C, user: UserId, usage: &UsageDelta) -> Result<()> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO usage_daily (user_id, day, model, request_count, prompt_tokens, \
         output_tokens, total_tokens) VALUES (",
    )
    .bind(user.as_uuid())
    .push(", ")
    .bind(usage.day)
    .push(", ")
    .bind(usage.model.clone())
    .push(", ")
    .bind(usage.requests)
    .push(", ")
    .bind(usage.prompt_tokens)
    .push(", ")
    .bind(usage.output_tokens)
    .push(", ")
    .bind(usage.total_tokens)
    .push(
        ") ON CONFLICT (user_id, day, model) DO UPDATE SET \
         request_count = usage_daily.request_count + excluded.request_count, \
         prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, \
         output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
         total_tokens = usage_daily.total_tokens + excluded.total_tokens",
    );
    match db.execute_raw(sql.build()).await {
        Ok(_) => Ok(()),
        Err(err) if is_foreign_key_violation(&err) => Err(account_gone()),
        Err(err) => Err(db_error(err)),
    }
}

/// The user's USER message sent with `client_message_id`.
async fn find_send<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    client_message_id: &str,
) -> Result<Option<chat_messages::Model>> {
    chat_messages::Entity::find()
        .filter(chat_messages::Column::UserId.eq(user.as_uuid()))
        .filter(chat_messages::Column::ClientMessageId.eq(client_message_id))
        .one(db)
        .await
        .map_err(db_error)
}

/// The messages of an exchange, its USER message first, in sequence order.
async fn exchange_rows<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    exchange: uuid::Uuid,
) -> Result<Vec<chat_messages::Model>> {
    chat_messages::Entity::find()
        .filter(chat_messages::Column::UserId.eq(user.as_uuid()))
        .filter(chat_messages::Column::ExchangeId.eq(exchange))
        .order_by_asc(chat_messages::Column::Sequence)
        .all(db)
        .await
        .map_err(db_error)
}

/// The messages an exchange committed after its USER message.
async fn replies<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    exchange: uuid::Uuid,
) -> Result<Vec<ChatMessage>> {
    let rows = exchange_rows(db, user, exchange).await?;
    messages_of(rows.into_iter().filter(|row| row.id != exchange).collect())
}

/// Splits a raw snippet at the highlight markers. Unbalanced or stray markers (a stored text
/// may contain them) only toggle highlighting; they never fail.
fn snippet_segments(raw: &str) -> Vec<SnippetSegment> {
    fn flush(segments: &mut Vec<SnippetSegment>, text: &mut String, highlighted: bool) {
        if text.is_empty() {
            return;
        }
        match segments.last_mut() {
            Some(last) if last.highlighted == highlighted => last.text.push_str(text),
            _ => segments.push(SnippetSegment {
                text: text.clone(),
                highlighted,
            }),
        }
        text.clear();
    }
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut highlighted = false;
    for c in raw.chars() {
        if c == HIGHLIGHT_START || c == HIGHLIGHT_END {
            flush(&mut segments, &mut text, highlighted);
            highlighted = c == HIGHLIGHT_START;
        } else {
            text.push(c);
        }
    }
    flush(&mut segments, &mut text, highlighted);
    segments
}

/// Adds an ellipsis where a PostgreSQL headline cut words of `text` off (FTS5 adds its own).
/// Punctuation the headline leaves out at either end is no cut.
fn mark_cuts(segments: &mut Vec<SnippetSegment>, text: &str) {
    let shown: String = segments.iter().map(|s| s.text.as_str()).collect();
    let shown = shown.trim();
    if shown.is_empty() {
        return;
    }
    let has_words = |part: &str| part.chars().any(char::is_alphanumeric);
    let (cut_start, cut_end) = match text.find(shown) {
        Some(at) => (has_words(&text[..at]), has_words(&text[at + shown.len()..])),
        // The headline changed the text between words: compare the ends alone.
        None => (
            !text.trim_start().starts_with(shown),
            !text.trim_end().ends_with(shown),
        ),
    };
    if cut_start {
        match segments.first_mut() {
            Some(first) if !first.highlighted => first.text.insert_str(0, ELLIPSIS),
            _ => segments.insert(
                0,
                SnippetSegment {
                    text: ELLIPSIS.to_owned(),
                    highlighted: false,
                },
            ),
        }
    }
    if cut_end {
        match segments.last_mut() {
            Some(last) if !last.highlighted => last.text.push_str(ELLIPSIS),
            _ => segments.push(SnippetSegment {
                text: ELLIPSIS.to_owned(),
                highlighted: false,
            }),
        }
    }
}

/// One search term: its words joined by spaces, and whether it is a phrase.
fn search_terms(query: &SearchQuery) -> Vec<(String, bool)> {
    query
        .terms
        .iter()
        .map(|term| {
            let words: Vec<&str> = term
                .iter()
                .map(String::as_str)
                .filter(|word| !word.is_empty())
                .collect();
            (words.join(" "), words.len() > 1)
        })
        .filter(|(text, _)| text.chars().any(char::is_alphanumeric))
        .collect()
}

/// An FTS5 query requiring every term: each is an FTS5 string (a phrase when it has several
/// words), so nothing the user typed is read as query syntax.
fn fts5_match(terms: &[(String, bool)]) -> String {
    terms
        .iter()
        .map(|(text, _)| format!("\"{}\"", text.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends a tsquery requiring every term, each bound as a parameter.
fn push_tsquery(sql: &mut Sql, terms: &[(String, bool)]) {
    sql.push("(");
    for (index, (text, phrase)) in terms.iter().enumerate() {
        if index > 0 {
            sql.push(" && ");
        }
        sql.push(if *phrase {
            "phraseto_tsquery('simple', "
        } else {
            "plainto_tsquery('simple', "
        })
        .bind(text.clone())
        .push(")");
    }
    sql.push(")");
}

impl ChatRepository {
    /// Creates a session.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn create_session(
        &self,
        user: UserId,
        new: &NewSession,
        now: DateTime<Utc>,
    ) -> Result<ChatSession> {
        let now = micros(now);
        let row = chat_sessions::Model {
            id: SessionId::new().as_uuid(),
            user_id: user.as_uuid(),
            title: new.title.clone(),
            title_generated: false,
            system_instruction: new.system_instruction.clone(),
            model: new.model.clone(),
            pinned: false,
            archived: false,
            message_count: 0,
            last_sequence: 0,
            created_at: now,
            updated_at: now,
            last_activity_at: now,
        };
        match chat_sessions::Entity::insert(chat_sessions::ActiveModel::from(row.clone()))
            .exec_without_returning(self.store.connection())
            .await
        {
            Ok(_) => Ok(session_of(row)),
            Err(err) if is_foreign_key_violation(&err) => Err(account_gone()),
            Err(err) => Err(db_error(err)),
        }
    }

    /// The user's session.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn get_session(&self, user: UserId, id: SessionId) -> Result<ChatSession> {
        chat_sessions::Entity::find()
            .filter(chat_sessions::Column::Id.eq(id.as_uuid()))
            .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .map(session_of)
            .ok_or_else(|| not_found(SESSION, id))
    }

    /// The user's sessions that pass `filter`, most recently active first (ties by id,
    /// descending), strictly after the cursor `after` (the last activity and id of the last
    /// session of the previous page): at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_sessions(
        &self,
        user: UserId,
        filter: SessionFilter,
        after: Option<(DateTime<Utc>, SessionId)>,
        limit: u64,
    ) -> Result<Vec<ChatSession>> {
        use chat_sessions::Column;
        let mut query = chat_sessions::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .order_by_desc(Column::LastActivityAt)
            .order_by_desc(Column::Id)
            .limit(limit);
        match filter.archived {
            ArchivedFilter::Exclude => query = query.filter(Column::Archived.eq(false)),
            ArchivedFilter::Only => query = query.filter(Column::Archived.eq(true)),
            ArchivedFilter::Include => {}
        }
        if let Some(pinned) = filter.pinned {
            query = query.filter(Column::Pinned.eq(pinned));
        }
        if let Some((at, id)) = after {
            query = query.filter(
                Expr::tuple([Expr::col(Column::LastActivityAt), Expr::col(Column::Id)]).lt(
                    Expr::tuple([Expr::value(micros(at)), Expr::value(id.as_uuid())]),
                ),
            );
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(session_of).collect())
    }

    /// Applies `patch`. A new title counts as not generated. `updated_at` becomes `now`; the
    /// last activity stays.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn update_session(
        &self,
        user: UserId,
        id: SessionId,
        patch: &SessionPatch,
        now: DateTime<Utc>,
    ) -> Result<ChatSession> {
        use chat_sessions::Column;
        let mut update = chat_sessions::Entity::update_many()
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::UserId.eq(user.as_uuid()));
        if let Some(title) = &patch.title {
            update = update
                .col_expr(Column::Title, Expr::value(title.clone()))
                .col_expr(Column::TitleGenerated, Expr::value(false));
        }
        if let Some(pinned) = patch.pinned {
            update = update.col_expr(Column::Pinned, Expr::value(pinned));
        }
        if let Some(archived) = patch.archived {
            update = update.col_expr(Column::Archived, Expr::value(archived));
        }
        if let Some(instruction) = &patch.system_instruction {
            update = update.col_expr(Column::SystemInstruction, Expr::value(instruction.clone()));
        }
        if let Some(model) = &patch.model {
            update = update.col_expr(Column::Model, Expr::value(model.clone()));
        }
        update
            .exec_with_returning(self.store.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .next()
            .map(session_of)
            .ok_or_else(|| not_found(SESSION, id))
    }

    /// Sets a generated title, only while the session has none (a title the user set in the
    /// meantime wins). Returns whether it was set.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn set_generated_title(
        &self,
        user: UserId,
        id: SessionId,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use chat_sessions::Column;
        let db = self.store.connection();
        let updated = chat_sessions::Entity::update_many()
            .col_expr(Column::Title, Expr::value(title))
            .col_expr(Column::TitleGenerated, Expr::value(true))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::Title.eq(""))
            .exec(db)
            .await
            .map_err(db_error)?;
        if updated.rows_affected > 0 {
            return Ok(true);
        }
        if session_owned(db, user, id).await? {
            Ok(false)
        } else {
            Err(not_found(SESSION, id))
        }
    }

    /// Deletes the session with its messages.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn delete_session(&self, user: UserId, id: SessionId) -> Result<()> {
        let deleted = chat_sessions::Entity::delete_many()
            .filter(chat_sessions::Column::Id.eq(id.as_uuid()))
            .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            return Err(not_found(SESSION, id));
        }
        Ok(())
    }

    /// Starts a send, or finds what became of an earlier send with the same client message
    /// id, in one write transaction:
    /// - unknown id: the USER message is committed with a lease until `lease_until`
    ///   ([`ExchangeStart::Started`]);
    /// - used for another session or text: [`ExchangeStart::Conflict`];
    /// - done: [`ExchangeStart::Finished`] with what the exchange committed;
    /// - running under a lease not yet expired at `now`: [`ExchangeStart::InProgress`];
    /// - failed, or running under an expired lease: the lease is taken anew
    ///   ([`ExchangeStart::Resumed`]).
    ///
    /// Concurrent calls with one id start it once: on SQLite the write lock serialises them;
    /// on PostgreSQL the session row lock does, and the unique index on client message ids is
    /// the backstop (a violation is answered by reading the winner's row).
    ///
    /// # Errors
    /// NOT_FOUND when the id is unknown and the user has no such session; ABORTED when other
    /// requests kept changing the send; the database failed.
    pub async fn begin_exchange(
        &self,
        user: UserId,
        session: SessionId,
        client_message_id: &str,
        text: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ExchangeStart> {
        let now = micros(now);
        let lease_until = micros(lease_until);
        for _ in 0..EXCHANGE_ATTEMPTS {
            let txn = self.store.begin_write().await?;
            if let Some(row) = find_send(&txn, user, client_message_id).await? {
                match resend(&txn, user, session, text, row, lease_until, now).await? {
                    Some(start) => {
                        txn.commit().await.map_err(db_error)?;
                        return Ok(start);
                    }
                    None => {
                        txn.rollback().await.map_err(db_error)?;
                        continue;
                    }
                }
            }
            let Some(sequence) = allocate(&txn, user, session, 1, now).await? else {
                return Err(not_found(SESSION, session));
            };
            // On PostgreSQL a concurrent send with this id may have committed while this
            // transaction waited for the session row: look again (a new statement sees it).
            if find_send(&txn, user, client_message_id).await?.is_some() {
                txn.rollback().await.map_err(db_error)?;
                continue;
            }
            let id = MessageId::new();
            let row = chat_messages::Model {
                id: id.as_uuid(),
                user_id: user.as_uuid(),
                session_id: session.as_uuid(),
                sequence,
                role: MessageRole::User.as_str().to_owned(),
                text: Some(text.to_owned()),
                payload: None,
                parts: None,
                client_message_id: Some(client_message_id.to_owned()),
                exchange_id: Some(id.as_uuid()),
                exchange_state: Some(RUNNING.to_owned()),
                lease_until: Some(lease_until),
                model: None,
                prompt_tokens: None,
                output_tokens: None,
                total_tokens: None,
                finish_reason: None,
                latency_ms: None,
                first_token_ms: None,
                error_reason: None,
                error_message: None,
                created_at: now,
            };
            let inserted =
                chat_messages::Entity::insert(chat_messages::ActiveModel::from(row.clone()))
                    .exec_without_returning(&txn)
                    .await;
            match inserted {
                Ok(_) => {
                    txn.commit().await.map_err(db_error)?;
                    return Ok(ExchangeStart::Started(message_of(row)?));
                }
                // Another session's send with this id committed meanwhile: read it.
                Err(err) if is_unique_violation(&err) => {
                    txn.rollback().await.map_err(db_error)?;
                }
                Err(err) => return Err(db_error(err)),
            }
        }
        Err(Error::Aborted {
            reason: ErrorReason::ConcurrentChange,
            message: "other requests kept changing this send at the same moment; retry".into(),
        })
    }

    /// What became of an earlier send with this client message id, without changing
    /// anything: the outcome to answer with when no model call is due
    /// ([`ExchangeStart::Finished`], [`ExchangeStart::InProgress`] or
    /// [`ExchangeStart::Conflict`]), or `None` when the id is new or its send may be resumed
    /// (failed, or its lease expired at `now`): then [`Self::begin_exchange`] decides, under
    /// its write lock.
    ///
    /// # Errors
    /// The database failed.
    pub async fn peek_exchange(
        &self,
        user: UserId,
        session: SessionId,
        client_message_id: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ExchangeStart>> {
        let db = self.store.connection();
        let Some(row) = find_send(db, user, client_message_id).await? else {
            return Ok(None);
        };
        if row.session_id != session.as_uuid() || row.text.as_deref() != Some(text) {
            return Ok(Some(ExchangeStart::Conflict));
        }
        match exchange_state_of(&row)? {
            Some(ExchangeState::Done) => {
                let messages = replies(db, user, row.id).await?;
                Ok(Some(ExchangeStart::Finished {
                    user_message: message_of(row)?,
                    messages,
                }))
            }
            Some(ExchangeState::Running { lease_until }) if lease_until > now => {
                Ok(Some(ExchangeStart::InProgress))
            }
            Some(ExchangeState::Running { .. } | ExchangeState::Failed) => Ok(None),
            None => Err(no_exchange_state(&row)),
        }
    }

    /// Commits messages at the end of the session, with consecutive sequence numbers, and
    /// adds `usage` to the daily totals, in one write transaction. The session's last
    /// activity becomes `now` (unless it is later already).
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; INTERNAL when a message's content does
    /// not fit its role; the database failed.
    pub async fn append_messages(
        &self,
        user: UserId,
        session: SessionId,
        messages: Vec<NewMessage>,
        usage: Option<UsageDelta>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>> {
        let now = micros(now);
        let mut rows = messages
            .iter()
            .map(|message| new_row(user, session, message, now))
            .collect::<Result<Vec<_>>>()?;
        let count = i64::try_from(rows.len()).map_err(Error::internal)?;
        let txn = self.store.begin_write().await?;
        if rows.is_empty() {
            if !session_owned(&txn, user, session).await? {
                return Err(not_found(SESSION, session));
            }
        } else {
            let last = allocate(&txn, user, session, count, now)
                .await?
                .ok_or_else(|| not_found(SESSION, session))?;
            for (row, sequence) in rows.iter_mut().zip(last - count + 1..) {
                row.sequence = sequence;
            }
            insert_messages(&txn, &rows).await?;
        }
        if let Some(usage) = &usage {
            add_usage(&txn, user, usage).await?;
        }
        txn.commit().await.map_err(db_error)?;
        messages_of(rows)
    }

    /// Adds `usage` to the user's daily totals on its own (e.g. for generating a title).
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn record_usage(&self, user: UserId, usage: &UsageDelta) -> Result<()> {
        add_usage(self.store.connection(), user, usage).await
    }

    /// Records how a send ended ([`ExchangeState::Done`] or [`ExchangeState::Failed`]) and
    /// releases its lease.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no send with this USER message id; INTERNAL for
    /// [`ExchangeState::Running`]; the database failed.
    pub async fn finish_exchange(
        &self,
        user: UserId,
        exchange_id: MessageId,
        state: ExchangeState,
    ) -> Result<()> {
        use chat_messages::Column;
        let state = match state {
            ExchangeState::Done => DONE,
            ExchangeState::Failed => FAILED,
            ExchangeState::Running { .. } => {
                return Err(Error::internal(
                    "finish_exchange takes Done or Failed, not Running",
                ));
            }
        };
        let updated = chat_messages::Entity::update_many()
            .col_expr(Column::ExchangeState, Expr::value(state))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(Column::Id.eq(exchange_id.as_uuid()))
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::ExchangeState.is_not_null())
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        if updated.rows_affected == 0 {
            return Err(not_found(MESSAGE, exchange_id));
        }
        Ok(())
    }

    /// The messages an exchange committed after its USER message, in sequence order.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no USER message with this id; the database failed.
    pub async fn exchange_messages(
        &self,
        user: UserId,
        exchange_id: MessageId,
    ) -> Result<Vec<ChatMessage>> {
        let rows = exchange_rows(self.store.connection(), user, exchange_id.as_uuid()).await?;
        if !rows.iter().any(|row| row.id == exchange_id.as_uuid()) {
            return Err(not_found(MESSAGE, exchange_id));
        }
        messages_of(
            rows.into_iter()
                .filter(|row| row.id != exchange_id.as_uuid())
                .collect(),
        )
    }

    /// A page of the session's messages: `forward`, those with sequence ≥ `start` (from the
    /// first when `None`) in ascending order; backward, those with sequence ≤ `start` (from
    /// the last when `None`) in descending order; at most `limit`. The next page starts at
    /// the last sequence returned plus one (forward) or minus one (backward). Walks the
    /// (session, sequence) index, so any page costs the same in a long session.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn list_messages(
        &self,
        user: UserId,
        session: SessionId,
        forward: bool,
        start: Option<i64>,
        limit: u64,
    ) -> Result<Vec<ChatMessage>> {
        use chat_messages::Column;
        let db = self.store.connection();
        if !session_owned(db, user, session).await? {
            return Err(not_found(SESSION, session));
        }
        // Ownership was checked above. The query names the session only: a `user_id`
        // condition besides it lets PostgreSQL, before it has statistics for a freshly filled
        // table, AND two bitmap scans and sort (tens of ms at 100,000 messages) instead of
        // walking `(session_id, sequence)` (well under a millisecond).
        let mut query = chat_messages::Entity::find()
            .filter(Column::SessionId.eq(session.as_uuid()))
            .limit(limit);
        query = if forward {
            if let Some(start) = start {
                query = query.filter(Column::Sequence.gte(start));
            }
            query.order_by_asc(Column::Sequence)
        } else {
            if let Some(start) = start {
                query = query.filter(Column::Sequence.lte(start));
            }
            query.order_by_desc(Column::Sequence)
        };
        messages_of(query.all(db).await.map_err(db_error)?)
    }

    /// The newest `limit` messages of the session, in ascending sequence order (the context
    /// of the next model call).
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn recent_messages(
        &self,
        user: UserId,
        session: SessionId,
        limit: u64,
    ) -> Result<Vec<ChatMessage>> {
        let mut messages = self
            .list_messages(user, session, false, None, limit)
            .await?;
        messages.reverse();
        Ok(messages)
    }

    /// The user's USER and MODEL messages that contain every term of `query` (a term of
    /// several words as a phrase), case-insensitively, newest first (ties by id, descending),
    /// strictly after the cursor `after` (created_at and id of the last hit of the previous
    /// page), optionally in one session: at most `limit`, each with its session's title and
    /// a highlighted excerpt. The query's words are bound as parameters, never read as
    /// query syntax.
    ///
    /// # Errors
    /// The database failed.
    pub async fn search_messages(
        &self,
        user: UserId,
        query: &SearchQuery,
        session: Option<SessionId>,
        after: Option<(DateTime<Utc>, MessageId)>,
        limit: u64,
    ) -> Result<Vec<SearchHit>> {
        let terms = search_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.store.connection();
        let backend = self.store.backend();
        let mut sql = Sql::new(db.get_database_backend());
        match backend {
            Backend::Sqlite => {
                sql.push("SELECT ")
                    .push(&message_columns("m"))
                    .push(
                        ", s.title AS session_title, \
                         snippet(chat_messages_fts, 0, char(57344), char(57345), '…', 24) \
                         AS snippet \
                         FROM chat_messages_fts \
                         JOIN chat_messages m ON m.rowid = chat_messages_fts.rowid \
                         JOIN chat_sessions s ON s.id = m.session_id \
                         WHERE chat_messages_fts MATCH ",
                    )
                    .bind(fts5_match(&terms));
            }
            Backend::Postgres => {
                sql.push("SELECT h.*, ts_headline('simple', h.\"text\", ");
                push_tsquery(&mut sql, &terms);
                sql.push(", ")
                    .bind(format!(
                        "StartSel=\"{HIGHLIGHT_START}\", StopSel=\"{HIGHLIGHT_END}\", \
                         MaxWords=30, MinWords=12, ShortWord=0, MaxFragments=1, \
                         FragmentDelimiter=\" … \""
                    ))
                    .push(") AS snippet FROM (SELECT ")
                    .push(&message_columns("m"))
                    .push(
                        ", s.title AS session_title FROM chat_messages m \
                         JOIN chat_sessions s ON s.id = m.session_id WHERE m.search @@ ",
                    );
                push_tsquery(&mut sql, &terms);
            }
        }
        sql.push(" AND m.user_id = ")
            .bind(user.as_uuid())
            .push(" AND m.role IN ('user', 'model')");
        if let Some(session) = session {
            sql.push(" AND m.session_id = ").bind(session.as_uuid());
        }
        if let Some((at, id)) = after {
            sql.push(" AND (m.created_at, m.id) < (")
                .bind(micros(at))
                .push(", ")
                .bind(id.as_uuid())
                .push(")");
        }
        sql.push(" ORDER BY m.created_at DESC, m.id DESC LIMIT ")
            .bind(limit_value(limit));
        if backend == Backend::Postgres {
            sql.push(") h ORDER BY h.created_at DESC, h.id DESC");
        }
        let rows = db.query_all_raw(sql.build()).await.map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let model = chat_messages::Model::from_query_result(row, "").map_err(db_error)?;
                let session_title: String = row.try_get("", "session_title").map_err(db_error)?;
                let raw: Option<String> = row.try_get("", "snippet").map_err(db_error)?;
                let mut snippet = snippet_segments(raw.as_deref().unwrap_or_default());
                if backend == Backend::Postgres {
                    mark_cuts(&mut snippet, model.text.as_deref().unwrap_or_default());
                }
                Ok(SearchHit {
                    message: message_of(model)?,
                    session_title,
                    snippet,
                })
            })
            .collect()
    }

    /// Remembers a fact, optionally noting the session it came from.
    ///
    /// # Errors
    /// NOT_FOUND when `source` is not one of the user's sessions; UNAUTHENTICATED when the
    /// account no longer exists; the database failed.
    pub async fn add_memory(
        &self,
        user: UserId,
        content: &str,
        source: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        let db = self.store.connection();
        if let Some(source) = source
            && !session_owned(db, user, source).await?
        {
            return Err(not_found(SESSION, source));
        }
        let row = chat_memories::Model {
            id: MemoryId::new().as_uuid(),
            user_id: user.as_uuid(),
            content: content.to_owned(),
            source_session_id: source.map(|id| id.as_uuid()),
            created_at: micros(now),
        };
        match chat_memories::Entity::insert(chat_memories::ActiveModel::from(row.clone()))
            .exec_without_returning(db)
            .await
        {
            Ok(_) => Ok(memory_of(row)),
            Err(err) if is_foreign_key_violation(&err) => match source {
                // The session was deleted since it was checked.
                Some(source) if !session_owned(db, user, source).await? => {
                    Err(not_found(SESSION, source))
                }
                _ => Err(account_gone()),
            },
            Err(err) => Err(db_error(err)),
        }
    }

    /// The user's memories, newest first (ties by id, descending), strictly after the cursor
    /// `after` (created_at and id of the last memory of the previous page): at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_memories(
        &self,
        user: UserId,
        after: Option<(DateTime<Utc>, MemoryId)>,
        limit: u64,
    ) -> Result<Vec<Memory>> {
        use chat_memories::Column;
        let mut query = chat_memories::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit);
        if let Some((at, id)) = after {
            query = query.filter(
                Expr::tuple([Expr::col(Column::CreatedAt), Expr::col(Column::Id)]).lt(Expr::tuple(
                    [Expr::value(micros(at)), Expr::value(id.as_uuid())],
                )),
            );
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(memory_of).collect())
    }

    /// Forgets a memory.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such memory; the database failed.
    pub async fn delete_memory(&self, user: UserId, id: MemoryId) -> Result<()> {
        let deleted = chat_memories::Entity::delete_many()
            .filter(chat_memories::Column::Id.eq(id.as_uuid()))
            .filter(chat_memories::Column::UserId.eq(user.as_uuid()))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            return Err(not_found(MEMORY, id));
        }
        Ok(())
    }

    /// The newest `limit` memories that contain any of `words` (case-insensitive substring,
    /// with full Unicode case folding); with no words, the newest `limit`. Memories are few
    /// per user (the caller caps them), so they are matched here rather than with SQL `LIKE`,
    /// which folds only ASCII on SQLite.
    ///
    /// # Errors
    /// The database failed.
    pub async fn find_memories(
        &self,
        user: UserId,
        words: &[String],
        limit: u64,
    ) -> Result<Vec<Memory>> {
        let needles: Vec<String> = words
            .iter()
            .map(|word| word.trim().to_lowercase())
            .filter(|word| !word.is_empty())
            .collect();
        if needles.is_empty() {
            return self.list_memories(user, None, limit).await;
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut after = None;
        while found.len() < wanted {
            let page = self.list_memories(user, after, MEMORY_SCAN_BATCH).await?;
            let complete = (page.len() as u64) < MEMORY_SCAN_BATCH;
            after = page.last().map(|memory| (memory.created_at, memory.id));
            for memory in page {
                let content = memory.content.to_lowercase();
                if found.len() < wanted && needles.iter().any(|needle| content.contains(needle)) {
                    found.push(memory);
                }
            }
            if complete {
                break;
            }
        }
        Ok(found)
    }

    /// How many memories the user has.
    ///
    /// # Errors
    /// The database failed.
    pub async fn count_memories(&self, user: UserId) -> Result<u64> {
        chat_memories::Entity::find()
            .filter(chat_memories::Column::UserId.eq(user.as_uuid()))
            .count(self.store.connection())
            .await
            .map_err(db_error)
    }

    /// The user's daily usage from `start` to `end` (both included), of one model or all,
    /// ordered by day, then model.
    ///
    /// # Errors
    /// The database failed.
    pub async fn usage_between(
        &self,
        user: UserId,
        start: NaiveDate,
        end: NaiveDate,
        model: Option<&str>,
    ) -> Result<Vec<UsageRecord>> {
        use usage_daily::Column;
        let mut query = usage_daily::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::Day.gte(start))
            .filter(Column::Day.lte(end))
            .order_by_asc(Column::Day)
            .order_by_asc(Column::Model);
        if let Some(model) = model {
            query = query.filter(Column::Model.eq(model));
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(usage_of).collect())
    }

    /// The user's total tokens from `start` to `end` (both included), over all models.
    ///
    /// # Errors
    /// The database failed.
    pub async fn tokens_between(
        &self,
        user: UserId,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<i64> {
        let db = self.store.connection();
        let mut sql = Sql::new(db.get_database_backend());
        // SUM of BIGINT is NUMERIC on PostgreSQL; the cast brings it back.
        sql.push(
            "SELECT CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS tokens \
             FROM usage_daily WHERE user_id = ",
        )
        .bind(user.as_uuid())
        .push(" AND day >= ")
        .bind(start)
        .push(" AND day <= ")
        .bind(end);
        let row = db
            .query_one_raw(sql.build())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("an aggregate query returned no row"))?;
        row.try_get::<i64>("", "tokens").map_err(db_error)
    }

    /// The user's monthly token budget setting (no budget, never set, by default).
    ///
    /// # Errors
    /// The database failed.
    pub async fn budget(&self, user: UserId) -> Result<TokenBudgetSetting> {
        Ok(token_budgets::Entity::find_by_id(user.as_uuid())
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .map(budget_of)
            .unwrap_or_default())
    }

    /// Sets the monthly token budget, or clears it with `None` (the row stays, so the time
    /// of clearing is kept). Takes the connection to write on, so that the change and its
    /// audit event can share a transaction.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn set_budget<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        monthly_limit: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<TokenBudgetSetting> {
        use token_budgets::Column;
        let row = token_budgets::Model {
            user_id: user.as_uuid(),
            monthly_limit,
            updated_at: micros(now),
        };
        let written = token_budgets::Entity::insert(token_budgets::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::column(Column::UserId)
                    .update_columns([Column::MonthlyLimit, Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await;
        match written {
            Ok(_) => Ok(budget_of(row)),
            Err(err) if is_foreign_key_violation(&err) => Err(account_gone()),
            Err(err) => Err(db_error(err)),
        }
    }
}

/// What an earlier send with the same client message id became; `None` when another request
/// took it over meanwhile and it must be looked at again.
async fn resend<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    session: SessionId,
    text: &str,
    row: chat_messages::Model,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<ExchangeStart>> {
    use chat_messages::Column;
    if row.session_id != session.as_uuid() || row.text.as_deref() != Some(text) {
        return Ok(Some(ExchangeStart::Conflict));
    }
    let state = exchange_state_of(&row)?.ok_or_else(|| no_exchange_state(&row))?;
    match state {
        ExchangeState::Done => {
            let messages = replies(db, user, row.id).await?;
            Ok(Some(ExchangeStart::Finished {
                user_message: message_of(row)?,
                messages,
            }))
        }
        ExchangeState::Running {
            lease_until: current,
        } if current > now => Ok(Some(ExchangeStart::InProgress)),
        ExchangeState::Running { .. } | ExchangeState::Failed => {
            // Take the lease only if nobody else took it since the row was read.
            let taken = chat_messages::Entity::update_many()
                .col_expr(Column::ExchangeState, Expr::value(RUNNING))
                .col_expr(Column::LeaseUntil, Expr::value(lease_until))
                .filter(Column::Id.eq(row.id))
                .filter(Column::UserId.eq(user.as_uuid()))
                .filter(
                    Condition::any().add(Column::ExchangeState.eq(FAILED)).add(
                        Condition::all().add(Column::ExchangeState.eq(RUNNING)).add(
                            Condition::any()
                                .add(Column::LeaseUntil.is_null())
                                .add(Column::LeaseUntil.lte(now)),
                        ),
                    ),
                )
                .exec(db)
                .await
                .map_err(db_error)?;
            if taken.rows_affected == 0 {
                return Ok(None);
            }
            let messages = replies(db, user, row.id).await?;
            Ok(Some(ExchangeStart::Resumed {
                user_message: message_of(row)?,
                messages,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(text: &str, highlighted: bool) -> SnippetSegment {
        SnippetSegment {
            text: text.to_owned(),
            highlighted,
        }
    }

    #[test]
    fn snippets_split_at_markers_and_survive_stray_ones() {
        assert_eq!(
            snippet_segments("…the \u{E000}borrow\u{E001} \u{E000}checker\u{E001} says…"),
            vec![
                segment("…the ", false),
                segment("borrow", true),
                segment(" ", false),
                segment("checker", true),
                segment(" says…", false),
            ]
        );
        assert_eq!(
            snippet_segments("\u{E001}\u{E001}a\u{E000}\u{E000}b"),
            vec![segment("a", false), segment("b", true)]
        );
        assert!(snippet_segments("").is_empty());
    }

    #[test]
    fn headline_cuts_are_marked() {
        let mut segments = vec![segment("middle ", false), segment("word", true)];
        mark_cuts(&mut segments, "start middle word end");
        assert_eq!(
            segments,
            vec![
                segment("…middle ", false),
                segment("word", true),
                segment("…", false)
            ]
        );
        let mut whole = vec![segment("all", true)];
        mark_cuts(&mut whole, "all");
        assert_eq!(whole, vec![segment("all", true)]);
        // Punctuation left out at the ends is no cut.
        let mut quoted = vec![segment("Say ", false), segment("hi", true)];
        mark_cuts(&mut quoted, "\"Say hi!\"");
        assert_eq!(quoted, vec![segment("Say ", false), segment("hi", true)]);
    }

    #[test]
    fn fts5_queries_quote_every_term() {
        let query: SearchQuery = "foo\" OR bar*".parse().unwrap();
        let terms = search_terms(&query);
        assert_eq!(
            terms,
            vec![("foo".to_owned(), false), ("or bar".to_owned(), true)]
        );
        assert_eq!(fts5_match(&terms), "\"foo\" \"or bar\"");
        let odd = vec![("a\"b".to_owned(), false)];
        assert_eq!(fts5_match(&odd), "\"a\"\"b\"");
    }

    #[test]
    fn timestamps_keep_microseconds() {
        let at = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        assert_eq!(micros(at).nanosecond(), 123_456_000);
    }
}
