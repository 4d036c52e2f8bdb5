//! The `audit_events` table: append-only, each row chained to its predecessor by hash.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTimeUtc,
    pub actor_user_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
