//! How one send runs from its start to its end: the exchange task and its channel, the
//! lookup that answers a resend from its stored outcome, the checks and the lease taken before
//! the model is called, and the commits that end an exchange.

use std::sync::Arc;

use assistd_domain::apikey::Provider;
use assistd_domain::chat::{
    ChatMessage, ChatSession, ExchangeStart, ExchangeState, FinishReason, MessageContent,
    MessageId, MessageRole, ModelCallMetadata, NewMessage, SessionId,
};
use assistd_domain::preferences::Preferences;
use assistd_domain::{Error, ErrorReason, FieldViolation, Result, UserId};
use assistd_store::UsageDelta;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::errors::{api_key, shutting_down};
use super::turn::Turn;
use super::{ChatService, ExchangeEvent, ExchangeSummary, ExchangeUsage, Inner, SendRequest};

/// Events buffered between the exchange task and a slow client.
const EVENT_BUFFER: usize = 64;

/// What the channel between an exchange task and its RPC carries: an event, or the error
/// that ends the send. The error is boxed and every event's payload too, so a slot is small:
/// the channel allocates room for 32 of them per open exchange, used or not.
pub(super) type Slot = std::result::Result<ExchangeEvent, Box<Error>>;

/// The events of one send, in order (see [`ChatService::send`]). Dropping it cancels the
/// exchange.
#[derive(Debug)]
pub struct ExchangeEvents(mpsc::Receiver<Slot>);

impl ExchangeEvents {
    /// The next event; `None` after the last.
    pub async fn recv(&mut self) -> Option<Result<ExchangeEvent>> {
        self.0.recv().await.map(|slot| slot.map_err(|err| *err))
    }
}

impl futures::Stream for ExchangeEvents {
    type Item = Result<ExchangeEvent>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|slot| slot.map(|slot| slot.map_err(|err| *err)))
    }
}

/// Counts an exchange task as running from its spawn until it ends (panics and aborts
/// included), so a stopping server can wait until every exchange stored its end.
struct Running(Arc<Inner>);

impl Running {
    fn start(inner: &Arc<Inner>) -> Self {
        inner.running.send_modify(|running| *running += 1);
        Self(Arc::clone(inner))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.send_modify(|running| *running -= 1);
    }
}

/// One exchange in progress.
pub(super) struct Exchange<'a> {
    pub(super) inner: &'a Inner,
    pub(super) user: UserId,
    pub(super) request: &'a SendRequest,
    pub(super) events: &'a mpsc::Sender<Slot>,
    /// The USER message of an exchange started or resumed and not yet finished.
    pub(super) open: Option<MessageId>,
}

impl ChatService {
    /// Starts an exchange and returns its events. The exchange runs to its end in its own task;
    /// dropping the receiver cancels it (the partial reply is committed as CANCELLED). The last
    /// item is either [`ExchangeEvent::Completed`] or the error the RPC answers with.
    #[must_use]
    pub fn send(&self, user: UserId, request: SendRequest) -> ExchangeEvents {
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let inner = Arc::clone(&self.inner);
        let running = Running::start(&inner);
        tokio::spawn(async move {
            let _running = running;
            let mut exchange = Exchange {
                inner: &inner,
                user,
                request: &request,
                events: &events,
                open: None,
            };
            let result = exchange.run().await;
            if let Err(err) = result {
                let open = exchange.open;
                // The client hears first: when the database is down, recording the failure
                // would keep it waiting for another acquire timeout.
                let _ = events.send(Err(Box::new(err))).await;
                if let Some(exchange_id) = open {
                    // Boxed: a database write's state would otherwise be room in every
                    // exchange's task, though only a failing one ever needs it.
                    Box::pin(mark_failed(&inner, user, exchange_id)).await;
                }
            }
        });
        ExchangeEvents(receiver)
    }

    /// Stops every running exchange, for a server that is shutting down. Each stores what was
    /// written of its reply as a CANCELLED reply noting the reason `SERVER_SHUTTING_DOWN` (in
    /// the transaction that ends the exchange and releases its lease) and ends its send with
    /// UNAVAILABLE `SERVER_SHUTTING_DOWN` and a RetryInfo. A reply with text ends the
    /// exchange, so a resend replays it; one stopped before any text leaves the exchange
    /// failed, so a resend asks the model again. Sends that begin afterwards are refused the
    /// same way before anything is stored. Wait for [`ChatService::exchanges_finished`] before
    /// closing the store.
    pub fn stop_exchanges(&self) {
        self.inner.stopping.cancel();
    }

    /// How many exchanges are running: started and not yet done storing their end.
    #[must_use]
    pub fn running_exchanges(&self) -> usize {
        *self.inner.running.borrow()
    }

    /// Resolves once no exchange is running.
    pub async fn exchanges_finished(&self) {
        let mut running = self.inner.running.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = running.wait_for(|running| *running == 0).await;
    }
}

/// Records that an exchange stopped on a failure of the server's own (the database), so that
/// a resend may try again at once rather than wait for the lease. One attempt, bounded by a
/// third of the lease: if the database cannot take it, the exchange is left as it is — it
/// is no longer renewed, so its lease lapses and a resend after that takes it over.
async fn mark_failed(inner: &Inner, user: UserId, exchange_id: MessageId) {
    let bound = inner.config.exchange_lease / 3;
    let chat = inner.store.chat();
    let mark = chat.finish_exchange(user, exchange_id, ExchangeState::Failed);
    match tokio::time::timeout(bound, mark).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "could not mark a broken exchange as failed; its lease will lapse");
        }
        Err(_) => {
            tracing::warn!(
                ?bound,
                "marking a broken exchange as failed took too long; its lease will lapse"
            );
        }
    }
}

impl Exchange<'_> {
    /// Sends an event; a closed channel is noticed by the model call, not here.
    pub(super) async fn emit(&self, event: ExchangeEvent) {
        let _ = self.events.send(Ok(event)).await;
    }

    /// The whole send: a stored outcome replayed, or a new exchange begun and conversed.
    async fn run(&mut self) -> Result<()> {
        if self.inner.stopping.is_cancelled() {
            return Err(shutting_down(false));
        }
        let chat = self.inner.store.chat();
        let request = self.request;
        let session = Box::pin(chat.get_session(self.user, request.session)).await?;
        let now = self.inner.clock.now();
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
        // Read fresh: a change made a moment ago on another replica must count.
        let preferences = Box::pin(self.inner.preferences.get_current(self.user)).await?;
        let model = self.model_of(&session, &preferences);
        let key = Box::pin(self.inner.vault.reveal_usable(self.user, Provider::Gemini)).await?;
        let api_key = api_key(&key)?;
        Box::pin(self.inner.check_budget(self.user, now)).await?;
        let user_message = match Box::pin(self.begin(&session, now)).await? {
            ExchangeStart::Started(message)
            | ExchangeStart::Resumed {
                user_message: message,
                ..
            } => message,
            other => return Box::pin(self.answer_existing(other)).await,
        };
        self.open = Some(user_message.id);
        // Renewed until this exchange ends; the commit of its end releases it.
        let _lease = self.inner.leases.hold(user_message.id);
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

    /// The model `session` talks to: its own, else the user's default, else the server's.
    fn model_of(&self, session: &ChatSession, preferences: &Preferences) -> String {
        if session.model.is_empty() {
            preferences
                .default_model
                .clone()
                .filter(|model| !model.is_empty())
                .unwrap_or_else(|| self.inner.config.default_model.clone())
        } else {
            session.model.clone()
        }
    }

    /// Commits the USER message under a lease until `now` + `exchange_lease`: another send
    /// with the same id waits for it (MESSAGE_IN_PROGRESS) until the lease runs out, after
    /// which it takes the exchange over (a server that stopped mid-exchange never ends it).
    async fn begin(&self, session: &ChatSession, now: DateTime<Utc>) -> Result<ExchangeStart> {
        let lease_until = now
            + chrono::Duration::from_std(self.inner.config.exchange_lease)
                .unwrap_or(chrono::Duration::minutes(15));
        Box::pin(self.inner.store.chat().begin_exchange(
            self.user,
            session.id,
            &self.request.client_message_id,
            &self.request.text,
            lease_until,
            now,
        ))
        .await
    }

    /// Answers a send whose id was seen before without calling the model.
    pub(super) async fn answer_existing(&self, found: ExchangeStart) -> Result<()> {
        match found {
            ExchangeStart::Finished {
                user_message,
                messages,
            } => Box::pin(self.replay(user_message, messages)).await,
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

    /// Replays a finished exchange: its USER message, then its stored steps and reply as
    /// they were first sent, and a summary marked as replayed.
    async fn replay(&self, user_message: ChatMessage, messages: Vec<ChatMessage>) -> Result<()> {
        self.emit(ExchangeEvent::UserMessage(Box::new(user_message)))
            .await;
        let mut usage = ExchangeUsage::default();
        let mut reply = None;
        for message in messages {
            // Only messages that carry a model call's metadata count towards the usage.
            if let Some(metadata) = message.metadata.as_ref().filter(|m| !m.model.is_empty()) {
                usage.add(metadata);
            }
            let event = match message.role {
                MessageRole::FunctionCall => ExchangeEvent::FunctionCall(Box::new(message)),
                MessageRole::FunctionResult => ExchangeEvent::FunctionResult(Box::new(message)),
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
        let (reply_id, finish_reason) =
            reply.ok_or_else(|| Error::internal("a finished exchange has no MODEL message"))?;
        self.emit(ExchangeEvent::Completed(Box::new(ExchangeSummary {
            reply_id,
            finish_reason,
            usage,
            replayed: true,
        })))
        .await;
        Ok(())
    }

    /// Commits the MODEL message that ends an exchange and, in the same transaction, the
    /// exchange's end in `state`: a resend then gets this reply, and there is no moment at
    /// which the reply is stored but the exchange still looks unfinished (which would make a
    /// resend call the model again and store a second reply).
    pub(super) async fn finish_with_reply(
        &mut self,
        session: SessionId,
        exchange_id: MessageId,
        turn: &Turn,
        metadata: ModelCallMetadata,
        usage: Option<UsageDelta>,
        state: ExchangeState,
    ) -> Result<ChatMessage> {
        let message = NewMessage {
            role: MessageRole::Model,
            content: MessageContent::Text(turn.text.clone()),
            exchange_id: Some(exchange_id),
            parts: turn.reply_parts(),
            metadata: Some(metadata),
        };
        let chat = self.inner.store.chat();
        let reply = Box::pin(chat.append_and_finish(
            self.user,
            session,
            vec![message],
            usage,
            Some((exchange_id, state)),
            self.inner.clock.now(),
        ))
        .await?
        .pop()
        .ok_or_else(|| Error::internal("appending a message returned nothing"))?;
        self.open = None;
        Ok(reply)
    }
}
