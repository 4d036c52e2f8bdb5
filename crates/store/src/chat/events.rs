//! Chat events: the record of what changed in a user's chat, written in the transaction of the
//! change it reports, so that a committed change always has its event and a rolled-back one
//! never does. Events are numbered per user by `chat_event_heads` (bumped in the same
//! transaction; on PostgreSQL the bump locks the user's head row until commit, so a user's
//! events commit in the order of their numbers, and SQLite's single writer does the same).
//!
//! On PostgreSQL the transaction also sends `NOTIFY assistd_chat` with the user and the numbers
//! it wrote, delivered to every replica when (and only if) it commits. On SQLite the
//! repository hands the events to this process's watchers after the commit.

use std::collections::HashMap;

use assistd_domain::chat::{ChatMessage, ChatSession, MessageId, SessionId};
use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::rows::{messages_of, session_of};
use super::{ChatRepository, micros};
use crate::chat_feed::{CHAT_CHANNEL, ChatChange, FeedEvent};
use crate::db_error;
use crate::entity::{chat_event_heads, chat_events, chat_messages, chat_sessions};
use crate::{Backend, Store};

/// `chat_events.kind` values.
const SESSION_CREATED: &str = "session_created";
const SESSION_UPDATED: &str = "session_updated";
const SESSION_DELETED: &str = "session_deleted";
const MESSAGE_COMMITTED: &str = "message_committed";
const EXCHANGE_FINISHED: &str = "exchange_finished";

/// `chat_events.detail` of an exchange that ended.
const DONE: &str = "done";
const FAILED: &str = "failed";

/// Records `changes` as the user's next events inside the transaction `db`; on PostgreSQL
/// also announces them to every replica (delivered at commit). Returns the events, to be
/// handed to [`publish_committed`] once the transaction committed.
pub(super) async fn record<C: ConnectionTrait>(
    db: &C,
    backend: Backend,
    user: UserId,
    changes: Vec<ChatChange>,
    now: DateTime<Utc>,
) -> Result<Vec<FeedEvent>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let now = micros(now);
    let count = i64::try_from(changes.len()).map_err(Error::internal)?;
    let last = match backend {
        Backend::Postgres => record_on_postgres(db, user, &changes, count, now).await?,
        Backend::Sqlite => record_on_sqlite(db, user, &changes, count, now).await?,
    };
    let first = last - count + 1;
    Ok(changes
        .into_iter()
        .zip(first..)
        .map(|(change, seq)| FeedEvent {
            seq,
            at: now,
            change,
        })
        .collect())
}

/// PostgreSQL: the head bump, the events' INSERT and the NOTIFY in one statement, so the
/// user's head row (locked by the bump until commit) is held for one round trip to the
/// database rather than three. Returns the last number handed out.
async fn record_on_postgres<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    changes: &[ChatChange],
    count: i64,
    now: DateTime<Utc>,
) -> Result<i64> {
    // $1 user, $2 count, $3 time, $4 channel, $5 the user as text, then four per change:
    // kind, session, message, detail; `n` numbers the changes from 1. The payload is
    // `e|user|first|last`, the form the chat feed's listener reads.
    const FIXED: usize = 5;
    let rows = (0..changes.len())
        .map(|index| {
            let p = FIXED + 1 + index * 4;
            format!(
                "({n}, ${p}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                n = index + 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH head AS (\
            INSERT INTO chat_event_heads (user_id, last_seq) VALUES ($1, $2) \
            ON CONFLICT (user_id) DO UPDATE SET last_seq = chat_event_heads.last_seq + EXCLUDED.last_seq \
            RETURNING last_seq\
        ), written AS (\
            INSERT INTO chat_events (user_id, seq, kind, session_id, message_id, detail, created_at) \
            SELECT $1, head.last_seq - $2 + change.n, change.kind, change.session_id, change.message_id, change.detail, $3 \
            FROM head, (VALUES {rows}) AS change (n, kind, session_id, message_id, detail)\
        ) \
        SELECT head.last_seq, \
            pg_notify($4, 'e|' || $5 || '|' || (head.last_seq - $2 + 1) || '|' || head.last_seq)::text AS notified \
        FROM head"
    );
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(FIXED + changes.len() * 4);
    values.extend([
        user.as_uuid().into(),
        count.into(),
        now.into(),
        CHAT_CHANNEL.into(),
        user.to_string().into(),
    ]);
    for change in changes {
        let (kind, session, message, detail) = columns_of(change);
        values.extend([
            kind.into(),
            session.as_uuid().into(),
            message.map(|id| id.as_uuid()).into(),
            detail.into(),
        ]);
    }
    let last: i64 = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("the chat event head was not returned"))?
        .try_get("", "last_seq")
        .map_err(db_error)?;
    Ok(last)
}

/// SQLite: the head bump, then the events' INSERT (one writer at a time, so nothing waits on
/// the head between them). Returns the last number handed out.
async fn record_on_sqlite<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    changes: &[ChatChange],
    count: i64,
    now: DateTime<Utc>,
) -> Result<i64> {
    use chat_event_heads::Column;
    let bump = Query::insert()
        .into_table(chat_event_heads::Entity)
        .columns([Column::UserId, Column::LastSeq])
        .values_panic([user.as_uuid().into(), count.into()])
        .on_conflict(
            OnConflict::column(Column::UserId)
                .value(
                    Column::LastSeq,
                    Expr::col((chat_event_heads::Entity, Column::LastSeq)).add(count),
                )
                .to_owned(),
        )
        .returning_col(Column::LastSeq)
        .to_owned();
    let last: i64 = db
        .query_one(&bump)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("the chat event head was not returned"))?
        .try_get("", "last_seq")
        .map_err(db_error)?;
    let first = last - count + 1;
    chat_events::Entity::insert_many(changes.iter().zip(first..).map(|(change, seq)| {
        let (kind, session, message, detail) = columns_of(change);
        chat_events::ActiveModel::from(chat_events::Model {
            user_id: user.as_uuid(),
            seq,
            kind: kind.to_owned(),
            session_id: session.as_uuid(),
            message_id: message.map(|id| id.as_uuid()),
            detail: detail.to_owned(),
            created_at: now,
        })
    }))
    .exec_without_returning(db)
    .await
    .map_err(db_error)?;
    Ok(last)
}

/// Hands committed events to this process's watchers and retires its cached session lists
/// (SQLite; on PostgreSQL the NOTIFY sent in the transaction reaches every replica's listener,
/// this one's included, and lists check the event head themselves).
pub(super) fn publish_committed(store: &Store, user: UserId, events: Vec<FeedEvent>) {
    if store.backend() == Backend::Sqlite && !events.is_empty() {
        store.session_lists().changed(user);
        store.chat_hub().publish_events(user, events);
    }
}

/// The kind, session, message and detail columns of a change.
fn columns_of(change: &ChatChange) -> (&'static str, SessionId, Option<MessageId>, &'static str) {
    match change {
        ChatChange::SessionCreated(session) => (SESSION_CREATED, session.id, None, ""),
        ChatChange::SessionUpdated(session) => (SESSION_UPDATED, session.id, None, ""),
        ChatChange::SessionDeleted(session) => (SESSION_DELETED, *session, None, ""),
        ChatChange::MessageCommitted(message) => {
            (MESSAGE_COMMITTED, message.session_id, Some(message.id), "")
        }
        ChatChange::ExchangeFinished {
            session,
            exchange,
            failed,
        } => (
            EXCHANGE_FINISHED,
            *session,
            Some(*exchange),
            if *failed { FAILED } else { DONE },
        ),
    }
}

impl ChatRepository {
    /// The number of the user's last chat event; 0 before the first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn last_event_seq(&self, user: UserId) -> Result<i64> {
        let head = chat_event_heads::Entity::find_by_id(user.as_uuid())
            .one(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(head.map_or(0, |head| head.last_seq))
    }

    /// The number of the user's oldest event still kept after `seq`, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn first_event_after(&self, user: UserId, seq: i64) -> Result<Option<i64>> {
        chat_events::Entity::find()
            .select_only()
            .column(chat_events::Column::Seq)
            .filter(chat_events::Column::UserId.eq(user.as_uuid()))
            .filter(chat_events::Column::Seq.gt(seq))
            .order_by_asc(chat_events::Column::Seq)
            .into_tuple::<i64>()
            .one(self.store.connection())
            .await
            .map_err(db_error)
    }

    /// Up to `limit` of the user's events after `after`, in order, with the sessions and
    /// messages they name as they are now; an event whose session or message no longer exists
    /// (deleted since) is left out. Also returns the number of the last event looked at, so a
    /// reader moves past the left-out ones.
    ///
    /// # Errors
    /// The database failed.
    pub async fn events_after(
        &self,
        user: UserId,
        after: i64,
        limit: u64,
    ) -> Result<(Vec<FeedEvent>, Option<i64>)> {
        let db = self.store.connection();
        let rows = chat_events::Entity::find()
            .filter(chat_events::Column::UserId.eq(user.as_uuid()))
            .filter(chat_events::Column::Seq.gt(after))
            .order_by_asc(chat_events::Column::Seq)
            .limit(limit)
            .all(db)
            .await
            .map_err(db_error)?;
        let scanned = rows.last().map(|row| row.seq);
        let session_ids: Vec<uuid::Uuid> = rows
            .iter()
            .filter(|row| row.kind == SESSION_CREATED || row.kind == SESSION_UPDATED)
            .map(|row| row.session_id)
            .collect();
        let message_ids: Vec<uuid::Uuid> = rows
            .iter()
            .filter(|row| row.kind == MESSAGE_COMMITTED)
            .filter_map(|row| row.message_id)
            .collect();
        let sessions: HashMap<uuid::Uuid, ChatSession> = if session_ids.is_empty() {
            HashMap::new()
        } else {
            chat_sessions::Entity::find()
                .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
                .filter(chat_sessions::Column::Id.is_in(session_ids))
                .all(db)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|row| (row.id, session_of(row)))
                .collect()
        };
        let messages: HashMap<uuid::Uuid, ChatMessage> = if message_ids.is_empty() {
            HashMap::new()
        } else {
            let rows = chat_messages::Entity::find()
                .filter(chat_messages::Column::UserId.eq(user.as_uuid()))
                .filter(chat_messages::Column::Id.is_in(message_ids))
                .all(db)
                .await
                .map_err(db_error)?;
            messages_of(rows)?
                .into_iter()
                .map(|message| (message.id.as_uuid(), message))
                .collect()
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let session = SessionId::from_uuid(row.session_id);
            let change = match row.kind.as_str() {
                SESSION_CREATED => sessions
                    .get(&row.session_id)
                    .cloned()
                    .map(ChatChange::SessionCreated),
                SESSION_UPDATED => sessions
                    .get(&row.session_id)
                    .cloned()
                    .map(ChatChange::SessionUpdated),
                SESSION_DELETED => Some(ChatChange::SessionDeleted(session)),
                MESSAGE_COMMITTED => row
                    .message_id
                    .and_then(|id| messages.get(&id))
                    .cloned()
                    .map(|message| ChatChange::MessageCommitted(Box::new(message))),
                EXCHANGE_FINISHED => row.message_id.map(|exchange| ChatChange::ExchangeFinished {
                    session,
                    exchange: MessageId::from_uuid(exchange),
                    failed: row.detail == FAILED,
                }),
                other => {
                    tracing::warn!(
                        kind = other,
                        seq = row.seq,
                        "skipping a chat event of an unknown kind"
                    );
                    None
                }
            };
            if let Some(change) = change {
                events.push(FeedEvent {
                    seq: row.seq,
                    at: row.created_at,
                    change,
                });
            }
        }
        Ok((events, scanned))
    }
}

impl Store {
    /// Deletes every user's chat events older than `before`; returns how many. Watchers whose
    /// cursor points before what is left are told their cursor expired.
    ///
    /// # Errors
    /// The database failed.
    pub async fn prune_chat_events(&self, before: DateTime<Utc>) -> Result<u64> {
        let deleted = chat_events::Entity::delete_many()
            .filter(chat_events::Column::CreatedAt.lt(micros(before)))
            .exec(self.connection())
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected)
    }
}
