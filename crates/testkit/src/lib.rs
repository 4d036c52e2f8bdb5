//! Local peers for assistd's tests: servers on 127.0.0.1 that speak the real protocols of the
//! systems assistd talks to, so tests exercise real clients over real sockets instead of
//! mocking assistd's own code.
//!
//! - [`gemini::GeminiServer`]: the Gemini REST API (`v1beta`): models, generateContent,
//!   streamGenerateContent (SSE, optionally split into many writes and paced), scripted or
//!   computed replies with function calls and Gemini 3's thought-signature check, blocked
//!   prompts, Google's error bodies, faults on demand (also mid-stream), and a log of each
//!   stream: when every event was written and when the client went away.
//! - [`gmail::GmailServer`]: the Gmail REST API (`gmail/v1`): profile, messages (list with
//!   paging, get in every format), threads, history with paging and the 404 of a history id
//!   too old, for the mailboxes of the [`oidc::OidcProvider`]'s users; bearer and scope
//!   checks, per-user quota in units with 429 or 403 rate-limit answers, faults (error
//!   bodies with `Retry-After`, stalls, dropped connections), and counters of calls,
//!   concurrency and quota use per user.
//! - [`kms::MotoKms`]: AWS KMS as played by moto's server, one per test binary (or the one
//!   named by `ASSISTD_TEST_KMS_ENDPOINT`), with SDK configs, fresh keys and the environment a
//!   spawned server needs.
//! - [`kms::KmsProxy`]: a KMS endpoint that counts requests by operation, fails the
//!   operations it is told to, and forwards the rest to moto.
//! - [`oidc::OidcProvider`]: an OpenID Connect provider (discovery, JWKS, authorization code
//!   flow with PKCE, refresh tokens) that signs a settable user in at once, with key rotation,
//!   claim overrides, outages and forged ID tokens on demand, scopes that accumulate across
//!   consents, token revocation, and access-token introspection for the other peers.
//!
//! The HTTP server loop, the RSA signing keys, the OpenID Connect protocol code
//! (`assistd_devkit::oidc::protocol`: discovery, client authentication, PKCE, authorization
//! checks, error answers) and the Gemini API shapes (`assistd_devkit::model::api`) are
//! `assistd-devkit`'s, which runs the stand-ins of `assistd dev`; what is test-only (embedded
//! keys, faults, forged tokens, recordings) stays here.
//!
//! Test code only: failures to bind, lock or start a peer panic.

pub mod gemini;
pub mod gmail;
pub mod kms;
pub mod oidc;
// The HTTP/1.1 and h2c server loop is the one `assistd dev`'s stand-ins run on.
use assistd_devkit::serve;

pub use gemini::GeminiServer;
pub use gmail::GmailServer;
pub use kms::{KmsProxy, MotoKms};
