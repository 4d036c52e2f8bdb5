//! Domain values of chat as protobuf messages: sessions, messages with their metadata,
//! memories, search hits, usage. The reverse direction (requests into domain input) is in
//! `requests.rs`.

use assistd_core::chat::{ExchangeSummary, ExchangeUsage};
use assistd_domain::chat::{
    ChatMessage, ChatSession, FinishReason, Memory, MessageContent, MessageRole, SearchHit,
};
use prost_types::value::Kind;
use serde_json::Value;

use crate::proto::chat::v1 as pb;
use crate::services::timestamp;

pub(super) fn finish_to_proto(reason: FinishReason) -> pb::FinishReason {
    match reason {
        FinishReason::Stop => pb::FinishReason::Stop,
        FinishReason::MaxTokens => pb::FinishReason::MaxTokens,
        FinishReason::Safety => pb::FinishReason::Safety,
        FinishReason::Recitation => pb::FinishReason::Recitation,
        FinishReason::MalformedFunctionCall => pb::FinishReason::MalformedFunctionCall,
        FinishReason::ToolLimit => pb::FinishReason::ToolLimit,
        FinishReason::Cancelled => pb::FinishReason::Cancelled,
        FinishReason::Incomplete => pb::FinishReason::Incomplete,
        FinishReason::Error => pb::FinishReason::Error,
        FinishReason::Other => pb::FinishReason::Other,
    }
}

pub(super) fn role_to_proto(role: MessageRole) -> pb::MessageRole {
    match role {
        MessageRole::User => pb::MessageRole::User,
        MessageRole::Model => pb::MessageRole::Model,
        MessageRole::FunctionCall => pb::MessageRole::FunctionCall,
        MessageRole::FunctionResult => pb::MessageRole::FunctionResult,
        MessageRole::System => pb::MessageRole::System,
    }
}

/// A JSON value as a protobuf value.
fn json_to_value(value: Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(json_to_struct(Value::Object(map))),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf struct (anything else is wrapped as `{"value": …}`).
fn json_to_struct(value: Value) -> prost_types::Struct {
    match value {
        Value::Object(map) => prost_types::Struct {
            fields: map
                .into_iter()
                .map(|(key, value)| (key, json_to_value(value)))
                .collect(),
        },
        other => prost_types::Struct {
            fields: [("value".to_owned(), json_to_value(other))].into(),
        },
    }
}

pub(super) fn session_to_proto(session: ChatSession) -> pb::Session {
    pb::Session {
        id: session.id.to_string(),
        title: session.title,
        title_generated: session.title_generated,
        system_instruction: session.system_instruction,
        model: session.model,
        pinned: session.pinned,
        archived: session.archived,
        message_count: session.message_count,
        create_time: Some(timestamp(session.created_at)),
        update_time: Some(timestamp(session.updated_at)),
        last_activity_time: Some(timestamp(session.last_activity_at)),
    }
}

fn duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

pub(super) fn message_to_proto(message: ChatMessage) -> pb::Message {
    let content = match message.content {
        MessageContent::Text(text) => pb::message::Content::Text(text),
        MessageContent::FunctionCall {
            call_id,
            name,
            args,
        } => pb::message::Content::FunctionCall(pb::FunctionCall {
            call_id,
            name,
            args: Some(json_to_struct(args)),
        }),
        MessageContent::FunctionResult {
            call_id,
            name,
            response,
            failed,
        } => pb::message::Content::FunctionResult(pb::FunctionResult {
            call_id,
            name,
            response: Some(json_to_struct(response)),
            failed,
        }),
    };
    let metadata = (message.role == MessageRole::Model)
        .then_some(message.metadata)
        .flatten()
        .map(|metadata| pb::MessageMetadata {
            model: metadata.model,
            prompt_token_count: i32::try_from(metadata.prompt_tokens).unwrap_or(i32::MAX),
            output_token_count: i32::try_from(metadata.output_tokens).unwrap_or(i32::MAX),
            total_token_count: i32::try_from(metadata.total_tokens).unwrap_or(i32::MAX),
            finish_reason: metadata
                .finish_reason
                .map_or(pb::FinishReason::Unspecified, finish_to_proto)
                .into(),
            latency: metadata.latency_ms.map(duration),
            first_token_latency: metadata.first_token_ms.map(duration),
            error: metadata.error.map(|error| pb::MessageError {
                reason: error.reason,
                message: error.message,
            }),
        });
    pb::Message {
        id: message.id.to_string(),
        session_id: message.session_id.to_string(),
        sequence: message.sequence,
        role: role_to_proto(message.role).into(),
        content: Some(content),
        client_message_id: message
            .client_message_id
            .map(String::from)
            .unwrap_or_default(),
        create_time: Some(timestamp(message.created_at)),
        metadata,
    }
}

pub(super) fn usage_to_proto(usage: ExchangeUsage) -> pb::Usage {
    let clamp = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    pb::Usage {
        model_call_count: clamp(usage.model_calls),
        prompt_token_count: clamp(usage.prompt_tokens),
        output_token_count: clamp(usage.output_tokens),
        total_token_count: clamp(usage.total_tokens),
    }
}

pub(super) fn memory_to_proto(memory: Memory) -> pb::Memory {
    pb::Memory {
        id: memory.id.to_string(),
        content: memory.content,
        create_time: Some(timestamp(memory.created_at)),
        source_session_id: memory
            .source_session_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

pub(super) fn hit_to_proto(hit: SearchHit) -> pb::SearchHit {
    let snippet: String = hit.snippet.iter().map(|s| s.text.as_str()).collect();
    pb::SearchHit {
        message_id: hit.message.id.to_string(),
        session_id: hit.message.session_id.to_string(),
        session_title: hit.session_title,
        sequence: hit.message.sequence,
        role: role_to_proto(hit.message.role).into(),
        create_time: Some(timestamp(hit.message.created_at)),
        snippet,
        snippet_segments: hit
            .snippet
            .into_iter()
            .map(|segment| pb::SnippetSegment {
                text: segment.text,
                highlighted: segment.highlighted,
            })
            .collect(),
    }
}

pub(super) fn completed_to_proto(summary: ExchangeSummary) -> pb::ExchangeCompleted {
    pb::ExchangeCompleted {
        reply_message_id: summary.reply_id.to_string(),
        finish_reason: finish_to_proto(summary.finish_reason).into(),
        usage: Some(usage_to_proto(summary.usage)),
        replayed: summary.replayed,
    }
}

/// A Gemini model as the chat API lists it; `default_model` is the caller's default.
pub(super) fn model_to_proto(model: assistd_gemini::Model, default_model: &str) -> pb::Model {
    let clamp = |n: Option<u64>| i32::try_from(n.unwrap_or_default()).unwrap_or(i32::MAX);
    let name = model.id().to_owned();
    pb::Model {
        selected_by_default: name == default_model,
        name,
        input_token_limit: clamp(model.input_token_limit),
        output_token_limit: clamp(model.output_token_limit),
        display_name: model.display_name.unwrap_or_default(),
        description: model.description.unwrap_or_default(),
    }
}
