//! Local peers for assistd's tests: servers on 127.0.0.1 that speak the real protocols of the
//! systems assistd talks to, so tests exercise real clients over real sockets instead of
//! mocking assistd's own code.
//!
//! - [`gemini::GeminiServer`]: the Gemini REST API (`v1beta`): models, generateContent,
//!   streamGenerateContent (SSE), Google's error bodies, and faults on demand.
//! - [`kms::MotoKms`]: AWS KMS as played by moto's server, one per test binary (or the one
//!   named by `ASSISTD_TEST_KMS_ENDPOINT`), with SDK configs, fresh keys and the environment a
//!   spawned server needs.
//! - [`kms::KmsProxy`]: a KMS endpoint that counts requests by operation, fails the
//!   operations it is told to, and forwards the rest to moto.
//!
//! Test code only: failures to bind, lock or start a peer panic.

pub mod gemini;
pub mod kms;

pub use gemini::GeminiServer;
pub use kms::{KmsProxy, MotoKms};
