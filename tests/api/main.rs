//! End-to-end tests: the real server on an ephemeral port, real clients over native gRPC and
//! grpc-web, a fresh database per test (SQLite, or PostgreSQL with
//! `ASSISTD_TEST_DATABASE_URL`).

mod admin;
mod apikey;
mod bearer;
mod call_log;
mod chat;
mod deploy;
mod dev;
mod export;
mod gmail_ai;
mod gmail_rpc;
mod gmail_sync;
mod gmail_tools;
mod helpers;
mod metrics;
mod outage;
mod preferences;
mod process;
mod secrets;
mod server;
mod service_accounts;
mod signin;
mod signin_canary;
mod tls;
mod watch_chat;
