//! Reading everything one user owns, for a data export: one [`RecordType`] per kind of row,
//! read in keyset pages so that an export of a large account holds one page in memory at a
//! time, never the whole account.
//!
//! Each record is an explicit list of fields, so a column is exported only when it is named
//! here: a secret column added later stays out until someone adds it on purpose. What is left
//! out on purpose, and why, is [`NOT_EXPORTED`]; a test reads the schema and fails when a table
//! with a user id is neither exported nor listed there.
//!
//! The pages are separate queries, not one snapshot: rows written while an export runs may or
//! may not appear in it.

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

mod records;

pub use self::records::{
    ApiKeyRecord, AuditEventRecord, ChatMessageRecord, ChatSessionRecord, DeviceSessionRecord,
    ExportRecord, GmailConnectionRecord, GoogleLinkRecord, MemoryRecord, PreferencesRecord,
    ProfileRecord, ServiceAccountGrantRecord, TokenBudgetRecord, UsageRecord,
};
use self::records::{time, time_opt};

use crate::entity::{
    api_keys, audit_events, auth_sessions, chat_memories, chat_messages, chat_sessions,
    gmail_connections, gmail_messages, google_links, preferences, service_account_users,
    token_budgets, usage_daily, users,
};
use crate::{Store, db_error};

/// A kind of exported record: one table, read for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// The account (`users`).
    Profile,
    /// Theme, language, timezone and default model (`preferences`).
    Preferences,
    /// The monthly token budget (`token_budgets`).
    TokenBudget,
    /// The Google OAuth grant, without its tokens (`google_links`).
    GoogleLink,
    /// The Gmail connection and its sync state, without the mail key (`gmail_connections`).
    GmailConnection,
    /// A stored API key's metadata, without the key (`api_keys`).
    ApiKey,
    /// A signed-in device (`auth_sessions`), without token hashes.
    DeviceSession,
    /// A conversation (`chat_sessions`).
    ChatSession,
    /// A message of a conversation (`chat_messages`).
    ChatMessage,
    /// A remembered fact (`chat_memories`).
    Memory,
    /// Model calls and tokens of one UTC day and model (`usage_daily`).
    Usage,
    /// A service account allowed to act for the user (`service_account_users`).
    ServiceAccountGrant,
    /// An audit event the user is the actor of (`audit_events`).
    AuditEvent,
}

impl RecordType {
    /// Every record type, in the order an export writes them.
    pub const ALL: [RecordType; 13] = [
        Self::Profile,
        Self::Preferences,
        Self::TokenBudget,
        Self::GoogleLink,
        Self::GmailConnection,
        Self::ApiKey,
        Self::DeviceSession,
        Self::ChatSession,
        Self::ChatMessage,
        Self::Memory,
        Self::Usage,
        Self::ServiceAccountGrant,
        Self::AuditEvent,
    ];

    /// The record's `type` field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Preferences => "preferences",
            Self::TokenBudget => "token_budget",
            Self::GoogleLink => "google_link",
            Self::GmailConnection => "gmail_connection",
            Self::ApiKey => "api_key",
            Self::DeviceSession => "device_session",
            Self::ChatSession => "chat_session",
            Self::ChatMessage => "chat_message",
            Self::Memory => "memory",
            Self::Usage => "usage",
            Self::ServiceAccountGrant => "service_account_grant",
            Self::AuditEvent => "audit_event",
        }
    }

    /// The table its rows come from.
    #[must_use]
    pub const fn table(self) -> &'static str {
        match self {
            Self::Profile => "users",
            Self::Preferences => "preferences",
            Self::TokenBudget => "token_budgets",
            Self::GoogleLink => "google_links",
            Self::GmailConnection => "gmail_connections",
            Self::ApiKey => "api_keys",
            Self::DeviceSession => "auth_sessions",
            Self::ChatSession => "chat_sessions",
            Self::ChatMessage => "chat_messages",
            Self::Memory => "chat_memories",
            Self::Usage => "usage_daily",
            Self::ServiceAccountGrant => "service_account_users",
            Self::AuditEvent => "audit_events",
        }
    }
}

/// A table or column deliberately left out of exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotExported {
    /// The table.
    pub table: &'static str,
    /// The column, or `None` for the whole table.
    pub column: Option<&'static str>,
    /// Why it stays on the server.
    pub reason: &'static str,
}

/// Everything with a user's id that an export leaves out, and why: secrets and what is
/// derived from secrets, operational locks, and the synced copy of the user's Gmail (which
/// their Google account keeps and exports). Every other column of an exported table is exported under its own
/// name.
pub const NOT_EXPORTED: &[NotExported] = &[
    NotExported {
        table: "user_data_keys",
        column: None,
        reason: "the user's data key, wrapped by the server's key-encryption key: key material",
    },
    NotExported {
        table: "refresh_tokens",
        column: None,
        reason: "hashes of refresh tokens (bearer credentials) and of their successors; the \
                 device sessions they belong to are exported as device_session",
    },
    NotExported {
        table: "api_keys",
        column: Some("sealed_key"),
        reason: "the API key's ciphertext; the key is never shown again once stored",
    },
    NotExported {
        table: "google_links",
        column: Some("sealed_access_token"),
        reason: "the Google access token's ciphertext",
    },
    NotExported {
        table: "google_links",
        column: Some("sealed_refresh_token"),
        reason: "the Google refresh token's ciphertext",
    },
    NotExported {
        table: "audit_events",
        column: Some("prev_hash"),
        reason: "an HMAC under the server's audit chain key (secret-derived); it proves the \
                 log's integrity only to the holder of that key",
    },
    NotExported {
        table: "audit_events",
        column: Some("hash"),
        reason: "an HMAC under the server's audit chain key (secret-derived); it proves the \
                 log's integrity only to the holder of that key",
    },
    NotExported {
        table: "chat_events",
        column: None,
        reason: "the WatchChat feed: kinds and ids of the sessions and messages exported as \
                 chat_session and chat_message, no content, kept at most 7 days",
    },
    NotExported {
        table: "chat_event_heads",
        column: None,
        reason: "the number of the user's last WatchChat event, a counter for watch cursors",
    },
    NotExported {
        table: "gmail_connections",
        column: Some("sealed_mail_key"),
        reason: "the key that seals the user's synced mail, sealed under their data key: key \
                 material",
    },
    NotExported {
        table: "gmail_connections",
        column: Some("mail_key_version"),
        reason: "which version of the data key sealed the mail key: bookkeeping of key material",
    },
    NotExported {
        table: "gmail_connections",
        column: Some("sync_lease_owner"),
        reason: "which server is syncing the mailbox at this moment: an operational lock that \
                 names a server, not data of the user",
    },
    NotExported {
        table: "gmail_connections",
        column: Some("sync_lease_expires_at"),
        reason: "until when that server holds the sync lock: operational, not data of the user",
    },
    NotExported {
        table: "gmail_messages",
        column: None,
        reason: "a copy of the user's Gmail messages, sealed with the mail key; the mail itself \
                 stays in the user's Google account, which exports it (Google Takeout); the \
                 gmail_connection record counts the messages synced",
    },
    NotExported {
        table: "gmail_message_labels",
        column: None,
        reason: "the Gmail label ids of the synced messages, a copy of what the user's Google \
                 account holds",
    },
    NotExported {
        table: "gmail_message_summaries",
        column: None,
        reason: "AI summaries of synced messages, sealed with the mail key: derived from mail \
                 that is itself not exported, and written again on request",
    },
    NotExported {
        table: "gmail_thread_summaries",
        column: None,
        reason: "AI summaries of synced threads, sealed with the mail key: derived from mail \
                 that is itself not exported, and written again on request",
    },
    NotExported {
        table: "gmail_triage_results",
        column: None,
        reason: "AI triage of synced messages (gist and rationale sealed with the mail key): \
                 derived from mail that is itself not exported, and made again on request",
    },
    NotExported {
        table: "gmail_search_terms",
        column: None,
        reason: "the search index of the synced mail: keyed 16-byte hashes of words, \
                 meaningless without the server-held mail key and derived from mail that stays \
                 in the user's Google account",
    },
    NotExported {
        table: "chat_messages",
        column: Some("search"),
        reason: "PostgreSQL's full-text index of `text`, derived from it (PostgreSQL only)",
    },
];

/// Where the next page of one record type starts: after this key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportCursor {
    /// After this id (tables keyed by a UUID).
    Id(Uuid),
    /// After this creation time and id, the order of the `(user_id, created_at, id)` indexes
    /// of messages, memories and device sessions (creation times never change).
    Created(DateTime<Utc>, Uuid),
    /// After this audit sequence number.
    Seq(i64),
    /// After this usage day and model.
    Usage(NaiveDate, String),
}

/// One page of records of one type.
#[derive(Debug)]
pub struct ExportPage {
    /// The records, in key order.
    pub records: Vec<ExportRecord>,
    /// Where the next page starts, or `None` when this was the last one.
    pub next: Option<ExportCursor>,
}

/// Reads one user's rows for an export.
#[derive(Clone, Debug)]
pub struct ExportRepository {
    store: Store,
}

impl Store {
    /// The export reader.
    #[must_use]
    pub fn export(&self) -> ExportRepository {
        ExportRepository {
            store: self.clone(),
        }
    }
}

/// The page and where the next one starts, keyed by `key` of the last row when the page is
/// full (a short page is the last).
fn page_of<M>(
    rows: Vec<M>,
    limit: u64,
    key: impl Fn(&M) -> ExportCursor,
    record: impl Fn(M) -> ExportRecord,
) -> ExportPage {
    let full = u64::try_from(rows.len()).unwrap_or(u64::MAX) >= limit;
    let next = if full { rows.last().map(&key) } else { None };
    ExportPage {
        records: rows.into_iter().map(record).collect(),
        next,
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

impl ExportRepository {
    /// The user with this email address, when exactly one has it.
    ///
    /// # Errors
    /// NOT_FOUND when no user has it; INVALID_ARGUMENT when several do; the database failed.
    pub async fn user_by_email(&self, email: &str) -> Result<UserId> {
        let found = users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .limit(2)
            .all(self.store.connection())
            .await
            .map_err(db_error)?;
        match found.as_slice() {
            [one] => Ok(UserId::from_uuid(one.id)),
            [] => Err(Error::NotFound {
                resource: "user",
                id: email.to_owned(),
            }),
            _ => Err(Error::invalid_field(
                "user",
                "several accounts have this email address; name the account by its id",
            )),
        }
    }

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
        let db = self.store.connection();
        let owner = user.as_uuid();
        let limit = limit.max(1);
        match kind {
            RecordType::Profile => {
                let row = users::Entity::find_by_id(owner)
                    .one(db)
                    .await
                    .map_err(db_error)?;
                Ok(single(row.map(|r| {
                    ExportRecord::Profile(ProfileRecord {
                        id: r.id,
                        display_name: r.display_name,
                        email: r.email,
                        email_verified: r.email_verified,
                        picture_url: r.picture_url,
                        oidc_issuer: r.oidc_issuer,
                        oidc_subject: r.oidc_subject,
                        created_at: time(r.created_at),
                        updated_at: time(r.updated_at),
                        last_sign_in_at: time_opt(r.last_sign_in_at),
                    })
                })))
            }
            RecordType::Preferences => {
                let row = preferences::Entity::find_by_id(owner)
                    .one(db)
                    .await
                    .map_err(db_error)?;
                Ok(single(row.map(|r| {
                    ExportRecord::Preferences(PreferencesRecord {
                        user_id: r.user_id,
                        theme: r.theme,
                        language: r.language,
                        timezone: r.timezone,
                        default_model: r.default_model,
                        version: r.version,
                        updated_at: time(r.updated_at),
                    })
                })))
            }
            RecordType::TokenBudget => {
                let row = token_budgets::Entity::find_by_id(owner)
                    .one(db)
                    .await
                    .map_err(db_error)?;
                Ok(single(row.map(|r| {
                    ExportRecord::TokenBudget(TokenBudgetRecord {
                        user_id: r.user_id,
                        monthly_limit: r.monthly_limit,
                        updated_at: time(r.updated_at),
                    })
                })))
            }
            RecordType::GoogleLink => {
                let row = google_links::Entity::find_by_id(owner)
                    .one(db)
                    .await
                    .map_err(db_error)?;
                Ok(single(row.map(|r| {
                    ExportRecord::GoogleLink(GoogleLinkRecord {
                        user_id: r.user_id,
                        scopes: r.scopes,
                        access_expires_at: time_opt(r.access_expires_at),
                        reauth_required: r.reauth_required,
                        updated_at: time(r.updated_at),
                    })
                })))
            }
            RecordType::GmailConnection => {
                let Some(r) = gmail_connections::Entity::find_by_id(owner)
                    .one(db)
                    .await
                    .map_err(db_error)?
                else {
                    return Ok(single(None));
                };
                let message_count = gmail_messages::Entity::find()
                    .filter(gmail_messages::Column::UserId.eq(owner))
                    .count(db)
                    .await
                    .map_err(db_error)?;
                Ok(single(Some(ExportRecord::GmailConnection(
                    GmailConnectionRecord {
                        user_id: r.user_id,
                        state: r.state,
                        email_address: r.email_address,
                        scopes: r.scopes,
                        connected_at: time_opt(r.connected_at),
                        history_id: r.history_id,
                        full_sync_history_id: r.full_sync_history_id,
                        full_sync_page_token: r.full_sync_page_token,
                        full_sync_fetched: r.full_sync_fetched,
                        full_sync_started_at: time_opt(r.full_sync_started_at),
                        last_sync_at: time_opt(r.last_sync_at),
                        last_error_reason: r.last_error_reason,
                        last_error_message: r.last_error_message,
                        last_error_at: time_opt(r.last_error_at),
                        next_sync_due_at: time_opt(r.next_sync_due_at),
                        created_at: time(r.created_at),
                        updated_at: time(r.updated_at),
                        message_count,
                    },
                ))))
            }
            RecordType::ApiKey => {
                let mut query = api_keys::Entity::find()
                    .filter(api_keys::Column::UserId.eq(owner))
                    .order_by_asc(api_keys::Column::Id)
                    .limit(limit);
                if let Some(id) = after_id(after)? {
                    query = query.filter(api_keys::Column::Id.gt(id));
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Id(r.id),
                    |r| {
                        ExportRecord::ApiKey(ApiKeyRecord {
                            id: r.id,
                            user_id: r.user_id,
                            provider: r.provider,
                            key_hint: r.key_hint,
                            status: r.status,
                            status_detail: r.status_detail,
                            created_at: time(r.created_at),
                            updated_at: time(r.updated_at),
                            last_validated_at: time_opt(r.last_validated_at),
                            last_used_at: time_opt(r.last_used_at),
                        })
                    },
                ))
            }
            RecordType::DeviceSession => {
                let mut query = auth_sessions::Entity::find()
                    .filter(auth_sessions::Column::UserId.eq(owner))
                    .order_by_asc(auth_sessions::Column::CreatedAt)
                    .order_by_asc(auth_sessions::Column::Id)
                    .limit(limit);
                if let Some(after) = after_created(
                    auth_sessions::Column::CreatedAt,
                    auth_sessions::Column::Id,
                    after,
                )? {
                    query = query.filter(after);
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Created(r.created_at, r.id),
                    |r| {
                        ExportRecord::DeviceSession(DeviceSessionRecord {
                            id: r.id,
                            user_id: r.user_id,
                            device_name: r.device_name,
                            user_agent: r.user_agent,
                            ip_address: r.ip_address,
                            sign_in_method: r.sign_in_method,
                            created_at: time(r.created_at),
                            last_used_at: time(r.last_used_at),
                            expires_at: time(r.expires_at),
                            revoked_at: time_opt(r.revoked_at),
                            revoked_reason: r.revoked_reason,
                        })
                    },
                ))
            }
            RecordType::ChatSession => {
                let mut query = chat_sessions::Entity::find()
                    .filter(chat_sessions::Column::UserId.eq(owner))
                    .order_by_asc(chat_sessions::Column::Id)
                    .limit(limit);
                if let Some(id) = after_id(after)? {
                    query = query.filter(chat_sessions::Column::Id.gt(id));
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Id(r.id),
                    |r| {
                        ExportRecord::ChatSession(ChatSessionRecord {
                            id: r.id,
                            user_id: r.user_id,
                            title: r.title,
                            title_generated: r.title_generated,
                            system_instruction: r.system_instruction,
                            model: r.model,
                            pinned: r.pinned,
                            archived: r.archived,
                            message_count: r.message_count,
                            last_sequence: r.last_sequence,
                            created_at: time(r.created_at),
                            updated_at: time(r.updated_at),
                            last_activity_at: time(r.last_activity_at),
                        })
                    },
                ))
            }
            RecordType::ChatMessage => {
                // The entity names its columns: PostgreSQL's generated `search` is never read.
                let mut query = chat_messages::Entity::find()
                    .filter(chat_messages::Column::UserId.eq(owner))
                    .order_by_asc(chat_messages::Column::CreatedAt)
                    .order_by_asc(chat_messages::Column::Id)
                    .limit(limit);
                if let Some(after) = after_created(
                    chat_messages::Column::CreatedAt,
                    chat_messages::Column::Id,
                    after,
                )? {
                    query = query.filter(after);
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Created(r.created_at, r.id),
                    |r| {
                        ExportRecord::ChatMessage(ChatMessageRecord {
                            id: r.id,
                            user_id: r.user_id,
                            session_id: r.session_id,
                            sequence: r.sequence,
                            role: r.role,
                            text: r.text,
                            payload: r.payload,
                            parts: r.parts,
                            client_message_id: r.client_message_id,
                            exchange_id: r.exchange_id,
                            exchange_state: r.exchange_state,
                            lease_until: time_opt(r.lease_until),
                            model: r.model,
                            prompt_tokens: r.prompt_tokens,
                            output_tokens: r.output_tokens,
                            total_tokens: r.total_tokens,
                            finish_reason: r.finish_reason,
                            latency_ms: r.latency_ms,
                            first_token_ms: r.first_token_ms,
                            error_reason: r.error_reason,
                            error_message: r.error_message,
                            created_at: time(r.created_at),
                        })
                    },
                ))
            }
            RecordType::Memory => {
                let mut query = chat_memories::Entity::find()
                    .filter(chat_memories::Column::UserId.eq(owner))
                    .order_by_asc(chat_memories::Column::CreatedAt)
                    .order_by_asc(chat_memories::Column::Id)
                    .limit(limit);
                if let Some(after) = after_created(
                    chat_memories::Column::CreatedAt,
                    chat_memories::Column::Id,
                    after,
                )? {
                    query = query.filter(after);
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Created(r.created_at, r.id),
                    |r| {
                        ExportRecord::Memory(MemoryRecord {
                            id: r.id,
                            user_id: r.user_id,
                            content: r.content,
                            source_session_id: r.source_session_id,
                            created_at: time(r.created_at),
                        })
                    },
                ))
            }
            RecordType::Usage => {
                use usage_daily::Column;
                let mut query = usage_daily::Entity::find()
                    .filter(Column::UserId.eq(owner))
                    .order_by_asc(Column::Day)
                    .order_by_asc(Column::Model)
                    .limit(limit);
                match after {
                    None => {}
                    Some(ExportCursor::Usage(day, model)) => {
                        query = query.filter(
                            Condition::any().add(Column::Day.gt(*day)).add(
                                Condition::all()
                                    .add(Column::Day.eq(*day))
                                    .add(Column::Model.gt(model.as_str())),
                            ),
                        );
                    }
                    Some(other) => {
                        return Err(Error::internal(format!(
                            "export cursor {other:?} does not fit usage"
                        )));
                    }
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Usage(r.day, r.model.clone()),
                    |r| {
                        ExportRecord::Usage(UsageRecord {
                            user_id: r.user_id,
                            day: r.day.format("%Y-%m-%d").to_string(),
                            model: r.model,
                            request_count: r.request_count,
                            prompt_tokens: r.prompt_tokens,
                            output_tokens: r.output_tokens,
                            total_tokens: r.total_tokens,
                        })
                    },
                ))
            }
            RecordType::ServiceAccountGrant => {
                use service_account_users::Column;
                let mut query = service_account_users::Entity::find()
                    .filter(Column::UserId.eq(owner))
                    .order_by_asc(Column::ServiceAccountId)
                    .limit(limit);
                if let Some(id) = after_id(after)? {
                    query = query.filter(Column::ServiceAccountId.gt(id));
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Id(r.service_account_id),
                    |r| {
                        ExportRecord::ServiceAccountGrant(ServiceAccountGrantRecord {
                            service_account_id: r.service_account_id,
                            user_id: r.user_id,
                        })
                    },
                ))
            }
            RecordType::AuditEvent => {
                use audit_events::Column;
                // Only the columns exported: never the chain's HMACs.
                let mut query = audit_events::Entity::find()
                    .filter(Column::ActorUserId.eq(owner))
                    .order_by_asc(Column::Seq)
                    .limit(limit);
                match after {
                    None => {}
                    Some(ExportCursor::Seq(seq)) => {
                        query = query.filter(Column::Seq.gt(*seq));
                    }
                    Some(other) => {
                        return Err(Error::internal(format!(
                            "export cursor {other:?} does not fit audit events"
                        )));
                    }
                }
                let rows = query.all(db).await.map_err(db_error)?;
                Ok(page_of(
                    rows,
                    limit,
                    |r| ExportCursor::Seq(r.seq),
                    |r| {
                        let metadata = serde_json::from_str(&r.metadata)
                            .unwrap_or(serde_json::Value::String(r.metadata));
                        ExportRecord::AuditEvent(AuditEventRecord {
                            seq: r.seq,
                            id: r.id,
                            occurred_at: time(r.occurred_at),
                            actor_user_id: r.actor_user_id,
                            action: r.action,
                            target: r.target,
                            outcome: r.outcome,
                            request_id: r.request_id,
                            client_ip: r.client_ip,
                            user_agent: r.user_agent,
                            metadata,
                        })
                    },
                ))
            }
        }
    }
}
