//! Service accounts: other backends that call assistd as themselves. Only the Ed25519 public
//! key of each is kept; the private key is shown once, when the account is created.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ServiceAccounts::Table)
                    .if_not_exists()
                    .col(uuid(ServiceAccounts::Id).primary_key())
                    .col(string_len_uniq(ServiceAccounts::Name, 64))
                    .col(blob(ServiceAccounts::PublicKey))
                    // Full gRPC method paths, one per line.
                    .col(text(ServiceAccounts::AllowedMethods))
                    .col(boolean(ServiceAccounts::AnyUser))
                    .col(timestamp_with_time_zone(ServiceAccounts::CreatedAt))
                    .col(timestamp_with_time_zone_null(ServiceAccounts::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServiceAccountUsers::Table)
                    .if_not_exists()
                    .col(uuid(ServiceAccountUsers::ServiceAccountId))
                    .col(uuid(ServiceAccountUsers::UserId))
                    .primary_key(
                        Index::create()
                            .col(ServiceAccountUsers::ServiceAccountId)
                            .col(ServiceAccountUsers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_service_account_users_account")
                            .from(
                                ServiceAccountUsers::Table,
                                ServiceAccountUsers::ServiceAccountId,
                            )
                            .to(ServiceAccounts::Table, ServiceAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_service_account_users_user")
                            .from(ServiceAccountUsers::Table, ServiceAccountUsers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_service_account_users_user")
                    .table(ServiceAccountUsers::Table)
                    .col(ServiceAccountUsers::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ServiceAccountUsers::Table.into_iden(),
            ServiceAccounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ServiceAccounts {
    Table,
    Id,
    Name,
    PublicKey,
    AllowedMethods,
    AnyUser,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ServiceAccountUsers {
    Table,
    ServiceAccountId,
    UserId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
