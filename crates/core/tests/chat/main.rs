//! ChatService on its own, without a gRPC server: sends unary and streamed, the tool loop,
//! retries, cancellation, idempotent resends, the token budget and exchange leases, on a fresh
//! SQLite or PostgreSQL database against the test Gemini peer, with a clock the tests move.

#[path = "../support/mod.rs"]
mod support;

mod budget;
mod harness;
mod resend;
mod send;
mod tools;
