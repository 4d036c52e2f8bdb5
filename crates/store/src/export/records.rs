//! The exported records: one struct per record type, each an explicit list of the columns it
//! exports, under their column names.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Timestamps as RFC 3339 in UTC with microseconds, the precision they are stored with.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(super) fn time_opt(at: Option<DateTime<Utc>>) -> Option<String> {
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
