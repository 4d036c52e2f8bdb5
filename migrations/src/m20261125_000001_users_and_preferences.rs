//! Users and their preferences.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(uuid(Users::Id).primary_key())
                    .col(string_len_null(Users::DisplayName, 200))
                    .col(string_len_null(Users::Email, 320))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Preferences::Table)
                    .if_not_exists()
                    .col(uuid(Preferences::UserId).primary_key())
                    .col(string_len(Preferences::Theme, 16))
                    .col(string_len(Preferences::Language, 35))
                    .col(string_len(Preferences::Timezone, 64))
                    .col(string_len_null(Preferences::DefaultModel, 64))
                    .col(big_integer(Preferences::Version))
                    .col(timestamp_with_time_zone(Preferences::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_preferences_user")
                            .from(Preferences::Table, Preferences::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Preferences::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    DisplayName,
    Email,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Preferences {
    Table,
    UserId,
    Theme,
    Language,
    Timezone,
    DefaultModel,
    Version,
    UpdatedAt,
}
