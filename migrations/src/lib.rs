//! Database migrations of assistd. Every migration runs on SQLite and PostgreSQL; where the
//! dialects differ the migration asks `manager.get_database_backend()`. Migrations are named
//! by timestamp and never edited once merged: a change is a new migration.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_users_and_preferences;
mod m20261125_000002_secrets_and_audit;
mod m20261126_000003_chat;
mod m20261126_000004_auth;
mod m20261202_000005_service_accounts;
mod m20261203_000006_chat_events;
mod m20261204_000008_gmail;
mod m20261205_000009_gmail_ai;

/// Applies assistd's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_users_and_preferences::Migration),
            Box::new(m20261125_000002_secrets_and_audit::Migration),
            Box::new(m20261126_000003_chat::Migration),
            Box::new(m20261126_000004_auth::Migration),
            Box::new(m20261202_000005_service_accounts::Migration),
            Box::new(m20261203_000006_chat_events::Migration),
            Box::new(m20261204_000008_gmail::Migration),
            Box::new(m20261205_000009_gmail_ai::Migration),
        ]
    }
}
