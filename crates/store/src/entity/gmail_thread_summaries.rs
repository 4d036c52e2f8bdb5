//! The `gmail_thread_summaries` table: AI summaries of synced threads, sealed with the user's
//! mail key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gmail_thread_summaries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub thread_id: String,
    /// The thread's newest message when it was summarised.
    pub newest_message_id: String,
    /// The thread's message count when it was summarised.
    pub message_count: i64,
    /// How many of the newest messages the summary read.
    pub covered_count: i64,
    pub sealed_summary: Vec<u8>,
    pub model: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
