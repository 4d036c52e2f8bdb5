//! An OpenID Connect provider for development: anyone signs in as any email address they type.
//!
//! It speaks the authorization code flow with PKCE the way Google's accounts server does, so
//! assistd's real sign-in code (discovery, PKCE, nonce, state, ID-token checks) runs end to end
//! in a browser without a Google account.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /.well-known/openid-configuration` | the discovery document, issuer `http://HOST:PORT` |
//! | `GET /jwks` | the RS256 signing key |
//! | `GET /authorize?response_type=code&client_id&redirect_uri&scope=openid…&state&nonce&code_challenge&code_challenge_method=S256` | an HTML login page: type an email and a name |
//! | `POST /authorize` (that form) | `302` to the redirect URI with `code` and `state` |
//! | `POST /token` (`authorization_code` with `code_verifier`, `refresh_token`) | Google's token response with an RS256 ID token; a refresh token for `access_type=offline` |
//! | `GET /userinfo` (`Authorization: Bearer`) | the user's claims |
//! | `POST /dev/id-token` (form or JSON: `email`, `name`, `audience`, `nonce`) | `{"id_token": …}`, as Google Identity Services hands one to a web page |
//!
//! A request whose `Host` is not the issuer's host or one of its loopback aliases
//! (`127.0.0.1`, `localhost`, `[::1]` with the issuer's port) gets `421 Misdirected Request`:
//! a page that rebinds its own name to this port cannot make a browser mint ID tokens here.
//!
//! An unknown client or a redirect URI not registered for it gets a plain `400` page; other
//! mistakes redirect back with `error`, as Google does. Codes are single-use and live 60 s,
//! access tokens an hour, refresh tokens a week; expired ones are forgotten, and at most
//! 10 000 of each are kept (the oldest go first). A request body over 64 KiB gets `413`.
//! The subject (`sub`) is derived from the email address, so the same address is the same
//! account every time.
//!
//! The signing key is generated on first start (kept in a file when one is configured). This
//! provider vouches for whoever asks: it is for development only.

mod endpoints;
mod grants;
mod keys;
mod page;
pub mod protocol;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::serve::{AllowedHosts, Bound, Serving};
use grants::Expiring;

pub use keys::{SigningKey, at_hash};

/// How long an authorization code can be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a refresh token is honoured (Google's live until revoked; this provider forgets
/// them at restart anyway).
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many codes, access tokens and refresh tokens (each) are remembered at once; past that
/// the oldest are forgotten.
const MAX_GRANTS: usize = 10_000;

/// Who the provider knows and where it keeps its key.
#[derive(Debug, Clone)]
pub struct DevProviderConfig {
    /// Where to listen; port 0 picks a free port. The issuer is `http://` this address.
    pub listen: SocketAddr,
    /// The one registered client's id.
    pub client_id: String,
    /// That client's secret (`client_secret_basic` or `client_secret_post`).
    pub client_secret: String,
    /// The redirect URIs the client may use, compared exactly.
    pub redirect_uris: Vec<String>,
    /// A PKCS#8 PEM file for the signing key, generated there if missing; `None` generates a
    /// key for this run only.
    pub key_file: Option<PathBuf>,
}

/// Someone signed in on the login page or named to `/dev/id-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    /// The stable subject, derived from the email address.
    pub sub: String,
    /// The email address, reported verified.
    pub email: String,
    /// The display name.
    pub name: String,
}

impl DevUser {
    /// A user with `email` (trimmed, lower-cased) and `name`; an empty name becomes the
    /// email's local part.
    #[must_use]
    pub fn new(email: &str, name: &str) -> Self {
        let email = email.trim().to_lowercase();
        let name = match name.trim() {
            "" => email.split('@').next().unwrap_or_default().to_owned(),
            name => name.to_owned(),
        };
        Self {
            sub: subject_of(&email),
            email,
            name,
        }
    }

    /// The user's claims: `sub`, `email`, `email_verified`, `name`.
    #[must_use]
    pub fn claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".into(), self.sub.clone().into());
        claims.insert("email".into(), self.email.clone().into());
        claims.insert("email_verified".into(), true.into());
        claims.insert("name".into(), self.name.clone().into());
        claims
    }
}

/// A Google-like numeric subject (21 digits) derived from the email address.
fn subject_of(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    format!("1{:020}", u64::from_be_bytes(bytes))
}

/// A running development provider. Dropping it stops it.
pub struct DevProvider {
    issuer: String,
    client_id: String,
    server: Serving,
}

impl std::fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevProvider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl DevProvider {
    /// Loads or generates the signing key, binds `config.listen` and serves.
    ///
    /// # Errors
    /// The key file cannot be read or written, or the address cannot be bound.
    pub async fn start(config: DevProviderConfig) -> std::io::Result<Self> {
        let key = tokio::task::spawn_blocking({
            let key_file = config.key_file.clone();
            move || keys::SigningKey::load_or_generate(key_file.as_deref())
        })
        .await
        .map_err(std::io::Error::other)??;
        let bound = Bound::bind(config.listen).await?;
        let issuer = format!("http://{}", bound.addr());
        let client_id = config.client_id.clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                issuer: issuer.clone(),
                client: config,
                key,
                codes: Expiring::new(CODE_LIFETIME, MAX_GRANTS),
                refresh_tokens: Expiring::new(REFRESH_TOKEN_LIFETIME, MAX_GRANTS),
                access_tokens: Expiring::new(
                    Duration::from_secs(protocol::ACCESS_TOKEN_EXPIRES_IN),
                    MAX_GRANTS,
                ),
            }),
        });
        // The issuer's host and its loopback aliases only: a page that rebinds its own name to
        // this port must not get ID tokens minted.
        let hosts = AllowedHosts::for_addr(bound.addr());
        let server = bound
            .answer_only_to(hosts)
            .serve(move |request, _| endpoints::handle(Arc::clone(&shared), request));
        Ok(Self {
            issuer,
            client_id,
            server,
        })
    }

    /// The socket address the provider listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The issuer identifier, e.g. `http://127.0.0.1:50052` (no trailing slash).
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The registered client's id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// State shared by the handle and the connections.
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked left no half-made change worth refusing service over.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What an authorization code was issued for.
#[derive(Clone)]
struct IssuedCode {
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    user: DevUser,
    /// `access_type=offline`: the exchange also gives a refresh token.
    offline: bool,
}

struct State {
    issuer: String,
    client: DevProviderConfig,
    key: keys::SigningKey,
    codes: Expiring<IssuedCode>,
    /// Refresh token → scope and user.
    refresh_tokens: Expiring<(String, DevUser)>,
    /// Access token → user, for `/userinfo`.
    access_tokens: Expiring<DevUser>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_follows_the_email_address() {
        let ada = DevUser::new(" Ada@Example.com ", "");
        assert_eq!(ada.email, "ada@example.com");
        assert_eq!(ada.name, "ada");
        assert_eq!(ada.sub.len(), 21);
        assert!(ada.sub.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(ada.sub, DevUser::new("ada@example.com", "Ada").sub);
        assert_ne!(ada.sub, DevUser::new("bob@example.com", "Bob").sub);
    }
}
