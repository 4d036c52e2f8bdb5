//! UserApiKeyService: the RPC handlers. Each reads its request into domain input
//! (`requests.rs`), calls the core, and writes the result back as protobuf (`convert.rs`). Keys arrive in
//! `SetApiKeyRequest.api_key` and never leave the server again; responses carry a hint only.

mod convert;
mod requests;

use assistd_core::chat::ChatService;
use assistd_core::{ApiKeyVault, AuditTrail};
use tonic::{Request, Response, Status};

use self::convert::{budget_to_proto, event_to_proto, to_proto};
use self::requests::{AuditCursor, AuditQuery, NewApiKey, UsageQuery};
use super::invalid;
use crate::bearer::caller;
use crate::proto::apikey::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::status;

/// The gRPC face of [`ApiKeyVault`], of usage and budgets, and of the user's audit trail.
#[derive(Clone, Debug)]
pub struct ApiKeyApi {
    vault: ApiKeyVault,
    chat: ChatService,
    audit: AuditTrail,
    addresses: ClientAddressPolicy,
}

impl ApiKeyApi {
    /// Serves `vault`, `chat` (usage and budgets) and the user's audit trail, recording client
    /// addresses per `addresses`.
    #[must_use]
    pub fn new(
        vault: ApiKeyVault,
        chat: ChatService,
        audit: AuditTrail,
        addresses: ClientAddressPolicy,
    ) -> Self {
        Self {
            vault,
            chat,
            audit,
            addresses,
        }
    }
}

#[tonic::async_trait]
impl pb::user_api_key_service_server::UserApiKeyService for ApiKeyApi {
    async fn set_api_key(
        &self,
        request: Request<pb::SetApiKeyRequest>,
    ) -> Result<Response<pb::SetApiKeyResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let new = NewApiKey::try_from(request.into_inner()).map_err(invalid)?;
        let (info, replaced) = self
            .vault
            .set(user, &context, new.provider, new.key, new.allow_unverified)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetApiKeyResponse {
            api_key: Some(to_proto(info)),
            replaced,
        }))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let user = caller(&request)?;
        let provider = requests::provider(request.get_ref().provider).map_err(invalid)?;
        let info = self.vault.get(user, provider).await.map_err(status)?;
        Ok(Response::new(pb::GetApiKeyResponse {
            api_key: Some(to_proto(info)),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let user = caller(&request)?;
        requests::list_api_keys(request.get_ref()).map_err(invalid)?;
        let keys = self.vault.list(user).await.map_err(status)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.into_iter().map(to_proto).collect(),
            next_page_token: String::new(),
        }))
    }

    async fn validate_api_key(
        &self,
        request: Request<pb::ValidateApiKeyRequest>,
    ) -> Result<Response<pb::ValidateApiKeyResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let provider = requests::provider(request.get_ref().provider).map_err(invalid)?;
        let info = self
            .vault
            .validate(user, &context, provider)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ValidateApiKeyResponse {
            api_key: Some(to_proto(info)),
        }))
    }

    async fn delete_api_key(
        &self,
        request: Request<pb::DeleteApiKeyRequest>,
    ) -> Result<Response<pb::DeleteApiKeyResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let provider = requests::provider(request.get_ref().provider).map_err(invalid)?;
        self.vault
            .delete(user, &context, provider)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteApiKeyResponse {}))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let user = caller(&request)?;
        let query = UsageQuery::read(request.into_inner(), self.chat.today()).map_err(invalid)?;
        let records = self
            .chat
            .usage(user, query.start, query.end, query.model.as_deref())
            .await
            .map_err(status)?;
        let mut response = pb::GetUsageResponse {
            start_date: query.start.to_string(),
            end_date: query.end.to_string(),
            ..pb::GetUsageResponse::default()
        };
        for record in records {
            response.total_request_count += record.request_count;
            response.total_prompt_token_count += record.prompt_tokens;
            response.total_output_token_count += record.output_tokens;
            response.total_token_count += record.total_tokens;
            response.records.push(pb::UsageRecord {
                date: record.day.to_string(),
                model: record.model,
                request_count: record.request_count,
                prompt_token_count: record.prompt_tokens,
                output_token_count: record.output_tokens,
                total_token_count: record.total_tokens,
            });
        }
        Ok(Response::new(response))
    }

    async fn get_token_budget(
        &self,
        request: Request<pb::GetTokenBudgetRequest>,
    ) -> Result<Response<pb::GetTokenBudgetResponse>, Status> {
        let user = caller(&request)?;
        let budget = self.chat.token_budget(user).await.map_err(status)?;
        Ok(Response::new(pb::GetTokenBudgetResponse {
            budget: Some(budget_to_proto(&budget)),
        }))
    }

    async fn set_token_budget(
        &self,
        request: Request<pb::SetTokenBudgetRequest>,
    ) -> Result<Response<pb::SetTokenBudgetResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let limit = requests::monthly_limit(request.get_ref()).map_err(invalid)?;
        let budget = self
            .chat
            .set_token_budget(user, &context, Some(limit))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetTokenBudgetResponse {
            budget: Some(budget_to_proto(&budget)),
        }))
    }

    async fn clear_token_budget(
        &self,
        request: Request<pb::ClearTokenBudgetRequest>,
    ) -> Result<Response<pb::ClearTokenBudgetResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let budget = self
            .chat
            .set_token_budget(user, &context, None)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ClearTokenBudgetResponse {
            budget: Some(budget_to_proto(&budget)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let user = caller(&request)?;
        let query = AuditQuery::try_from(request.into_inner()).map_err(invalid)?;
        if query.empty() {
            return Ok(Response::new(pb::ListAuditEventsResponse::default()));
        }
        let mut records = self
            .audit
            .events(
                user,
                query.before_seq(),
                query.page.size().fetch(),
                &query.filter,
            )
            .await
            .map_err(status)?;
        let next_page_token = query
            .page
            .finish(&mut records, |last| AuditCursor::below(last.seq));
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: records.into_iter().map(event_to_proto).collect(),
            next_page_token,
        }))
    }
}
