//! The per-type page queries of an export: one user's rows of one table, in the order of an
//! index that starts with the user id, after a keyset cursor.

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, PrimaryKeyTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::records::GmailConnectionRecord;
use super::{ExportCursor, ExportPage, ExportRecord, ExportRepository, RecordType};
use crate::db_error;
use crate::entity::{
    api_keys, audit_events, auth_sessions, chat_memories, chat_messages, chat_sessions,
    gmail_connections, gmail_messages, google_links, preferences, service_account_users,
    token_budgets, usage_daily, users,
};

impl ExportRepository {
    /// At most `limit` records of `kind` of `user`, after `after`, in key order: creation
    /// time and id for messages, memories and device sessions (their indexes' order), sequence
    /// for audit events, day and model for usage, id for the rest.
    ///
    /// # Errors
    /// The database failed; the cursor belongs to another record type.
    pub async fn page(
        &self,
        user: UserId,
        kind: RecordType,
        after: Option<&ExportCursor>,
        limit: u64,
    ) -> Result<ExportPage> {
        let pager = Pager {
            db: self.store.connection(),
            owner: user.as_uuid(),
            after,
            limit: limit.max(1),
        };
        match kind {
            RecordType::Profile => {
                pager
                    .single::<users::Entity, _>(ExportRecord::Profile)
                    .await
            }
            RecordType::Preferences => {
                pager
                    .single::<preferences::Entity, _>(ExportRecord::Preferences)
                    .await
            }
            RecordType::TokenBudget => {
                pager
                    .single::<token_budgets::Entity, _>(ExportRecord::TokenBudget)
                    .await
            }
            RecordType::GoogleLink => {
                pager
                    .single::<google_links::Entity, _>(ExportRecord::GoogleLink)
                    .await
            }
            RecordType::GmailConnection => pager.gmail_connection().await,
            RecordType::ApiKey => {
                use api_keys::Column;
                pager
                    .by_id::<api_keys::Entity, _>(
                        Column::UserId,
                        Column::Id,
                        |r| r.id,
                        ExportRecord::ApiKey,
                    )
                    .await
            }
            RecordType::DeviceSession => {
                use auth_sessions::Column;
                pager
                    .by_created::<auth_sessions::Entity, _>(
                        [Column::UserId, Column::CreatedAt, Column::Id],
                        |r| (r.created_at, r.id),
                        ExportRecord::DeviceSession,
                    )
                    .await
            }
            RecordType::ChatSession => {
                use chat_sessions::Column;
                pager
                    .by_id::<chat_sessions::Entity, _>(
                        Column::UserId,
                        Column::Id,
                        |r| r.id,
                        ExportRecord::ChatSession,
                    )
                    .await
            }
            RecordType::ChatMessage => {
                // The entity names its columns: PostgreSQL's generated `search` is never read.
                use chat_messages::Column;
                pager
                    .by_created::<chat_messages::Entity, _>(
                        [Column::UserId, Column::CreatedAt, Column::Id],
                        |r| (r.created_at, r.id),
                        ExportRecord::ChatMessage,
                    )
                    .await
            }
            RecordType::Memory => {
                use chat_memories::Column;
                pager
                    .by_created::<chat_memories::Entity, _>(
                        [Column::UserId, Column::CreatedAt, Column::Id],
                        |r| (r.created_at, r.id),
                        ExportRecord::Memory,
                    )
                    .await
            }
            RecordType::Usage => pager.usage().await,
            RecordType::ServiceAccountGrant => {
                use service_account_users::Column;
                pager
                    .by_id::<service_account_users::Entity, _>(
                        Column::UserId,
                        Column::ServiceAccountId,
                        |r| r.service_account_id,
                        ExportRecord::ServiceAccountGrant,
                    )
                    .await
            }
            RecordType::AuditEvent => pager.audit_events().await,
        }
    }
}

/// One page request: whose rows, after which cursor, how many.
struct Pager<'a> {
    db: &'a DatabaseConnection,
    owner: Uuid,
    after: Option<&'a ExportCursor>,
    limit: u64,
}

impl Pager<'_> {
    /// The user's one row of a table keyed by the user id: a page of one record or none.
    async fn single<E, R>(&self, wrap: fn(R) -> ExportRecord) -> Result<ExportPage>
    where
        E: EntityTrait,
        <E::PrimaryKey as PrimaryKeyTrait>::ValueType: From<Uuid>,
        E::Model: Into<R>,
    {
        let row = E::find_by_id(self.owner)
            .one(self.db)
            .await
            .map_err(db_error)?;
        Ok(single(row.map(|row| wrap(row.into()))))
    }

    /// The Gmail connection, with how many messages are synced.
    async fn gmail_connection(&self) -> Result<ExportPage> {
        let Some(row) = gmail_connections::Entity::find_by_id(self.owner)
            .one(self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(single(None));
        };
        let message_count = gmail_messages::Entity::find()
            .filter(gmail_messages::Column::UserId.eq(self.owner))
            .count(self.db)
            .await
            .map_err(db_error)?;
        Ok(single(Some(ExportRecord::GmailConnection(
            GmailConnectionRecord::new(row, message_count),
        ))))
    }

    /// A page of a table keyed by the UUID column `id` (owned through `owner`), in id order.
    async fn by_id<E, R>(
        &self,
        owner: E::Column,
        id: E::Column,
        id_of: fn(&E::Model) -> Uuid,
        wrap: fn(R) -> ExportRecord,
    ) -> Result<ExportPage>
    where
        E: EntityTrait,
        E::Model: Into<R>,
    {
        let after = after_id(self.after)?.map(|last| Condition::all().add(id.gt(last)));
        let rows = self.rows::<E>(owner, &[id], after).await?;
        Ok(self.page_of(rows, |r| ExportCursor::Id(id_of(r)), wrap))
    }

    /// A page of a table in `(created_at, id)` order; `columns` are the owner, creation time
    /// and id columns of its `(user_id, created_at, id)` index.
    async fn by_created<E, R>(
        &self,
        [owner, created_at, id]: [E::Column; 3],
        key_of: fn(&E::Model) -> (DateTime<Utc>, Uuid),
        wrap: fn(R) -> ExportRecord,
    ) -> Result<ExportPage>
    where
        E: EntityTrait,
        E::Model: Into<R>,
    {
        let after = after_created(created_at, id, self.after)?;
        let rows = self.rows::<E>(owner, &[created_at, id], after).await?;
        Ok(self.page_of(
            rows,
            |r| {
                let (at, id) = key_of(r);
                ExportCursor::Created(at, id)
            },
            wrap,
        ))
    }

    /// Usage in `(day, model)` order.
    async fn usage(&self) -> Result<ExportPage> {
        use usage_daily::Column;
        let after = match self.after {
            None => None,
            Some(ExportCursor::Usage(day, model)) => Some(
                Condition::any().add(Column::Day.gt(*day)).add(
                    Condition::all()
                        .add(Column::Day.eq(*day))
                        .add(Column::Model.gt(model.as_str())),
                ),
            ),
            Some(other) => {
                return Err(Error::internal(format!(
                    "export cursor {other:?} does not fit usage"
                )));
            }
        };
        let rows = self
            .rows::<usage_daily::Entity>(Column::UserId, &[Column::Day, Column::Model], after)
            .await?;
        Ok(self.page_of(
            rows,
            |r| ExportCursor::Usage(r.day, r.model.clone()),
            ExportRecord::Usage,
        ))
    }

    /// The audit events the user is the actor of, in sequence order.
    async fn audit_events(&self) -> Result<ExportPage> {
        use audit_events::Column;
        let after = match self.after {
            None => None,
            Some(ExportCursor::Seq(seq)) => Some(Condition::all().add(Column::Seq.gt(*seq))),
            Some(other) => {
                return Err(Error::internal(format!(
                    "export cursor {other:?} does not fit audit events"
                )));
            }
        };
        let rows = self
            .rows::<audit_events::Entity>(Column::ActorUserId, &[Column::Seq], after)
            .await?;
        Ok(self.page_of(rows, |r| ExportCursor::Seq(r.seq), ExportRecord::AuditEvent))
    }

    /// At most `limit` rows of `E` whose `owner` column is the user, ordered by `order`,
    /// after `after`.
    async fn rows<E: EntityTrait>(
        &self,
        owner: E::Column,
        order: &[E::Column],
        after: Option<Condition>,
    ) -> Result<Vec<E::Model>> {
        let mut query = E::find().filter(owner.eq(self.owner));
        for column in order {
            query = query.order_by_asc(*column);
        }
        query = query.limit(self.limit);
        if let Some(after) = after {
            query = query.filter(after);
        }
        query.all(self.db).await.map_err(db_error)
    }

    /// The page and where the next one starts, keyed by `key` of the last row when the page
    /// is full (a short page is the last).
    fn page_of<M, R>(
        &self,
        rows: Vec<M>,
        key: impl Fn(&M) -> ExportCursor,
        wrap: fn(R) -> ExportRecord,
    ) -> ExportPage
    where
        M: Into<R>,
    {
        let full = u64::try_from(rows.len()).unwrap_or(u64::MAX) >= self.limit;
        let next = if full { rows.last().map(&key) } else { None };
        ExportPage {
            records: rows.into_iter().map(|row| wrap(row.into())).collect(),
            next,
        }
    }
}

fn single(record: Option<ExportRecord>) -> ExportPage {
    ExportPage {
        records: record.into_iter().collect(),
        next: None,
    }
}

fn after_id(after: Option<&ExportCursor>) -> Result<Option<Uuid>> {
    match after {
        None => Ok(None),
        Some(ExportCursor::Id(id)) => Ok(Some(*id)),
        Some(other) => Err(Error::internal(format!(
            "export cursor {other:?} does not fit a table keyed by id"
        ))),
    }
}

/// The condition for rows after `after` in `(created_at, id)` order, written so that both
/// engines seek the `(user_id, created_at, id)` index to the cursor instead of scanning to it.
fn after_created<C: ColumnTrait>(
    created_at: C,
    id: C,
    after: Option<&ExportCursor>,
) -> Result<Option<Condition>> {
    match after {
        None => Ok(None),
        Some(ExportCursor::Created(at, last)) => {
            Ok(Some(Condition::all().add(created_at.gte(*at)).add(
                Condition::any().add(created_at.gt(*at)).add(id.gt(*last)),
            )))
        }
        Some(other) => Err(Error::internal(format!(
            "export cursor {other:?} does not fit a table in creation order"
        ))),
    }
}
