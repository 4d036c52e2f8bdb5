//! What the AI makes of synced mail: summaries of messages and threads, and triage results.
//!
//! - `gmail_message_summaries`: one per user and message. The summary (text, key points,
//!   action items) is sealed with the user's mail key; `source_history_id` is the message's
//!   Gmail history id when it was summarised, so a summary is reused until the message is
//!   stored again with another one.
//! - `gmail_thread_summaries`: one per user and thread, sealed likewise; current while the
//!   thread's newest message and its message count are still `newest_message_id` and
//!   `message_count`. `covered_count` says how many of the newest messages the summary read.
//! - `gmail_triage_results`: one per user and message: category, priority and whether a reply
//!   is expected in the clear (what lists sort and filter by), the gist and rationale sealed.
//!
//! Every row hangs off a synced message with ON DELETE CASCADE (a thread summary off the
//! thread's newest message): a message deleted in Gmail, a Disconnect that deletes the mail
//! and an account deletion all remove what was derived from it. A Disconnect that keeps the
//! mail keeps these rows too.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// ON DELETE CASCADE from `(user_id, column)` to the synced message it names.
fn off_message<T: Iden + Clone + 'static, C: Iden + Clone + 'static>(
    name: &str,
    table: T,
    user: C,
    message: C,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, (user, message))
        .to(
            GmailMessages::Table,
            (GmailMessages::UserId, GmailMessages::MessageId),
        )
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GmailMessageSummaries::Table)
                    .if_not_exists()
                    .col(uuid(GmailMessageSummaries::UserId))
                    .col(text(GmailMessageSummaries::MessageId))
                    .col(text(GmailMessageSummaries::SourceHistoryId))
                    .col(blob(GmailMessageSummaries::SealedSummary))
                    .col(text(GmailMessageSummaries::Model))
                    .col(timestamp_with_time_zone(GmailMessageSummaries::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GmailMessageSummaries::UserId)
                            .col(GmailMessageSummaries::MessageId),
                    )
                    .foreign_key(&mut off_message(
                        "fk_gmail_message_summaries_message",
                        GmailMessageSummaries::Table,
                        GmailMessageSummaries::UserId,
                        GmailMessageSummaries::MessageId,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GmailThreadSummaries::Table)
                    .if_not_exists()
                    .col(uuid(GmailThreadSummaries::UserId))
                    .col(text(GmailThreadSummaries::ThreadId))
                    .col(text(GmailThreadSummaries::NewestMessageId))
                    .col(big_integer(GmailThreadSummaries::MessageCount))
                    .col(big_integer(GmailThreadSummaries::CoveredCount))
                    .col(blob(GmailThreadSummaries::SealedSummary))
                    .col(text(GmailThreadSummaries::Model))
                    .col(timestamp_with_time_zone(GmailThreadSummaries::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GmailThreadSummaries::UserId)
                            .col(GmailThreadSummaries::ThreadId),
                    )
                    .foreign_key(&mut off_message(
                        "fk_gmail_thread_summaries_newest",
                        GmailThreadSummaries::Table,
                        GmailThreadSummaries::UserId,
                        GmailThreadSummaries::NewestMessageId,
                    ))
                    .to_owned(),
            )
            .await?;
        // The cascade from a deleted newest message looks its summaries up by this.
        manager
            .create_index(
                Index::create()
                    .name("idx_gmail_thread_summaries_newest")
                    .table(GmailThreadSummaries::Table)
                    .col(GmailThreadSummaries::UserId)
                    .col(GmailThreadSummaries::NewestMessageId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GmailTriageResults::Table)
                    .if_not_exists()
                    .col(uuid(GmailTriageResults::UserId))
                    .col(text(GmailTriageResults::MessageId))
                    .col(string_len(GmailTriageResults::Category, 32))
                    .col(string_len(GmailTriageResults::Priority, 32))
                    .col(boolean(GmailTriageResults::NeedsReply))
                    .col(blob(GmailTriageResults::SealedNote))
                    .col(text(GmailTriageResults::Model))
                    .col(timestamp_with_time_zone(GmailTriageResults::TriagedAt))
                    .primary_key(
                        Index::create()
                            .col(GmailTriageResults::UserId)
                            .col(GmailTriageResults::MessageId),
                    )
                    .foreign_key(&mut off_message(
                        "fk_gmail_triage_results_message",
                        GmailTriageResults::Table,
                        GmailTriageResults::UserId,
                        GmailTriageResults::MessageId,
                    ))
                    .to_owned(),
            )
            .await?;
        // The messages that need a reply, newest triage first.
        manager
            .create_index(
                Index::create()
                    .name("idx_gmail_triage_results_reply")
                    .table(GmailTriageResults::Table)
                    .col(GmailTriageResults::UserId)
                    .col(GmailTriageResults::NeedsReply)
                    .col(GmailTriageResults::TriagedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GmailTriageResults::Table.into_iden(),
            GmailThreadSummaries::Table.into_iden(),
            GmailMessageSummaries::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone)]
enum GmailMessages {
    Table,
    UserId,
    MessageId,
}

#[derive(DeriveIden, Clone)]
enum GmailMessageSummaries {
    Table,
    UserId,
    MessageId,
    SourceHistoryId,
    SealedSummary,
    Model,
    CreatedAt,
}

#[derive(DeriveIden, Clone)]
enum GmailThreadSummaries {
    Table,
    UserId,
    ThreadId,
    NewestMessageId,
    MessageCount,
    CoveredCount,
    SealedSummary,
    Model,
    CreatedAt,
}

#[derive(DeriveIden, Clone)]
enum GmailTriageResults {
    Table,
    UserId,
    MessageId,
    Category,
    Priority,
    NeedsReply,
    SealedNote,
    Model,
    TriagedAt,
}
