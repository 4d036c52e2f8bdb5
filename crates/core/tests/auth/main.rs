//! The sign-in service on its own, without a gRPC server: refresh-token rotation, the grace
//! window, reuse detection and concurrent refreshes, on a fresh SQLite database or, under
//! `ASSISTD_TEST_DATABASE_URL`, PostgreSQL. Sessions are opened with ID tokens from the
//! testkit's OpenID provider; time moves only through an injected manual clock.

#[path = "../support/mod.rs"]
mod support;

mod fixture;
mod refresh;
