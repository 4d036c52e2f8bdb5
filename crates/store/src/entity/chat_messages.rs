//! The `chat_messages` table: the messages of chat sessions, numbered per session. On
//! PostgreSQL it also has a generated `search` column, which no query here reads back.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub sequence: i64,
    pub role: String,
    pub text: Option<String>,
    /// JSON of a function call or result.
    pub payload: Option<String>,
    /// JSON array of Gemini parts, verbatim.
    pub parts: Option<String>,
    pub client_message_id: Option<String>,
    pub exchange_id: Option<Uuid>,
    pub exchange_state: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub finish_reason: Option<String>,
    pub latency_ms: Option<i64>,
    pub first_token_ms: Option<i64>,
    pub error_reason: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
