//! How chat rows map to the domain's types and back: sessions, memories, usage and budgets
//! read as they are; a message's body is spread over `text` (plain turns) or a JSON
//! `payload` (function calls and results) according to its role, and its model-call
//! metadata over nullable columns.

use assistd_domain::chat::{
    ChatMessage, ChatSession, ClientMessageId, FinishReason, Memory, MemoryId, MessageContent,
    MessageError, MessageId, MessageRole, ModelCallMetadata, NewMessage, SessionId,
    TokenBudgetSetting, UsageRecord,
};
use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::entity::{chat_memories, chat_messages, chat_sessions, token_budgets, usage_daily};

/// A session as the domain sees it (the allocator's `last_sequence` stays in the store).
pub(super) fn session_of(row: chat_sessions::Model) -> ChatSession {
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

/// A memory as the domain sees it.
pub(super) fn memory_of(row: chat_memories::Model) -> Memory {
    Memory {
        id: MemoryId::from_uuid(row.id),
        content: row.content,
        created_at: row.created_at,
        source_session_id: row.source_session_id.map(SessionId::from_uuid),
    }
}

/// One day's usage of one model.
pub(super) fn usage_of(row: usage_daily::Model) -> UsageRecord {
    UsageRecord {
        day: row.day,
        model: row.model,
        request_count: row.request_count,
        prompt_tokens: row.prompt_tokens,
        output_tokens: row.output_tokens,
        total_tokens: row.total_tokens,
    }
}

/// The budget setting a stored row records.
pub(super) fn budget_of(row: token_budgets::Model) -> TokenBudgetSetting {
    TokenBudgetSetting {
        monthly_limit: row.monthly_limit,
        updated_at: Some(row.updated_at),
    }
}

/// The row of a new message; its sequence is set once allocated.
pub(super) fn new_row(
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

/// A message as the domain sees it; INTERNAL when the row holds what no write puts there.
pub(super) fn message_of(row: chat_messages::Model) -> Result<ChatMessage> {
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
        client_message_id: row.client_message_id.map(ClientMessageId::from_stored),
        exchange_id: row.exchange_id.map(MessageId::from_uuid),
        parts,
        metadata,
        created_at: row.created_at,
    })
}

/// [`message_of`] for each row, in order.
pub(super) fn messages_of(rows: Vec<chat_messages::Model>) -> Result<Vec<ChatMessage>> {
    rows.into_iter().map(message_of).collect()
}

/// The body of a message from its `text` or `payload` column, as its role says.
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

/// A string field of a stored payload.
fn payload_str(payload: &serde_json::Value, field: &str, id: uuid::Uuid) -> Result<String> {
    payload
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::internal(format!("message {id}: payload lacks {field:?}")))
}
