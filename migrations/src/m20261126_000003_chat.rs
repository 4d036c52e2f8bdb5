//! Chat: sessions, their messages with full-text search over USER and MODEL text, the facts
//! the assistant remembers, daily model usage and the users' token budgets.
//!
//! Full-text search differs by engine. On SQLite an FTS5 table indexes the text through
//! triggers; its external content is a view of exactly the indexed rows, so that FTS5's
//! `integrity-check` (with rank 1) can compare the index with its source, and `rebuild`
//! restores it. On PostgreSQL a generated `tsvector` column with a GIN index does the same;
//! queries filter by role there.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatSessions::Table)
                    .if_not_exists()
                    .col(uuid(ChatSessions::Id).primary_key())
                    .col(uuid(ChatSessions::UserId))
                    .col(text(ChatSessions::Title).default(""))
                    .col(boolean(ChatSessions::TitleGenerated).default(false))
                    .col(text(ChatSessions::SystemInstruction).default(""))
                    .col(text(ChatSessions::Model).default(""))
                    .col(boolean(ChatSessions::Pinned).default(false))
                    .col(boolean(ChatSessions::Archived).default(false))
                    .col(big_integer(ChatSessions::MessageCount).default(0))
                    // The sequence allocator: the last sequence number handed out.
                    .col(big_integer(ChatSessions::LastSequence).default(0))
                    .col(timestamp_with_time_zone(ChatSessions::CreatedAt))
                    .col(timestamp_with_time_zone(ChatSessions::UpdatedAt))
                    .col(timestamp_with_time_zone(ChatSessions::LastActivityAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_sessions_user")
                            .from(ChatSessions::Table, ChatSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_sessions_user_activity")
                    .table(ChatSessions::Table)
                    .col(ChatSessions::UserId)
                    .col(ChatSessions::LastActivityAt)
                    .col(ChatSessions::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChatMessages::Table)
                    .if_not_exists()
                    .col(uuid(ChatMessages::Id).primary_key())
                    .col(uuid(ChatMessages::UserId))
                    .col(uuid(ChatMessages::SessionId))
                    .col(big_integer(ChatMessages::Sequence))
                    .col(text(ChatMessages::Role))
                    .col(text_null(ChatMessages::Text))
                    .col(text_null(ChatMessages::Payload))
                    .col(text_null(ChatMessages::Parts))
                    .col(text_null(ChatMessages::ClientMessageId))
                    .col(uuid_null(ChatMessages::ExchangeId))
                    .col(text_null(ChatMessages::ExchangeState))
                    .col(timestamp_with_time_zone_null(ChatMessages::LeaseUntil))
                    .col(text_null(ChatMessages::Model))
                    .col(big_integer_null(ChatMessages::PromptTokens))
                    .col(big_integer_null(ChatMessages::OutputTokens))
                    .col(big_integer_null(ChatMessages::TotalTokens))
                    .col(text_null(ChatMessages::FinishReason))
                    .col(big_integer_null(ChatMessages::LatencyMs))
                    .col(big_integer_null(ChatMessages::FirstTokenMs))
                    .col(text_null(ChatMessages::ErrorReason))
                    .col(text_null(ChatMessages::ErrorMessage))
                    .col(timestamp_with_time_zone(ChatMessages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_messages_user")
                            .from(ChatMessages::Table, ChatMessages::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_messages_session")
                            .from(ChatMessages::Table, ChatMessages::SessionId)
                            .to(ChatSessions::Table, ChatSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pages of a session's history walk this index; it is also the allocator's backstop.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_messages_session_sequence")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::SessionId)
                    .col(ChatMessages::Sequence)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One send per client message id and user. Messages without one (NULL) never collide:
        // both engines treat NULLs in a unique index as distinct.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_messages_client_message_id")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::UserId)
                    .col(ChatMessages::ClientMessageId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_messages_exchange")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::ExchangeId)
                    .to_owned(),
            )
            .await?;
        // Search results are ordered newest first per user.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_messages_user_created")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::UserId)
                    .col(ChatMessages::CreatedAt)
                    .col(ChatMessages::Id)
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE chat_messages ADD COLUMN search tsvector
                     GENERATED ALWAYS AS (to_tsvector('simple', coalesce(text, ''))) STORED;
                     CREATE INDEX idx_chat_messages_search ON chat_messages USING GIN (search);",
                )
                .await?;
            }
            _ => {
                // The view is the index's external content: exactly the rows the triggers
                // index, under the message's rowid. Cascaded deletes (of a session or a user)
                // fire the delete trigger like direct ones. SQLite reserves the right to
                // renumber implicit rowids on VACUUM; should it ever, rebuilding the index
                // (`INSERT INTO chat_messages_fts (chat_messages_fts) VALUES ('rebuild')`)
                // reads it afresh from the view.
                db.execute_unprepared(
                    "CREATE VIEW chat_messages_searchable AS
                       SELECT rowid AS message_rowid, text FROM chat_messages
                       WHERE role IN ('user', 'model') AND text IS NOT NULL;
                     CREATE VIRTUAL TABLE chat_messages_fts USING fts5(
                       text,
                       content = 'chat_messages_searchable',
                       content_rowid = 'message_rowid',
                       tokenize = 'unicode61 remove_diacritics 2'
                     );
                     CREATE TRIGGER chat_messages_fts_insert AFTER INSERT ON chat_messages
                     WHEN new.role IN ('user', 'model') AND new.text IS NOT NULL
                     BEGIN
                       INSERT INTO chat_messages_fts (rowid, text) VALUES (new.rowid, new.text);
                     END;
                     CREATE TRIGGER chat_messages_fts_delete AFTER DELETE ON chat_messages
                     WHEN old.role IN ('user', 'model') AND old.text IS NOT NULL
                     BEGIN
                       INSERT INTO chat_messages_fts (chat_messages_fts, rowid, text)
                       VALUES ('delete', old.rowid, old.text);
                     END;
                     CREATE TRIGGER chat_messages_fts_update AFTER UPDATE OF text, role
                     ON chat_messages
                     BEGIN
                       INSERT INTO chat_messages_fts (chat_messages_fts, rowid, text)
                       SELECT 'delete', old.rowid, old.text
                       WHERE old.role IN ('user', 'model') AND old.text IS NOT NULL;
                       INSERT INTO chat_messages_fts (rowid, text)
                       SELECT new.rowid, new.text
                       WHERE new.role IN ('user', 'model') AND new.text IS NOT NULL;
                     END;",
                )
                .await?;
            }
        }

        manager
            .create_table(
                Table::create()
                    .table(ChatMemories::Table)
                    .if_not_exists()
                    .col(uuid(ChatMemories::Id).primary_key())
                    .col(uuid(ChatMemories::UserId))
                    .col(text(ChatMemories::Content))
                    .col(uuid_null(ChatMemories::SourceSessionId))
                    .col(timestamp_with_time_zone(ChatMemories::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_memories_user")
                            .from(ChatMemories::Table, ChatMemories::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_memories_session")
                            .from(ChatMemories::Table, ChatMemories::SourceSessionId)
                            .to(ChatSessions::Table, ChatSessions::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_memories_user_created")
                    .table(ChatMemories::Table)
                    .col(ChatMemories::UserId)
                    .col(ChatMemories::CreatedAt)
                    .col(ChatMemories::Id)
                    .to_owned(),
            )
            .await?;
        // Lets ON DELETE SET NULL find a deleted session's memories without a scan.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_memories_source_session")
                    .table(ChatMemories::Table)
                    .col(ChatMemories::SourceSessionId)
                    .to_owned(),
            )
            .await?;

        // `day` is a DATE on PostgreSQL and 'YYYY-MM-DD' text on SQLite: both sort and
        // compare as days.
        manager
            .create_table(
                Table::create()
                    .table(UsageDaily::Table)
                    .if_not_exists()
                    .col(uuid(UsageDaily::UserId))
                    .col(date(UsageDaily::Day))
                    .col(text(UsageDaily::Model))
                    .col(big_integer(UsageDaily::RequestCount))
                    .col(big_integer(UsageDaily::PromptTokens))
                    .col(big_integer(UsageDaily::OutputTokens))
                    .col(big_integer(UsageDaily::TotalTokens))
                    .primary_key(
                        Index::create()
                            .col(UsageDaily::UserId)
                            .col(UsageDaily::Day)
                            .col(UsageDaily::Model),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_usage_daily_user")
                            .from(UsageDaily::Table, UsageDaily::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TokenBudgets::Table)
                    .if_not_exists()
                    .col(uuid(TokenBudgets::UserId).primary_key())
                    .col(big_integer_null(TokenBudgets::MonthlyLimit))
                    .col(timestamp_with_time_zone(TokenBudgets::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_token_budgets_user")
                            .from(TokenBudgets::Table, TokenBudgets::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "DROP TRIGGER IF EXISTS chat_messages_fts_insert;
                     DROP TRIGGER IF EXISTS chat_messages_fts_delete;
                     DROP TRIGGER IF EXISTS chat_messages_fts_update;
                     DROP TABLE IF EXISTS chat_messages_fts;
                     DROP VIEW IF EXISTS chat_messages_searchable;",
                )
                .await?;
        }
        for table in [
            TokenBudgets::Table.into_iden(),
            UsageDaily::Table.into_iden(),
            ChatMemories::Table.into_iden(),
            ChatMessages::Table.into_iden(),
            ChatSessions::Table.into_iden(),
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
enum ChatSessions {
    Table,
    Id,
    UserId,
    Title,
    TitleGenerated,
    SystemInstruction,
    Model,
    Pinned,
    Archived,
    MessageCount,
    LastSequence,
    CreatedAt,
    UpdatedAt,
    LastActivityAt,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Id,
    UserId,
    SessionId,
    Sequence,
    Role,
    Text,
    Payload,
    Parts,
    ClientMessageId,
    ExchangeId,
    ExchangeState,
    LeaseUntil,
    Model,
    PromptTokens,
    OutputTokens,
    TotalTokens,
    FinishReason,
    LatencyMs,
    FirstTokenMs,
    ErrorReason,
    ErrorMessage,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChatMemories {
    Table,
    Id,
    UserId,
    Content,
    SourceSessionId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    UserId,
    Day,
    Model,
    RequestCount,
    PromptTokens,
    OutputTokens,
    TotalTokens,
}

#[derive(DeriveIden)]
enum TokenBudgets {
    Table,
    UserId,
    MonthlyLimit,
    UpdatedAt,
}
