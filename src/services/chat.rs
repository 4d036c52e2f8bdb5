//! ChatService: proto <-> domain conversion and the RPC handlers.

use std::pin::Pin;

use assistd_core::chat::{ChatService, ExchangeEvent, ExchangeSummary, ExchangeUsage, SendRequest};
use assistd_domain::chat::{
    self, ArchivedFilter, ChatMessage, ChatSession, FinishReason, Memory, MemoryId, MessageContent,
    MessageId, MessageRole, NewSession, SearchHit, SearchQuery, SessionFilter, SessionId,
    SessionPatch,
};
use assistd_domain::{FieldViolation, InvalidValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{Stream, StreamExt as _};
use prost_types::value::Kind;
use serde_json::Value;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{decode_token, encode_token, from_micros, micros, next_page, page_size, timestamp};
use crate::auth::caller;
use crate::proto::chat::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::{invalid_field, status};

/// Paths `UpdateSessionRequest.update_mask` may name.
const UPDATABLE_PATHS: [&str; 5] = ["title", "pinned", "archived", "system_instruction", "model"];

/// The gRPC face of [`ChatService`].
#[derive(Clone, Debug)]
pub struct ChatApi {
    service: ChatService,
    addresses: ClientAddressPolicy,
}

impl ChatApi {
    /// Serves `service`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(service: ChatService, addresses: ClientAddressPolicy) -> Self {
        Self { service, addresses }
    }
}

/// A required id field.
fn parse_id<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, Status> {
    if value.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    value
        .parse()
        .map_err(|_| invalid_field(field, format!("{value:?} is not a valid id (a UUID)")))
}

fn check(violations: &mut Vec<FieldViolation>, field: &str, result: Result<(), InvalidValue>) {
    if let Err(err) = result {
        violations.push(err.at(field));
    }
}

fn finish_to_proto(reason: FinishReason) -> pb::FinishReason {
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

fn role_to_proto(role: MessageRole) -> pb::MessageRole {
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

fn session_to_proto(session: ChatSession) -> pb::Session {
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

fn message_to_proto(message: ChatMessage) -> pb::Message {
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
        client_message_id: message.client_message_id.unwrap_or_default(),
        create_time: Some(timestamp(message.created_at)),
        metadata,
    }
}

fn usage_to_proto(usage: ExchangeUsage) -> pb::Usage {
    let clamp = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    pb::Usage {
        model_call_count: clamp(usage.model_calls),
        prompt_token_count: clamp(usage.prompt_tokens),
        output_token_count: clamp(usage.output_tokens),
        total_token_count: clamp(usage.total_tokens),
    }
}

fn memory_to_proto(memory: Memory) -> pb::Memory {
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

fn hit_to_proto(hit: SearchHit) -> pb::SearchHit {
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

fn completed_to_proto(summary: ExchangeSummary) -> pb::ExchangeCompleted {
    pb::ExchangeCompleted {
        reply_message_id: summary.reply_id.to_string(),
        finish_reason: finish_to_proto(summary.finish_reason).into(),
        usage: Some(usage_to_proto(summary.usage)),
        replayed: summary.replayed,
    }
}

/// Checks the fields of a send.
fn send_request(
    session_id: &str,
    client_message_id: String,
    text: String,
) -> Result<(SessionId, String, String), Status> {
    let mut violations = Vec::new();
    let session = if session_id.is_empty() {
        violations.push(FieldViolation::new("session_id", "is required"));
        None
    } else {
        match session_id.parse::<SessionId>() {
            Ok(id) => Some(id),
            Err(_) => {
                violations.push(FieldViolation::new(
                    "session_id",
                    format!("{session_id:?} is not a valid id (a UUID)"),
                ));
                None
            }
        }
    };
    check(
        &mut violations,
        "client_message_id",
        chat::validate_client_message_id(&client_message_id),
    );
    check(&mut violations, "text", chat::validate_message_text(&text));
    match session {
        Some(session) if violations.is_empty() => Ok((session, client_message_id, text)),
        _ => Err(status(violations.into())),
    }
}

/// The stream of a StreamMessage call.
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamMessageResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let user = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        check(
            &mut violations,
            "title",
            chat::validate_title(&request.title),
        );
        check(
            &mut violations,
            "system_instruction",
            chat::validate_system_instruction(&request.system_instruction),
        );
        check(
            &mut violations,
            "model",
            chat::validate_model(&request.model),
        );
        if !violations.is_empty() {
            return Err(status(violations.into()));
        }
        let session = self
            .service
            .create_session(
                user,
                &NewSession {
                    title: request.title,
                    system_instruction: request.system_instruction,
                    model: request.model,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(session_to_proto(session)),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let user = caller(&request)?;
        let id: SessionId = parse_id("session_id", &request.get_ref().session_id)?;
        let session = self.service.session(user, id).await.map_err(status)?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(session_to_proto(session)),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let user = caller(&request)?;
        let request = request.into_inner();
        let limit = page_size(request.page_size, 20, 100)?;
        let archived = match pb::ArchivedFilter::try_from(request.archived) {
            Ok(pb::ArchivedFilter::Unspecified | pb::ArchivedFilter::Exclude) => {
                ArchivedFilter::Exclude
            }
            Ok(pb::ArchivedFilter::Only) => ArchivedFilter::Only,
            Ok(pb::ArchivedFilter::Include) => ArchivedFilter::Include,
            Err(_) => {
                return Err(invalid_field(
                    "archived",
                    "not a known ArchivedFilter value",
                ));
            }
        };
        let filter = SessionFilter {
            archived,
            pinned: request.pinned,
        };
        let filter_key = format!("{archived:?}/{:?}", request.pinned);
        let after = if request.page_token.is_empty() {
            None
        } else {
            let fields = decode_token(&request.page_token, "sessions", "ListSessions", 3)?;
            let cursor = from_micros(&fields[0]).zip(fields[1].parse::<SessionId>().ok());
            match cursor {
                Some(cursor) if fields[2] == filter_key => Some(cursor),
                _ => {
                    return Err(invalid_field(
                        "page_token",
                        "not a token from a previous ListSessions response with the same filters",
                    ));
                }
            }
        };
        let mut sessions = self
            .service
            .sessions(user, filter, after, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = next_page(&mut sessions, limit, |last| {
            encode_token(
                "sessions",
                &[
                    micros(last.last_activity_at),
                    last.id.to_string(),
                    filter_key.clone(),
                ],
            )
        });
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(session_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let user = caller(&request)?;
        let request = request.into_inner();
        let session = request
            .session
            .ok_or_else(|| invalid_field("session", "is required"))?;
        let id: SessionId = parse_id("session.id", &session.id)?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(invalid_field(
                "update_mask",
                format!(
                    "name the fields to change, any of {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            ));
        }
        let mut patch = SessionPatch::default();
        let mut violations = Vec::new();
        for path in &paths {
            match path.as_str() {
                "title" => {
                    check(
                        &mut violations,
                        "session.title",
                        chat::validate_title(&session.title),
                    );
                    patch.title = Some(session.title.clone());
                }
                "pinned" => patch.pinned = Some(session.pinned),
                "archived" => patch.archived = Some(session.archived),
                "system_instruction" => {
                    check(
                        &mut violations,
                        "session.system_instruction",
                        chat::validate_system_instruction(&session.system_instruction),
                    );
                    patch.system_instruction = Some(session.system_instruction.clone());
                }
                "model" => {
                    check(
                        &mut violations,
                        "session.model",
                        chat::validate_model(&session.model),
                    );
                    patch.model = Some(session.model.clone());
                }
                other => violations.push(FieldViolation::new(
                    "update_mask",
                    format!(
                        "{other:?} cannot be updated; use any of {}",
                        UPDATABLE_PATHS.join(", ")
                    ),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(status(violations.into()));
        }
        let session = self
            .service
            .update_session(user, id, &patch)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateSessionResponse {
            session: Some(session_to_proto(session)),
        }))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let user = caller(&request)?;
        let id: SessionId = parse_id("session_id", &request.get_ref().session_id)?;
        self.service
            .delete_session(user, id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let user = caller(&request)?;
        let request = request.into_inner();
        let session: SessionId = parse_id("session_id", &request.session_id)?;
        let limit = page_size(request.page_size, 50, 200)?;
        let forward = match pb::ListMessagesDirection::try_from(request.direction) {
            Ok(pb::ListMessagesDirection::Forward) => true,
            Ok(pb::ListMessagesDirection::Backward | pb::ListMessagesDirection::Unspecified) => {
                false
            }
            Err(_) => {
                return Err(invalid_field(
                    "direction",
                    "not a known ListMessagesDirection value",
                ));
            }
        };
        if request.start_sequence < 0 {
            return Err(invalid_field("start_sequence", "must not be negative"));
        }
        let direction = if forward { "forward" } else { "backward" };
        let start = if request.page_token.is_empty() {
            (request.start_sequence > 0).then_some(request.start_sequence)
        } else {
            let fields = decode_token(&request.page_token, "messages", "ListMessages", 3)?;
            let sequence = fields[2].parse::<i64>().ok().filter(|n| *n >= 0);
            match sequence {
                Some(sequence) if fields[0] == session.to_string() && fields[1] == direction => {
                    Some(sequence)
                }
                _ => {
                    return Err(invalid_field(
                        "page_token",
                        "not a token from a previous ListMessages response for this session \
                         and direction",
                    ));
                }
            }
        };
        let mut messages = self
            .service
            .messages(user, session, forward, start, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = if messages.len() as u64 > limit {
            let next = messages.pop().map(|next| next.sequence).unwrap_or_default();
            encode_token(
                "messages",
                &[session.to_string(), direction.to_owned(), next.to_string()],
            )
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListMessagesResponse {
            messages: messages.into_iter().map(message_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let request = request.into_inner();
        let (session, client_message_id, text) =
            send_request(&request.session_id, request.client_message_id, request.text)?;
        let mut events = self.service.send(
            user,
            SendRequest {
                session,
                client_message_id,
                text,
                streaming: false,
                context,
            },
        );
        let mut response = pb::SendMessageResponse::default();
        while let Some(event) = events.recv().await {
            match event.map_err(status)? {
                ExchangeEvent::UserMessage(message) => {
                    response.user_message = Some(message_to_proto(*message));
                }
                ExchangeEvent::TextDelta(_) => {}
                ExchangeEvent::ModelMessage(message)
                | ExchangeEvent::FunctionCall(message)
                | ExchangeEvent::FunctionResult(message) => {
                    response.steps.push(message_to_proto(*message));
                }
                ExchangeEvent::Completed(summary) => {
                    // The reply is the last MODEL message; everything before it is a step.
                    let reply_id = summary.reply_id.to_string();
                    if let Some(index) = response.steps.iter().rposition(|m| m.id == reply_id) {
                        response.reply = Some(response.steps.remove(index));
                    }
                    response.usage = Some(usage_to_proto(summary.usage));
                    response.replayed = summary.replayed;
                    return Ok(Response::new(response));
                }
            }
        }
        Err(status(assistd_domain::Error::internal(
            "an exchange ended without completing",
        )))
    }

    type StreamMessageStream = EventStream;

    async fn stream_message(
        &self,
        request: Request<pb::StreamMessageRequest>,
    ) -> Result<Response<Self::StreamMessageStream>, Status> {
        use pb::stream_message_response::Event;
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let request = request.into_inner();
        let (session, client_message_id, text) =
            send_request(&request.session_id, request.client_message_id, request.text)?;
        let mut events = self.service.send(
            user,
            SendRequest {
                session,
                client_message_id,
                text,
                streaming: true,
                context,
            },
        );
        // Checks that fail before anything is stored (unknown session, no key, budget spent,
        // a conflicting id) answer the call itself rather than a stream that fails at once.
        let first = match events.recv().await {
            Some(Err(err)) => return Err(status(err)),
            Some(Ok(event)) => event,
            None => {
                return Err(status(assistd_domain::Error::internal(
                    "an exchange ended without an event",
                )));
            }
        };
        let convert = |event: ExchangeEvent| {
            let event = match event {
                ExchangeEvent::UserMessage(m) => Event::UserMessage(message_to_proto(*m)),
                ExchangeEvent::TextDelta(text) => Event::TextDelta(pb::TextDelta { text }),
                ExchangeEvent::ModelMessage(m) => Event::ModelMessage(message_to_proto(*m)),
                ExchangeEvent::FunctionCall(m) => Event::FunctionCall(message_to_proto(*m)),
                ExchangeEvent::FunctionResult(m) => Event::FunctionResult(message_to_proto(*m)),
                ExchangeEvent::Completed(summary) => Event::Completed(completed_to_proto(summary)),
            };
            pb::StreamMessageResponse { event: Some(event) }
        };
        let rest = ReceiverStream::new(events).map(move |event| event.map(convert).map_err(status));
        let stream = futures::stream::once(async move { Ok(convert(first)) }).chain(rest);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Result<Response<pb::SearchMessagesResponse>, Status> {
        let user = caller(&request)?;
        let request = request.into_inner();
        let query: SearchQuery = request
            .query
            .parse()
            .map_err(|err: InvalidValue| status(err.at("query").into()))?;
        let session = if request.session_id.is_empty() {
            None
        } else {
            Some(parse_id::<SessionId>("session_id", &request.session_id)?)
        };
        let limit = page_size(request.page_size, 20, 100)?;
        let scope = format!("{}|{}", request.session_id, request.query);
        let scope = URL_SAFE_NO_PAD.encode(scope);
        let after = if request.page_token.is_empty() {
            None
        } else {
            let fields = decode_token(&request.page_token, "search", "SearchMessages", 3)?;
            match from_micros(&fields[0]).zip(fields[1].parse::<MessageId>().ok()) {
                Some(cursor) if fields[2] == scope => Some(cursor),
                _ => {
                    return Err(invalid_field(
                        "page_token",
                        "not a token from a previous SearchMessages response with the same \
                         query and session",
                    ));
                }
            }
        };
        let mut hits = self
            .service
            .search(user, &query, session, after, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = next_page(&mut hits, limit, |last| {
            encode_token(
                "search",
                &[
                    micros(last.message.created_at),
                    last.message.id.to_string(),
                    scope.clone(),
                ],
            )
        });
        Ok(Response::new(pb::SearchMessagesResponse {
            hits: hits.into_iter().map(hit_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_memories(
        &self,
        request: Request<pb::ListMemoriesRequest>,
    ) -> Result<Response<pb::ListMemoriesResponse>, Status> {
        let user = caller(&request)?;
        let request = request.into_inner();
        let limit = page_size(request.page_size, 50, 200)?;
        let after = if request.page_token.is_empty() {
            None
        } else {
            let fields = decode_token(&request.page_token, "memories", "ListMemories", 2)?;
            Some(
                from_micros(&fields[0])
                    .zip(fields[1].parse::<MemoryId>().ok())
                    .ok_or_else(|| {
                        invalid_field(
                            "page_token",
                            "not a token from a previous ListMemories response",
                        )
                    })?,
            )
        };
        let mut memories = self
            .service
            .memories(user, after, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = next_page(&mut memories, limit, |last| {
            encode_token("memories", &[micros(last.created_at), last.id.to_string()])
        });
        Ok(Response::new(pb::ListMemoriesResponse {
            memories: memories.into_iter().map(memory_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn delete_memory(
        &self,
        request: Request<pb::DeleteMemoryRequest>,
    ) -> Result<Response<pb::DeleteMemoryResponse>, Status> {
        let user = caller(&request)?;
        let id: MemoryId = parse_id("memory_id", &request.get_ref().memory_id)?;
        self.service.delete_memory(user, id).await.map_err(status)?;
        Ok(Response::new(pb::DeleteMemoryResponse {}))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let request = request.into_inner();
        let size = page_size(request.page_size, 50, 1000)?;
        let page = self
            .service
            .models(
                user,
                &context,
                u32::try_from(size).ok(),
                (!request.page_token.is_empty()).then_some(request.page_token.as_str()),
            )
            .await
            .map_err(status)?;
        let default_model = self.service.default_model(user).await.map_err(status)?;
        let models = page
            .models
            .into_iter()
            .filter(|model| model.supports("generateContent"))
            .map(|model| {
                let clamp =
                    |n: Option<u64>| i32::try_from(n.unwrap_or_default()).unwrap_or(i32::MAX);
                let name = model.id().to_owned();
                pb::Model {
                    selected_by_default: name == default_model,
                    name,
                    input_token_limit: clamp(model.input_token_limit),
                    output_token_limit: clamp(model.output_token_limit),
                    display_name: model.display_name.unwrap_or_default(),
                    description: model.description.unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse {
            models,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}
