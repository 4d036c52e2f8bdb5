//! The `gmail_connections` table: a user's Gmail connection, its sync progress and lease, and
//! the mail key sealed under the user's data key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gmail_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub state: String,
    pub email_address: Option<String>,
    /// Space-separated.
    pub scopes: String,
    pub connected_at: Option<DateTimeUtc>,
    pub sealed_mail_key: Option<Vec<u8>>,
    pub mail_key_version: Option<i32>,
    /// Decimal text of Gmail's unsigned 64-bit history id.
    pub history_id: Option<String>,
    pub full_sync_history_id: Option<String>,
    pub full_sync_page_token: Option<String>,
    pub full_sync_fetched: i64,
    pub full_sync_started_at: Option<DateTimeUtc>,
    pub last_sync_at: Option<DateTimeUtc>,
    pub last_error_reason: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<DateTimeUtc>,
    pub sync_lease_owner: Option<String>,
    pub sync_lease_expires_at: Option<DateTimeUtc>,
    pub next_sync_due_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
