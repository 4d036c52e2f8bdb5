//! Messages: the per-session sequence allocator, appending messages at the end of a
//! session, and paging through its history.

use assistd_domain::chat::{ChatMessage, ExchangeState, MessageId, NewMessage, SessionId};
use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::events::{publish_committed, record};
use super::exchanges::set_exchange_state;
use super::rows::{messages_of, new_row};
use super::sessions::session_owned;
use super::usage::add_usage;
use super::{ChatRepository, SESSION, UsageDelta, micros, not_found};
use crate::chat_feed::ChatChange;
use crate::db_error;
use crate::entity::{chat_messages, chat_sessions};

/// Rows per multi-row INSERT (well below either engine's bound-parameter limit).
const INSERT_BATCH: usize = 200;

impl ChatRepository {
    /// Commits messages at the end of the session, with consecutive sequence numbers, and
    /// adds `usage` to the daily totals, in one write transaction. The session's last
    /// activity becomes `now` (unless it is later already).
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; INTERNAL when a message's content does
    /// not fit its role; the database failed.
    pub async fn append_messages(
        &self,
        user: UserId,
        session: SessionId,
        messages: Vec<NewMessage>,
        usage: Option<UsageDelta>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>> {
        self.append_and_finish(user, session, messages, usage, None, now)
            .await
    }

    /// [`Self::append_messages`], and — in the same transaction — the exchange `finish.0` ends
    /// in state `finish.1` (see [`Self::finish_exchange`]), so a reply that ends an exchange
    /// and the exchange's end are committed together or not at all. The chat feed's events
    /// (each message committed, the exchange finished) are written in that transaction too.
    ///
    /// # Errors
    /// As [`Self::append_messages`]; NOT_FOUND when the user has no such send.
    pub async fn append_and_finish(
        &self,
        user: UserId,
        session: SessionId,
        messages: Vec<NewMessage>,
        usage: Option<UsageDelta>,
        finish: Option<(MessageId, ExchangeState)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>> {
        let now = micros(now);
        let mut rows = messages
            .iter()
            .map(|message| new_row(user, session, message, now))
            .collect::<Result<Vec<_>>>()?;
        let count = i64::try_from(rows.len()).map_err(Error::internal)?;
        let txn = self.store.begin_write().await?;
        if rows.is_empty() {
            if !session_owned(&txn, user, session).await? {
                return Err(not_found(SESSION, session));
            }
        } else {
            let last = allocate(&txn, user, session, count, now)
                .await?
                .ok_or_else(|| not_found(SESSION, session))?;
            for (row, sequence) in rows.iter_mut().zip(last - count + 1..) {
                row.sequence = sequence;
            }
            insert_messages(&txn, &rows).await?;
        }
        let committed = messages_of(rows)?;
        let mut changes: Vec<ChatChange> = committed
            .iter()
            .cloned()
            .map(|message| ChatChange::MessageCommitted(Box::new(message)))
            .collect();
        if let Some((exchange, state)) = finish {
            let failed = matches!(state, ExchangeState::Failed);
            set_exchange_state(&txn, user, exchange, state).await?;
            changes.push(ChatChange::ExchangeFinished {
                session,
                exchange,
                failed,
            });
        }
        // The user's rows every send updates (daily usage, the event head) come last: on
        // PostgreSQL their row locks are then held only until the commit just after, so a
        // user's concurrent sends queue on them as briefly as possible.
        if let Some(usage) = &usage {
            add_usage(&txn, user, usage).await?;
        }
        let events = record(&txn, self.store.backend(), user, changes, now).await?;
        txn.commit().await.map_err(db_error)?;
        publish_committed(&self.store, user, events);
        Ok(committed)
    }

    /// A page of the session's messages: `forward`, those with sequence ≥ `start` (from the
    /// first when `None`) in ascending order; backward, those with sequence ≤ `start` (from
    /// the last when `None`) in descending order; at most `limit`. The next page starts at
    /// the last sequence returned plus one (forward) or minus one (backward). Walks the
    /// (session, sequence) index, so any page costs the same in a long session.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn list_messages(
        &self,
        user: UserId,
        session: SessionId,
        forward: bool,
        start: Option<i64>,
        limit: u64,
    ) -> Result<Vec<ChatMessage>> {
        use chat_messages::Column;
        let db = self.store.connection();
        if !session_owned(db, user, session).await? {
            return Err(not_found(SESSION, session));
        }
        // Ownership was checked above. The query names the session only: a `user_id`
        // condition besides it lets PostgreSQL, before it has statistics for a freshly filled
        // table, AND two bitmap scans and sort (tens of ms at 100,000 messages) instead of
        // walking `(session_id, sequence)` (well under a millisecond).
        let mut query = chat_messages::Entity::find()
            .filter(Column::SessionId.eq(session.as_uuid()))
            .limit(limit);
        query = if forward {
            if let Some(start) = start {
                query = query.filter(Column::Sequence.gte(start));
            }
            query.order_by_asc(Column::Sequence)
        } else {
            if let Some(start) = start {
                query = query.filter(Column::Sequence.lte(start));
            }
            query.order_by_desc(Column::Sequence)
        };
        messages_of(query.all(db).await.map_err(db_error)?)
    }

    /// The newest `limit` messages of the session, in ascending sequence order (the context
    /// of the next model call).
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn recent_messages(
        &self,
        user: UserId,
        session: SessionId,
        limit: u64,
    ) -> Result<Vec<ChatMessage>> {
        let mut messages = self
            .list_messages(user, session, false, None, limit)
            .await?;
        messages.reverse();
        Ok(messages)
    }
}

/// Hands out `count` sequence numbers of the user's session and records the activity;
/// returns the last number handed out, or `None` when there is no such session. On
/// PostgreSQL it locks the session row until the transaction ends.
pub(super) async fn allocate<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    session: SessionId,
    count: i64,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    use chat_sessions::Column;
    let last_activity = Expr::col(Column::LastActivityAt);
    let bump = Query::update()
        .table(chat_sessions::Entity)
        .value(
            Column::LastSequence,
            Expr::col(Column::LastSequence).add(count),
        )
        .value(
            Column::MessageCount,
            Expr::col(Column::MessageCount).add(count),
        )
        // Never backwards: concurrent writers may commit out of order.
        .value(
            Column::LastActivityAt,
            Expr::case(last_activity.clone().lt(now), now).finally(last_activity),
        )
        .and_where(Expr::col(Column::Id).eq(session.as_uuid()))
        .and_where(Expr::col(Column::UserId).eq(user.as_uuid()))
        .returning_col(Column::LastSequence)
        .to_owned();
    let row = db.query_one(&bump).await.map_err(db_error)?;
    row.map(|row| row.try_get::<i64>("", "last_sequence").map_err(db_error))
        .transpose()
}

async fn insert_messages<C: ConnectionTrait>(db: &C, rows: &[chat_messages::Model]) -> Result<()> {
    for batch in rows.chunks(INSERT_BATCH) {
        chat_messages::Entity::insert_many(
            batch.iter().cloned().map(chat_messages::ActiveModel::from),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
