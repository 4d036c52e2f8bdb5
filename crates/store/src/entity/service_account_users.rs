//! The `service_account_users` table: the users a service account may act for, when it may
//! not act for any user. A deleted account's rows go with it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "service_account_users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub service_account_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
