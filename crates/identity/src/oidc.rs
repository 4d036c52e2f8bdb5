//! Signing in with Google (or any OpenID Connect provider) as a relying party.
//!
//! Two paths lead to a [`VerifiedIdentity`]:
//! - the authorization code flow with PKCE, nonce and CSRF state
//!   ([`OidcClient::authorization_url`], then [`OidcClient::exchange_code`]), which may also
//!   obtain offline Gmail access;
//! - an ID token a native or browser client obtained on its own ([`OidcClient::verify_id_token`],
//!   Google's "SignInWithIdToken").
//!
//! Both run the ID token through one verification function (`OidcClient::verify`).
//! `openidconnect` does discovery parsing, the authorization URL and the token endpoint
//! requests, but not ID token verification: its confidential-client verifier also accepts HS256
//! keyed with the client secret, it offers no JWKS cache (`Cache-Control`, rate-limited refetch
//! on an unknown `kid`), no `accounts.google.com` issuer alias, no clock but the system's, and
//! its typed claims reject Google's string-valued `email_verified`. Our verifier accepts only
//! RS256/ES256 signatures by keys from the issuer's JWKS.
//!
//! Discovery is lazy: nothing touches the network until the first call; the document is kept
//! for an hour, and a failed fetch is not remembered (the next call tries again, falling back
//! to the stale document if there is one).

mod discovery;
mod id_token;
mod jwks;
mod tokens;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use assistd_domain::Clock;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow};
use openidconnect::{CsrfToken, LoginHint, Nonce, PkceCodeChallenge, RedirectUrl, Scope};
use zeroize::Zeroizing;

use discovery::{DiscoveryCache, Provider};
use jwks::JwksCache;
use tokens::checked_pkce_verifier;

/// Google's issuer identifier.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Clock skew tolerated for `exp` and `iat` unless configured otherwise.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Timeout of each request to the provider unless configured otherwise.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The scope that lets assistd read the user's mail.
pub const GMAIL_READONLY_SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";

/// The scope that lets assistd create drafts in the user's Gmail (asked for only when the
/// user opts in). It also allows sending, which assistd never does: its Gmail client has no
/// call to a send method.
pub const GMAIL_COMPOSE_SCOPE: &str = "https://www.googleapis.com/auth/gmail.compose";

/// Scopes every sign-in asks for (`openid` is added by the authorization URL builder).
const SIGN_IN_SCOPES: [&str; 2] = ["email", "profile"];

/// The OAuth client secret issued by the provider. Not `Clone`, prints as `[redacted]`,
/// zeroized on drop; read it only through [`ClientSecret::expose_secret`].
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret itself. Never log it.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl From<String> for ClientSecret {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which provider, which client, and how lenient to be.
#[derive(Debug)]
pub struct OidcSettings {
    /// The issuer identifier, e.g. [`GOOGLE_ISSUER`]; discovery reads
    /// `{issuer}/.well-known/openid-configuration`. Must be `https`, or `http` on a loopback
    /// address (tests).
    pub issuer: String,
    /// This server's OAuth client id.
    pub client_id: String,
    /// This server's OAuth client secret.
    pub client_secret: ClientSecret,
    /// Further client ids (Android, iOS, Google Identity Services on the web) whose ID tokens
    /// [`OidcClient::verify_id_token`] accepts.
    pub additional_audiences: Vec<String>,
    /// Clock skew tolerated for `exp` and `iat`.
    pub clock_skew: Duration,
    /// Timeout of each HTTP request to the provider.
    pub http_timeout: Duration,
}

impl OidcSettings {
    /// Settings for Google with default skew and timeout and no additional audiences.
    #[must_use]
    pub fn google(client_id: impl Into<String>, client_secret: ClientSecret) -> Self {
        Self {
            issuer: GOOGLE_ISSUER.to_owned(),
            client_id: client_id.into(),
            client_secret,
            additional_audiences: Vec::new(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
        }
    }
}

/// Why a sign-in step failed. Every message is safe to show to the client: none contains a
/// token, code or secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Discovery, JWKS or token endpoint unreachable, timed out, failing, or answering
    /// something unparsable. Worth retrying later.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The ID token failed a check (signature, issuer, audience, time, nonce, shape).
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
    /// The token endpoint refused the authorization code: unknown, expired or reused code,
    /// wrong PKCE verifier or redirect URI.
    #[error("the authorization code was rejected: {0}")]
    CodeRejected(String),
    /// The refresh token was revoked or has expired; the user must sign in again.
    #[error("the refresh token is no longer valid")]
    InvalidGrant,
    /// The settings or the provider's answer show a configuration error (bad issuer URL,
    /// unknown client, wrong secret, malformed request parameters).
    #[error("OpenID Connect is misconfigured: {0}")]
    Misconfigured(String),
}

/// Told about every request the client sends to the provider: its operation (`discovery`,
/// `jwks`, `token`), its outcome and how long it took. Outcomes: `ok`; `unavailable`
/// (unreachable, timed out, an HTTP error or an unparsable answer: [`OidcError::Unavailable`]);
/// `refused` (the token endpoint refused the code or the refresh token:
/// [`OidcError::CodeRejected`], [`OidcError::InvalidGrant`]); `misconfigured` (the provider's
/// answer shows a configuration error: [`OidcError::Misconfigured`]).
pub type ProviderCallObserver = Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

/// The outcome label of a request to the provider, for [`ProviderCallObserver`]s.
fn outcome_of<T>(result: &Result<T, OidcError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(OidcError::Unavailable(_)) => "unavailable",
        Err(
            OidcError::CodeRejected(_) | OidcError::InvalidGrant | OidcError::InvalidIdToken(_),
        ) => "refused",
        Err(OidcError::Misconfigured(_)) => "misconfigured",
    }
}

/// Where the requests to the provider are reported, if anywhere.
#[derive(Default)]
pub(crate) struct CallReport(OnceLock<ProviderCallObserver>);

impl CallReport {
    /// Reports one request to the provider, `operation`, begun at `started`.
    pub(crate) fn record<T>(
        &self,
        operation: &str,
        started: Instant,
        result: &Result<T, OidcError>,
    ) {
        if let Some(observer) = self.0.get() {
            observer(operation, outcome_of(result), started.elapsed());
        }
    }
}

/// What the authorization URL carries. The caller generates and remembers `state`, `nonce`
/// and `pkce_verifier` (43-128 characters of `A-Z a-z 0-9 - . _ ~`).
pub struct AuthorizationRequest {
    /// Where the provider sends the user back; must be registered with the provider.
    pub redirect_uri: String,
    /// CSRF state, echoed back in the redirect.
    pub state: String,
    /// Nonce, to be found again in the ID token.
    pub nonce: String,
    /// PKCE verifier; the URL carries its S256 challenge.
    pub pkce_verifier: String,
    /// Also ask for read access to Gmail, offline (a refresh token), with fresh consent.
    pub gmail_access: bool,
    /// Also ask for `gmail.compose` (drafts); implies `gmail_access`.
    pub gmail_compose: bool,
    /// The account to preselect (an email address or `sub`).
    pub login_hint: Option<String>,
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state, nonce and verifier finish a login together with a code: never printed.
        f.debug_struct("AuthorizationRequest")
            .field("redirect_uri", &self.redirect_uri)
            .field("state", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field("pkce_verifier", &"[redacted]")
            .field("gmail_access", &self.gmail_access)
            .field("gmail_compose", &self.gmail_compose)
            .field("login_hint", &self.login_hint)
            .finish()
    }
}

/// The outcome of a successful code exchange.
pub struct CodeExchange {
    /// Who signed in.
    pub identity: VerifiedIdentity,
    /// The ID token `identity` was read from, as received, so the caller can record it as
    /// used. A bearer credential while it is valid: never log it.
    pub id_token: String,
    /// OAuth access token for the granted scopes. A bearer credential: never log it.
    pub access_token: String,
    /// When the access token expires, if the provider said.
    pub access_token_expires_at: Option<DateTime<Utc>>,
    /// Refresh token, present when offline access was granted. Never log it.
    pub refresh_token: Option<String>,
    /// Scopes granted, as the provider listed them; empty if it did not list them.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for CodeExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeExchange")
            .field("identity", &self.identity)
            .field("id_token", &"[redacted]")
            .field("access_token", &"[redacted]")
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A new access token obtained with a refresh token.
pub struct RefreshedAccess {
    /// OAuth access token. A bearer credential: never log it.
    pub access_token: String,
    /// When it expires, if the provider said.
    pub expires_at: Option<DateTime<Utc>>,
    /// A replacement refresh token, if the provider rotated it (Google usually does not).
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for RefreshedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshedAccess")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The claims of an ID token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// `iss`, as the token states it.
    pub issuer: String,
    /// `sub`: the provider's stable user id.
    pub subject: String,
    /// The accepted client id the token was issued to (one of `aud`).
    pub audience: String,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified` (false when absent).
    pub email_verified: bool,
    /// `name`.
    pub name: Option<String>,
    /// `picture`.
    pub picture: Option<String>,
    /// `hd`: the Google Workspace domain.
    pub hosted_domain: Option<String>,
    /// `iat`.
    pub issued_at: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
}

/// The OpenID Connect relying party. Cheap to clone; clones share caches.
#[derive(Clone, Debug)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    client_id: String,
    client_secret: ClientSecret,
    additional_audiences: Vec<String>,
    clock_skew: Duration,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    discovery: DiscoveryCache,
    jwks: JwksCache,
    calls: CallReport,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("additional_audiences", &self.additional_audiences)
            .field("clock_skew", &self.clock_skew)
            .finish_non_exhaustive()
    }
}

/// Which grant a token endpoint error belongs to: the same `invalid_grant` means different
/// things for a code and for a refresh token.
#[derive(Clone, Copy)]
enum Grant {
    AuthorizationCode,
    RefreshToken,
}

impl OidcClient {
    /// Checks the settings and builds the HTTP client. No network access: discovery happens
    /// on first use.
    ///
    /// # Errors
    /// [`OidcError::Misconfigured`] for an issuer that is not an `https` URL (or `http` on a
    /// loopback address), an empty client id, or an HTTP client that cannot be built.
    pub fn new(settings: OidcSettings, clock: Arc<dyn Clock>) -> Result<Self, OidcError> {
        let issuer = discovery::normalize_issuer(&settings.issuer)?;
        if settings.client_id.trim().is_empty() {
            return Err(OidcError::Misconfigured("the client id is empty".into()));
        }
        let http = reqwest::Client::builder()
            // Following redirects would let whoever controls a response steer our requests
            // (SSRF); the openidconnect docs require it off.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.http_timeout)
            .build()
            .map_err(|e| OidcError::Misconfigured(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                client_id: settings.client_id,
                client_secret: settings.client_secret,
                additional_audiences: settings.additional_audiences,
                clock_skew: settings.clock_skew,
                clock,
                http,
                discovery: DiscoveryCache::default(),
                jwks: JwksCache::default(),
                calls: CallReport::default(),
            }),
        })
    }

    /// Tells `observer` about every request this client and its clones send to the provider
    /// from now on (for metrics). The first observer set stays; returns whether this one was.
    pub fn observe_calls(&self, observer: ProviderCallObserver) -> bool {
        self.inner.calls.0.set(observer).is_ok()
    }

    /// The URL to send the user to: response type `code`, scopes `openid email profile`
    /// (plus Gmail read-only, `access_type=offline`, `prompt=consent` and
    /// `include_granted_scopes=true` when asked, and Gmail compose on top when asked for it),
    /// the caller's state and nonce, the S256 PKCE
    /// challenge of the caller's verifier, and the login hint if any.
    ///
    /// # Errors
    /// [`OidcError::Unavailable`] when discovery fails; [`OidcError::Misconfigured`] for an
    /// invalid redirect URI, empty state or nonce, or a verifier RFC 7636 does not allow.
    pub async fn authorization_url(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<url::Url, OidcError> {
        if request.state.is_empty() || request.nonce.is_empty() {
            return Err(OidcError::Misconfigured(
                "state and nonce must not be empty".into(),
            ));
        }
        let verifier = checked_pkce_verifier(&request.pkce_verifier)?;
        let redirect_uri = redirect_url(&request.redirect_uri)?;
        let provider = self.provider().await?;

        let state = request.state.clone();
        let nonce = request.nonce.clone();
        let mut builder = provider
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scopes(SIGN_IN_SCOPES.map(|s| Scope::new(s.to_owned())))
            .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier))
            .set_redirect_uri(Cow::Owned(redirect_uri));
        if request.gmail_compose {
            builder = builder.add_scope(Scope::new(GMAIL_COMPOSE_SCOPE.to_owned()));
        }
        if request.gmail_access || request.gmail_compose {
            builder = builder
                .add_scope(Scope::new(GMAIL_READONLY_SCOPE.to_owned()))
                .add_extra_param("access_type", "offline")
                .add_extra_param("include_granted_scopes", "true")
                .add_prompt(CoreAuthPrompt::Consent);
        }
        if let Some(hint) = &request.login_hint {
            builder = builder.set_login_hint(LoginHint::new(hint.clone()));
        }
        let (url, _, _) = builder.url();
        Ok(url)
    }

    async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        let inner = &self.inner;
        inner
            .discovery
            .get(
                &inner.http,
                &inner.issuer,
                &inner.client_id,
                &inner.client_secret,
                inner.clock.as_ref(),
                &inner.calls,
            )
            .await
    }
}

fn redirect_url(uri: &str) -> Result<RedirectUrl, OidcError> {
    RedirectUrl::new(uri.to_owned())
        .map_err(|_| OidcError::Misconfigured("the redirect URI is not a valid URL".into()))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::tokens::expires_at;
    use super::*;

    #[test]
    fn client_secret_debug_is_redacted() {
        let secret = ClientSecret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let settings = OidcSettings::google("id", secret);
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert_eq!(settings.client_secret.expose_secret(), "hunter2");
    }

    #[test]
    fn token_bearing_structs_redact_in_debug() {
        let now = Utc::now();
        let exchange = CodeExchange {
            identity: VerifiedIdentity {
                issuer: GOOGLE_ISSUER.into(),
                subject: "1".into(),
                audience: "a".into(),
                email: None,
                email_verified: false,
                name: None,
                picture: None,
                hosted_domain: None,
                issued_at: now,
                expires_at: now,
            },
            id_token: "eyJ.secret-id-token.sig".into(),
            access_token: "ya29.secret-access".into(),
            access_token_expires_at: None,
            refresh_token: Some("1//secret-refresh".into()),
            scopes: vec![],
        };
        let printed = format!("{exchange:?}");
        assert!(!printed.contains("secret-access") && !printed.contains("secret-refresh"));
        assert!(!printed.contains("secret-id-token"));
        let refreshed = RefreshedAccess {
            access_token: "ya29.secret-access".into(),
            expires_at: None,
            refresh_token: Some("1//secret-refresh".into()),
        };
        let printed = format!("{refreshed:?}");
        assert!(!printed.contains("secret-access") && !printed.contains("secret-refresh"));
    }

    #[test]
    fn provider_calls_are_reported_with_the_outcome_of_their_error() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let report = CallReport::default();
        let started = Instant::now();
        // Nothing is reported before an observer is set.
        report.record("token", started, &Ok::<(), OidcError>(()));
        let sink = Arc::clone(&seen);
        assert!(
            report
                .0
                .set(Arc::new(move |operation, outcome, _| {
                    sink.lock().unwrap().push(format!("{operation}:{outcome}"));
                }))
                .is_ok()
        );
        report.record("discovery", started, &Ok::<(), OidcError>(()));
        for error in [
            OidcError::Unavailable("down".into()),
            OidcError::CodeRejected("invalid_grant".into()),
            OidcError::InvalidGrant,
            OidcError::Misconfigured("invalid_client".into()),
        ] {
            report.record("token", started, &Err::<(), _>(error));
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "discovery:ok",
                "token:unavailable",
                "token:refused",
                "token:refused",
                "token:misconfigured",
            ]
        );
    }

    #[test]
    fn pkce_verifier_follows_rfc_7636() {
        assert!(checked_pkce_verifier(&"a".repeat(43)).is_ok());
        assert!(checked_pkce_verifier(&"a-._~Z9".repeat(19)[..128]).is_ok());
        assert!(checked_pkce_verifier(&"a".repeat(42)).is_err());
        assert!(checked_pkce_verifier(&"a".repeat(129)).is_err());
        assert!(checked_pkce_verifier(&format!("{}+", "a".repeat(43))).is_err());
    }

    #[test]
    fn new_rejects_bad_settings_without_network() {
        let clock: Arc<dyn Clock> = Arc::new(assistd_domain::SystemClock);
        let settings = |issuer: &str, client_id: &str| OidcSettings {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: ClientSecret::new("s"),
            additional_audiences: vec![],
            clock_skew: DEFAULT_CLOCK_SKEW,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
        };
        for issuer in [
            "accounts.google.com",
            "http://accounts.google.com",
            "ftp://127.0.0.1",
            "https://idp.example/?q=1",
            "https://user:pw@idp.example",
        ] {
            assert!(
                matches!(
                    OidcClient::new(settings(issuer, "id"), clock.clone()),
                    Err(OidcError::Misconfigured(_))
                ),
                "{issuer} accepted"
            );
        }
        assert!(OidcClient::new(settings(GOOGLE_ISSUER, " "), clock.clone()).is_err());
        assert!(OidcClient::new(settings(GOOGLE_ISSUER, "id"), clock.clone()).is_ok());
        assert!(OidcClient::new(settings("http://127.0.0.1:8080/", "id"), clock).is_ok());
    }

    #[test]
    fn expiry_is_relative_to_the_injected_now() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            expires_at(now, Some(Duration::from_secs(3599))),
            DateTime::from_timestamp(1_700_003_599, 0)
        );
        assert_eq!(expires_at(now, None), None);
    }
}
