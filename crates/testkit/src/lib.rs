//! Local peers for assistd's tests: servers on 127.0.0.1 that speak the real protocols of the
//! systems assistd talks to, so tests exercise real clients over real sockets instead of
//! mocking assistd's own code.
//!
//! - [`gemini::GeminiServer`]: the Gemini REST API (`v1beta`): models, generateContent,
//!   streamGenerateContent (SSE), Google's error bodies, and faults on demand.
//!
//! Test code only: failures to bind or lock panic.

pub mod gemini;

pub use gemini::GeminiServer;
