//! Per-user data keys, sealed API keys, and the append-only, hash-chained audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The hash that precedes the first audit row.
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserDataKeys::Table)
                    .if_not_exists()
                    .col(uuid(UserDataKeys::UserId).primary_key())
                    .col(string_len(UserDataKeys::KekId, 200))
                    .col(blob(UserDataKeys::WrappedKey))
                    .col(integer(UserDataKeys::KeyVersion))
                    .col(timestamp_with_time_zone(UserDataKeys::CreatedAt))
                    .col(timestamp_with_time_zone(UserDataKeys::RotatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_data_keys_user")
                            .from(UserDataKeys::Table, UserDataKeys::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_data_keys_kek")
                    .table(UserDataKeys::Table)
                    .col(UserDataKeys::KekId)
                    .col(UserDataKeys::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(uuid(ApiKeys::Id).primary_key())
                    .col(uuid(ApiKeys::UserId))
                    .col(string_len(ApiKeys::Provider, 32))
                    .col(blob(ApiKeys::SealedKey))
                    .col(string_len(ApiKeys::KeyHint, 16))
                    .col(string_len(ApiKeys::Status, 16))
                    .col(string_len_null(ApiKeys::StatusDetail, 500))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone(ApiKeys::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastValidatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_user")
                            .from(ApiKeys::Table, ApiKeys::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_user_provider")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::UserId)
                    .col(ApiKeys::Provider)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // The audit log keeps rows of deleted users (pseudonymously), so it has no foreign key.
        // Sequence numbers start at 1; verification also flags any row below that.
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(
                        big_integer(AuditEvents::Seq)
                            .primary_key()
                            .check(("ck_audit_events_seq", Expr::col(AuditEvents::Seq).gt(0))),
                    )
                    .col(uuid_uniq(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(uuid_null(AuditEvents::ActorUserId))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(string_len(AuditEvents::Target, 256))
                    .col(string_len(AuditEvents::Outcome, 16))
                    .col(string_len(AuditEvents::RequestId, 128))
                    .col(string_len_null(AuditEvents::ClientIp, 64))
                    .col(string_len_null(AuditEvents::UserAgent, 512))
                    .col(text(AuditEvents::Metadata))
                    .col(string_len(AuditEvents::PrevHash, 64))
                    .col(string_len(AuditEvents::Hash, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_actor")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ActorUserId)
                    .col(AuditEvents::Seq)
                    .to_owned(),
            )
            .await?;

        // One row: the sequence number and hash of the newest audit row, and an HMAC over both
        // with the audit chain key. Appenders lock it first, which serialises them on both
        // engines and lets verification notice a truncated tail. The key is not known here,
        // so the genesis head (0, GENESIS_HASH) gets an empty MAC, which verification accepts
        // for that state only.
        manager
            .create_table(
                Table::create()
                    .table(AuditChainHead::Table)
                    .if_not_exists()
                    .col(integer(AuditChainHead::Id).primary_key())
                    .col(big_integer(AuditChainHead::Seq))
                    .col(string_len(AuditChainHead::LastHash, 64))
                    .col(string_len(AuditChainHead::HeadMac, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(AuditChainHead::Table)
                    .columns([
                        AuditChainHead::Id,
                        AuditChainHead::Seq,
                        AuditChainHead::LastHash,
                        AuditChainHead::HeadMac,
                    ])
                    .values_panic([1.into(), 0i64.into(), GENESIS_HASH.into(), "".into()])
                    .to_owned(),
            )
            .await?;

        // Append-only: the database refuses updates and deletes of audit rows. Someone with
        // DDL rights can drop these triggers; the hash chain still exposes what they change.
        let db = manager.get_connection();
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE OR REPLACE FUNCTION assistd_audit_append_only() RETURNS trigger
                     LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$;
                     CREATE TRIGGER audit_events_append_only
                     BEFORE UPDATE OR DELETE ON audit_events
                     FOR EACH ROW EXECUTE FUNCTION assistd_audit_append_only();",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
                     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
                     CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
                     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS assistd_audit_append_only() CASCADE")
                .await?;
        }
        for table in [
            AuditChainHead::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            UserDataKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum UserDataKeys {
    Table,
    UserId,
    KekId,
    WrappedKey,
    KeyVersion,
    CreatedAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    UserId,
    Provider,
    SealedKey,
    KeyHint,
    Status,
    StatusDetail,
    CreatedAt,
    UpdatedAt,
    LastValidatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Seq,
    Id,
    OccurredAt,
    ActorUserId,
    Action,
    Target,
    Outcome,
    RequestId,
    ClientIp,
    UserAgent,
    Metadata,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditChainHead {
    Table,
    Id,
    Seq,
    LastHash,
    HeadMac,
}
