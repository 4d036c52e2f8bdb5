//! assistd's own access tokens.
//!
//! An access token is a JWT signed with Ed25519 (`alg` pinned to `EdDSA`; nothing else is
//! accepted), carrying `iss`, `aud`, `sub` (the user id), `iat`, `exp`, `jti`, a `typ` claim
//! of `access`, and the signing key's id in the header `kid`. Tokens live at most 15 minutes.
//! Several keys can verify at once, so a new signing key can be introduced while tokens signed
//! by the previous one expire naturally.

mod access;
mod keys;

pub use access::{
    AccessClaims, AccessTokenSettings, AccessTokens, IssuedToken, MAX_ACCESS_TOKEN_TTL,
    TOKEN_TYPE_ACCESS, TokenError,
};
pub use keys::{KeyError, SigningKey};
