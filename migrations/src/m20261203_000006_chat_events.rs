//! Chat events: what changed in a user's chat (sessions created, updated or deleted, messages
//! committed, exchanges finished), numbered per user so that a watcher resumes after the last
//! event it saw. Each event is written in the transaction of the change it reports, so a
//! committed change always has its event. `chat_event_heads` hands out the numbers: a write
//! bumps the user's `last_seq` and uses the numbers it got, which on PostgreSQL locks the row
//! until the transaction ends, so a user's events commit in the order of their numbers.
//!
//! Events keep ids, not content: a watcher reads the session or message as it is when the event
//! is delivered. No foreign key ties an event to its session, so a deleted session's events
//! stay until they are pruned by age.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatEventHeads::Table)
                    .if_not_exists()
                    .col(uuid(ChatEventHeads::UserId).primary_key())
                    .col(big_integer(ChatEventHeads::LastSeq).default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_event_heads_user")
                            .from(ChatEventHeads::Table, ChatEventHeads::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChatEvents::Table)
                    .if_not_exists()
                    .col(uuid(ChatEvents::UserId))
                    .col(big_integer(ChatEvents::Seq))
                    .col(string_len(ChatEvents::Kind, 32))
                    .col(uuid(ChatEvents::SessionId))
                    .col(uuid_null(ChatEvents::MessageId))
                    // How an exchange ended ("done" or "failed"); empty for other kinds.
                    .col(string_len(ChatEvents::Detail, 32).default(""))
                    .col(timestamp_with_time_zone(ChatEvents::CreatedAt))
                    .primary_key(Index::create().col(ChatEvents::UserId).col(ChatEvents::Seq))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_events_user")
                            .from(ChatEvents::Table, ChatEvents::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruning by age.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_events_created")
                    .table(ChatEvents::Table)
                    .col(ChatEvents::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ChatEvents::Table.into_iden(),
            ChatEventHeads::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ChatEventHeads {
    Table,
    UserId,
    LastSeq,
}

#[derive(DeriveIden)]
enum ChatEvents {
    Table,
    UserId,
    Seq,
    Kind,
    SessionId,
    MessageId,
    Detail,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
