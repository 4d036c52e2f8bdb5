//! assistd's own access tokens.
//!
//! An access token is a JWT signed with Ed25519 (`alg` pinned to `EdDSA`; nothing else is
//! accepted), carrying `iss`, `aud`, `sub` (the user id), `iat`, `exp`, `jti`, a `typ` claim
//! of `access`, and the signing key's id in the header `kid`. Tokens live at most 15 minutes.
//! Several keys can verify at once, so a new signing key can be introduced while tokens signed
//! by the previous one expire naturally.
//!
//! [`OidcClient`] is the OpenID Connect relying party for signing in with Google: discovery,
//! the PKCE authorization URL, code exchange, refresh, and one strict ID token verifier.

mod access;
mod keys;
mod oidc;
mod secrets;
mod service;

pub use access::{
    AccessClaims, AccessTokenSettings, AccessTokens, IssuedToken, MAX_ACCESS_TOKEN_TTL,
    TOKEN_TYPE_ACCESS, TokenError,
};
pub use keys::{KeyError, SigningKey};
pub use oidc::{
    AuthorizationRequest, ClientSecret, CodeExchange, DEFAULT_CLOCK_SKEW, DEFAULT_HTTP_TIMEOUT,
    GMAIL_COMPOSE_SCOPE, GMAIL_READONLY_SCOPE, GOOGLE_ISSUER, OidcClient, OidcError, OidcSettings,
    ProviderCallObserver, RefreshedAccess, VerifiedIdentity,
};
pub use secrets::{DerivedSecrets, random_token, token_hash};
pub use service::{
    MAX_SERVICE_TOKEN_TTL, ServiceClaims, TOKEN_TYPE_SERVICE, service_token_account,
    sign_service_token, verify_service_token,
};
