//! Memories: facts the assistant was asked to remember, listed newest first and matched
//! against the words of a message.

use assistd_domain::chat::{Memory, MemoryId, SessionId};
use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::rows::memory_of;
use super::sessions::session_owned;
use super::{
    ChatRepository, MEMORY, SESSION, account_gone, is_foreign_key_violation, micros, not_found,
};
use crate::db_error;
use crate::entity::chat_memories;

/// Memories read per query while matching them.
const MEMORY_SCAN_BATCH: u64 = 256;

impl ChatRepository {
    /// Remembers a fact, optionally noting the session it came from.
    ///
    /// # Errors
    /// NOT_FOUND when `source` is not one of the user's sessions; UNAUTHENTICATED when the
    /// account no longer exists; the database failed.
    pub async fn add_memory(
        &self,
        user: UserId,
        content: &str,
        source: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        let db = self.store.connection();
        if let Some(source) = source
            && !session_owned(db, user, source).await?
        {
            return Err(not_found(SESSION, source));
        }
        let row = chat_memories::Model {
            id: MemoryId::new().as_uuid(),
            user_id: user.as_uuid(),
            content: content.to_owned(),
            source_session_id: source.map(|id| id.as_uuid()),
            created_at: micros(now),
        };
        match chat_memories::Entity::insert(chat_memories::ActiveModel::from(row.clone()))
            .exec_without_returning(db)
            .await
        {
            Ok(_) => Ok(memory_of(row)),
            Err(err) if is_foreign_key_violation(&err) => match source {
                // The session was deleted since it was checked.
                Some(source) if !session_owned(db, user, source).await? => {
                    Err(not_found(SESSION, source))
                }
                _ => Err(account_gone()),
            },
            Err(err) => Err(db_error(err)),
        }
    }

    /// The user's memories, newest first (ties by id, descending), strictly after the cursor
    /// `after` (created_at and id of the last memory of the previous page): at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_memories(
        &self,
        user: UserId,
        after: Option<(DateTime<Utc>, MemoryId)>,
        limit: u64,
    ) -> Result<Vec<Memory>> {
        use chat_memories::Column;
        let mut query = chat_memories::Entity::find()
            .filter(Column::UserId.eq(user.as_uuid()))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit);
        if let Some((at, id)) = after {
            query = query.filter(
                Expr::tuple([Expr::col(Column::CreatedAt), Expr::col(Column::Id)]).lt(Expr::tuple(
                    [Expr::value(micros(at)), Expr::value(id.as_uuid())],
                )),
            );
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(memory_of).collect())
    }

    /// Forgets a memory.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no such memory; the database failed.
    pub async fn delete_memory(&self, user: UserId, id: MemoryId) -> Result<()> {
        let deleted = chat_memories::Entity::delete_many()
            .filter(chat_memories::Column::Id.eq(id.as_uuid()))
            .filter(chat_memories::Column::UserId.eq(user.as_uuid()))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            return Err(not_found(MEMORY, id));
        }
        Ok(())
    }

    /// The newest `limit` memories that contain any of `words` (case-insensitive substring,
    /// with full Unicode case folding); with no words, the newest `limit`. Memories are few
    /// per user (the caller caps them), so they are matched here rather than with SQL `LIKE`,
    /// which folds only ASCII on SQLite.
    ///
    /// # Errors
    /// The database failed.
    pub async fn find_memories(
        &self,
        user: UserId,
        words: &[String],
        limit: u64,
    ) -> Result<Vec<Memory>> {
        let needles: Vec<String> = words
            .iter()
            .map(|word| word.trim().to_lowercase())
            .filter(|word| !word.is_empty())
            .collect();
        if needles.is_empty() {
            return self.list_memories(user, None, limit).await;
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut after = None;
        while found.len() < wanted {
            let page = self.list_memories(user, after, MEMORY_SCAN_BATCH).await?;
            let complete = (page.len() as u64) < MEMORY_SCAN_BATCH;
            after = page.last().map(|memory| (memory.created_at, memory.id));
            for memory in page {
                let content = memory.content.to_lowercase();
                if found.len() < wanted && needles.iter().any(|needle| content.contains(needle)) {
                    found.push(memory);
                }
            }
            if complete {
                break;
            }
        }
        Ok(found)
    }

    /// How many memories the user has.
    ///
    /// # Errors
    /// The database failed.
    pub async fn count_memories(&self, user: UserId) -> Result<u64> {
        chat_memories::Entity::find()
            .filter(chat_memories::Column::UserId.eq(user.as_uuid()))
            .count(self.store.connection())
            .await
            .map_err(db_error)
    }
}
