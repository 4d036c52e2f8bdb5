//! Exchanges: a send of a USER message made idempotent by its client message id. The USER
//! message records where its send stands (`exchange_state`) and, while it runs, a lease
//! (`lease_until`) after which another request may take the send over; the messages the
//! exchange commits carry its id.

use assistd_domain::chat::{
    ChatMessage, ClientMessageId, ExchangeStart, ExchangeState, FinishReason, MessageId,
    MessageRole, SessionId,
};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::events::{publish_committed, record};
use super::messages::allocate;
use super::rows::{message_of, messages_of};
use super::{ChatRepository, MESSAGE, SESSION, is_unique_violation, micros, not_found};
use crate::chat_feed::ChatChange;
use crate::db_error;
use crate::entity::chat_messages;

/// `exchange_state` values.
const RUNNING: &str = "running";
const DONE: &str = "done";
const FAILED: &str = "failed";

/// Rounds of [`ChatRepository::begin_exchange`] before giving up on a send that other
/// requests keep changing.
const EXCHANGE_ATTEMPTS: usize = 5;

impl ChatRepository {
    /// Starts a send, or finds what became of an earlier send with the same client message
    /// id, in one write transaction:
    /// - unknown id: the USER message is committed with a lease until `lease_until`
    ///   ([`ExchangeStart::Started`]);
    /// - used for another session or text: [`ExchangeStart::Conflict`];
    /// - done: [`ExchangeStart::Finished`] with what the exchange committed;
    /// - running under a lease not yet expired at `now`: [`ExchangeStart::InProgress`];
    /// - failed, or running under an expired lease: the lease is taken anew
    ///   ([`ExchangeStart::Resumed`]).
    ///
    /// Concurrent calls with one id start it once: on SQLite the write lock serialises them;
    /// on PostgreSQL the session row lock does, and the unique index on client message ids is
    /// the backstop (a violation is answered by reading the winner's row).
    ///
    /// # Errors
    /// NOT_FOUND when the id is unknown and the user has no such session; ABORTED when other
    /// requests kept changing the send; the database failed.
    pub async fn begin_exchange(
        &self,
        user: UserId,
        session: SessionId,
        client_message_id: &ClientMessageId,
        text: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ExchangeStart> {
        let now = micros(now);
        let lease_until = micros(lease_until);
        for _ in 0..EXCHANGE_ATTEMPTS {
            let txn = self.store.begin_write().await?;
            if let Some(row) = find_send(&txn, user, client_message_id).await? {
                match resend(&txn, user, session, text, row, lease_until, now).await? {
                    Some((start, changes)) => {
                        let events = record(&txn, self.store.backend(), user, changes, now).await?;
                        txn.commit().await.map_err(db_error)?;
                        publish_committed(&self.store, user, events);
                        return Ok(start);
                    }
                    None => {
                        txn.rollback().await.map_err(db_error)?;
                        continue;
                    }
                }
            }
            let Some(sequence) = allocate(&txn, user, session, 1, now).await? else {
                return Err(not_found(SESSION, session));
            };
            // On PostgreSQL a concurrent send with this id may have committed while this
            // transaction waited for the session row: look again (a new statement sees it).
            if find_send(&txn, user, client_message_id).await?.is_some() {
                txn.rollback().await.map_err(db_error)?;
                continue;
            }
            let id = MessageId::new();
            let row = chat_messages::Model {
                id: id.as_uuid(),
                user_id: user.as_uuid(),
                session_id: session.as_uuid(),
                sequence,
                role: MessageRole::User.as_str().to_owned(),
                text: Some(text.to_owned()),
                payload: None,
                parts: None,
                client_message_id: Some(client_message_id.to_string()),
                exchange_id: Some(id.as_uuid()),
                exchange_state: Some(RUNNING.to_owned()),
                lease_until: Some(lease_until),
                model: None,
                prompt_tokens: None,
                output_tokens: None,
                total_tokens: None,
                finish_reason: None,
                latency_ms: None,
                first_token_ms: None,
                error_reason: None,
                error_message: None,
                created_at: now,
            };
            let inserted =
                chat_messages::Entity::insert(chat_messages::ActiveModel::from(row.clone()))
                    .exec_without_returning(&txn)
                    .await;
            match inserted {
                Ok(_) => {
                    let message = message_of(row)?;
                    let changes = vec![ChatChange::MessageCommitted(Box::new(message.clone()))];
                    let events = record(&txn, self.store.backend(), user, changes, now).await?;
                    txn.commit().await.map_err(db_error)?;
                    publish_committed(&self.store, user, events);
                    return Ok(ExchangeStart::Started(message));
                }
                // Another session's send with this id committed meanwhile: read it.
                Err(err) if is_unique_violation(&err) => {
                    txn.rollback().await.map_err(db_error)?;
                }
                Err(err) => return Err(db_error(err)),
            }
        }
        Err(Error::Aborted {
            reason: ErrorReason::ConcurrentChange,
            message: "other requests kept changing this send at the same moment; retry".into(),
        })
    }

    /// What became of an earlier send with this client message id, without changing
    /// anything: the outcome to answer with when no model call is due
    /// ([`ExchangeStart::Finished`], [`ExchangeStart::InProgress`] or
    /// [`ExchangeStart::Conflict`]), or `None` when the id is new or its send may be resumed
    /// (failed, or its lease expired at `now`): then [`Self::begin_exchange`] decides, under
    /// its write lock.
    ///
    /// # Errors
    /// The database failed.
    pub async fn peek_exchange(
        &self,
        user: UserId,
        session: SessionId,
        client_message_id: &ClientMessageId,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ExchangeStart>> {
        let db = self.store.connection();
        let Some(row) = find_send(db, user, client_message_id).await? else {
            return Ok(None);
        };
        if row.session_id != session.as_uuid() || row.text.as_deref() != Some(text) {
            return Ok(Some(ExchangeStart::Conflict));
        }
        match exchange_state_of(&row)? {
            Some(ExchangeState::Done) => {
                let messages = replies(db, user, row.id).await?;
                Ok(Some(ExchangeStart::Finished {
                    user_message: message_of(row)?,
                    messages,
                }))
            }
            Some(ExchangeState::Running { lease_until }) if lease_until > now => {
                Ok(Some(ExchangeStart::InProgress))
            }
            Some(ExchangeState::Running { .. } | ExchangeState::Failed) => Ok(None),
            None => Err(no_exchange_state(&row)),
        }
    }

    /// Records how a send ended ([`ExchangeState::Done`] or [`ExchangeState::Failed`]) and
    /// releases its lease.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no send with this USER message id; INTERNAL for
    /// [`ExchangeState::Running`]; the database failed.
    pub async fn finish_exchange(
        &self,
        user: UserId,
        exchange_id: MessageId,
        state: ExchangeState,
    ) -> Result<()> {
        let failed = matches!(state, ExchangeState::Failed);
        let txn = self.store.begin_write().await?;
        let session = set_exchange_state(&txn, user, exchange_id, state).await?;
        let changes = vec![ChatChange::ExchangeFinished {
            session,
            exchange: exchange_id,
            failed,
        }];
        let events = record(&txn, self.store.backend(), user, changes, Utc::now()).await?;
        txn.commit().await.map_err(db_error)?;
        publish_committed(&self.store, user, events);
        Ok(())
    }

    /// Extends the leases of the sends among `exchanges` that are still running to
    /// `lease_until`, in one statement; returns how many were extended. A send that ended
    /// meanwhile is left as it is.
    ///
    /// # Errors
    /// The database failed.
    pub async fn renew_leases(
        &self,
        exchanges: &[MessageId],
        lease_until: DateTime<Utc>,
    ) -> Result<u64> {
        use chat_messages::Column;
        if exchanges.is_empty() {
            return Ok(0);
        }
        let renewed = chat_messages::Entity::update_many()
            .col_expr(Column::LeaseUntil, Expr::value(micros(lease_until)))
            .filter(Column::Id.is_in(exchanges.iter().map(|id| id.as_uuid())))
            .filter(Column::ExchangeState.eq(RUNNING))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(renewed.rows_affected)
    }

    /// The messages an exchange committed after its USER message, in sequence order.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no USER message with this id; the database failed.
    pub async fn exchange_messages(
        &self,
        user: UserId,
        exchange_id: MessageId,
    ) -> Result<Vec<ChatMessage>> {
        let rows = exchange_rows(self.store.connection(), user, exchange_id.as_uuid()).await?;
        if !rows.iter().any(|row| row.id == exchange_id.as_uuid()) {
            return Err(not_found(MESSAGE, exchange_id));
        }
        messages_of(
            rows.into_iter()
                .filter(|row| row.id != exchange_id.as_uuid())
                .collect(),
        )
    }
}

/// Records how a send ended on its USER message and releases its lease (see
/// [`ChatRepository::finish_exchange`]); returns the send's session.
pub(super) async fn set_exchange_state<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    exchange_id: MessageId,
    state: ExchangeState,
) -> Result<SessionId> {
    use chat_messages::Column;
    let state = match state {
        ExchangeState::Done => DONE,
        ExchangeState::Failed => FAILED,
        ExchangeState::Running { .. } => {
            return Err(Error::internal(
                "finish_exchange takes Done or Failed, not Running",
            ));
        }
    };
    let updated = chat_messages::Entity::update_many()
        .col_expr(Column::ExchangeState, Expr::value(state))
        .col_expr(
            Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(exchange_id.as_uuid()))
        .filter(Column::UserId.eq(user.as_uuid()))
        .filter(Column::ExchangeState.is_not_null())
        .exec_with_returning(db)
        .await
        .map_err(db_error)?;
    updated
        .into_iter()
        .next()
        .map(|row| SessionId::from_uuid(row.session_id))
        .ok_or_else(|| not_found(MESSAGE, exchange_id))
}

/// What an earlier send with the same client message id became, with the changes to announce
/// in the chat feed; `None` when another request took it over meanwhile and it must be looked
/// at again.
async fn resend<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    session: SessionId,
    text: &str,
    row: chat_messages::Model,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<(ExchangeStart, Vec<ChatChange>)>> {
    use chat_messages::Column;
    if row.session_id != session.as_uuid() || row.text.as_deref() != Some(text) {
        return Ok(Some((ExchangeStart::Conflict, Vec::new())));
    }
    let state = exchange_state_of(&row)?.ok_or_else(|| no_exchange_state(&row))?;
    match state {
        ExchangeState::Done => {
            let messages = replies(db, user, row.id).await?;
            let finished = ExchangeStart::Finished {
                user_message: message_of(row)?,
                messages,
            };
            Ok(Some((finished, Vec::new())))
        }
        ExchangeState::Running {
            lease_until: current,
        } if current > now => Ok(Some((ExchangeStart::InProgress, Vec::new()))),
        ExchangeState::Running { .. } => {
            let messages = replies(db, user, row.id).await?;
            if !ends_with_final_reply(&messages) {
                return without_changes(take_over(db, user, row, lease_until, now).await);
            }
            // Its reply was committed but not its end (a server of an earlier version
            // stopped between the two writes): it is finished, not run again.
            let finished = chat_messages::Entity::update_many()
                .col_expr(Column::ExchangeState, Expr::value(DONE))
                .col_expr(
                    Column::LeaseUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(Column::Id.eq(row.id))
                .filter(Column::UserId.eq(user.as_uuid()))
                .filter(lease_lapsed(now))
                .exec(db)
                .await
                .map_err(db_error)?;
            if finished.rows_affected == 0 {
                return Ok(None);
            }
            let change = ChatChange::ExchangeFinished {
                session,
                exchange: MessageId::from_uuid(row.id),
                failed: false,
            };
            let finished = ExchangeStart::Finished {
                user_message: message_of(row)?,
                messages,
            };
            Ok(Some((finished, vec![change])))
        }
        ExchangeState::Failed => without_changes(take_over(db, user, row, lease_until, now).await),
    }
}

/// A take-over announces nothing: no message was committed and the send is running again.
fn without_changes(
    start: Result<Option<ExchangeStart>>,
) -> Result<Option<(ExchangeStart, Vec<ChatChange>)>> {
    start.map(|start| start.map(|start| (start, Vec::new())))
}

/// Whether an exchange's last message is a MODEL reply that ended it without an error (a
/// text before tool calls is followed by the calls; a failed call's reply says ERROR).
fn ends_with_final_reply(messages: &[ChatMessage]) -> bool {
    messages.last().is_some_and(|last| {
        last.role == MessageRole::Model
            && last
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.finish_reason)
                .is_some_and(|finish| finish != FinishReason::Error)
    })
}

/// A failed send, or a running one whose lease lapsed at `now`.
fn lease_lapsed(now: DateTime<Utc>) -> Condition {
    use chat_messages::Column;
    Condition::any().add(Column::ExchangeState.eq(FAILED)).add(
        Condition::all().add(Column::ExchangeState.eq(RUNNING)).add(
            Condition::any()
                .add(Column::LeaseUntil.is_null())
                .add(Column::LeaseUntil.lte(now)),
        ),
    )
}

/// Takes a failed or lapsed send over with a new lease; `None` when another request took it
/// since the row was read.
async fn take_over<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    row: chat_messages::Model,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<ExchangeStart>> {
    use chat_messages::Column;
    // Take the lease only if nobody else took it since the row was read.
    let taken = chat_messages::Entity::update_many()
        .col_expr(Column::ExchangeState, Expr::value(RUNNING))
        .col_expr(Column::LeaseUntil, Expr::value(lease_until))
        .filter(Column::Id.eq(row.id))
        .filter(Column::UserId.eq(user.as_uuid()))
        .filter(lease_lapsed(now))
        .exec(db)
        .await
        .map_err(db_error)?;
    if taken.rows_affected == 0 {
        return Ok(None);
    }
    let messages = replies(db, user, row.id).await?;
    Ok(Some(ExchangeStart::Resumed {
        user_message: message_of(row)?,
        messages,
    }))
}

/// The user's USER message sent with `client_message_id`.
async fn find_send<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    client_message_id: &ClientMessageId,
) -> Result<Option<chat_messages::Model>> {
    chat_messages::Entity::find()
        .filter(chat_messages::Column::UserId.eq(user.as_uuid()))
        .filter(chat_messages::Column::ClientMessageId.eq(client_message_id.as_str()))
        .one(db)
        .await
        .map_err(db_error)
}

/// The messages of an exchange, its USER message first, in sequence order.
///
/// The query names the exchange only and the user is checked on the rows it returns: with a
/// `user_id` condition beside it, PostgreSQL without fresh statistics (a table just filled,
/// autovacuum not yet run or disabled) ANDs a bitmap of every row of the user (all of them, in
/// a one-user history) with the exchange's few: 2.6–19.5 ms at 100,000 messages instead of
/// 0.03 ms on `idx_chat_messages_exchange`.
async fn exchange_rows<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    exchange: uuid::Uuid,
) -> Result<Vec<chat_messages::Model>> {
    let mut rows = chat_messages::Entity::find()
        .filter(chat_messages::Column::ExchangeId.eq(exchange))
        .order_by_asc(chat_messages::Column::Sequence)
        .all(db)
        .await
        .map_err(db_error)?;
    // Exchange ids are the ids of USER messages, made by the server; another user's are
    // answered like unknown ones.
    rows.retain(|row| row.user_id == user.as_uuid());
    Ok(rows)
}

/// The messages an exchange committed after its USER message.
async fn replies<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    exchange: uuid::Uuid,
) -> Result<Vec<ChatMessage>> {
    let rows = exchange_rows(db, user, exchange).await?;
    messages_of(rows.into_iter().filter(|row| row.id != exchange).collect())
}

/// Where the send recorded on a USER message stands; `None` for messages that are no send.
fn exchange_state_of(row: &chat_messages::Model) -> Result<Option<ExchangeState>> {
    Ok(match row.exchange_state.as_deref() {
        None => None,
        // A running send without a lease can be taken over at once.
        Some(RUNNING) => Some(ExchangeState::Running {
            lease_until: row.lease_until.unwrap_or(DateTime::<Utc>::MIN_UTC),
        }),
        Some(DONE) => Some(ExchangeState::Done),
        Some(FAILED) => Some(ExchangeState::Failed),
        Some(other) => {
            return Err(Error::internal(format!(
                "message {}: unknown exchange state {other:?}",
                row.id
            )));
        }
    })
}

/// INTERNAL for a send whose USER message lost its state (no write leaves it so).
fn no_exchange_state(row: &chat_messages::Model) -> Error {
    Error::internal(format!(
        "message {} has a client message id but no exchange state",
        row.id
    ))
}
