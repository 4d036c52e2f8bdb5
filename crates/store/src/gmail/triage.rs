//! Triage results of synced messages: category, priority and whether a reply is expected in
//! the clear (lists sort and filter by them), the gist and rationale sealed by the caller
//! with the user's mail key.
//!
//! A result hangs off its message with ON DELETE CASCADE; a save racing the message's
//! deletion skips that message.

use std::collections::HashMap;

use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{GmailStore, is_foreign_key_violation, micros};
use crate::db_error;
use crate::entity::gmail_triage_results;

/// Most ids one lookup binds.
const IDS_PER_STATEMENT: usize = 1_000;

/// The triage of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTriageResult {
    /// Gmail's message id.
    pub message_id: String,
    /// The category, as the caller names it.
    pub category: String,
    /// The priority, as the caller names it.
    pub priority: String,
    /// Whether the sender expects a reply.
    pub needs_reply: bool,
    /// Gist and rationale, sealed with the mail key.
    pub sealed_note: Vec<u8>,
    /// The model that triaged it.
    pub model: String,
    /// When.
    pub triaged_at: DateTime<Utc>,
}

fn result_of(row: gmail_triage_results::Model) -> StoredTriageResult {
    StoredTriageResult {
        message_id: row.message_id,
        category: row.category,
        priority: row.priority,
        needs_reply: row.needs_reply,
        sealed_note: row.sealed_note,
        model: row.model,
        triaged_at: row.triaged_at,
    }
}

impl GmailStore {
    /// The stored triage results of those of `message_ids` the user has one for, by id.
    ///
    /// # Errors
    /// The database failed.
    pub async fn triage_results(
        &self,
        user: UserId,
        message_ids: &[String],
    ) -> Result<HashMap<String, StoredTriageResult>> {
        use gmail_triage_results::Column;
        let mut found = HashMap::new();
        for chunk in message_ids.chunks(IDS_PER_STATEMENT) {
            let rows = gmail_triage_results::Entity::find()
                .filter(Column::UserId.eq(user.as_uuid()))
                .filter(Column::MessageId.is_in(chunk.iter().cloned()))
                .all(self.store.connection())
                .await
                .map_err(db_error)?;
            found.extend(
                rows.into_iter()
                    .map(|row| (row.message_id.clone(), result_of(row))),
            );
        }
        Ok(found)
    }

    /// Stores (or replaces) triage results; a result whose message is no longer synced is
    /// skipped. Returns how many were stored.
    ///
    /// # Errors
    /// The database failed.
    pub async fn save_triage_results(
        &self,
        user: UserId,
        results: &[StoredTriageResult],
    ) -> Result<usize> {
        use gmail_triage_results::Column;
        let mut stored = 0;
        // One statement each, outside a transaction: on PostgreSQL a refused row (its
        // message deleted meanwhile) would abort a transaction and lose the others.
        for result in results {
            let row = gmail_triage_results::Model {
                user_id: user.as_uuid(),
                message_id: result.message_id.clone(),
                category: result.category.clone(),
                priority: result.priority.clone(),
                needs_reply: result.needs_reply,
                sealed_note: result.sealed_note.clone(),
                model: result.model.clone(),
                triaged_at: micros(result.triaged_at),
            };
            let written =
                gmail_triage_results::Entity::insert(gmail_triage_results::ActiveModel::from(row))
                    .on_conflict(
                        OnConflict::columns([Column::UserId, Column::MessageId])
                            .update_columns([
                                Column::Category,
                                Column::Priority,
                                Column::NeedsReply,
                                Column::SealedNote,
                                Column::Model,
                                Column::TriagedAt,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(self.store.connection())
                    .await;
            match written {
                Ok(_) => stored += 1,
                Err(err) if is_foreign_key_violation(&err) => {}
                Err(err) => return Err(db_error(err)),
            }
        }
        Ok(stored)
    }

    /// The user's stored triage results that expect a reply, most recently triaged first: at
    /// most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn triage_needing_reply(
        &self,
        user: UserId,
        limit: u64,
    ) -> Result<Vec<StoredTriageResult>> {
        use gmail_triage_results::Column;
        let rows = gmail_triage_results::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::NeedsReply.eq(true))
            .order_by_desc(Column::TriagedAt)
            .order_by_desc(Column::MessageId)
            .limit(limit)
            .all(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(result_of).collect())
    }
}
