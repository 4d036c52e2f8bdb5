//! GmailService: the RPC handlers. Each reads its request into domain input
//! (`requests.rs`), calls the core [`GmailService`], and writes the result back as protobuf
//! (`convert.rs`). The AI RPCs answer UNIMPLEMENTED (see `planned.rs`).

mod convert;
mod requests;

use assistd_core::gmail::GmailService;
use tonic::{Request, Response, Status};

use self::convert::{connection_to_proto, message_to_proto, sync_to_proto};
use self::requests::{MailCursor, MessageListing, message_id};
use super::invalid;
use crate::bearer::caller;
use crate::proto::gmail::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::status;

/// The gRPC face of [`GmailService`].
#[derive(Clone, Debug)]
pub struct GmailApi {
    gmail: GmailService,
    addresses: ClientAddressPolicy,
}

impl GmailApi {
    /// Serves `gmail`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(gmail: GmailService, addresses: ClientAddressPolicy) -> Self {
        Self { gmail, addresses }
    }
}

#[tonic::async_trait]
impl pb::gmail_service_server::GmailService for GmailApi {
    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::GetConnectionResponse>, Status> {
        let user = caller(&request)?;
        let connection = self.gmail.connection(user).await.map_err(status)?;
        Ok(Response::new(pb::GetConnectionResponse {
            connection: Some(connection_to_proto(connection)),
        }))
    }

    async fn disconnect(
        &self,
        request: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let keep = request.into_inner().keep_synced_mail;
        let connection = self
            .gmail
            .disconnect(user, keep, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DisconnectResponse {
            connection: Some(connection_to_proto(connection)),
        }))
    }

    async fn sync_mailbox(
        &self,
        request: Request<pb::SyncMailboxRequest>,
    ) -> Result<Response<pb::SyncMailboxResponse>, Status> {
        let user = caller(&request)?;
        let full = request.into_inner().full_sync;
        let report = self.gmail.sync(user, full).await.map_err(status)?;
        Ok(Response::new(sync_to_proto(report)))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let user = caller(&request)?;
        let listing = MessageListing::try_from(request.into_inner()).map_err(invalid)?;
        let limit = usize::try_from(listing.page.size().fetch()).unwrap_or(usize::MAX);
        let mut messages = self
            .gmail
            .list(user, &listing.filter, listing.after.clone(), limit)
            .await
            .map_err(status)?;
        let next_page_token = listing.page.finish(&mut messages, |last| {
            MailCursor::new(last.received_at, &last.id)
        });
        Ok(Response::new(pb::ListMessagesResponse {
            messages: messages.into_iter().map(message_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        let user = caller(&request)?;
        let id = message_id(&request.get_ref().message_id).map_err(invalid)?;
        let message = self.gmail.get(user, &id).await.map_err(status)?;
        Ok(Response::new(pb::GetMessageResponse {
            message: Some(message_to_proto(message)),
        }))
    }

    async fn summarize_message(
        &self,
        _request: Request<pb::SummarizeMessageRequest>,
    ) -> Result<Response<pb::SummarizeMessageResponse>, Status> {
        Err(super::planned::unimplemented(
            "/assistd.gmail.v1.GmailService/SummarizeMessage",
        ))
    }

    async fn summarize_thread(
        &self,
        _request: Request<pb::SummarizeThreadRequest>,
    ) -> Result<Response<pb::SummarizeThreadResponse>, Status> {
        Err(super::planned::unimplemented(
            "/assistd.gmail.v1.GmailService/SummarizeThread",
        ))
    }

    async fn triage_inbox(
        &self,
        _request: Request<pb::TriageInboxRequest>,
    ) -> Result<Response<pb::TriageInboxResponse>, Status> {
        Err(super::planned::unimplemented(
            "/assistd.gmail.v1.GmailService/TriageInbox",
        ))
    }
}
