//! Persistence of assistd over SeaORM. One set of entities and migrations serves SQLite (the
//! embedded default) and PostgreSQL (production). Repositories are scoped to one user: every
//! query they run is filtered by the user id they were handed, which comes from a verified
//! access token, so one user can never read or change another's rows.

mod api_keys;
pub mod audit;
mod auth;
mod chat;
pub mod chat_feed;
mod connect;
mod data_keys;
mod database_error;
// Entity macros generate `pub` items; the module itself is private to the store.
#[allow(unreachable_pub)]
mod entity;
pub mod export;
mod gmail;
mod notify;
mod preferences;
mod service_accounts;
mod users;

pub use api_keys::{ApiKeyRepository, NewApiKey, StoredApiKey};
pub use auth::{
    AuthRepository, GoogleLink, LoginAttempt, NewAuthSession, OidcProfile, RefreshTokenRecord,
};
pub use chat::{ChatRepository, UsageDelta};
pub use connect::{Backend, DatabaseSettings, Store, redact_url_password};
pub use data_keys::{DataKeyRepository, InsertOutcome, StoredDataKey};
pub use database_error::db_error;
pub use gmail::{
    FullSyncProgress, GmailConnection, GmailConnectionState, GmailStore, MessageFilter,
    NewGmailMessage, SealedMailKey, SearchTerm, StoredGmailMessage, SyncError, SyncLease,
};
pub use gmail::{StoredMessageSummary, StoredThreadSummary, StoredTriageResult, ThreadState};
pub use notify::{PreferencesChange, PreferencesChangeFeed};
pub use preferences::PreferencesRepository;
/// A database transaction, committed with `commit().await` or rolled back when dropped.
pub use sea_orm::{ConnectionTrait, DatabaseTransaction};
pub use service_accounts::{ActingFor, ServiceAccountRepository};
pub use users::{NewUser, UserRepository};
