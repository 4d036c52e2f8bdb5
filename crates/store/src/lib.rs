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
// Entity macros generate `pub` items; the module itself is private to the store.
#[allow(unreachable_pub)]
mod entity;
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
pub use notify::{PreferencesChange, PreferencesChangeFeed};
pub use preferences::PreferencesRepository;
/// A database transaction, committed with `commit().await` or rolled back when dropped.
pub use sea_orm::{ConnectionTrait, DatabaseTransaction};
pub use service_accounts::ServiceAccountRepository;
pub use users::{NewUser, UserRepository};

/// Turns a database error into the domain's error: UNAVAILABLE (retryable) when the database
/// cannot be reached, no pooled connection freed up in time, or SQLite stayed locked past the
/// busy timeout; INTERNAL otherwise. The cause is logged, never shown.
pub fn db_error(err: sea_orm::DbErr) -> assistd_domain::Error {
    let unavailable = matches!(
        err,
        sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
    ) || err.to_string().contains("database is locked");
    if unavailable {
        tracing::warn!(error = %err, "database unavailable");
        return assistd_domain::Error::Unavailable {
            reason: assistd_domain::ErrorReason::DependencyUnavailable,
            message: "the database is busy or unreachable; retry shortly".into(),
            retry_after: Some(std::time::Duration::from_secs(1)),
        };
    }
    assistd_domain::Error::internal(err)
}
