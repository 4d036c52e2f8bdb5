//! Chat persistence on a real database (SQLite file, or PostgreSQL when
//! `ASSISTD_TEST_DATABASE_URL` is set): sessions, the sequence allocator under concurrency,
//! idempotent sends, history pages, full-text search and its index, memories, usage and
//! budgets, and that another user's ids behave like unknown ones everywhere. One file per
//! group; this one holds the fixtures they share.

#[path = "../common/mod.rs"]
mod common;
mod events;
mod exchanges;
mod isolation;
mod memories;
mod messages;
mod migration;
mod search;
mod sessions;
mod usage;

use common::fresh_store;
use std::time::{Duration, Instant};

use assistd_domain::chat::{
    ArchivedFilter, ChatMessage, ChatSession, ClientMessageId, ExchangeStart, ExchangeState,
    FinishReason, MemoryId, MessageContent, MessageError, MessageId, MessageRole,
    ModelCallMetadata, NewMessage, NewSession, SearchQuery, SessionFilter, SessionId, SessionPatch,
    UsageRecord,
};
use assistd_domain::{Error, UserId};
use assistd_store::{ChatRepository, NewUser, Store, UsageDelta};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::json;

fn is_sqlite(store: &Store) -> bool {
    store.connection().get_database_backend() == DatabaseBackend::Sqlite
}

/// A fixed instant plus `secs` seconds (with a sub-millisecond part, to check precision).
/// A client message id for a test send.
fn cid(id: &str) -> ClientMessageId {
    ClientMessageId::parse(id.to_owned()).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

async fn new_user(store: &Store) -> UserId {
    store.users().create(NewUser::default()).await.unwrap().id
}

async fn new_session(chat: &ChatRepository, user: UserId, title: &str, now: i64) -> ChatSession {
    chat.create_session(
        user,
        &NewSession {
            title: title.into(),
            ..NewSession::default()
        },
        at(now),
    )
    .await
    .unwrap()
}

fn text(role: MessageRole, text: &str) -> NewMessage {
    NewMessage {
        role,
        content: MessageContent::Text(text.into()),
        exchange_id: None,
        parts: None,
        metadata: None,
    }
}

fn function_call(text: &str) -> NewMessage {
    NewMessage {
        role: MessageRole::FunctionCall,
        content: MessageContent::FunctionCall {
            call_id: "call-1".into(),
            name: "search_history".into(),
            args: json!({ "query": text }),
        },
        exchange_id: None,
        parts: Some(json!([{ "functionCall": { "name": "search_history" } }])),
        metadata: Some(ModelCallMetadata {
            model: "gemini-2.5-flash".into(),
            prompt_tokens: 10,
            output_tokens: 5,
            total_tokens: 15,
            ..ModelCallMetadata::default()
        }),
    }
}

fn function_result(text: &str) -> NewMessage {
    NewMessage {
        role: MessageRole::FunctionResult,
        content: MessageContent::FunctionResult {
            call_id: "call-1".into(),
            name: "search_history".into(),
            response: json!({ "found": text }),
            failed: true,
        },
        exchange_id: None,
        parts: None,
        metadata: None,
    }
}

/// A model reply with every metadata field set.
fn reply(exchange: Option<MessageId>, text: &str) -> NewMessage {
    NewMessage {
        role: MessageRole::Model,
        content: MessageContent::Text(text.into()),
        exchange_id: exchange,
        parts: Some(json!([{ "text": text, "thoughtSignature": "c2ln" }])),
        metadata: Some(ModelCallMetadata {
            model: "gemini-2.5-pro".into(),
            prompt_tokens: 100,
            output_tokens: 40,
            total_tokens: 140,
            finish_reason: Some(FinishReason::Incomplete),
            latency_ms: Some(1234),
            first_token_ms: Some(321),
            error: Some(MessageError {
                reason: "PROVIDER_STREAM_INTERRUPTED".into(),
                message: "the stream broke off".into(),
            }),
        }),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: assistd_domain::Result<T>, expected: &str) {
    match result {
        Err(Error::NotFound { resource, .. }) => assert_eq!(resource, expected),
        other => panic!("expected NOT_FOUND {expected}, got {other:?}"),
    }
}

fn sequences(messages: &[ChatMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.sequence).collect()
}

fn query(q: &str) -> SearchQuery {
    q.parse().unwrap()
}
