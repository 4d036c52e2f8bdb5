//! The `gmail_triage_results` table: the AI triage of synced messages; the gist and rationale
//! sealed with the user's mail key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gmail_triage_results")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    pub category: String,
    pub priority: String,
    pub needs_reply: bool,
    pub sealed_note: Vec<u8>,
    pub model: String,
    pub triaged_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
