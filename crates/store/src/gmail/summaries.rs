//! AI summaries of synced messages and threads, sealed by the caller with the user's mail
//! key, and what decides whether a stored one is still current: the message's history id,
//! or the thread's newest message and message count.
//!
//! A summary can only be stored while what it summarises is: the rows hang off the synced
//! message (a thread summary off the thread's newest message) with ON DELETE CASCADE, so a
//! save racing a deletion stores nothing and reports it.

use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{GmailStore, history_text, history_value, is_foreign_key_violation, micros};
use crate::db_error;
use crate::entity::{gmail_message_summaries, gmail_messages, gmail_thread_summaries};

/// A stored summary of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessageSummary {
    /// The message's history id when it was summarised.
    pub source_history_id: u64,
    /// The summary, sealed with the mail key.
    pub sealed_summary: Vec<u8>,
    /// The model that wrote it.
    pub model: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// What a thread is now: its newest message and how many messages it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadState {
    /// The newest message (latest internal date, then greatest id).
    pub newest_message_id: String,
    /// How many of the user's synced messages are in the thread.
    pub message_count: u64,
}

/// A stored summary of one thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredThreadSummary {
    /// The thread as it was when summarised; the summary is current while it still is.
    pub source: ThreadState,
    /// How many of the thread's newest messages the summary read.
    pub covered_count: u64,
    /// The summary, sealed with the mail key.
    pub sealed_summary: Vec<u8>,
    /// The model that wrote it.
    pub model: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl GmailStore {
    /// The stored summary of the user's message `message_id`, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn message_summary(
        &self,
        user: UserId,
        message_id: &str,
    ) -> Result<Option<StoredMessageSummary>> {
        use gmail_message_summaries::Column;
        let row = gmail_message_summaries::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::MessageId.eq(message_id))
            .one(self.store.connection())
            .await
            .map_err(db_error)?;
        row.map(|row| {
            Ok(StoredMessageSummary {
                source_history_id: history_value(&row.source_history_id)?,
                sealed_summary: row.sealed_summary,
                model: row.model,
                created_at: row.created_at,
            })
        })
        .transpose()
    }

    /// Stores (or replaces) the summary of the user's message `message_id`. Returns `false`,
    /// storing nothing, when the message is no longer synced.
    ///
    /// # Errors
    /// The database failed.
    pub async fn save_message_summary(
        &self,
        user: UserId,
        message_id: &str,
        summary: &StoredMessageSummary,
    ) -> Result<bool> {
        use gmail_message_summaries::Column;
        let row = gmail_message_summaries::Model {
            user_id: user.as_uuid(),
            message_id: message_id.to_owned(),
            source_history_id: history_text(summary.source_history_id),
            sealed_summary: summary.sealed_summary.clone(),
            model: summary.model.clone(),
            created_at: micros(summary.created_at),
        };
        let written = gmail_message_summaries::Entity::insert(
            gmail_message_summaries::ActiveModel::from(row),
        )
        .on_conflict(
            OnConflict::columns([Column::UserId, Column::MessageId])
                .update_columns([
                    Column::SourceHistoryId,
                    Column::SealedSummary,
                    Column::Model,
                    Column::CreatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(self.store.connection())
        .await;
        match written {
            Ok(_) => Ok(true),
            Err(err) if is_foreign_key_violation(&err) => Ok(false),
            Err(err) => Err(db_error(err)),
        }
    }

    /// The user's thread `thread_id` as it is now; `None` when none of its messages is synced.
    ///
    /// # Errors
    /// The database failed.
    pub async fn thread_state(&self, user: UserId, thread_id: &str) -> Result<Option<ThreadState>> {
        use gmail_messages::Column;
        let db = self.store.connection();
        let newest: Option<String> = gmail_messages::Entity::find()
            .select_only()
            .column(Column::MessageId)
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::ThreadId.eq(thread_id))
            .order_by_desc(Column::InternalDate)
            .order_by_desc(Column::MessageId)
            .limit(1)
            .into_tuple()
            .one(db)
            .await
            .map_err(db_error)?;
        let Some(newest_message_id) = newest else {
            return Ok(None);
        };
        let message_count = gmail_messages::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::ThreadId.eq(thread_id))
            .count(db)
            .await
            .map_err(db_error)?;
        Ok(Some(ThreadState {
            newest_message_id,
            message_count,
        }))
    }

    /// The stored summary of the user's thread `thread_id`, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn thread_summary(
        &self,
        user: UserId,
        thread_id: &str,
    ) -> Result<Option<StoredThreadSummary>> {
        use gmail_thread_summaries::Column;
        let row = gmail_thread_summaries::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::ThreadId.eq(thread_id))
            .one(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| StoredThreadSummary {
            source: ThreadState {
                newest_message_id: row.newest_message_id,
                message_count: count(row.message_count),
            },
            covered_count: count(row.covered_count),
            sealed_summary: row.sealed_summary,
            model: row.model,
            created_at: row.created_at,
        }))
    }

    /// Stores (or replaces) the summary of the user's thread `thread_id`. Returns `false`,
    /// storing nothing, when the thread's newest message it names is no longer synced.
    ///
    /// # Errors
    /// The database failed.
    pub async fn save_thread_summary(
        &self,
        user: UserId,
        thread_id: &str,
        summary: &StoredThreadSummary,
    ) -> Result<bool> {
        use gmail_thread_summaries::Column;
        let row = gmail_thread_summaries::Model {
            user_id: user.as_uuid(),
            thread_id: thread_id.to_owned(),
            newest_message_id: summary.source.newest_message_id.clone(),
            message_count: signed(summary.source.message_count),
            covered_count: signed(summary.covered_count),
            sealed_summary: summary.sealed_summary.clone(),
            model: summary.model.clone(),
            created_at: micros(summary.created_at),
        };
        let written =
            gmail_thread_summaries::Entity::insert(gmail_thread_summaries::ActiveModel::from(row))
                .on_conflict(
                    OnConflict::columns([Column::UserId, Column::ThreadId])
                        .update_columns([
                            Column::NewestMessageId,
                            Column::MessageCount,
                            Column::CoveredCount,
                            Column::SealedSummary,
                            Column::Model,
                            Column::CreatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(self.store.connection())
                .await;
        match written {
            Ok(_) => Ok(true),
            Err(err) if is_foreign_key_violation(&err) => Ok(false),
            Err(err) => Err(db_error(err)),
        }
    }
}
