//! Persistence of assistd over SeaORM. One set of entities and migrations serves SQLite (the
//! embedded default) and PostgreSQL (production). Repositories are scoped to one user: every
//! query they run is filtered by the user id they were handed, which comes from a verified
//! access token, so one user can never read or change another's rows.

pub mod audit;
mod connect;
// Entity macros generate `pub` items; the module itself is private to the store.
#[allow(unreachable_pub)]
mod entity;
mod notify;
mod preferences;
mod users;

pub use connect::{Backend, DatabaseSettings, Store, redact_url_password};
pub use notify::{PreferencesChange, PreferencesChangeFeed};
pub use preferences::PreferencesRepository;
pub use users::{NewUser, User, UserRepository};

/// Turns a database error into the domain's internal error (the cause is logged, not shown).
pub(crate) fn db_error(err: sea_orm::DbErr) -> assistd_domain::Error {
    assistd_domain::Error::internal(err)
}
