//! Local peers for assistd's tests: servers on 127.0.0.1 that speak the real protocols of the
//! systems assistd talks to, so tests exercise real clients over real sockets instead of
//! mocking assistd's own code.
//!
//! - [`gemini::GeminiServer`]: the Gemini REST API (`v1beta`): models, generateContent,
//!   streamGenerateContent (SSE, optionally split into many writes and paced), scripted or
//!   computed replies with function calls and Gemini 3's thought-signature check, blocked
//!   prompts, Google's error bodies, faults on demand (also mid-stream), and a log of each
//!   stream: when every event was written and when the client went away.
//! - [`kms::MotoKms`]: AWS KMS as played by moto's server, one per test binary (or the one
//!   named by `ASSISTD_TEST_KMS_ENDPOINT`), with SDK configs, fresh keys and the environment a
//!   spawned server needs.
//! - [`kms::KmsProxy`]: a KMS endpoint that counts requests by operation, fails the
//!   operations it is told to, and forwards the rest to moto.
//! - [`oidc::OidcProvider`]: an OpenID Connect provider (discovery, JWKS, authorization code
//!   flow with PKCE, refresh tokens) that signs a settable user in at once, with key rotation,
//!   claim overrides, outages and forged ID tokens on demand.
//!
//! The HTTP server loop, the RSA signing keys, the OpenID Connect protocol code
//! (`assistd_devkit::oidc::protocol`: discovery, client authentication, PKCE, authorization
//! checks, error answers) and the Gemini API shapes (`assistd_devkit::model::api`) are
//! `assistd-devkit`'s, which runs the stand-ins of `assistd dev`; what is test-only (embedded
//! keys, faults, forged tokens, recordings) stays here.
//!
//! Test code only: failures to bind, lock or start a peer panic.

pub mod gemini;
pub mod kms;
pub mod oidc;
// The HTTP/1.1 server loop is the one `assistd dev`'s stand-ins run on.
use assistd_devkit::serve;

pub use gemini::GeminiServer;
pub use kms::{KmsProxy, MotoKms};
