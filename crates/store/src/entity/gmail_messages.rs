//! The `gmail_messages` table: the synced copy of users' Gmail messages, header and body
//! sealed with the user's mail key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gmail_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    pub thread_id: String,
    /// JSON array of label ids.
    pub label_ids: String,
    pub internal_date: DateTimeUtc,
    pub size_estimate: i64,
    /// Decimal text of Gmail's unsigned 64-bit history id.
    pub history_id: String,
    pub sealed_header: Vec<u8>,
    pub sealed_body: Vec<u8>,
    /// The message's blind index tokens, 16 bytes each, end to end.
    pub search_terms: Vec<u8>,
    pub synced_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
