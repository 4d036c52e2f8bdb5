//! ChatService: the RPC handlers. Each reads its request into domain input
//! (`requests.rs`), calls [`ChatService`] in the core, and writes the result back as protobuf
//! (`convert.rs`).

mod convert;
mod requests;
mod watch;

use std::pin::Pin;

use assistd_core::chat::{ChatService, ExchangeEvent};
use assistd_domain::chat::{MemoryId, NewSession, SessionId};
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use self::convert::{
    completed_to_proto, hit_to_proto, memory_to_proto, message_to_proto, session_to_proto,
    usage_to_proto,
};
use self::requests::{
    ListMemories, ListMessages, ListModels, ListSessions, MemoryCursor, MessageCursor, ModelCursor,
    Search, SearchCursor, SendInput, SessionCursor, SessionUpdate,
};
use super::{invalid, required_id};
use crate::bearer::caller;
use crate::proto::chat::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::status;

/// The gRPC face of [`ChatService`].
#[derive(Clone, Debug)]
pub struct ChatApi {
    service: ChatService,
    addresses: ClientAddressPolicy,
    /// The chat feed behind WatchChat (and fed by StreamMessage's deltas).
    watching: Option<watch::Watching>,
}

impl ChatApi {
    /// Serves `service`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(service: ChatService, addresses: ClientAddressPolicy) -> Self {
        Self {
            service,
            addresses,
            watching: None,
        }
    }

    /// Serves WatchChat from `feed` and publishes streamed replies' deltas to it; watch
    /// streams end when `shutdown` fires.
    #[must_use]
    pub fn with_watch(
        mut self,
        feed: assistd_store::chat_feed::ChatFeed,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        self.watching = Some(watch::Watching { feed, shutdown });
        self
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
        let new = NewSession::try_from(request.into_inner()).map_err(invalid)?;
        let session = self
            .service
            .create_session(user, &new)
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
        let id: SessionId =
            required_id("session_id", &request.get_ref().session_id).map_err(invalid)?;
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
        let list = ListSessions::try_from(request.into_inner()).map_err(invalid)?;
        let mut sessions = self
            .service
            .sessions(
                user,
                list.filter,
                list.page.position().map_err(invalid)?,
                list.page.size().fetch(),
            )
            .await
            .map_err(status)?;
        let next_page_token = list.page.finish(&mut sessions, |last| {
            SessionCursor::new(last.last_activity_at, last.id)
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
        let update = SessionUpdate::try_from(request.into_inner()).map_err(invalid)?;
        let session = self
            .service
            .update_session(user, update.id, &update.patch)
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
        let id: SessionId =
            required_id("session_id", &request.get_ref().session_id).map_err(invalid)?;
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
        let list = ListMessages::try_from(request.into_inner()).map_err(invalid)?;
        let mut messages = self
            .service
            .messages(
                user,
                list.session,
                list.forward,
                list.start,
                list.page.size().fetch(),
            )
            .await
            .map_err(status)?;
        // A page resumes *at* the first message it did not show.
        let next_page_token = list
            .page
            .finish_at_next(&mut messages, |next| MessageCursor::at(next.sequence));
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
        let send = SendInput::try_from(request.into_inner()).map_err(invalid)?;
        let mut events = self.service.send(user, send.request(false, context));
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
        let send = SendInput::try_from(request.into_inner()).map_err(invalid)?;
        let mut events = self.service.send(user, send.request(true, context));
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
                ExchangeEvent::Completed(summary) => Event::Completed(completed_to_proto(*summary)),
            };
            pb::StreamMessageResponse { event: Some(event) }
        };
        let mut deltas = self
            .watching
            .as_ref()
            .map(|watching| watch::DeltaPublisher::new(watching.feed.clone(), user));
        if let Some(deltas) = deltas.as_mut() {
            deltas.observe(&first);
        }
        let rest = events.map(move |event| {
            if let (Some(deltas), Ok(event)) = (deltas.as_mut(), &event) {
                deltas.observe(event);
            }
            event.map(convert).map_err(status)
        });
        let stream = futures::stream::once(async move { Ok(convert(first)) }).chain(rest);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Result<Response<pb::SearchMessagesResponse>, Status> {
        let user = caller(&request)?;
        let search = Search::try_from(request.into_inner()).map_err(invalid)?;
        let mut hits = self
            .service
            .search(
                user,
                &search.query,
                search.session,
                search.page.position().map_err(invalid)?,
                search.page.size().fetch(),
            )
            .await
            .map_err(status)?;
        let next_page_token = search.page.finish(&mut hits, |last| {
            SearchCursor::new(last.message.created_at, last.message.id)
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
        let list = ListMemories::try_from(request.into_inner()).map_err(invalid)?;
        let mut memories = self
            .service
            .memories(
                user,
                list.page.position().map_err(invalid)?,
                list.page.size().fetch(),
            )
            .await
            .map_err(status)?;
        let next_page_token = list.page.finish(&mut memories, |last| {
            MemoryCursor::new(last.created_at, last.id)
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
        let id: MemoryId =
            required_id("memory_id", &request.get_ref().memory_id).map_err(invalid)?;
        self.service.delete_memory(user, id).await.map_err(status)?;
        Ok(Response::new(pb::DeleteMemoryResponse {}))
    }

    type WatchChatStream = watch::WatchStream;

    async fn watch_chat(
        &self,
        request: Request<pb::WatchChatRequest>,
    ) -> Result<Response<Self::WatchChatStream>, Status> {
        let user = caller(&request)?;
        let after = watch::parse_cursor(&request.get_ref().cursor).map_err(invalid)?;
        let Some(watching) = &self.watching else {
            return Err(Status::unimplemented(
                "this server was built without the chat feed",
            ));
        };
        let stream = watch::watch_chat(watching, user, after).await?;
        Ok(Response::new(stream))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let list = ListModels::try_from(request.into_inner()).map_err(invalid)?;
        // Gemini pages the model list itself: its token travels inside ours.
        let page = self
            .service
            .models(
                user,
                &context,
                u32::try_from(list.page.size().get()).ok(),
                list.page.after().map(ModelCursor::token),
            )
            .await
            .map_err(status)?;
        let default_model = self.service.default_model(user).await.map_err(status)?;
        let models = page
            .models
            .into_iter()
            .filter(|model| model.supports("generateContent"))
            .map(|model| convert::model_to_proto(model, &default_model))
            .collect();
        let next_page_token = page
            .next_page_token
            .filter(|token| !token.is_empty())
            .map(|token| list.page.token(ModelCursor::upstream(token)))
            .unwrap_or_default();
        Ok(Response::new(pb::ListModelsResponse {
            models,
            next_page_token,
        }))
    }
}
