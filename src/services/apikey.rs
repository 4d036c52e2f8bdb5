//! UserApiKeyService: proto <-> domain conversion and the RPC handlers. Keys arrive in
//! `SetApiKeyRequest.api_key` and never leave the server again; responses carry a hint only.

use assistd_core::ApiKeyVault;
use assistd_core::chat::{ChatService, TokenBudget};
use assistd_crypto::Secret;
use assistd_domain::FieldViolation;
use assistd_domain::apikey::{ApiKeyInfo, ApiKeyStatus, Provider, check_api_key_format};
use assistd_domain::audit::AuditAction;
use assistd_domain::chat::{MAX_MONTHLY_TOKEN_LIMIT, validate_model};
use assistd_store::audit::{AuditFilter, AuditLog, AuditRecord};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Datelike as _, NaiveDate};
use tonic::{Request, Response, Status};

use super::{from_timestamp, timestamp};
use crate::auth::caller;
use crate::proto::apikey::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::{invalid_field, status};

/// Default and largest `ListAuditEventsRequest.page_size`.
const DEFAULT_AUDIT_PAGE: u64 = 50;
const MAX_AUDIT_PAGE: u64 = 500;

/// Longest `GetUsage` range: `end_date` at most this many days after `start_date`.
const MAX_USAGE_DAYS: i64 = 366;

/// The gRPC face of [`ApiKeyVault`], of usage and budgets, and of the user's audit trail.
#[derive(Clone, Debug)]
pub struct ApiKeyApi {
    vault: ApiKeyVault,
    chat: ChatService,
    audit: AuditLog,
    addresses: ClientAddressPolicy,
}

impl ApiKeyApi {
    /// Serves `vault`, `chat` (usage and budgets) and `audit`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(
        vault: ApiKeyVault,
        chat: ChatService,
        audit: AuditLog,
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

/// The provider a request names, or the violation of field `provider`.
fn parse_provider(value: i32) -> Result<Provider, FieldViolation> {
    match pb::Provider::try_from(value) {
        Ok(pb::Provider::Gemini) => Ok(Provider::Gemini),
        Ok(pb::Provider::Unspecified) => Err(FieldViolation::new(
            "provider",
            "choose a provider, e.g. PROVIDER_GEMINI",
        )),
        Err(_) => Err(FieldViolation::new(
            "provider",
            format!("unknown provider {value}; PROVIDER_GEMINI is supported"),
        )),
    }
}

/// The provider a request names, as a status on failure.
fn provider(value: i32) -> Result<Provider, Status> {
    parse_provider(value).map_err(|violation| status(violation.into()))
}

fn budget_to_proto(budget: &TokenBudget) -> pb::TokenBudget {
    pb::TokenBudget {
        monthly_token_limit: budget.monthly_limit.unwrap_or_default(),
        used_token_count: budget.used,
        period_start_time: Some(timestamp(budget.period_start)),
        period_end_time: Some(timestamp(budget.period_end)),
        exhausted: budget.exhausted(),
        update_time: budget.updated_at.map(timestamp),
    }
}

fn to_proto(info: ApiKeyInfo) -> pb::ApiKey {
    pb::ApiKey {
        provider: match info.provider {
            Provider::Gemini => pb::Provider::Gemini,
        }
        .into(),
        masked_hint: info.hint,
        status: match info.status {
            ApiKeyStatus::Valid => pb::ApiKeyStatus::Valid,
            ApiKeyStatus::Invalid => pb::ApiKeyStatus::Invalid,
            ApiKeyStatus::Unverified => pb::ApiKeyStatus::Unverified,
        }
        .into(),
        status_detail: info.status_detail.unwrap_or_default(),
        create_time: Some(timestamp(info.created_at)),
        update_time: Some(timestamp(info.updated_at)),
        last_validate_time: info.last_validated_at.map(timestamp),
        last_use_time: info.last_used_at.map(timestamp),
    }
}

fn action_to_proto(action: &str) -> pb::AuditAction {
    match AuditAction::parse(action) {
        Some(AuditAction::LoginSucceeded) => pb::AuditAction::LoginSucceeded,
        Some(AuditAction::LoginFailed) => pb::AuditAction::LoginFailed,
        Some(AuditAction::TokenRefreshed) => pb::AuditAction::TokenRefreshed,
        Some(AuditAction::RefreshTokenReuseDetected) => pb::AuditAction::RefreshTokenReuseDetected,
        Some(AuditAction::SignedOut) => pb::AuditAction::SignedOut,
        Some(AuditAction::SessionRevoked) => pb::AuditAction::SessionRevoked,
        Some(AuditAction::ProfileUpdated) => pb::AuditAction::ProfileUpdated,
        Some(AuditAction::ApiKeySet) => pb::AuditAction::ApiKeySet,
        Some(AuditAction::ApiKeyValidated) => pb::AuditAction::ApiKeyValidated,
        Some(AuditAction::ApiKeyDeleted) => pb::AuditAction::ApiKeyDeleted,
        Some(AuditAction::ApiKeyRevealed) => pb::AuditAction::ApiKeyRevealed,
        Some(AuditAction::TokenBudgetSet) => pb::AuditAction::TokenBudgetSet,
        Some(AuditAction::TokenBudgetCleared) => pb::AuditAction::TokenBudgetCleared,
        Some(AuditAction::AccountDeleted) | None => pb::AuditAction::Unspecified,
    }
}

fn action_from_proto(action: pb::AuditAction) -> Option<AuditAction> {
    AuditAction::ALL
        .into_iter()
        .find(|candidate| action_to_proto(candidate.as_str()) == action)
}

fn event_to_proto(record: AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        id: record.id.to_string(),
        create_time: Some(timestamp(record.occurred_at)),
        action: action_to_proto(&record.action).into(),
        outcome: match record.outcome.as_str() {
            "success" => pb::AuditOutcome::Success,
            "failure" => pb::AuditOutcome::Failure,
            _ => pb::AuditOutcome::Unspecified,
        }
        .into(),
        target: record.target,
        request_id: record.request_id,
        ip_address: record.client_ip.unwrap_or_default(),
        user_agent: record.user_agent.unwrap_or_default(),
        metadata: record.metadata.into_iter().collect(),
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
        let request = request.into_inner();
        let key = Secret::from(request.api_key);
        let mut violations = Vec::new();
        let provider = match parse_provider(request.provider) {
            Ok(provider) => Some(provider),
            Err(violation) => {
                violations.push(violation);
                None
            }
        };
        match key.expose_secret_str() {
            Ok(text) => {
                if let Err(err) = check_api_key_format(text) {
                    violations.push(err.at("api_key"));
                }
            }
            Err(_) => violations.push(FieldViolation::new(
                "api_key",
                "the API key must be ASCII text",
            )),
        }
        let Some(provider) = provider.filter(|_| violations.is_empty()) else {
            return Err(status(violations.into()));
        };
        let (info, replaced) = self
            .vault
            .set(user, &context, provider, key, request.allow_unverified)
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
        let provider = provider(request.get_ref().provider)?;
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
        let request_body = request.get_ref();
        if request_body.page_size < 0 {
            return Err(invalid_field("page_size", "must not be negative"));
        }
        // A user has at most one key per provider, so every list fits on one page and no
        // token is ever issued.
        if !request_body.page_token.is_empty() {
            return Err(invalid_field(
                "page_token",
                "not a token from a previous ListApiKeys response",
            ));
        }
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
        let provider = provider(request.get_ref().provider)?;
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
        let provider = provider(request.get_ref().provider)?;
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
        let request = request.into_inner();
        let today = chrono::Utc::now().date_naive();
        let date =
            |field: &str, value: &str, default: NaiveDate| -> Result<NaiveDate, FieldViolation> {
                if value.is_empty() {
                    return Ok(default);
                }
                NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
                    FieldViolation::new(
                        field,
                        format!("{value:?} is not a date like \"2026-11-25\""),
                    )
                })
            };
        let month_start = today.with_day(1).unwrap_or(today);
        let mut violations = Vec::new();
        let start = date("start_date", &request.start_date, month_start)
            .map_err(|v| violations.push(v))
            .ok();
        let end = date("end_date", &request.end_date, today)
            .map_err(|v| violations.push(v))
            .ok();
        if let Err(err) = validate_model(&request.model) {
            violations.push(err.at("model"));
        }
        if let (Some(start), Some(end)) = (start, end) {
            if end < start {
                violations.push(FieldViolation::new(
                    "end_date",
                    "must not be before start_date",
                ));
            } else if (end - start).num_days() > MAX_USAGE_DAYS {
                violations.push(FieldViolation::new(
                    "end_date",
                    format!("must be at most {MAX_USAGE_DAYS} days after start_date"),
                ));
            }
        }
        let (Some(start), Some(end), true) = (start, end, violations.is_empty()) else {
            return Err(status(violations.into()));
        };
        let records = self
            .chat
            .usage(
                user,
                start,
                end,
                (!request.model.is_empty()).then_some(request.model.as_str()),
            )
            .await
            .map_err(status)?;
        let mut response = pb::GetUsageResponse {
            start_date: start.to_string(),
            end_date: end.to_string(),
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
        let limit = request.get_ref().monthly_token_limit;
        if !(1..=MAX_MONTHLY_TOKEN_LIMIT).contains(&limit) {
            return Err(invalid_field(
                "monthly_token_limit",
                format!("must be between 1 and {MAX_MONTHLY_TOKEN_LIMIT}, not {limit}"),
            ));
        }
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
        let request = request.into_inner();
        let limit = match u64::try_from(request.page_size) {
            Ok(0) => DEFAULT_AUDIT_PAGE,
            Ok(size) => size.min(MAX_AUDIT_PAGE),
            Err(_) => return Err(invalid_field("page_size", "must not be negative")),
        };
        let before_seq = if request.page_token.is_empty() {
            None
        } else {
            Some(
                URL_SAFE_NO_PAD
                    .decode(&request.page_token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| {
                        text.strip_prefix("seq:")
                            .and_then(|n| n.parse::<i64>().ok())
                    })
                    .ok_or_else(|| {
                        invalid_field(
                            "page_token",
                            "not a token from a previous ListAuditEvents response",
                        )
                    })?,
            )
        };
        let time = |field: &str, ts: Option<prost_types::Timestamp>| {
            ts.map(|ts| {
                from_timestamp(&ts).ok_or_else(|| invalid_field(field, "not a valid timestamp"))
            })
            .transpose()
        };
        let mut actions = Vec::new();
        for (index, value) in request.actions.iter().enumerate() {
            match pb::AuditAction::try_from(*value) {
                Ok(pb::AuditAction::Unspecified) | Err(_) => {
                    return Err(invalid_field(
                        &format!("actions[{index}]"),
                        "not a known audit action",
                    ));
                }
                Ok(action) => actions.extend(action_from_proto(action)),
            }
        }
        let filter = AuditFilter {
            start: time("start_time", request.start_time)?,
            end: time("end_time", request.end_time)?,
            actions,
        };
        // Every named action is recorded under other names only in later versions: nothing
        // can match.
        if !request.actions.is_empty() && filter.actions.is_empty() {
            return Ok(Response::new(pb::ListAuditEventsResponse::default()));
        }
        let mut records = self
            .audit
            .list_for_user(user, before_seq, limit + 1, &filter)
            .await
            .map_err(status)?;
        let next_page_token = if records.len() as u64 > limit {
            records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            records
                .last()
                .map(|last| URL_SAFE_NO_PAD.encode(format!("seq:{}", last.seq)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: records.into_iter().map(event_to_proto).collect(),
            next_page_token,
        }))
    }
}
