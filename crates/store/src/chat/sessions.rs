//! Sessions: creating, reading, listing (keyset pages by last activity), changing and
//! deleting them, and the ownership check the other groups share.

use std::sync::Arc;

use assistd_domain::chat::{
    ArchivedFilter, ChatSession, NewSession, SessionFilter, SessionId, SessionPatch,
};
use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::events::{publish_committed, record};
use super::rows::session_of;
use super::session_cache::PageKey;
use super::{ChatRepository, SESSION, account_gone, is_foreign_key_violation, micros, not_found};
use crate::chat_feed::ChatChange;
use crate::entity::chat_sessions;
use crate::{Backend, db_error};

impl ChatRepository {
    /// Creates a session.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the account no longer exists; the database failed.
    pub async fn create_session(
        &self,
        user: UserId,
        new: &NewSession,
        now: DateTime<Utc>,
    ) -> Result<ChatSession> {
        let now = micros(now);
        let row = chat_sessions::Model {
            id: SessionId::new().as_uuid(),
            user_id: user.as_uuid(),
            title: new.title.clone(),
            title_generated: false,
            system_instruction: new.system_instruction.clone(),
            model: new.model.clone(),
            pinned: false,
            archived: false,
            message_count: 0,
            last_sequence: 0,
            created_at: now,
            updated_at: now,
            last_activity_at: now,
        };
        let txn = self.store.begin_write().await?;
        match chat_sessions::Entity::insert(chat_sessions::ActiveModel::from(row.clone()))
            .exec_without_returning(&txn)
            .await
        {
            Ok(_) => {}
            Err(err) if is_foreign_key_violation(&err) => return Err(account_gone()),
            Err(err) => return Err(db_error(err)),
        }
        let session = session_of(row);
        let events = record(
            &txn,
            self.store.backend(),
            user,
            vec![ChatChange::SessionCreated(session.clone())],
            now,
        )
        .await?;
        txn.commit().await.map_err(db_error)?;
        publish_committed(&self.store, user, events);
        Ok(session)
    }

    /// The user's session.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn get_session(&self, user: UserId, id: SessionId) -> Result<ChatSession> {
        chat_sessions::Entity::find()
            .filter(chat_sessions::Column::Id.eq(id.as_uuid()))
            .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .map(session_of)
            .ok_or_else(|| not_found(SESSION, id))
    }

    /// The user's sessions that pass `filter`, most recently active first (ties by id,
    /// descending), strictly after the cursor `after` (the last activity and id of the last
    /// session of the previous page): at most `limit`. A page listed before is served from
    /// memory while the user's chat has not changed since (see `session_cache`).
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_sessions(
        &self,
        user: UserId,
        filter: SessionFilter,
        after: Option<(DateTime<Utc>, SessionId)>,
        limit: u64,
    ) -> Result<Vec<ChatSession>> {
        let cache = self.store.session_lists();
        let key = PageKey::new(filter, after, limit);
        let local = self.store.backend() == Backend::Sqlite;
        let version = match key {
            None => None,
            Some(_) if local => Some(cache.local_version(user)),
            Some(_) => Some(
                self.store
                    .event_heads()
                    .head(self.store.connection(), user)
                    .await?,
            ),
        };
        if let (Some(key), Some(version)) = (&key, version)
            && let Some(page) = cache.get(user, version, key)
        {
            return Ok(page.as_ref().clone());
        }
        let page = self.read_sessions(user, filter, after, limit).await?;
        if let (Some(key), Some(version)) = (key, version) {
            cache.put(user, version, key, Arc::new(page.clone()), local);
        }
        Ok(page)
    }

    /// [`Self::list_sessions`] from the database.
    async fn read_sessions(
        &self,
        user: UserId,
        filter: SessionFilter,
        after: Option<(DateTime<Utc>, SessionId)>,
        limit: u64,
    ) -> Result<Vec<ChatSession>> {
        use chat_sessions::Column;
        let mut query = chat_sessions::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .order_by_desc(Column::LastActivityAt)
            .order_by_desc(Column::Id)
            .limit(limit);
        match filter.archived {
            ArchivedFilter::Exclude => query = query.filter(Column::Archived.eq(false)),
            ArchivedFilter::Only => query = query.filter(Column::Archived.eq(true)),
            ArchivedFilter::Include => {}
        }
        if let Some(pinned) = filter.pinned {
            query = query.filter(Column::Pinned.eq(pinned));
        }
        if let Some((at, id)) = after {
            query = query.filter(
                Expr::tuple([Expr::col(Column::LastActivityAt), Expr::col(Column::Id)]).lt(
                    Expr::tuple([Expr::value(micros(at)), Expr::value(id.as_uuid())]),
                ),
            );
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(session_of).collect())
    }

    /// Applies `patch`. A new title counts as not generated. `updated_at` becomes `now`; the
    /// last activity stays.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn update_session(
        &self,
        user: UserId,
        id: SessionId,
        patch: &SessionPatch,
        now: DateTime<Utc>,
    ) -> Result<ChatSession> {
        use chat_sessions::Column;
        let mut update = chat_sessions::Entity::update_many()
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::UserId.eq(user.as_uuid()));
        if let Some(title) = &patch.title {
            update = update
                .col_expr(Column::Title, Expr::value(title.clone()))
                .col_expr(Column::TitleGenerated, Expr::value(false));
        }
        if let Some(pinned) = patch.pinned {
            update = update.col_expr(Column::Pinned, Expr::value(pinned));
        }
        if let Some(archived) = patch.archived {
            update = update.col_expr(Column::Archived, Expr::value(archived));
        }
        if let Some(instruction) = &patch.system_instruction {
            update = update.col_expr(Column::SystemInstruction, Expr::value(instruction.clone()));
        }
        if let Some(model) = &patch.model {
            update = update.col_expr(Column::Model, Expr::value(model.clone()));
        }
        let txn = self.store.begin_write().await?;
        let session = update
            .exec_with_returning(&txn)
            .await
            .map_err(db_error)?
            .into_iter()
            .next()
            .map(session_of)
            .ok_or_else(|| not_found(SESSION, id))?;
        let events = record(
            &txn,
            self.store.backend(),
            user,
            vec![ChatChange::SessionUpdated(session.clone())],
            now,
        )
        .await?;
        txn.commit().await.map_err(db_error)?;
        publish_committed(&self.store, user, events);
        Ok(session)
    }

    /// Sets a generated title, only while the session has none (a title the user set in the
    /// meantime wins). Returns whether it was set.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn set_generated_title(
        &self,
        user: UserId,
        id: SessionId,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        use chat_sessions::Column;
        let txn = self.store.begin_write().await?;
        let updated = chat_sessions::Entity::update_many()
            .col_expr(Column::Title, Expr::value(title))
            .col_expr(Column::TitleGenerated, Expr::value(true))
            .col_expr(Column::UpdatedAt, Expr::value(micros(now)))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::UserId.eq(user.as_uuid()))
            .filter(Column::Title.eq(""))
            .exec_with_returning(&txn)
            .await
            .map_err(db_error)?;
        if let Some(row) = updated.into_iter().next() {
            let changes = vec![ChatChange::SessionUpdated(session_of(row))];
            let events = record(&txn, self.store.backend(), user, changes, now).await?;
            txn.commit().await.map_err(db_error)?;
            publish_committed(&self.store, user, events);
            return Ok(true);
        }
        if session_owned(&txn, user, id).await? {
            Ok(false)
        } else {
            Err(not_found(SESSION, id))
        }
    }

    /// Deletes the session with its messages.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such session; the database failed.
    pub async fn delete_session(&self, user: UserId, id: SessionId) -> Result<()> {
        let txn = self.store.begin_write().await?;
        let deleted = chat_sessions::Entity::delete_many()
            .filter(chat_sessions::Column::Id.eq(id.as_uuid()))
            .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            return Err(not_found(SESSION, id));
        }
        let changes = vec![ChatChange::SessionDeleted(id)];
        let events = record(&txn, self.store.backend(), user, changes, Utc::now()).await?;
        txn.commit().await.map_err(db_error)?;
        publish_committed(&self.store, user, events);
        Ok(())
    }
}

/// Whether `session` exists and belongs to `user`.
pub(super) async fn session_owned<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    session: SessionId,
) -> Result<bool> {
    let found = chat_sessions::Entity::find()
        .select_only()
        .column(chat_sessions::Column::Id)
        .filter(chat_sessions::Column::Id.eq(session.as_uuid()))
        .filter(chat_sessions::Column::UserId.eq(user.as_uuid()))
        .into_tuple::<uuid::Uuid>()
        .one(db)
        .await
        .map_err(db_error)?;
    Ok(found.is_some())
}
