//! What the core's test binaries share: a fresh, migrated database per test and a clock that
//! moves only when told. Each binary includes this file with `#[path = "../support/mod.rs"]`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use assistd_domain::ManualClock;
use assistd_store::{DatabaseSettings, Store};
use sea_orm::ConnectionTrait;

/// A migrated store on a fresh database (a new PostgreSQL database under
/// `ASSISTD_TEST_DATABASE_URL` when set, else an SQLite file), and the directory keeping an
/// SQLite file alive.
pub async fn fresh_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = match std::env::var("ASSISTD_TEST_DATABASE_URL") {
        Ok(admin_url) => {
            let name = format!("assistd_test_{}", uuid::Uuid::now_v7().simple());
            let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            admin.close().await.ok();
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            DatabaseSettings::from_url(format!("{base}/{name}"))
        }
        Err(_) => DatabaseSettings::sqlite(&dir.path().join("core.db")),
    };
    let store = Store::connect(&settings).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// A clock standing at the current time until a test moves it.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(chrono::Utc::now()))
}
