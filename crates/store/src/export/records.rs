//! The exported records: one struct per record type, each an explicit list of the columns it
//! exports, under their column names, and made from its row by a `From` conversion (the
//! place where a column is exported or left out).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::entity::{
    api_keys, audit_events, auth_sessions, chat_memories, chat_messages, chat_sessions,
    gmail_connections, google_links, preferences, service_account_users, token_budgets,
    usage_daily, users,
};

/// Timestamps as RFC 3339 in UTC with microseconds, the precision they are stored with.
fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time_opt(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(time)
}

/// One exported row. Serialized as one JSON object whose `type` field names the record type.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ExportRecord {
    Profile(ProfileRecord),
    Preferences(PreferencesRecord),
    TokenBudget(TokenBudgetRecord),
    GoogleLink(GoogleLinkRecord),
    GmailConnection(GmailConnectionRecord),
    ApiKey(ApiKeyRecord),
    DeviceSession(DeviceSessionRecord),
    ChatSession(ChatSessionRecord),
    ChatMessage(ChatMessageRecord),
    Memory(MemoryRecord),
    Usage(UsageRecord),
    ServiceAccountGrant(ServiceAccountGrantRecord),
    AuditEvent(AuditEventRecord),
}

/// `profile`: the `users` row.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ProfileRecord {
    pub id: Uuid,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub picture_url: Option<String>,
    pub oidc_issuer: Option<String>,
    pub oidc_subject: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_sign_in_at: Option<String>,
}

/// `preferences`: the `preferences` row (absent when the user kept the defaults).
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct PreferencesRecord {
    pub user_id: Uuid,
    pub theme: String,
    pub language: String,
    pub timezone: String,
    pub default_model: Option<String>,
    pub version: i64,
    pub updated_at: String,
}

/// `token_budget`: the `token_budgets` row; a null limit means the budget was cleared.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct TokenBudgetRecord {
    pub user_id: Uuid,
    pub monthly_limit: Option<i64>,
    pub updated_at: String,
}

/// `google_link`: the `google_links` row (the Google OAuth grant) without the sealed tokens.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct GoogleLinkRecord {
    pub user_id: Uuid,
    pub scopes: String,
    pub access_expires_at: Option<String>,
    pub reauth_required: bool,
    pub updated_at: String,
}

/// `gmail_connection`: the `gmail_connections` row without the sealed mail key and the sync
/// lease, plus how many messages are synced (the messages themselves are a copy of the
/// user's Gmail and are not exported). History ids are decimal text, as Gmail writes them.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct GmailConnectionRecord {
    pub user_id: Uuid,
    pub state: String,
    pub email_address: Option<String>,
    pub scopes: String,
    pub connected_at: Option<String>,
    pub history_id: Option<String>,
    pub full_sync_history_id: Option<String>,
    pub full_sync_page_token: Option<String>,
    pub full_sync_fetched: i64,
    pub full_sync_started_at: Option<String>,
    pub last_sync_at: Option<String>,
    pub last_error_reason: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<String>,
    pub next_sync_due_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub message_count: u64,
}

/// `api_key`: an `api_keys` row without the sealed key; `key_hint` is its last 4 characters.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub key_hint: String,
    pub status: String,
    pub status_detail: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_validated_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// `device_session`: an `auth_sessions` row (revoked and expired ones too).
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct DeviceSessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device_name: String,
    pub user_agent: String,
    pub ip_address: String,
    pub sign_in_method: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
}

/// `chat_session`: a `chat_sessions` row.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ChatSessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    pub title_generated: bool,
    pub system_instruction: String,
    pub model: String,
    pub pinned: bool,
    pub archived: bool,
    pub message_count: i64,
    pub last_sequence: i64,
    pub created_at: String,
    pub updated_at: String,
    pub last_activity_at: String,
}

/// `chat_message`: a `chat_messages` row. `payload` and `parts` are JSON text, as stored.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ChatMessageRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub sequence: i64,
    pub role: String,
    pub text: Option<String>,
    pub payload: Option<String>,
    pub parts: Option<String>,
    pub client_message_id: Option<String>,
    pub exchange_id: Option<Uuid>,
    pub exchange_state: Option<String>,
    pub lease_until: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub finish_reason: Option<String>,
    pub latency_ms: Option<i64>,
    pub first_token_ms: Option<i64>,
    pub error_reason: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
}

/// `memory`: a `chat_memories` row.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct MemoryRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub content: String,
    pub source_session_id: Option<Uuid>,
    pub created_at: String,
}

/// `usage`: a `usage_daily` row; `day` is a UTC date (`YYYY-MM-DD`).
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct UsageRecord {
    pub user_id: Uuid,
    pub day: String,
    pub model: String,
    pub request_count: i64,
    pub prompt_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
}

/// `service_account_grant`: a `service_account_users` row.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ServiceAccountGrantRecord {
    pub service_account_id: Uuid,
    pub user_id: Uuid,
}

/// `audit_event`: an `audit_events` row the user is the actor of, without the chain's HMACs.
/// `metadata` is the stored object of strings.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct AuditEventRecord {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: String,
    pub actor_user_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: serde_json::Value,
}

impl From<users::Model> for ProfileRecord {
    fn from(r: users::Model) -> Self {
        Self {
            id: r.id,
            display_name: r.display_name,
            email: r.email,
            email_verified: r.email_verified,
            picture_url: r.picture_url,
            oidc_issuer: r.oidc_issuer,
            oidc_subject: r.oidc_subject,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
            last_sign_in_at: time_opt(r.last_sign_in_at),
        }
    }
}

impl From<preferences::Model> for PreferencesRecord {
    fn from(r: preferences::Model) -> Self {
        Self {
            user_id: r.user_id,
            theme: r.theme,
            language: r.language,
            timezone: r.timezone,
            default_model: r.default_model,
            version: r.version,
            updated_at: time(r.updated_at),
        }
    }
}

impl From<token_budgets::Model> for TokenBudgetRecord {
    fn from(r: token_budgets::Model) -> Self {
        Self {
            user_id: r.user_id,
            monthly_limit: r.monthly_limit,
            updated_at: time(r.updated_at),
        }
    }
}

impl From<google_links::Model> for GoogleLinkRecord {
    fn from(r: google_links::Model) -> Self {
        Self {
            user_id: r.user_id,
            scopes: r.scopes,
            access_expires_at: time_opt(r.access_expires_at),
            reauth_required: r.reauth_required,
            updated_at: time(r.updated_at),
        }
    }
}

impl GmailConnectionRecord {
    /// The record of `r`, with `message_count` messages synced.
    pub(super) fn new(r: gmail_connections::Model, message_count: u64) -> Self {
        Self {
            user_id: r.user_id,
            state: r.state,
            email_address: r.email_address,
            scopes: r.scopes,
            connected_at: time_opt(r.connected_at),
            history_id: r.history_id,
            full_sync_history_id: r.full_sync_history_id,
            full_sync_page_token: r.full_sync_page_token,
            full_sync_fetched: r.full_sync_fetched,
            full_sync_started_at: time_opt(r.full_sync_started_at),
            last_sync_at: time_opt(r.last_sync_at),
            last_error_reason: r.last_error_reason,
            last_error_message: r.last_error_message,
            last_error_at: time_opt(r.last_error_at),
            next_sync_due_at: time_opt(r.next_sync_due_at),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
            message_count,
        }
    }
}

impl From<api_keys::Model> for ApiKeyRecord {
    fn from(r: api_keys::Model) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            provider: r.provider,
            key_hint: r.key_hint,
            status: r.status,
            status_detail: r.status_detail,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
            last_validated_at: time_opt(r.last_validated_at),
            last_used_at: time_opt(r.last_used_at),
        }
    }
}

impl From<auth_sessions::Model> for DeviceSessionRecord {
    fn from(r: auth_sessions::Model) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            device_name: r.device_name,
            user_agent: r.user_agent,
            ip_address: r.ip_address,
            sign_in_method: r.sign_in_method,
            created_at: time(r.created_at),
            last_used_at: time(r.last_used_at),
            expires_at: time(r.expires_at),
            revoked_at: time_opt(r.revoked_at),
            revoked_reason: r.revoked_reason,
        }
    }
}

impl From<chat_sessions::Model> for ChatSessionRecord {
    fn from(r: chat_sessions::Model) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            title: r.title,
            title_generated: r.title_generated,
            system_instruction: r.system_instruction,
            model: r.model,
            pinned: r.pinned,
            archived: r.archived,
            message_count: r.message_count,
            last_sequence: r.last_sequence,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
            last_activity_at: time(r.last_activity_at),
        }
    }
}

impl From<chat_messages::Model> for ChatMessageRecord {
    fn from(r: chat_messages::Model) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            session_id: r.session_id,
            sequence: r.sequence,
            role: r.role,
            text: r.text,
            payload: r.payload,
            parts: r.parts,
            client_message_id: r.client_message_id,
            exchange_id: r.exchange_id,
            exchange_state: r.exchange_state,
            lease_until: time_opt(r.lease_until),
            model: r.model,
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
            finish_reason: r.finish_reason,
            latency_ms: r.latency_ms,
            first_token_ms: r.first_token_ms,
            error_reason: r.error_reason,
            error_message: r.error_message,
            created_at: time(r.created_at),
        }
    }
}

impl From<chat_memories::Model> for MemoryRecord {
    fn from(r: chat_memories::Model) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            content: r.content,
            source_session_id: r.source_session_id,
            created_at: time(r.created_at),
        }
    }
}

impl From<usage_daily::Model> for UsageRecord {
    fn from(r: usage_daily::Model) -> Self {
        Self {
            user_id: r.user_id,
            day: r.day.format("%Y-%m-%d").to_string(),
            model: r.model,
            request_count: r.request_count,
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
        }
    }
}

impl From<service_account_users::Model> for ServiceAccountGrantRecord {
    fn from(r: service_account_users::Model) -> Self {
        Self {
            service_account_id: r.service_account_id,
            user_id: r.user_id,
        }
    }
}

impl From<audit_events::Model> for AuditEventRecord {
    fn from(r: audit_events::Model) -> Self {
        // Only the columns exported: never the chain's HMACs.
        let metadata =
            serde_json::from_str(&r.metadata).unwrap_or(serde_json::Value::String(r.metadata));
        Self {
            seq: r.seq,
            id: r.id,
            occurred_at: time(r.occurred_at),
            actor_user_id: r.actor_user_id,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            request_id: r.request_id,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            metadata,
        }
    }
}
