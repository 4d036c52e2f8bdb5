//! Local stand-ins for the outside systems assistd talks to, so `assistd dev` runs the real
//! server with no Google or Gemini account:
//!
//! - [`oidc::DevProvider`]: an OpenID Connect provider (discovery, JWKS, authorization code
//!   flow with PKCE behind a small login page where any email signs in, ID tokens for the
//!   Google Identity Services path).
//! - [`model::LocalModel`]: a deterministic model speaking the Gemini REST API (`v1beta`
//!   models, generateContent, streamGenerateContent SSE) that streams word by word and calls
//!   assistd's chat tools on simple keyword rules.
//! - [`serve`]: the HTTP/1.1 server loop both use (and the test peers of `assistd-testkit`),
//!   with the `Host` check that keeps pages using DNS rebinding out and bounded body reads.
//! - [`oidc::protocol`] and [`model::api`]: the OpenID Connect and Gemini API code both these
//!   stand-ins and the test peers of `assistd-testkit` answer with, so each is written once.
//!
//! Neither asks who is signing in or whose key it is: they are for development on one machine
//! only.

pub mod model;
pub mod oidc;
pub mod serve;

pub use model::{LocalModel, LocalModelConfig};
pub use oidc::{DevProvider, DevProviderConfig, DevUser};
