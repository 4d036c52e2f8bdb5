//! The `gmail_message_summaries` table: AI summaries of synced messages, sealed with the
//! user's mail key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gmail_message_summaries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    /// The message's history id (decimal text) when it was summarised.
    pub source_history_id: String,
    pub sealed_summary: Vec<u8>,
    pub model: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
