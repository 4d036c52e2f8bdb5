//! GmailService: the RPC handlers. Each reads its request into domain input
//! (`requests.rs`), calls the core [`GmailService`], and writes the result back as protobuf
//! (`convert.rs`). The AI RPCs (summaries, triage) and the triage shown on messages are in
//! `ai.rs`.

mod ai;
mod convert;
mod requests;

use assistd_core::gmail::{GmailService, MailAssistant};
use tonic::{Request, Response, Status};

use self::ai::{
    gmail_id, summary_to_proto, triage_selection, triaged_to_proto, usage_to_proto,
    with_stored_triage,
};
use self::convert::{connection_to_proto, sync_to_proto};
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
    assistant: MailAssistant,
    addresses: ClientAddressPolicy,
}

impl GmailApi {
    /// Serves `gmail` and its AI `assistant`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(
        gmail: GmailService,
        assistant: MailAssistant,
        addresses: ClientAddressPolicy,
    ) -> Self {
        Self {
            gmail,
            assistant,
            addresses,
        }
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
        let messages = with_stored_triage(&self.assistant, user, messages).await?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages,
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
        let message = with_stored_triage(&self.assistant, user, vec![message])
            .await?
            .pop();
        Ok(Response::new(pb::GetMessageResponse { message }))
    }

    async fn summarize_message(
        &self,
        request: Request<pb::SummarizeMessageRequest>,
    ) -> Result<Response<pb::SummarizeMessageResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let request = request.into_inner();
        let id = gmail_id("message_id", &request.message_id).map_err(invalid)?;
        let answer = self
            .assistant
            .summarize_message(user, &context, &id, request.refresh)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SummarizeMessageResponse {
            summary: Some(summary_to_proto(answer.summary)),
            usage: Some(usage_to_proto(answer.usage)),
        }))
    }

    async fn summarize_thread(
        &self,
        request: Request<pb::SummarizeThreadRequest>,
    ) -> Result<Response<pb::SummarizeThreadResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let request = request.into_inner();
        let id = gmail_id("thread_id", &request.thread_id).map_err(invalid)?;
        let answer = self
            .assistant
            .summarize_thread(user, &context, &id, request.refresh)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SummarizeThreadResponse {
            summary: Some(summary_to_proto(answer.summary)),
            message_count: i32::try_from(answer.message_count).unwrap_or(i32::MAX),
            usage: Some(usage_to_proto(answer.usage)),
        }))
    }

    async fn triage_inbox(
        &self,
        request: Request<pb::TriageInboxRequest>,
    ) -> Result<Response<pb::TriageInboxResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let selection = triage_selection(request.get_ref(), chrono::Utc::now()).map_err(invalid)?;
        let report = self
            .assistant
            .triage_inbox(user, &context, &selection)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::TriageInboxResponse {
            messages: report
                .messages
                .into_iter()
                .map(|triaged| triaged_to_proto(triaged.message, triaged.triage))
                .collect(),
            triaged_count: i32::try_from(report.triaged_count).unwrap_or(i32::MAX),
            usage: Some(usage_to_proto(report.usage)),
        }))
    }
}
