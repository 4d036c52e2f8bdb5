//! API keys, token budgets and audit events as protobuf messages.

use assistd_core::chat::TokenBudget;
use assistd_domain::apikey::{ApiKeyInfo, ApiKeyStatus, Provider};
use assistd_domain::audit::AuditAction;
use assistd_domain::audit::AuditRecord;

use crate::proto::apikey::v1 as pb;
use crate::services::timestamp;

pub(super) fn budget_to_proto(budget: &TokenBudget) -> pb::TokenBudget {
    pb::TokenBudget {
        monthly_token_limit: budget.monthly_limit.unwrap_or_default(),
        used_token_count: budget.used,
        period_start_time: Some(timestamp(budget.period_start)),
        period_end_time: Some(timestamp(budget.period_end)),
        exhausted: budget.exhausted(),
        update_time: budget.updated_at.map(timestamp),
    }
}

pub(super) fn to_proto(info: ApiKeyInfo) -> pb::ApiKey {
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

pub(super) fn action_to_proto(action: &str) -> pb::AuditAction {
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
        Some(AuditAction::ServiceCall) => pb::AuditAction::ServiceCall,
        Some(AuditAction::DataExported) => pb::AuditAction::DataExported,
        Some(AuditAction::GmailConnected) => pb::AuditAction::GmailConnected,
        Some(AuditAction::GmailDisconnected) => pb::AuditAction::GmailDisconnected,
        Some(AuditAction::GoogleReauthRequired) => pb::AuditAction::GoogleReauthRequired,
        Some(AuditAction::GmailDraftCreated) => pb::AuditAction::GmailDraftCreated,
        Some(
            AuditAction::AccountDeleted
            | AuditAction::ServiceAccountCreated
            | AuditAction::ServiceAccountRevoked,
        )
        | None => pb::AuditAction::Unspecified,
    }
}

pub(super) fn action_from_proto(action: pb::AuditAction) -> Option<AuditAction> {
    AuditAction::ALL
        .into_iter()
        .find(|candidate| action_to_proto(candidate.as_str()) == action)
}

pub(super) fn event_to_proto(record: AuditRecord) -> pb::AuditEvent {
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
