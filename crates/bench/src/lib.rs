//! What the assistd benchmarks share: both run the real server as a child process
//! (`assistd serve`) on a fresh database and measure it from outside, as clients see it.
//!
//! - [`server`]: finding the `assistd` executable, starting it with a clean environment,
//!   waiting until it serves, stopping it as production would.
//! - [`postgres`]: a fresh PostgreSQL database per run, created and dropped through `psql`.
//! - [`stats`]: percentiles of latencies and signed delays, from an HDR histogram.
//! - [`format`]: how figures are printed (latencies, bytes, thousands).
//! - [`cli`]: the flags both benches take the same way, and the gRPC client helpers.
//!
//! The benches themselves are the `assistd-bench` binary (throughput and latency of health and
//! preference RPCs over gRPC and grpc-web) and the `chat` bench target (the chat API).

pub mod cli;
pub mod format;
pub mod postgres;
pub mod server;
pub mod stats;
