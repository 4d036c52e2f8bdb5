//! Gmail: a user's connection (state, sync progress, the sync lease, the sealed mail key), the
//! synced copy of their mail, its labels and a blind index of its words.
//!
//! - `gmail_connections`, one row per user who connected Gmail. The mail key (which seals the
//!   user's messages) is stored here sealed under the user's data key, so deleting the row, or
//!   the user's data key, makes every sealed message unreadable.
//! - `gmail_messages`: what Gmail calls a message, keyed by the user and Gmail's message id.
//!   Ids, thread id, label ids, dates, size and history id are clear; subject, addresses,
//!   snippet and attachment list (`sealed_header`) and body (`sealed_body`) are sealed with the
//!   mail key. `search_terms` repeats the message's blind index tokens (16 bytes each, end to
//!   end) so that replacing or deleting them finds exactly their primary keys; it tells no
//!   more than `gmail_search_terms` does.
//! - `gmail_message_labels`: one row per label a message carries, so that "carries every one
//!   of these labels" is a primary key probe per label.
//! - `gmail_search_terms`: one row per distinct word of a message, as a keyed 16-byte hash.
//!   A query's words must all match: an intersection over the primary key.
//!
//! Gmail's history ids are unsigned 64-bit numbers. They are stored as decimal text: BIGINT
//! is signed, so a value above `i64::MAX` would not fit, and nothing compares or adds history
//! ids in SQL.
//!
//! Every table hangs off `gmail_connections` (ON DELETE CASCADE), which hangs off `users`:
//! deleting the account or the connection removes the mail, and no message can be written
//! for a user without a connection row. On SQLite the labels and terms tables are `WITHOUT
//! ROWID`: their primary key is the whole row, so the table is its own index instead of a
//! rowid table plus a copy of every row in the key's index.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = manager.get_database_backend() == sea_orm::DatabaseBackend::Sqlite;
        manager
            .create_table(
                Table::create()
                    .table(GmailConnections::Table)
                    .if_not_exists()
                    .col(uuid(GmailConnections::UserId).primary_key())
                    // connected, reauth_required or not_connected.
                    .col(string_len(GmailConnections::State, 32))
                    .col(text_null(GmailConnections::EmailAddress))
                    // Granted scopes, separated by spaces (as OAuth writes them).
                    .col(text(GmailConnections::Scopes).default(""))
                    .col(timestamp_with_time_zone_null(GmailConnections::ConnectedAt))
                    .col(blob_null(GmailConnections::SealedMailKey))
                    // The version of the data key that sealed the mail key.
                    .col(integer_null(GmailConnections::MailKeyVersion))
                    // Decimal text: see the module documentation.
                    .col(text_null(GmailConnections::HistoryId))
                    // A full sync in progress: the history id read when it started (set while
                    // one runs), the next page token, and how many messages it has stored.
                    .col(text_null(GmailConnections::FullSyncHistoryId))
                    .col(text_null(GmailConnections::FullSyncPageToken))
                    .col(big_integer(GmailConnections::FullSyncFetched).default(0))
                    .col(timestamp_with_time_zone_null(
                        GmailConnections::FullSyncStartedAt,
                    ))
                    .col(timestamp_with_time_zone_null(GmailConnections::LastSyncAt))
                    .col(text_null(GmailConnections::LastErrorReason))
                    .col(text_null(GmailConnections::LastErrorMessage))
                    .col(timestamp_with_time_zone_null(GmailConnections::LastErrorAt))
                    .col(text_null(GmailConnections::SyncLeaseOwner))
                    .col(timestamp_with_time_zone_null(
                        GmailConnections::SyncLeaseExpiresAt,
                    ))
                    .col(timestamp_with_time_zone_null(
                        GmailConnections::NextSyncDueAt,
                    ))
                    .col(timestamp_with_time_zone(GmailConnections::CreatedAt))
                    .col(timestamp_with_time_zone(GmailConnections::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_gmail_connections_user")
                            .from(GmailConnections::Table, GmailConnections::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The background scheduler: connected users whose next sync is due, soonest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_gmail_connections_due")
                    .table(GmailConnections::Table)
                    .col(GmailConnections::State)
                    .col(GmailConnections::NextSyncDueAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GmailMessages::Table)
                    .if_not_exists()
                    .col(uuid(GmailMessages::UserId))
                    .col(text(GmailMessages::MessageId))
                    .col(text(GmailMessages::ThreadId))
                    // JSON array of Gmail label ids, as Gmail lists them.
                    .col(text(GmailMessages::LabelIds))
                    .col(timestamp_with_time_zone(GmailMessages::InternalDate))
                    .col(big_integer(GmailMessages::SizeEstimate))
                    .col(text(GmailMessages::HistoryId))
                    .col(blob(GmailMessages::SealedHeader))
                    .col(blob(GmailMessages::SealedBody))
                    .col(blob(GmailMessages::SearchTerms))
                    .col(timestamp_with_time_zone(GmailMessages::SyncedAt))
                    .primary_key(
                        Index::create()
                            .col(GmailMessages::UserId)
                            .col(GmailMessages::MessageId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_gmail_messages_connection")
                            .from(GmailMessages::Table, GmailMessages::UserId)
                            .to(GmailConnections::Table, GmailConnections::UserId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Newest first, keyset on (internal_date, message_id): both engines walk an index
        // backwards as fast as forwards.
        manager
            .create_index(
                Index::create()
                    .name("idx_gmail_messages_user_date")
                    .table(GmailMessages::Table)
                    .col(GmailMessages::UserId)
                    .col(GmailMessages::InternalDate)
                    .col(GmailMessages::MessageId)
                    .to_owned(),
            )
            .await?;
        // A thread's messages, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_gmail_messages_user_thread")
                    .table(GmailMessages::Table)
                    .col(GmailMessages::UserId)
                    .col(GmailMessages::ThreadId)
                    .col(GmailMessages::InternalDate)
                    .col(GmailMessages::MessageId)
                    .to_owned(),
            )
            .await?;

        let mut labels = Table::create();
        labels
            .table(GmailMessageLabels::Table)
            .if_not_exists()
            .col(uuid(GmailMessageLabels::UserId))
            .col(text(GmailMessageLabels::LabelId))
            .col(text(GmailMessageLabels::MessageId))
            .primary_key(
                Index::create()
                    .col(GmailMessageLabels::UserId)
                    .col(GmailMessageLabels::LabelId)
                    .col(GmailMessageLabels::MessageId),
            )
            .foreign_key(
                ForeignKey::create()
                    .name("fk_gmail_message_labels_connection")
                    .from(GmailMessageLabels::Table, GmailMessageLabels::UserId)
                    .to(GmailConnections::Table, GmailConnections::UserId)
                    .on_delete(ForeignKeyAction::Cascade),
            );
        if sqlite {
            labels.extra("WITHOUT ROWID");
        }
        manager.create_table(labels.to_owned()).await?;

        let mut terms = Table::create();
        terms
            .table(GmailSearchTerms::Table)
            .if_not_exists()
            .col(uuid(GmailSearchTerms::UserId))
            // 16 bytes: HMAC-SHA256 of a normalised word under the user's index key.
            .col(blob(GmailSearchTerms::Term))
            .col(text(GmailSearchTerms::MessageId))
            .primary_key(
                Index::create()
                    .col(GmailSearchTerms::UserId)
                    .col(GmailSearchTerms::Term)
                    .col(GmailSearchTerms::MessageId),
            )
            .foreign_key(
                ForeignKey::create()
                    .name("fk_gmail_search_terms_connection")
                    .from(GmailSearchTerms::Table, GmailSearchTerms::UserId)
                    .to(GmailConnections::Table, GmailConnections::UserId)
                    .on_delete(ForeignKeyAction::Cascade),
            );
        if sqlite {
            terms.extra("WITHOUT ROWID");
        }
        manager.create_table(terms.to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GmailSearchTerms::Table.into_iden(),
            GmailMessageLabels::Table.into_iden(),
            GmailMessages::Table.into_iden(),
            GmailConnections::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
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
enum GmailConnections {
    Table,
    UserId,
    State,
    EmailAddress,
    Scopes,
    ConnectedAt,
    SealedMailKey,
    MailKeyVersion,
    HistoryId,
    FullSyncHistoryId,
    FullSyncPageToken,
    FullSyncFetched,
    FullSyncStartedAt,
    LastSyncAt,
    LastErrorReason,
    LastErrorMessage,
    LastErrorAt,
    SyncLeaseOwner,
    SyncLeaseExpiresAt,
    NextSyncDueAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GmailMessages {
    Table,
    UserId,
    MessageId,
    ThreadId,
    LabelIds,
    InternalDate,
    SizeEstimate,
    HistoryId,
    SealedHeader,
    SealedBody,
    SearchTerms,
    SyncedAt,
}

#[derive(DeriveIden)]
enum GmailMessageLabels {
    Table,
    UserId,
    LabelId,
    MessageId,
}

#[derive(DeriveIden)]
enum GmailSearchTerms {
    Table,
    UserId,
    Term,
    MessageId,
}
