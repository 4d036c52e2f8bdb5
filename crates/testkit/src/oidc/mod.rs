//! An OpenID Connect provider on 127.0.0.1 for tests.
//!
//! It speaks the authorization code flow with PKCE the way Google's accounts server does, and
//! the shapes the `openidconnect` crate parses, so a relying party under test runs its real
//! client against it. Nobody signs in: `/authorize` at once signs in the
//! [current user](OidcProvider::set_user) and redirects back with a code.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /.well-known/openid-configuration` | the discovery document, issuer `http://127.0.0.1:PORT` (no trailing slash) |
//! | `GET /jwks` | the published RS256 keys, with `Cache-Control: public, max-age=N` ([counted](OidcProvider::jwks_requests)) |
//! | `GET /authorize?response_type=code&client_id&redirect_uri&scope&state&nonce&code_challenge&code_challenge_method=S256` | `302` to the redirect URI with `code` and `state`; an unknown client or unregistered redirect URI gets a plain `400`, other faults redirect with `error` |
//! | `POST /token` (`authorization_code`, `refresh_token`) | Google's token response with an RS256 ID token; a refresh token only for `access_type=offline` |
//! | `GET /userinfo` (`Authorization: Bearer`) | the user's claims |
//! | `POST /revoke` (form `token=`, a refresh or access token) | Google's revocation: `200 {}` and the whole grant (every token of that user and client, the granted scopes) revoked, or `400 {"error":"invalid_token"}` for an unknown or already revoked token |
//!
//! Scopes are granted per user and client and accumulate across consents: an authorization
//! request with `include_granted_scopes=true` gets the scopes asked for plus those granted
//! before, and the token response's `scope` lists what the tokens carry. Access tokens can be
//! [looked up](OidcProvider::access_token_info) (whose, which scopes, expired or revoked) by
//! other peers through an [`OidcTokens`] handle, which is how the Gmail peer checks bearers,
//! and [expired](OidcProvider::expire_access_tokens) all at once.
//!
//! The token endpoint authenticates clients by `client_secret_basic` (id and secret
//! form-urlencoded, RFC 6749 §2.3.1) or `client_secret_post`, not both at once. A code is
//! single-use and lives 60 s; the first redemption by its client consumes it even when the
//! exchange then fails (wrong verifier, redirect URI), and redeeming it again also revokes
//! the tokens it gave (RFC 6749 §4.1.2).
//!
//! | tool | for |
//! | --- | --- |
//! | [`OidcProvider::register_client`], [`OidcProvider::set_user`] | who signs in where |
//! | [`OidcProvider::set_id_token_claims`], [`OidcProvider::set_id_token_forgery`], [`OidcProvider::set_omit_refresh_token`], [`OidcProvider::set_token_endpoint_failure`], [`OidcProvider::revoke_refresh_token`] | what the token endpoint answers |
//! | [`OidcProvider::rotate_signing_key`], [`OidcProvider::set_jwks_max_age`] | key rollover and JWKS caching |
//! | [`OidcProvider::default_claims`], [`OidcProvider::mint`], [`OidcProvider::mint_hostile`], [`Hostile`] | ID tokens made to order, forged ones included |
//! | [`OidcProvider::authorize_requests`], [`OidcProvider::token_requests`], [`OidcProvider::jwks_requests`], [`OidcProvider::issued_access_tokens`], [`OidcProvider::issued_refresh_tokens`], [`OidcProvider::revocation_requests`] | what the relying party did |
//! | [`OidcProvider::tokens`], [`OidcProvider::access_token_info`], [`OidcProvider::granted_scopes`], [`OidcProvider::expire_access_tokens`], [`OidcProvider::grant`] | token introspection for other peers, expiry, grants made without a browser |
//!
//! The signing keys are test-only RSA keys embedded from `src/oidc/keys/`.

mod endpoints;
mod jwt;
mod keys;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use assistd_devkit::oidc::protocol::{ACCESS_TOKEN_EXPIRES_IN, id_token_claims, new_refresh_token};

use http::StatusCode;
use serde_json::{Map, Value};

use crate::serve::{AllowedHosts, Bound, Serving};

pub use assistd_devkit::oidc::protocol::ClientAuth;
pub use jwt::Hostile;

/// How long an authorization code can be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// The user someone signs in as: the claims of the ID tokens issued for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    /// The stable subject identifier (`sub`).
    pub sub: String,
    /// `email`.
    pub email: String,
    /// `email_verified`.
    pub email_verified: bool,
    /// `name`.
    pub name: String,
    /// `picture`, left out when `None`.
    pub picture: Option<String>,
    /// The Google Workspace domain (`hd`), left out when `None` (a consumer account).
    pub hd: Option<String>,
}

impl TestUser {
    /// A user with a verified `email`, named after its local part, without picture or `hd`.
    #[must_use]
    pub fn new(sub: impl Into<String>, email: impl Into<String>) -> Self {
        let email = email.into();
        let name = email.split('@').next().unwrap_or_default().to_owned();
        Self {
            sub: sub.into(),
            email,
            email_verified: true,
            name,
            picture: None,
            hd: None,
        }
    }

    /// The user's claims: `sub`, `email`, `email_verified`, `name`, and `picture`, `hd` if
    /// set.
    fn claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".into(), self.sub.clone().into());
        claims.insert("email".into(), self.email.clone().into());
        claims.insert("email_verified".into(), self.email_verified.into());
        claims.insert("name".into(), self.name.clone().into());
        if let Some(picture) = &self.picture {
            claims.insert("picture".into(), picture.clone().into());
        }
        if let Some(hd) = &self.hd {
            claims.insert("hd".into(), hd.clone().into());
        }
        claims
    }
}

impl Default for TestUser {
    /// Ada Lovelace, `ada@example.com` (verified), a consumer account.
    fn default() -> Self {
        Self {
            sub: "110169484474386276334".to_owned(),
            email: "ada@example.com".to_owned(),
            email_verified: true,
            name: "Ada Lovelace".to_owned(),
            picture: Some("https://example.com/ada.png".to_owned()),
            hd: None,
        }
    }
}

/// A request to the token endpoint, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `grant_type` field, empty if absent.
    pub grant_type: String,
    /// Every form field (secrets and verifiers included), the last value of a repeated one.
    pub fields: HashMap<String, String>,
    /// How the client authenticated.
    pub auth: ClientAuth,
    /// The client id it claimed (from the Basic header or the form), if any.
    pub client_id: Option<String>,
}

/// A running OpenID Connect provider. Dropping it stops it and closes its connections.
pub struct OidcProvider {
    shared: Arc<Shared>,
    server: Serving,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// The client registered at start.
    pub const CLIENT_ID: &'static str = "assistd-test-client.apps.example";
    /// The secret of [`OidcProvider::CLIENT_ID`].
    pub const CLIENT_SECRET: &'static str = "test-client-secret";
    /// The redirect URI registered for [`OidcProvider::CLIENT_ID`].
    pub const REDIRECT_URI: &'static str = "http://127.0.0.1/callback";

    /// Starts a provider on 127.0.0.1 and an ephemeral port, with one client
    /// ([`OidcProvider::CLIENT_ID`], [`OidcProvider::CLIENT_SECRET`],
    /// [`OidcProvider::REDIRECT_URI`]), [`TestUser::default`] signed in, the first embedded
    /// key signing, and a JWKS `max-age` of 3600 s.
    ///
    /// # Panics
    /// No port can be bound on 127.0.0.1.
    pub async fn start() -> Self {
        let bound = Bound::localhost("OIDC test provider").await;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(format!("http://{}", bound.addr()))),
        });
        let hosts = AllowedHosts::for_addr(bound.addr());
        let server = bound.answer_only_to(hosts).serve({
            let shared = Arc::clone(&shared);
            move |request, _| endpoints::handle(Arc::clone(&shared), request)
        });
        Self { shared, server }
    }

    /// The socket address the provider listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The issuer identifier, e.g. `http://127.0.0.1:41234` (no trailing slash); discovery is
    /// at `{issuer}/.well-known/openid-configuration`.
    #[must_use]
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The JWKS URL, `{issuer}/jwks`.
    #[must_use]
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// Registers (or replaces) a confidential client allowed to use exactly `redirect_uris`.
    pub fn register_client(&self, id: &str, secret: &str, redirect_uris: &[&str]) {
        self.shared.lock().clients.insert(
            id.to_owned(),
            Client {
                secret: secret.to_owned(),
                redirect_uris: redirect_uris.iter().map(|&uri| uri.to_owned()).collect(),
            },
        );
    }

    /// Signs in `user` at the next `/authorize` calls (codes already issued keep theirs).
    pub fn set_user(&self, user: TestUser) {
        self.shared.lock().user = user;
    }

    /// Merges `overrides` into the claims of the ID tokens the token endpoint issues from now
    /// on: each member replaces the claim of its name, and a `null` member removes it.
    ///
    /// # Panics
    /// `overrides` is not a JSON object.
    pub fn set_id_token_claims(&self, overrides: Value) {
        let Value::Object(overrides) = overrides else {
            panic!("ID token claim overrides must be a JSON object, got {overrides}");
        };
        self.shared.lock().claim_overrides = overrides;
    }

    /// Has the token endpoint forge the ID tokens of code exchanges as `kind` says (claims and
    /// overrides as usual), or sign them honestly again with `None`.
    pub fn set_id_token_forgery(&self, kind: Option<Hostile>) {
        self.shared.lock().id_token_forgery = kind;
    }

    /// Issues ID tokens with their own claims again.
    pub fn clear_id_token_claims(&self) {
        self.shared.lock().claim_overrides.clear();
    }

    /// Whether code exchanges leave out the refresh token even for `access_type=offline`, as
    /// Google does when the user had already consented.
    pub fn set_omit_refresh_token(&self, omit: bool) {
        self.shared.lock().omit_refresh_token = omit;
    }

    /// Answers every token request with `status` and a JSON error body (still recorded), to
    /// simulate an outage; `None` ends it.
    ///
    /// # Panics
    /// `status` is not an HTTP status code (100 to 999).
    pub fn set_token_endpoint_failure(&self, status: Option<u16>) {
        let status = status.map(|code| {
            StatusCode::from_u16(code).expect("set_token_endpoint_failure takes an HTTP status")
        });
        self.shared.lock().token_failure = status;
    }

    /// Revokes a refresh token: refreshing with it gets `invalid_grant` from now on.
    pub fn revoke_refresh_token(&self, token: &str) {
        if let Some(grant) = self.shared.lock().refresh_tokens.get_mut(token) {
            grant.revoked = true;
        }
    }

    /// The revocation endpoint, `{issuer}/revoke` (also in the discovery document as
    /// `revocation_endpoint`).
    #[must_use]
    pub fn revocation_endpoint(&self) -> String {
        format!("{}{}", self.issuer(), endpoints::REVOKE)
    }

    /// The `token` field of every revocation request so far, in order.
    #[must_use]
    pub fn revocation_requests(&self) -> Vec<String> {
        self.shared.lock().revocation_requests.clone()
    }

    /// A handle other peers (the Gmail API server) use to look up access tokens; it keeps
    /// working as long as the provider's state lives.
    #[must_use]
    pub fn tokens(&self) -> OidcTokens {
        OidcTokens {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whose `token` is, with which scopes, and whether it expired or was revoked; `None`
    /// for a token this provider never issued.
    #[must_use]
    pub fn access_token_info(&self, token: &str) -> Option<AccessTokenInfo> {
        self.tokens().access_token_info(token)
    }

    /// Expires every access token issued so far (later ones are fresh), as an hour passing
    /// would: resource servers answer them 401 and the relying party must refresh.
    pub fn expire_access_tokens(&self) {
        for issued in &mut self.shared.lock().access_tokens {
            issued.expired = true;
        }
    }

    /// The scopes user `sub` has granted to [`OidcProvider::CLIENT_ID`] so far, in the order
    /// first granted (empty after a revocation).
    #[must_use]
    pub fn granted_scopes(&self, sub: &str) -> Vec<String> {
        self.shared
            .lock()
            .granted
            .get(&(Self::CLIENT_ID.to_owned(), sub.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Grants `scopes` to [`OidcProvider::CLIENT_ID`] for `user` as a consent with
    /// `access_type=offline&include_granted_scopes=true` would, without the browser round
    /// trip: returns a fresh access token and refresh token carrying the accumulated scopes.
    pub fn grant(&self, user: &TestUser, scopes: &[&str]) -> GrantedTokens {
        let mut state = self.shared.lock();
        let requested: Vec<String> = scopes.iter().map(|&scope| scope.to_owned()).collect();
        let scopes = state.consent(Self::CLIENT_ID, &user.sub, &requested, true);
        let access_token =
            endpoints::issue_access_token(&mut state, Self::CLIENT_ID, user, &scopes);
        let refresh_token = new_refresh_token();
        state.refresh_tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: Self::CLIENT_ID.to_owned(),
                scope: scopes.join(" "),
                user: user.clone(),
                revoked: false,
            },
        );
        state.refresh_order.push(refresh_token.clone());
        GrantedTokens {
            access_token,
            refresh_token,
            scopes,
        }
    }

    /// Every refresh token issued so far, in order, revoked ones included.
    #[must_use]
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.shared.lock().refresh_order.clone()
    }

    /// Every access token issued so far, in order (by code exchanges and refreshes).
    #[must_use]
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.shared
            .lock()
            .access_tokens
            .iter()
            .map(|issued| issued.token.clone())
            .collect()
    }

    /// Sets the `max-age` of the JWKS responses' `Cache-Control`, in seconds.
    pub fn set_jwks_max_age(&self, seconds: u64) {
        self.shared.lock().jwks_max_age = seconds;
    }

    /// How many times the JWKS was fetched.
    #[must_use]
    pub fn jwks_requests(&self) -> usize {
        self.shared.lock().jwks_requests
    }

    /// Makes a new key current (a new kid). The JWKS then lists it alone, or it and the keys
    /// published before if `keep_old`. The first rotation switches to the second embedded
    /// key; later ones generate keys.
    pub fn rotate_signing_key(&self, keep_old: bool) {
        self.shared.lock().keys.rotate(keep_old);
    }

    /// The kid of the current signing key.
    #[must_use]
    pub fn current_kid(&self) -> String {
        self.shared.lock().keys.current.kid().to_owned()
    }

    /// The claims of an ID token for the current user issued to `audience` now: `iss`, `aud`,
    /// `azp`, `sub`, `iat`, `exp` (in an hour), `email`, `email_verified`, `name`, `picture`
    /// and `hd` if set, and `nonce` if given. The claim overrides are not applied.
    #[must_use]
    pub fn default_claims(&self, audience: &str, nonce: Option<&str>) -> Value {
        let state = self.shared.lock();
        Value::Object(id_token_claims(
            &state.issuer,
            audience,
            state.user.claims(),
            nonce,
        ))
    }

    /// `claims` as an RS256 JWT signed by the current key, its header naming the kid.
    #[must_use]
    pub fn mint(&self, claims: &Value) -> String {
        let state = self.shared.lock();
        let key = &state.keys.current;
        key.sign(claims)
    }

    /// `claims` as a token the JWKS does not vouch for, forged as `kind` says.
    #[must_use]
    pub fn mint_hostile(&self, claims: &Value, kind: Hostile) -> String {
        jwt::hostile(&self.shared.lock().keys, claims, kind)
    }

    /// The query of every `/authorize` request so far, in order (the last value of a
    /// repeated parameter).
    #[must_use]
    pub fn authorize_requests(&self) -> Vec<HashMap<String, String>> {
        self.shared.lock().authorize_requests.clone()
    }

    /// Every token request so far, in order.
    #[must_use]
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.lock().token_requests.clone()
    }
}

/// What [`OidcProvider::grant`] issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedTokens {
    /// A fresh access token.
    pub access_token: String,
    /// A refresh token for the grant.
    pub refresh_token: String,
    /// The scopes both carry (accumulated over the user's consents).
    pub scopes: Vec<String>,
}

/// What the provider knows about an access token it issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenInfo {
    /// The user it was issued for.
    pub user: TestUser,
    /// The client it was issued to.
    pub client_id: String,
    /// The scopes it carries.
    pub scopes: Vec<String>,
    /// It has expired ([`OidcProvider::expire_access_tokens`]).
    pub expired: bool,
    /// It was revoked (a replayed code, a revoked grant).
    pub revoked: bool,
}

impl AccessTokenInfo {
    /// Neither expired nor revoked.
    #[must_use]
    pub fn is_active(&self) -> bool {
        !self.expired && !self.revoked
    }

    /// Whether it carries `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

/// A cloneable view of an [`OidcProvider`]'s issued access tokens, for other peers.
#[derive(Clone)]
pub struct OidcTokens {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OidcTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcTokens")
    }
}

impl OidcTokens {
    /// See [`OidcProvider::access_token_info`].
    #[must_use]
    pub fn access_token_info(&self, token: &str) -> Option<AccessTokenInfo> {
        let state = self.shared.lock();
        state
            .access_tokens
            .iter()
            .find(|issued| issued.token == token)
            .map(|issued| AccessTokenInfo {
                user: issued.user.clone(),
                client_id: issued.client_id.clone(),
                scopes: issued.scopes.clone(),
                expired: issued.expired
                    || issued.issued_at.elapsed() >= Duration::from_secs(ACCESS_TOKEN_EXPIRES_IN),
                revoked: issued.revoked,
            })
    }
}

/// State shared by the handle and the connections.
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("OIDC test provider state poisoned")
    }
}

/// A registered client.
struct Client {
    secret: String,
    redirect_uris: Vec<String>,
}

/// What an authorization code was issued for.
#[derive(Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scopes: Vec<String>,
    user: TestUser,
    /// `access_type=offline`: the exchange also gives a refresh token.
    offline: bool,
    issued_at: tokio::time::Instant,
    used: bool,
    /// Access and refresh tokens the exchange gave, revoked if the code is replayed.
    access_tokens: Vec<String>,
    refresh_tokens: Vec<String>,
}

/// What a refresh token grants.
struct RefreshGrant {
    client_id: String,
    scope: String,
    user: TestUser,
    revoked: bool,
}

/// An access token and whose it is.
struct IssuedAccess {
    token: String,
    user: TestUser,
    client_id: String,
    scopes: Vec<String>,
    issued_at: tokio::time::Instant,
    expired: bool,
    revoked: bool,
}

struct State {
    issuer: String,
    clients: HashMap<String, Client>,
    user: TestUser,
    codes: HashMap<String, IssuedCode>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    /// Refresh tokens in issue order.
    refresh_order: Vec<String>,
    access_tokens: Vec<IssuedAccess>,
    claim_overrides: Map<String, Value>,
    /// How the token endpoint forges its ID tokens, if it does.
    id_token_forgery: Option<Hostile>,
    omit_refresh_token: bool,
    token_failure: Option<StatusCode>,
    jwks_max_age: u64,
    jwks_requests: usize,
    authorize_requests: Vec<HashMap<String, String>>,
    token_requests: Vec<TokenRequest>,
    revocation_requests: Vec<String>,
    /// Scopes granted per (client id, user `sub`), accumulated across consents.
    granted: HashMap<(String, String), Vec<String>>,
    keys: keys::Keyring,
}

impl State {
    fn new(issuer: String) -> Self {
        let mut clients = HashMap::new();
        clients.insert(
            OidcProvider::CLIENT_ID.to_owned(),
            Client {
                secret: OidcProvider::CLIENT_SECRET.to_owned(),
                redirect_uris: vec![OidcProvider::REDIRECT_URI.to_owned()],
            },
        );
        Self {
            issuer,
            clients,
            user: TestUser::default(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            refresh_order: Vec::new(),
            access_tokens: Vec::new(),
            claim_overrides: Map::new(),
            id_token_forgery: None,
            omit_refresh_token: false,
            token_failure: None,
            jwks_max_age: 3600,
            jwks_requests: 0,
            authorize_requests: Vec::new(),
            token_requests: Vec::new(),
            revocation_requests: Vec::new(),
            granted: HashMap::new(),
            keys: keys::Keyring::default(),
        }
    }

    /// Records that `sub` consented to `requested` for `client_id`, and returns the scopes the
    /// resulting tokens carry: `requested`, plus those granted before when `include_granted`.
    fn consent(
        &mut self,
        client_id: &str,
        sub: &str,
        requested: &[String],
        include_granted: bool,
    ) -> Vec<String> {
        let granted = self
            .granted
            .entry((client_id.to_owned(), sub.to_owned()))
            .or_default();
        let mut scopes = if include_granted {
            granted.clone()
        } else {
            Vec::new()
        };
        for scope in requested {
            if !granted.contains(scope) {
                granted.push(scope.clone());
            }
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        scopes
    }

    /// Revokes the grant of `sub` to `client_id`: every refresh and access token, and the
    /// granted scopes.
    fn revoke_grant(&mut self, client_id: &str, sub: &str) {
        for grant in self.refresh_tokens.values_mut() {
            if grant.client_id == client_id && grant.user.sub == sub {
                grant.revoked = true;
            }
        }
        for issued in &mut self.access_tokens {
            if issued.client_id == client_id && issued.user.sub == sub {
                issued.revoked = true;
            }
        }
        self.granted.remove(&(client_id.to_owned(), sub.to_owned()));
    }
}
