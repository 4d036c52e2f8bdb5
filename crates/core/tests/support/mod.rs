//! What the core's test binaries share: a fresh, migrated database per test (the store's own
//! fixture, included from its tests) and a clock that moves only when told. Each binary
//! includes this file with `#[path = "../support/mod.rs"]`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use assistd_domain::ManualClock;

#[path = "../../../store/tests/common/mod.rs"]
mod common;

/// A migrated store on a fresh database (a new PostgreSQL database under
/// `ASSISTD_TEST_DATABASE_URL` when set, else an SQLite file), and the directory keeping an
/// SQLite file alive.
pub(crate) use common::fresh_store;

/// A clock standing at the current time until a test moves it.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(chrono::Utc::now()))
}
