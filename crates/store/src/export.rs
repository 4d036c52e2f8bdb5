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
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

mod pages;
mod records;

pub use self::records::{
    ApiKeyRecord, AuditEventRecord, ChatMessageRecord, ChatSessionRecord, DeviceSessionRecord,
    ExportRecord, GmailConnectionRecord, GoogleLinkRecord, MemoryRecord, PreferencesRecord,
    ProfileRecord, ServiceAccountGrantRecord, TokenBudgetRecord, UsageRecord,
};

use crate::entity::users;
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
}
