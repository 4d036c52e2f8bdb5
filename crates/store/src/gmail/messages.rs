//! The synced messages: writing them with their labels and blind index tokens, changing
//! labels, deleting, reading one, and listing or searching newest first by keyset.
//!
//! A search is exact: every term must be among the message's tokens, every label among its
//! labels, and the thread, when given, its thread. Terms and labels are postings, each a
//! range of a primary key (`gmail_search_terms`, `gmail_message_labels`). The list is planned
//! per call from the postings' sizes: either the shortest posting drives (its rows are looked
//! up, sorted, and the page cut), or the user's messages are walked newest first and each is
//! probed in every posting until the page is full — whichever reads fewer rows by an
//! estimate. The caller checks phrases after opening the candidates.

use std::collections::HashSet;

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryResult,
    QuerySelect,
};

use super::search_plan::{choose_driver, list_statement, postings_of};
use super::{GmailConnectionState, GmailStore, history_text, history_value, micros};
use crate::entity::{gmail_connections, gmail_message_labels, gmail_messages, gmail_search_terms};
use crate::{Backend, db_error};

/// One blind index token: the first 16 bytes of HMAC-SHA256 of a normalised word under the
/// user's index key.
pub type SearchTerm = [u8; 16];

/// Length of a [`SearchTerm`].
const TERM_LEN: usize = 16;

/// Most values one statement binds when deleting or inserting index rows: far below both
/// engines' limits on bound parameters (32,766 on SQLite, 65,535 on PostgreSQL).
const ROWS_PER_STATEMENT: usize = 1_000;

/// The messages as the list statement names them.
pub(super) const M: &str = "m";

/// A message to store, as the sync read it from Gmail (header and body already sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGmailMessage {
    /// Gmail's message id.
    pub message_id: String,
    /// Gmail's thread id.
    pub thread_id: String,
    /// Gmail's label ids (`INBOX`, `UNREAD`, `Label_12`, …).
    pub label_ids: Vec<String>,
    /// Gmail's `internalDate`.
    pub internal_date: DateTime<Utc>,
    /// Gmail's `sizeEstimate`, in bytes.
    pub size_estimate: i64,
    /// Gmail's `historyId` of the message.
    pub history_id: u64,
    /// Subject, addresses, snippet, attachment list and whether the body was cut, sealed
    /// with the mail key (purpose `gmail_message_header`, record = message id).
    pub sealed_header: Vec<u8>,
    /// The body text, sealed with the mail key (purpose `gmail_message_body`, record =
    /// message id).
    pub sealed_body: Vec<u8>,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGmailMessage {
    /// Gmail's message id.
    pub message_id: String,
    /// Gmail's thread id.
    pub thread_id: String,
    /// Gmail's label ids, in the order last stored.
    pub label_ids: Vec<String>,
    /// Gmail's `internalDate`.
    pub internal_date: DateTime<Utc>,
    /// Gmail's `sizeEstimate`, in bytes.
    pub size_estimate: i64,
    /// Gmail's `historyId` of the message when it was stored.
    pub history_id: u64,
    /// The sealed header.
    pub sealed_header: Vec<u8>,
    /// The sealed body, when asked for.
    pub sealed_body: Option<Vec<u8>>,
    /// When it was (last) stored.
    pub synced_at: DateTime<Utc>,
}

/// Which messages a list returns: all of the terms, all of the labels, and the thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Blind index tokens the message must all have; none = every message.
    pub terms: Vec<SearchTerm>,
    /// Labels the message must all carry.
    pub label_ids: Vec<String>,
    /// The thread the message must be in.
    pub thread_id: Option<String>,
    /// Whether to read the sealed bodies too (for checking phrases); listing without them
    /// reads far less.
    pub include_bodies: bool,
}

impl GmailStore {
    /// Stores a message (insert, or replace the stored one with the same id), its labels and
    /// its blind index `terms` (duplicates ignored), replacing whatever labels and terms it
    /// had, in one transaction: storing the same message twice leaves one row and one set of
    /// terms. Returns `false`, storing nothing, when the user's connection is missing or not
    /// `connected` (a disconnect or a broken grant stops a running sync here).
    ///
    /// # Errors
    /// The database failed.
    pub async fn upsert_message(
        &self,
        user: UserId,
        message: &NewGmailMessage,
        terms: &[SearchTerm],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.upsert_messages(user, &[(message.clone(), terms.to_vec())], now)
            .await
    }

    /// Stores several messages as [`upsert_message`](Self::upsert_message) does, all in one
    /// transaction: all or none. Cheaper per message than one transaction each, because the
    /// index rows of a message land at random places of the terms table (their key starts
    /// with a hash), and a transaction writes each page it touched once however many rows it
    /// added there. Returns `false`, storing nothing, when the user's connection is missing or
    /// not `connected`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn upsert_messages(
        &self,
        user: UserId,
        messages: &[(NewGmailMessage, Vec<SearchTerm>)],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let txn = self.store.begin_write().await?;
        if !connected(&txn, self.store.backend(), user).await? {
            txn.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        for (message, terms) in messages {
            write_message(&txn, user, message, terms, now).await?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Replaces the labels of the user's message `message_id`. Returns `false` when the user
    /// has no such message.
    ///
    /// # Errors
    /// The database failed.
    pub async fn update_labels(
        &self,
        user: UserId,
        message_id: &str,
        label_ids: &[String],
    ) -> Result<bool> {
        use gmail_messages::Column;
        let txn = self.store.begin_write().await?;
        let Some((old, _)) = indexed_of(&txn, user, message_id).await? else {
            txn.rollback().await.map_err(db_error)?;
            return Ok(false);
        };
        let labels = distinct_labels(label_ids);
        delete_labels(&txn, user, message_id, &old).await?;
        insert_labels(&txn, user, message_id, &labels).await?;
        gmail_messages::Entity::update_many()
            .col_expr(Column::LabelIds, Expr::value(labels_json(&labels)?))
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::MessageId.eq(message_id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Deletes the user's message `message_id` with its labels and index terms. Returns
    /// whether there was one.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_message(&self, user: UserId, message_id: &str) -> Result<bool> {
        use gmail_messages::Column;
        let txn = self.store.begin_write().await?;
        let Some((labels, terms)) = indexed_of(&txn, user, message_id).await? else {
            txn.rollback().await.map_err(db_error)?;
            return Ok(false);
        };
        delete_labels(&txn, user, message_id, &labels).await?;
        delete_terms(&txn, user, message_id, &terms).await?;
        gmail_messages::Entity::delete_many()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::MessageId.eq(message_id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// The user's message `message_id` with its sealed body, if the user has it.
    ///
    /// # Errors
    /// The database failed.
    pub async fn get_message(
        &self,
        user: UserId,
        message_id: &str,
    ) -> Result<Option<StoredGmailMessage>> {
        use gmail_messages::Column;
        let mut select = message_select(true);
        select
            .from_as(gmail_messages::Entity, M)
            .and_where(Expr::col((M, Column::UserId)).eq(user.as_uuid()))
            .and_where(Expr::col((M, Column::MessageId)).eq(message_id));
        self.store
            .connection()
            .query_one(&select)
            .await
            .map_err(db_error)?
            .map(|row| message_of(&row, true))
            .transpose()
    }

    /// Which of `message_ids` the user has stored (to skip fetching them again).
    ///
    /// # Errors
    /// The database failed.
    pub async fn stored_message_ids(
        &self,
        user: UserId,
        message_ids: &[String],
    ) -> Result<HashSet<String>> {
        use gmail_messages::Column;
        let mut found = HashSet::new();
        for chunk in message_ids.chunks(ROWS_PER_STATEMENT) {
            let ids: Vec<String> = gmail_messages::Entity::find()
                .select_only()
                .column(Column::MessageId)
                .filter(Column::UserId.eq(user.as_uuid()))
                .filter(Column::MessageId.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(self.store.connection())
                .await
                .map_err(db_error)?;
            found.extend(ids);
        }
        Ok(found)
    }

    /// The user's messages that pass `filter`, newest first (`internal_date`, then message
    /// id, both descending), strictly after the cursor `after` (internal date and id of the
    /// last message of the previous page): at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_messages(
        &self,
        user: UserId,
        filter: &MessageFilter,
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<StoredGmailMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.store.connection();
        let postings = postings_of(filter);
        // A thread is short: its index drives. Otherwise the shortest posting, if short.
        let driver = if filter.thread_id.is_some() || postings.is_empty() {
            None
        } else {
            match choose_driver(db, user, &postings, limit).await? {
                Ok(driver) => driver,
                Err(()) => return Ok(Vec::new()),
            }
        };
        let select = list_statement(
            self.store.backend(),
            user,
            filter,
            &postings,
            driver,
            after,
            limit,
        );
        db.query_all(&select)
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| message_of(row, filter.include_bodies))
            .collect()
    }

    /// How many messages of the user are stored.
    ///
    /// # Errors
    /// The database failed.
    pub async fn message_count(&self, user: UserId) -> Result<u64> {
        gmail_messages::Entity::find()
            .filter(gmail_messages::Column::UserId.eq(user.as_uuid()))
            .count(self.store.connection())
            .await
            .map_err(db_error)
    }
}

/// Inserts or replaces one message with its labels and terms, inside the caller's
/// transaction.
async fn write_message<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    message: &NewGmailMessage,
    terms: &[SearchTerm],
    now: DateTime<Utc>,
) -> Result<()> {
    use gmail_messages::Column;
    if let Some((labels, old_terms)) = indexed_of(db, user, &message.message_id).await? {
        delete_labels(db, user, &message.message_id, &labels).await?;
        delete_terms(db, user, &message.message_id, &old_terms).await?;
    }
    let labels = distinct_labels(&message.label_ids);
    let terms = distinct_terms(terms);
    let row = gmail_messages::Model {
        user_id: user.as_uuid(),
        message_id: message.message_id.clone(),
        thread_id: message.thread_id.clone(),
        label_ids: labels_json(&labels)?,
        internal_date: micros(message.internal_date),
        size_estimate: message.size_estimate,
        history_id: history_text(message.history_id),
        sealed_header: message.sealed_header.clone(),
        sealed_body: message.sealed_body.clone(),
        search_terms: terms.concat(),
        synced_at: micros(now),
    };
    gmail_messages::Entity::insert(gmail_messages::ActiveModel::from(row))
        .on_conflict(
            OnConflict::columns([Column::UserId, Column::MessageId])
                .update_columns([
                    Column::ThreadId,
                    Column::LabelIds,
                    Column::InternalDate,
                    Column::SizeEstimate,
                    Column::HistoryId,
                    Column::SealedHeader,
                    Column::SealedBody,
                    Column::SearchTerms,
                    Column::SyncedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    insert_labels(db, user, &message.message_id, &labels).await?;
    insert_terms(db, user, &message.message_id, &terms).await
}

/// Whether the user's connection is `connected`; on PostgreSQL the row stays share-locked
/// until the transaction ends, so a disconnect deleting it waits for this write.
async fn connected<C: ConnectionTrait>(db: &C, backend: Backend, user: UserId) -> Result<bool> {
    let mut query = gmail_connections::Entity::find_by_id(user.as_uuid())
        .select_only()
        .column(gmail_connections::Column::State);
    if backend == Backend::Postgres {
        query = query.lock_shared();
    }
    let state: Option<String> = query.into_tuple().one(db).await.map_err(db_error)?;
    Ok(state.as_deref() == Some(GmailConnectionState::Connected.as_str()))
}

/// The labels and index terms stored with the user's message, if it exists.
async fn indexed_of<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    message_id: &str,
) -> Result<Option<(Vec<String>, Vec<SearchTerm>)>> {
    use gmail_messages::Column;
    let row: Option<(String, Vec<u8>)> = gmail_messages::Entity::find()
        .select_only()
        .columns([Column::LabelIds, Column::SearchTerms])
        .filter(Column::UserId.eq(user.as_uuid()))
        .filter(Column::MessageId.eq(message_id))
        .into_tuple()
        .one(db)
        .await
        .map_err(db_error)?;
    row.map(|(labels, terms)| Ok((labels_of(&labels)?, terms_of(&terms)?)))
        .transpose()
}

async fn delete_labels<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    message_id: &str,
    labels: &[String],
) -> Result<()> {
    use gmail_message_labels::Column;
    for chunk in labels.chunks(ROWS_PER_STATEMENT) {
        gmail_message_labels::Entity::delete_many()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::LabelId.is_in(chunk.iter().cloned()))
            .filter(Column::MessageId.eq(message_id))
            .exec(db)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

async fn delete_terms<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    message_id: &str,
    terms: &[SearchTerm],
) -> Result<()> {
    use gmail_search_terms::Column;
    for chunk in terms.chunks(ROWS_PER_STATEMENT) {
        gmail_search_terms::Entity::delete_many()
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::Term.is_in(chunk.iter().map(|term| term.to_vec())))
            .filter(Column::MessageId.eq(message_id))
            .exec(db)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

async fn insert_labels<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    message_id: &str,
    labels: &[String],
) -> Result<()> {
    for chunk in labels.chunks(ROWS_PER_STATEMENT) {
        gmail_message_labels::Entity::insert_many(chunk.iter().map(|label| {
            gmail_message_labels::ActiveModel::from(gmail_message_labels::Model {
                user_id: user.as_uuid(),
                label_id: label.clone(),
                message_id: message_id.to_owned(),
            })
        }))
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

async fn insert_terms<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    message_id: &str,
    terms: &[SearchTerm],
) -> Result<()> {
    for chunk in terms.chunks(ROWS_PER_STATEMENT) {
        gmail_search_terms::Entity::insert_many(chunk.iter().map(|term| {
            gmail_search_terms::ActiveModel::from(gmail_search_terms::Model {
                user_id: user.as_uuid(),
                term: term.to_vec(),
                message_id: message_id.to_owned(),
            })
        }))
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// The labels without repeats, in their first order.
pub(super) fn distinct_labels(labels: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    labels
        .iter()
        .filter(|label| seen.insert(label.as_str()))
        .cloned()
        .collect()
}

/// The terms without repeats, sorted.
pub(super) fn distinct_terms(terms: &[SearchTerm]) -> Vec<SearchTerm> {
    let mut terms = terms.to_vec();
    terms.sort_unstable();
    terms.dedup();
    terms
}

fn labels_json(labels: &[String]) -> Result<String> {
    serde_json::to_string(labels).map_err(Error::internal)
}

fn labels_of(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|err| {
        Error::internal(format!(
            "label ids in gmail_messages are no JSON array: {err}"
        ))
    })
}

/// Splits the stored tokens, 16 bytes each, end to end.
fn terms_of(bytes: &[u8]) -> Result<Vec<SearchTerm>> {
    if !bytes.len().is_multiple_of(TERM_LEN) {
        return Err(Error::internal(format!(
            "search terms of {} bytes are no whole number of tokens",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(TERM_LEN)
        .map(|chunk| {
            let mut term = [0u8; TERM_LEN];
            term.copy_from_slice(chunk);
            term
        })
        .collect())
}

/// The columns a stored message is read from, with or without the body.
pub(super) fn message_select(with_body: bool) -> SelectStatement {
    use gmail_messages::Column;
    let mut select = Query::select();
    select.columns(
        [
            Column::MessageId,
            Column::ThreadId,
            Column::LabelIds,
            Column::InternalDate,
            Column::SizeEstimate,
            Column::HistoryId,
            Column::SealedHeader,
            Column::SyncedAt,
        ]
        .map(|column| (M, column)),
    );
    if with_body {
        select.column((M, Column::SealedBody));
    }
    select
}

fn message_of(row: &QueryResult, with_body: bool) -> Result<StoredGmailMessage> {
    let get = |column: &str| -> Result<String> { row.try_get("", column).map_err(db_error) };
    Ok(StoredGmailMessage {
        message_id: get("message_id")?,
        thread_id: get("thread_id")?,
        label_ids: labels_of(&get("label_ids")?)?,
        internal_date: row.try_get("", "internal_date").map_err(db_error)?,
        size_estimate: row.try_get("", "size_estimate").map_err(db_error)?,
        history_id: history_value(&get("history_id")?)?,
        sealed_header: row.try_get("", "sealed_header").map_err(db_error)?,
        sealed_body: if with_body {
            Some(row.try_get("", "sealed_body").map_err(db_error)?)
        } else {
            None
        },
        synced_at: row.try_get("", "synced_at").map_err(db_error)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_terms_split_back_into_tokens() {
        let terms = distinct_terms(&[[2; 16], [1; 16], [2; 16]]);
        assert_eq!(terms, vec![[1; 16], [2; 16]]);
        assert_eq!(terms_of(&terms.concat()).unwrap(), terms);
        assert!(terms_of(&[0; 17]).is_err());
        assert!(terms_of(&[]).unwrap().is_empty());
    }

    #[test]
    fn labels_keep_their_first_order_without_repeats() {
        let labels = ["INBOX", "UNREAD", "INBOX"].map(str::to_owned);
        assert_eq!(distinct_labels(&labels), ["INBOX", "UNREAD"]);
        let json = labels_json(&distinct_labels(&labels)).unwrap();
        assert_eq!(labels_of(&json).unwrap(), ["INBOX", "UNREAD"]);
    }
}
