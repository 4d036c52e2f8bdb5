//! The model/tool loop of a started exchange: the context is built once, then the model is
//! called until it answers without calling a tool (or the tool depth runs out). Each round of
//! tool calls is committed, run and committed again before the next call; how the last call
//! ended (complete, cancelled, broken off, failed) decides the reply that ends the exchange.

use std::time::{Duration, Instant};

use assistd_domain::chat::{
    ChatMessage, ChatSession, ExchangeState, FinishReason, MessageContent, MessageId, MessageRole,
    ModelCallMetadata, NewMessage,
};
use assistd_domain::preferences::Preferences;
use assistd_domain::{Clock, Error, ErrorReason, Result};
use assistd_gemini::{ApiKey, Content, EncodedRequest, GenerateContentRequest, Part, Tool};
use assistd_store::UsageDelta;
use serde_json::{Value, json};

use super::context::{self, GENERATED_CALL_ID_PREFIX};
use super::errors::{message_error, shutting_down};
use super::exchange::Exchange;
use super::model_call::Outcome;
use super::tools::{ExchangeFacts, ToolContext, ToolFailure, ToolRegistry};
use super::turn::Turn;
use super::{ExchangeEvent, ExchangeSummary, ExchangeUsage};
use crate::api_keys::RevealedKey;

/// Most stored messages read to build the context window; the budget usually cuts earlier.
const HISTORY_READ: u64 = 500;

/// What every model call of one exchange is made with.
struct Conversation<'a> {
    session: &'a ChatSession,
    model: &'a str,
    key: &'a RevealedKey,
    api_key: &'a ApiKey,
    user_message: &'a ChatMessage,
    /// The system instruction: persona, preferences, remembered facts, the time, and the
    /// tool providers' notes.
    system: String,
    /// The tools of this exchange: the fixed ones and those provided for it. Their
    /// declarations are built for each request rather than kept: as JSON schema maps they
    /// would be most of what a waiting exchange holds.
    tools: ToolRegistry,
    tool_context: ToolContext,
}

impl Conversation<'_> {
    /// The exchange's id: its USER message.
    fn exchange_id(&self) -> MessageId {
        self.user_message.id
    }

    /// The generate request for the turns so far, encoded: the exchange holds only its JSON
    /// while it waits for the answer (and sends it again for a retry).
    fn request(&self, contents: &[Content]) -> Result<EncodedRequest, assistd_gemini::Error> {
        let declarations = self.tools.declarations();
        EncodedRequest::new(&GenerateContentRequest {
            contents: contents.to_vec(),
            system_instruction: Some(Content {
                role: None,
                parts: vec![Part::text(self.system.clone())],
            }),
            tools: if declarations.is_empty() {
                Vec::new()
            } else {
                vec![Tool {
                    function_declarations: declarations,
                }]
            },
            ..GenerateContentRequest::default()
        })
    }
}

/// One model call as it is recorded on the messages it produced and in the usage table.
struct Call<'a> {
    model: &'a str,
    latency_ms: i64,
    clock: &'a dyn Clock,
}

impl Call<'_> {
    /// The metadata of a message the call produced, ending with `finish`.
    fn metadata(&self, turn: &Turn, finish: Option<FinishReason>) -> ModelCallMetadata {
        ModelCallMetadata {
            model: turn
                .model_version
                .clone()
                .unwrap_or_else(|| self.model.to_owned()),
            prompt_tokens: turn.prompt_tokens,
            output_tokens: turn.output_tokens,
            total_tokens: turn.total_tokens,
            finish_reason: finish,
            latency_ms: Some(self.latency_ms),
            first_token_ms: turn.first_text.map(millis),
            error: None,
        }
    }

    /// The call's usage, counted on the day it is committed.
    fn usage(&self, turn: &Turn) -> UsageDelta {
        UsageDelta {
            day: self.clock.now().date_naive(),
            model: self.model.to_owned(),
            requests: 1,
            prompt_tokens: turn.prompt_tokens,
            output_tokens: turn.output_tokens,
            total_tokens: turn.total_tokens,
        }
    }
}

/// A function call the model asked for, with the id its result will answer.
struct PendingCall {
    id: String,
    name: String,
    args: Value,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The messages of a turn that calls tools: its text (if any) as a MODEL message, then one
/// FUNCTION_CALL message per call. The call's metadata goes on the first of them only, so
/// usage is counted once. Calls Gemini gave no id get one made from `depth` and position.
fn call_messages(
    exchange_id: MessageId,
    turn: &Turn,
    depth: u32,
    metadata: ModelCallMetadata,
) -> (Vec<NewMessage>, Vec<PendingCall>) {
    let mut steps = Vec::new();
    let mut metadata = Some(metadata);
    // The turn's signed thoughts go with its first message, so they go back in order.
    let mut thoughts = turn.thought_parts();
    if let Some(part) = turn.text_part().filter(|_| !turn.text.is_empty()) {
        thoughts.push(part);
        steps.push(NewMessage {
            role: MessageRole::Model,
            content: MessageContent::Text(turn.text.clone()),
            exchange_id: Some(exchange_id),
            parts: Some(Value::Array(std::mem::take(&mut thoughts))),
            metadata: metadata.take(),
        });
    }
    let mut calls = Vec::new();
    for (index, part) in turn.calls.iter().enumerate() {
        let Some(call) = &part.function_call else {
            continue;
        };
        let id = call
            .id
            .clone()
            .unwrap_or_else(|| format!("{GENERATED_CALL_ID_PREFIX}{depth}-{index}"));
        calls.push(PendingCall {
            id: id.clone(),
            name: call.name.clone(),
            args: call.args.clone(),
        });
        steps.push(NewMessage {
            role: MessageRole::FunctionCall,
            content: MessageContent::FunctionCall {
                call_id: id,
                name: call.name.clone(),
                args: call.args.clone(),
            },
            exchange_id: Some(exchange_id),
            parts: serde_json::to_value(part).ok().map(|part| {
                let mut parts = std::mem::take(&mut thoughts);
                parts.push(part);
                Value::Array(parts)
            }),
            metadata: metadata.take(),
        });
    }
    (steps, calls)
}

impl Exchange<'_> {
    /// The model loop of a started (or resumed) exchange.
    pub(super) async fn converse(
        &mut self,
        session: &ChatSession,
        preferences: &Preferences,
        model: &str,
        key: &RevealedKey,
        api_key: &ApiKey,
        user_message: &ChatMessage,
    ) -> Result<()> {
        let (conversation, mut contents) =
            Box::pin(self.prepare(session, preferences, model, key, api_key, user_message)).await?;
        let max_depth = self.inner.config.max_tool_depth;
        let mut usage = ExchangeUsage::default();
        let mut depth = 0;
        loop {
            let started = Instant::now();
            let outcome = match conversation.request(&contents) {
                Ok(request) => self.call_model(api_key, model, &request, started).await,
                Err(err) => Outcome::Failed(err),
            };
            let call = Call {
                model,
                latency_ms: millis(started.elapsed()),
                clock: &*self.inner.clock,
            };
            match outcome {
                Outcome::Complete(turn) if !turn.calls.is_empty() && depth < max_depth => {
                    depth += 1;
                    let responses =
                        Box::pin(self.tool_round(&conversation, &call, &turn, depth, &mut usage))
                            .await?;
                    contents.push(Content {
                        role: Some("model".to_owned()),
                        parts: turn.model_parts(),
                    });
                    contents.push(Content {
                        role: Some("user".to_owned()),
                        parts: responses,
                    });
                }
                Outcome::Complete(turn) => {
                    return Box::pin(self.complete(&conversation, &call, &turn, usage)).await;
                }
                Outcome::Cancelled(turn) => {
                    return Box::pin(self.cancelled(&conversation, &call, &turn)).await;
                }
                Outcome::Stopped(turn) => {
                    return Box::pin(self.stopped(&conversation, &call, &turn)).await;
                }
                Outcome::Interrupted(turn, err) => {
                    return Box::pin(self.interrupted(&conversation, &call, &turn, &err)).await;
                }
                Outcome::Failed(err) => {
                    return Box::pin(self.failed(&conversation, &call, err)).await;
                }
            }
        }
    }

    /// Reads what the model is told besides the history (remembered facts, for the system
    /// instruction) and the history itself, cut to the context budget.
    async fn prepare<'c>(
        &self,
        session: &'c ChatSession,
        preferences: &Preferences,
        model: &'c str,
        key: &'c RevealedKey,
        api_key: &'c ApiKey,
        user_message: &'c ChatMessage,
    ) -> Result<(Conversation<'c>, Vec<Content>)> {
        let chat = self.inner.store.chat();
        let config = &self.inner.config;
        let now = self.inner.clock.now();
        let memories =
            Box::pin(chat.list_memories(self.user, None, config.max_memories_in_context)).await?;
        let history = Box::pin(chat.recent_messages(self.user, session.id, HISTORY_READ)).await?;
        let contents = context::contents(
            context::window(&history, user_message.id, config.context_token_budget),
            user_message.id,
        );
        let user_text = match &user_message.content {
            MessageContent::Text(text) => text.as_str(),
            _ => "",
        };
        let (tools, notes) = Box::pin(self.inner.tools.for_exchange(ExchangeFacts {
            user: self.user,
            user_text,
            context: &self.request.context,
        }))
        .await;
        let mut system = context::system_instruction(session, preferences, &memories, now);
        for note in notes {
            system.push_str("\n\n");
            system.push_str(&note);
        }
        let conversation = Conversation {
            session,
            model,
            key,
            api_key,
            user_message,
            system,
            tools,
            tool_context: ToolContext {
                user: self.user,
                session: session.id,
                timezone: preferences.timezone,
                now,
                store: self.inner.store.clone(),
                max_memories: config.max_memories_per_user,
            },
        };
        Ok((conversation, contents))
    }

    /// One round of tool calls: the calls committed (with the call's usage), each tool run,
    /// the results committed. Returns the function responses for the next request.
    async fn tool_round(
        &self,
        conversation: &Conversation<'_>,
        call: &Call<'_>,
        turn: &Turn,
        depth: u32,
        usage: &mut ExchangeUsage,
    ) -> Result<Vec<Part>> {
        let chat = self.inner.store.chat();
        let session = conversation.session.id;
        let exchange_id = conversation.exchange_id();
        let call_metadata = call.metadata(turn, Some(FinishReason::Stop));
        usage.add(&call_metadata);
        let (steps, calls) = call_messages(exchange_id, turn, depth, call_metadata);
        let committed = Box::pin(chat.append_messages(
            self.user,
            session,
            steps,
            Some(call.usage(turn)),
            self.inner.clock.now(),
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
        let mut responses = Vec::new();
        for PendingCall { id, name, args } in calls {
            // A tool runs at its own time (`current_time` says when it ran, not when the
            // exchange began: model calls and earlier tools may have taken a while).
            let context = ToolContext {
                now: self.inner.clock.now(),
                ..conversation.tool_context.clone()
            };
            let (response, stored, failed) =
                Box::pin(run_tool(&conversation.tools, &context, &name, &args)).await;
            responses.push(context::function_response_part(&id, &name, response));
            results.push(NewMessage {
                role: MessageRole::FunctionResult,
                content: MessageContent::FunctionResult {
                    call_id: id,
                    name,
                    response: stored,
                    failed,
                },
                exchange_id: Some(exchange_id),
                parts: None,
                metadata: None,
            });
        }
        let committed = Box::pin(chat.append_messages(
            self.user,
            session,
            results,
            None,
            self.inner.clock.now(),
        ))
        .await?;
        for message in committed {
            self.emit(ExchangeEvent::FunctionResult(Box::new(message)))
                .await;
        }
        Ok(responses)
    }

    /// The model answered: the reply is committed and the exchange is done. A turn that
    /// still calls tools past the depth limit ends with TOOL_LIMIT.
    async fn complete(
        &mut self,
        conversation: &Conversation<'_>,
        call: &Call<'_>,
        turn: &Turn,
        mut usage: ExchangeUsage,
    ) -> Result<()> {
        let session = conversation.session;
        let exchange_id = conversation.exchange_id();
        let finish = if turn.calls.is_empty() {
            turn.finish_reason()
        } else {
            FinishReason::ToolLimit
        };
        let metadata = call.metadata(turn, Some(finish));
        usage.add(&metadata);
        let reply = self
            .finish_with_reply(
                session.id,
                exchange_id,
                turn,
                metadata,
                Some(call.usage(turn)),
                ExchangeState::Done,
            )
            .await?;
        self.emit(ExchangeEvent::ModelMessage(Box::new(reply.clone())))
            .await;
        self.emit(ExchangeEvent::Completed(Box::new(ExchangeSummary {
            reply_id: reply.id,
            finish_reason: finish,
            usage,
            replayed: false,
        })))
        .await;
        if session.title.is_empty() && self.inner.config.generate_titles {
            self.spawn_title(
                session.id,
                conversation.model,
                conversation.api_key,
                conversation.user_message,
                &turn.text,
            );
        }
        Ok(())
    }

    /// The client went away: what had arrived is kept as a CANCELLED reply, and nobody is
    /// left to tell.
    async fn cancelled(
        &mut self,
        conversation: &Conversation<'_>,
        call: &Call<'_>,
        turn: &Turn,
    ) -> Result<()> {
        let exchange_id = conversation.exchange_id();
        let metadata = call.metadata(turn, Some(FinishReason::Cancelled));
        self.finish_with_reply(
            conversation.session.id,
            exchange_id,
            turn,
            metadata,
            Some(call.usage(turn)),
            ExchangeState::Done,
        )
        .await?;
        tracing::info!(session = %conversation.session.id, "the client cancelled an exchange");
        Ok(())
    }

    /// The server is shutting down: what had arrived is kept as a CANCELLED reply that notes
    /// why, the client gets it and then UNAVAILABLE `SERVER_SHUTTING_DOWN`. A reply with text
    /// ends the exchange (a resend replays it); one stopped before any text leaves the
    /// exchange FAILED, so a resend — on another replica, or here after the restart — asks the
    /// model again instead of replaying an empty reply.
    async fn stopped(
        &mut self,
        conversation: &Conversation<'_>,
        call: &Call<'_>,
        turn: &Turn,
    ) -> Result<()> {
        let text_saved = !turn.text.is_empty();
        let error = shutting_down(text_saved);
        let mut metadata = call.metadata(turn, Some(FinishReason::Cancelled));
        metadata.error = Some(message_error(&error));
        let state = if text_saved {
            ExchangeState::Done
        } else {
            ExchangeState::Failed
        };
        let reply = self
            .finish_with_reply(
                conversation.session.id,
                conversation.exchange_id(),
                turn,
                metadata,
                Some(call.usage(turn)),
                state,
            )
            .await?;
        tracing::info!(
            session = %conversation.session.id,
            text_saved,
            "stopped an exchange: the server is shutting down"
        );
        self.emit(ExchangeEvent::ModelMessage(Box::new(reply)))
            .await;
        Err(error)
    }

    /// The stream broke off after text had been relayed: the partial reply is kept as
    /// INCOMPLETE (it cannot be retried without repeating text) and the send fails.
    async fn interrupted(
        &mut self,
        conversation: &Conversation<'_>,
        call: &Call<'_>,
        turn: &Turn,
        err: &assistd_gemini::Error,
    ) -> Result<()> {
        tracing::warn!(error = %err, "the Gemini stream broke off after text");
        let exchange_id = conversation.exchange_id();
        let error = Error::Unavailable {
            reason: ErrorReason::ProviderStreamInterrupted,
            message: "Gemini's answer broke off before it was complete; the partial \
                      reply was saved. Send your message again for a full answer"
                .into(),
            retry_after: Some(Duration::from_secs(1)),
        };
        let mut metadata = call.metadata(turn, Some(FinishReason::Incomplete));
        metadata.error = Some(message_error(&error));
        // Usage is only known if Gemini reported it before the stream broke.
        let delta = turn.has_usage.then(|| call.usage(turn));
        let reply = self
            .finish_with_reply(
                conversation.session.id,
                exchange_id,
                turn,
                metadata,
                delta,
                ExchangeState::Done,
            )
            .await?;
        self.emit(ExchangeEvent::ModelMessage(Box::new(reply)))
            .await;
        Err(error)
    }

    /// The call failed before any text: an empty ERROR reply records why, the exchange is
    /// FAILED (a resend calls the model again) and the send fails with the mapped error.
    async fn failed(
        &mut self,
        conversation: &Conversation<'_>,
        call: &Call<'_>,
        err: assistd_gemini::Error,
    ) -> Result<()> {
        let exchange_id = conversation.exchange_id();
        let error = Box::pin(self.inner.provider_error(
            self.user,
            &self.request.context,
            conversation.key,
            err,
            call.model,
        ))
        .await;
        let metadata = ModelCallMetadata {
            finish_reason: Some(FinishReason::Error),
            latency_ms: Some(call.latency_ms),
            error: Some(message_error(&error)),
            ..ModelCallMetadata::default()
        };
        let reply = self
            .finish_with_reply(
                conversation.session.id,
                exchange_id,
                &Turn::default(),
                metadata,
                None,
                ExchangeState::Failed,
            )
            .await?;
        self.emit(ExchangeEvent::ModelMessage(Box::new(reply)))
            .await;
        Err(error)
    }
}

/// Runs a tool of `tools`; a failure becomes an `{"error": …}` result the model can read.
/// Returns what the model gets, what the history keeps, and whether the call failed.
async fn run_tool(
    tools: &ToolRegistry,
    context: &ToolContext,
    name: &str,
    args: &Value,
) -> (Value, Value, bool) {
    let Some(tool) = tools.get(name) else {
        let error = json!({"error": format!("there is no tool called {name:?}")});
        return (error.clone(), error, true);
    };
    let args = if args.is_object() {
        args.clone()
    } else {
        json!({})
    };
    match tool.call(context, &args).await {
        Ok(response) => {
            let response = if response.is_object() {
                response
            } else {
                json!({"result": response})
            };
            let stored = tool.stored_response(&response);
            (response, stored, false)
        }
        Err(ToolFailure(message)) => {
            let error = json!({"error": message});
            (error.clone(), error, true)
        }
    }
}
