//! The `google_links` table: a user's Google OAuth tokens, sealed with their data key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "google_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub sealed_access_token: Option<Vec<u8>>,
    pub access_expires_at: Option<DateTimeUtc>,
    pub sealed_refresh_token: Option<Vec<u8>>,
    pub scopes: String,
    pub reauth_required: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
