//! Signing in with the configured OpenID provider (Google by default), assistd's own device
//! sessions with rotating refresh tokens, and the account lifecycle.
//!
//! Refresh tokens rotate on every use. Each session is one token family: presenting a token
//! that was already exchanged, after the grace window, revokes the session (RFC 9700 §4.14).
//! Within the grace window the same token yields the same successor again, because the
//! successor is derived from the token with a server key ([`DerivedSecrets`]); the database
//! holds only hashes, so concurrent refreshes with one token all receive one successor.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::{Clock, Error, ErrorReason, Result, UserId};
use assistd_identity::{
    AccessTokens, AuthorizationRequest, DerivedSecrets, IssuedToken, OidcClient, OidcError,
    VerifiedIdentity, random_token, token_hash,
};
use assistd_store::audit::AuditLog;
use assistd_store::{
    AuthSession, GoogleLink, LoginAttempt, NewAuthSession, OidcProfile, RefreshTokenRecord,
    SignInMethod, Store, User,
};
use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SecretSealer;

/// Longest a login attempt may stay open.
pub const MAX_LOGIN_ATTEMPT_TTL: Duration = Duration::from_secs(10 * 60);

/// Sealing purpose of Google tokens.
const GOOGLE_ACCESS_PURPOSE: &str = "google_access_token";
const GOOGLE_REFRESH_PURPOSE: &str = "google_refresh_token";

/// The `[sign_in]` configuration section.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SignInConfig {
    /// The OpenID issuer; Google by default.
    pub issuer: String,
    /// This server's OAuth client id. Empty disables sign-in (the sign-in RPCs answer
    /// FAILED_PRECONDITION).
    pub client_id: String,
    /// The OAuth client secret. Prefer the environment (`ASSISTD_SIGN_IN__CLIENT_SECRET`).
    /// Never serialized or printed.
    #[serde(skip_serializing)]
    pub client_secret: String,
    /// Further client ids (Android, iOS, Google Identity Services) whose ID tokens
    /// SignInWithIdToken accepts.
    pub additional_client_ids: Vec<String>,
    /// Redirect URIs BeginLogin accepts, compared exactly.
    pub allowed_redirect_uris: Vec<String>,
    /// Refuse accounts whose email address the provider has not verified.
    pub require_email_verified: bool,
    /// When not empty, only Google Workspace accounts of these domains (`hd`) may sign in.
    pub allowed_hosted_domains: Vec<String>,
    /// How long a login attempt stays open; at most 10 minutes.
    #[serde(with = "humantime_serde")]
    pub login_attempt_ttl: Duration,
    /// A session whose refresh token is not used for this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, however often it refreshes.
    #[serde(with = "humantime_serde")]
    pub session_max_lifetime: Duration,
    /// How long after a refresh the same refresh token still yields the same new token (a
    /// client that lost the response retries) instead of counting as reuse.
    #[serde(with = "humantime_serde")]
    pub refresh_grace: Duration,
    /// Clock skew tolerated on ID token times.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Timeout of each request to the identity provider.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Sign-in calls (BeginLogin, CompleteLogin, SignInWithIdToken, Refresh) allowed per
    /// client IP per minute.
    pub sign_in_per_ip_per_minute: u32,
    /// Sign-ins and refreshes allowed per user per minute.
    pub sign_in_per_user_per_minute: u32,
}

impl std::fmt::Debug for SignInConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("allowed_redirect_uris", &self.allowed_redirect_uris)
            .finish_non_exhaustive()
    }
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            issuer: assistd_identity::GOOGLE_ISSUER.to_owned(),
            client_id: String::new(),
            client_secret: String::new(),
            additional_client_ids: Vec::new(),
            allowed_redirect_uris: Vec::new(),
            require_email_verified: true,
            allowed_hosted_domains: Vec::new(),
            login_attempt_ttl: MAX_LOGIN_ATTEMPT_TTL,
            session_idle_timeout: Duration::from_secs(30 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(90 * 24 * 3600),
            refresh_grace: Duration::from_secs(30),
            clock_skew: assistd_identity::DEFAULT_CLOCK_SKEW,
            http_timeout: assistd_identity::DEFAULT_HTTP_TIMEOUT,
            sign_in_per_ip_per_minute: 60,
            sign_in_per_user_per_minute: 30,
        }
    }
}

impl SignInConfig {
    /// Checks the values that have limits.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.login_attempt_ttl.is_zero() || self.login_attempt_ttl > MAX_LOGIN_ATTEMPT_TTL {
            return Err("sign_in.login_attempt_ttl must be between 1 s and 10 min".into());
        }
        if self.session_idle_timeout.is_zero() || self.session_max_lifetime.is_zero() {
            return Err(
                "sign_in.session_idle_timeout and sign_in.session_max_lifetime must be positive"
                    .into(),
            );
        }
        if self.sign_in_per_ip_per_minute == 0 || self.sign_in_per_user_per_minute == 0 {
            return Err("sign_in rate limits must be at least 1 per minute".into());
        }
        Ok(())
    }
}

/// assistd's tokens for one session.
pub struct SessionTokens {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token. A bearer credential: never log it.
    pub refresh_token: String,
    /// When the refresh token expires unused.
    pub refresh_expires_at: DateTime<Utc>,
    /// The session.
    pub session_id: Uuid,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("access", &self.access)
            .field("refresh_token", &"[redacted]")
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("session_id", &self.session_id)
            .finish()
    }
}

/// A completed sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// The new session's tokens.
    pub tokens: SessionTokens,
    /// The account.
    pub user: User,
    /// Whether this sign-in created the account.
    pub new_user: bool,
    /// Whether Google granted Gmail access and a refresh token is stored for it.
    pub gmail_access_granted: bool,
}

/// The start of a redirect sign-in.
pub struct BeganLogin {
    /// Where to send the browser.
    pub authorization_url: String,
    /// The CSRF state, also inside the URL.
    pub state: String,
    /// When the attempt expires.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for BeganLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state, with a code, finishes the login: it is the browser's to know.
        f.debug_struct("BeganLogin")
            .field("state", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Who is calling, as the edge saw it.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Request id, address, user agent.
    pub context: RequestContext,
    /// Label for a new session.
    pub device_name: String,
}

/// Remembers for a few seconds whether a session is active, so the authentication layer
/// does not read the database on every call. Revocations on this replica clear it at once;
/// other replicas see a revocation within [`SessionGate::TTL`].
#[derive(Debug)]
pub struct SessionGate {
    store: Store,
    clock: Arc<dyn Clock>,
    known: Mutex<HashMap<Uuid, (bool, Instant)>>,
    /// Bumped by every [`SessionGate::forget_all`]: a database read that started before a
    /// revocation must not put its (stale) answer into the memory after it.
    epoch: AtomicU64,
}

impl SessionGate {
    /// How long a session's state is remembered.
    pub const TTL: Duration = Duration::from_secs(5);

    /// A gate reading sessions from `store`.
    #[must_use]
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            known: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Whether the session may still make calls.
    ///
    /// # Errors
    /// UNAUTHENTICATED (SESSION_REVOKED) when it was signed out, revoked, deleted or has
    /// ended; the database failed.
    pub async fn check(&self, user: UserId, session: Uuid) -> Result<()> {
        let remembered = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(active, _)| *active);
        let active = match remembered {
            Some(active) => active,
            None => {
                let epoch = self.epoch.load(Ordering::Acquire);
                let now = self.clock.now();
                let active = self
                    .store
                    .auth()
                    .session(self.store.connection(), session)
                    .await?
                    .is_some_and(|s| s.user == user && s.is_active(now));
                let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
                if known.len() > 100_000 {
                    known.clear();
                }
                if self.epoch.load(Ordering::Acquire) == epoch {
                    known.insert(session, (active, Instant::now()));
                }
                active
            }
        };
        if active {
            Ok(())
        } else {
            Err(Error::Unauthenticated {
                reason: ErrorReason::SessionRevoked,
                message: "this session was signed out or revoked; sign in again".into(),
            })
        }
    }

    /// Forgets everything remembered, after a revocation.
    pub fn forget_all(&self) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        known.clear();
    }
}

/// Per-IP and per-user limits on the sign-in calls.
pub struct SignInRateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_user: DefaultKeyedRateLimiter<UserId>,
}

impl std::fmt::Debug for SignInRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRateLimits").finish_non_exhaustive()
    }
}

impl SignInRateLimits {
    fn new(config: &SignInConfig) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            per_ip: RateLimiter::keyed(quota(config.sign_in_per_ip_per_minute)),
            per_user: RateLimiter::keyed(quota(config.sign_in_per_user_per_minute)),
        }
    }

    fn exhausted(
        not_until: &governor::NotUntil<governor::clock::QuantaInstant>,
        what: &str,
    ) -> Error {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        Error::ResourceExhausted {
            reason: ErrorReason::RateLimited,
            message: format!("too many sign-in requests {what}; retry later"),
            retry_after: Some(wait.max(Duration::from_secs(1))),
        }
    }

    /// Counts one call from `ip`.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (RATE_LIMITED) with the time to wait.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<()> {
        let Some(ip) = ip else { return Ok(()) };
        // One IPv6 client usually holds a whole /64: count the network, not the address.
        let key = match ip {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
            v4 @ IpAddr::V4(_) => v4,
        };
        if self.per_ip.len() > 10_000 {
            self.per_ip.retain_recent();
        }
        self.per_ip
            .check_key(&key)
            .map_err(|not_until| Self::exhausted(&not_until, "from this address"))
    }

    /// Counts one call for `user`.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (RATE_LIMITED) with the time to wait.
    pub fn check_user(&self, user: UserId) -> Result<()> {
        if self.per_user.len() > 10_000 {
            self.per_user.retain_recent();
        }
        self.per_user
            .check_key(&user)
            .map_err(|not_until| Self::exhausted(&not_until, "for this account"))
    }
}

/// The sign-in and account service.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    audit: AuditLog,
    sealer: SecretSealer,
    oidc: Option<OidcClient>,
    tokens: AccessTokens,
    secrets: DerivedSecrets,
    clock: Arc<dyn Clock>,
    config: SignInConfig,
    gate: Arc<SessionGate>,
    limits: SignInRateLimits,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("issuer", &self.inner.config.issuer)
            .finish_non_exhaustive()
    }
}

/// Where an outcome of the sign-in is decided.
fn unauthenticated(reason: ErrorReason, message: impl Into<String>) -> Error {
    Error::Unauthenticated {
        reason,
        message: message.into(),
    }
}

fn provider_error(err: OidcError) -> Error {
    match err {
        OidcError::Unavailable(message) => Error::Unavailable {
            reason: ErrorReason::IdentityProviderUnavailable,
            message: format!("the identity provider is unavailable: {message}"),
            retry_after: None,
        },
        OidcError::InvalidIdToken(message) => unauthenticated(
            ErrorReason::IdTokenInvalid,
            format!("the ID token was rejected: {message}"),
        ),
        OidcError::CodeRejected(message) => unauthenticated(
            ErrorReason::AuthorizationCodeInvalid,
            format!("the identity provider rejected the authorization code: {message}"),
        ),
        OidcError::InvalidGrant => Error::FailedPrecondition {
            reason: ErrorReason::GoogleReauthRequired,
            message: "Google no longer accepts this account's authorization; sign in again".into(),
        },
        OidcError::Misconfigured(message) => {
            Error::internal(format!("OpenID Connect is misconfigured: {message}"))
        }
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// The display name of a new account: the profile name, else the email's local part.
fn initial_display_name(identity: &VerifiedIdentity) -> Option<String> {
    let from_name = identity
        .name
        .as_deref()
        .map(|name| name.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|name| name.trim().chars().take(100).collect::<String>())
        .filter(|name| !name.is_empty());
    from_name.or_else(|| {
        identity
            .email
            .as_deref()
            .and_then(|email| email.split('@').next())
            .map(|local| local.chars().take(100).collect())
            .filter(|local: &String| !local.is_empty())
    })
}

/// Checks a display name from UpdateProfile: 1 to 100 characters after trimming, no control
/// characters. Returns the trimmed name.
///
/// # Errors
/// A description of what is wrong.
pub fn validate_display_name(name: &str) -> std::result::Result<String, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

impl AuthService {
    /// Builds the service. Without a client id in `config` sign-in is disabled.
    ///
    /// # Errors
    /// The OpenID settings are invalid.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        audit: AuditLog,
        sealer: SecretSealer,
        tokens: AccessTokens,
        secrets: DerivedSecrets,
        clock: Arc<dyn Clock>,
        config: SignInConfig,
    ) -> std::result::Result<Self, String> {
        config.validate()?;
        let oidc = if config.client_id.is_empty() {
            None
        } else {
            let settings = assistd_identity::OidcSettings {
                issuer: config.issuer.clone(),
                client_id: config.client_id.clone(),
                client_secret: assistd_identity::ClientSecret::new(config.client_secret.clone()),
                additional_audiences: config.additional_client_ids.clone(),
                clock_skew: config.clock_skew,
                http_timeout: config.http_timeout,
            };
            Some(OidcClient::new(settings, Arc::clone(&clock)).map_err(|e| e.to_string())?)
        };
        let gate = Arc::new(SessionGate::new(store.clone(), Arc::clone(&clock)));
        let limits = SignInRateLimits::new(&config);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                audit,
                sealer,
                oidc,
                tokens,
                secrets,
                clock,
                config,
                gate,
                limits,
            }),
        })
    }

    /// The gate the authentication layer checks session ids with.
    #[must_use]
    pub fn session_gate(&self) -> Arc<SessionGate> {
        Arc::clone(&self.inner.gate)
    }

    /// The sign-in rate limits.
    #[must_use]
    pub fn rate_limits(&self) -> &SignInRateLimits {
        &self.inner.limits
    }

    fn oidc(&self) -> Result<&OidcClient> {
        self.inner
            .oidc
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition {
                reason: ErrorReason::IdentityProviderUnavailable,
                message: "sign-in is not configured on this server (sign_in.client_id is empty)"
                    .into(),
            })
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Starts a redirect sign-in.
    ///
    /// # Errors
    /// INVALID_ARGUMENT (REDIRECT_URI_NOT_ALLOWED) for a redirect URI outside the allowlist or
    /// an overlong login hint; UNAVAILABLE when discovery fails.
    pub async fn begin_login(
        &self,
        redirect_uri: &str,
        gmail_access: bool,
        login_hint: Option<&str>,
        client: &ClientInfo,
    ) -> Result<BeganLogin> {
        self.inner.limits.check_ip(client.context.client_ip)?;
        if !self
            .inner
            .config
            .allowed_redirect_uris
            .iter()
            .any(|allowed| allowed == redirect_uri)
        {
            return Err(Error::InvalidArgument {
                violations: vec![assistd_domain::FieldViolation::new(
                    "redirect_uri",
                    "is not one of the server's allowed redirect URIs (compared exactly)",
                )],
                reason: Some(ErrorReason::RedirectUriNotAllowed),
            });
        }
        if login_hint.is_some_and(|hint| hint.chars().count() > 254) {
            return Err(Error::invalid_field(
                "login_hint",
                "must be at most 254 characters",
            ));
        }
        let oidc = self.oidc()?;
        let state = random_token();
        let key_id = self.inner.secrets.current_key_id().to_owned();
        let derive_failed = || Error::internal("the current key derives no login secrets");
        let request = AuthorizationRequest {
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
            nonce: self
                .inner
                .secrets
                .nonce(&key_id, &state)
                .ok_or_else(derive_failed)?,
            pkce_verifier: self
                .inner
                .secrets
                .pkce_verifier(&key_id, &state)
                .ok_or_else(derive_failed)?,
            gmail_access,
            login_hint: login_hint.filter(|h| !h.is_empty()).map(str::to_owned),
        };
        let url = oidc
            .authorization_url(&request)
            .await
            .map_err(provider_error)?;
        let now = self.now();
        let expires_at = now + chrono_duration(self.inner.config.login_attempt_ttl);
        let auth = self.inner.store.auth();
        auth.create_login_attempt(&LoginAttempt {
            state_hash: token_hash(&state),
            key_id,
            redirect_uri: redirect_uri.to_owned(),
            request_gmail: gmail_access,
            created_at: now,
            expires_at,
        })
        .await?;
        self.purge_expired(now).await;
        Ok(BeganLogin {
            authorization_url: url.to_string(),
            state,
            expires_at,
        })
    }

    /// Finishes a redirect sign-in.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty or oversized state or code; UNAUTHENTICATED with
    /// LOGIN_STATE_INVALID, AUTHORIZATION_CODE_INVALID, ID_TOKEN_INVALID, EMAIL_NOT_VERIFIED
    /// or DOMAIN_NOT_ALLOWED; UNAVAILABLE when the provider is unreachable.
    pub async fn complete_login(
        &self,
        state: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        self.inner.limits.check_ip(client.context.client_ip)?;
        let mut violations = Vec::new();
        for (field, value) in [("state", state), ("code", code)] {
            if value.is_empty() {
                violations.push(assistd_domain::FieldViolation::new(field, "is required"));
            } else if value.len() > 2048 || value.chars().any(char::is_control) {
                violations.push(assistd_domain::FieldViolation::new(
                    field,
                    "must be at most 2048 printable characters",
                ));
            }
        }
        check_device_name(&client.device_name, &mut violations);
        if !violations.is_empty() {
            return Err(violations.into());
        }
        let oidc = self.oidc()?;
        let now = self.now();
        let outcome = async {
            let attempt = self
                .inner
                .store
                .auth()
                .take_login_attempt(&token_hash(state), now)
                .await?
                .ok_or_else(|| {
                    unauthenticated(
                        ErrorReason::LoginStateInvalid,
                        "the login state is unknown, expired or already used; start the sign-in again",
                    )
                })?;
            let secrets = &self.inner.secrets;
            let (Some(verifier), Some(nonce)) = (
                secrets.pkce_verifier(&attempt.key_id, state),
                secrets.nonce(&attempt.key_id, state),
            ) else {
                return Err(unauthenticated(
                    ErrorReason::LoginStateInvalid,
                    "the login attempt was made under a key this server no longer holds; start the sign-in again",
                ));
            };
            let exchange = oidc
                .exchange_code(code, &attempt.redirect_uri, &verifier, &nonce)
                .await
                .map_err(provider_error)?;
            self.check_policy(&exchange.identity)?;
            Ok((attempt, exchange))
        }
        .await;
        let (attempt, exchange) = match outcome {
            Ok(found) => found,
            Err(err) => {
                self.record_failure(&err, client).await;
                return Err(err);
            }
        };
        let gmail_requested = attempt.request_gmail;
        let granted_scopes = exchange.scopes.join(" ");
        let gmail_scope_granted = exchange
            .scopes
            .iter()
            .any(|s| s == assistd_identity::GMAIL_READONLY_SCOPE);
        let mut signed_in = self
            .open_session(
                &exchange.identity,
                SignInMethod::GoogleRedirect,
                client,
                None,
            )
            .await?;
        let user = signed_in.user.id;
        // The session is open and committed: failing to keep Google's tokens must not turn
        // it into an error the client cannot recover its tokens from. Gmail access is then
        // reported as not granted, and a later sign-in stores them.
        let has_refresh = match self
            .store_google_tokens(
                user,
                &exchange.access_token,
                exchange.access_token_expires_at,
                exchange.refresh_token.as_deref(),
                &granted_scopes,
            )
            .await
        {
            Ok(has_refresh) => has_refresh,
            Err(err) => {
                tracing::error!(error = %err, %user, "storing the Google tokens failed");
                false
            }
        };
        signed_in.gmail_access_granted = gmail_requested && gmail_scope_granted && has_refresh;
        Ok(signed_in)
    }

    /// Signs in with an ID token the client obtained itself; each token is accepted once.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty or oversized token, nonce or device name;
    /// UNAUTHENTICATED with ID_TOKEN_INVALID (including a replay), EMAIL_NOT_VERIFIED or
    /// DOMAIN_NOT_ALLOWED; UNAVAILABLE when the provider's keys cannot be fetched.
    pub async fn sign_in_with_id_token(
        &self,
        id_token: &str,
        nonce: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        self.inner.limits.check_ip(client.context.client_ip)?;
        let mut violations = Vec::new();
        if id_token.is_empty() {
            violations.push(assistd_domain::FieldViolation::new(
                "id_token",
                "is required",
            ));
        } else if id_token.len() > 8192 || id_token.split('.').count() != 3 {
            violations.push(assistd_domain::FieldViolation::new(
                "id_token",
                "must be a JWT (three dot-separated parts) of at most 8192 characters",
            ));
        }
        if nonce.chars().count() > 256 {
            violations.push(assistd_domain::FieldViolation::new(
                "nonce",
                "must be at most 256 characters",
            ));
        }
        check_device_name(&client.device_name, &mut violations);
        if !violations.is_empty() {
            return Err(violations.into());
        }
        let oidc = self.oidc()?;
        let verified = async {
            let identity = oidc
                .verify_id_token(id_token, Some(nonce).filter(|n| !n.is_empty()))
                .await
                .map_err(provider_error)?;
            self.check_policy(&identity)?;
            Ok(identity)
        }
        .await;
        let identity = match verified {
            Ok(identity) => identity,
            Err(err) => {
                self.record_failure(&err, client).await;
                return Err(err);
            }
        };
        // Remembered by its signed part: an ECDSA signature can be rewritten into another valid
        // one, so the whole text would let a replay through. Kept until the verifier would
        // refuse the token anyway (its expiry plus the tolerated skew).
        let signed_part = id_token
            .rsplit_once('.')
            .map_or(id_token, |(signed, _)| signed);
        let remember_until = identity.expires_at + chrono_duration(self.inner.config.clock_skew);
        let result = self
            .open_session(
                &identity,
                SignInMethod::GoogleIdToken,
                client,
                Some((token_hash(signed_part), remember_until)),
            )
            .await;
        match &result {
            Ok(_) => self.purge_expired(self.now()).await,
            Err(err) => self.record_failure(err, client).await,
        }
        result
    }

    /// Clears expired login attempts and used-ID-token records; both sign-in paths call it, so
    /// neither table grows without bound whichever path a deployment uses.
    async fn purge_expired(&self, now: DateTime<Utc>) {
        if let Err(err) = self.inner.store.auth().purge_expired(now).await {
            tracing::warn!(error = %err, "purging expired sign-in records failed");
        }
    }

    fn check_policy(&self, identity: &VerifiedIdentity) -> Result<()> {
        let config = &self.inner.config;
        if config.require_email_verified && !identity.email_verified {
            return Err(unauthenticated(
                ErrorReason::EmailNotVerified,
                "the account's email address is not verified by the identity provider",
            ));
        }
        if !config.allowed_hosted_domains.is_empty()
            && !identity.hosted_domain.as_deref().is_some_and(|hd| {
                config
                    .allowed_hosted_domains
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(hd))
            })
        {
            return Err(unauthenticated(
                ErrorReason::DomainNotAllowed,
                "accounts of this domain may not sign in to this server",
            ));
        }
        Ok(())
    }

    async fn record_failure(&self, err: &Error, client: &ClientInfo) {
        let reason = match err {
            Error::Unauthenticated { reason, .. } => reason.as_str(),
            Error::Unavailable { reason, .. } => reason.as_str(),
            _ => return,
        };
        let event = AuditEvent {
            actor: None,
            action: AuditAction::LoginFailed,
            target: "session".into(),
            outcome: AuditOutcome::Failure,
            context: client.context.clone(),
            metadata: BTreeMap::from([("reason".to_owned(), reason.to_owned())]),
        };
        let written = async {
            let txn = self.inner.store.begin_write().await?;
            self.inner.audit.append(&txn, &event).await?;
            txn.commit().await.map_err(assistd_store::db_error)
        }
        .await;
        if let Err(err) = written {
            tracing::warn!(error = %err, "recording a failed sign-in in the audit log failed");
        }
    }

    /// Creates or updates the account and opens a session, in one transaction with its audit
    /// row (and the ID token's single-use record, when given).
    async fn open_session(
        &self,
        identity: &VerifiedIdentity,
        method: SignInMethod,
        client: &ClientInfo,
        single_use: Option<(String, DateTime<Utc>)>,
    ) -> Result<SignedIn> {
        let now = self.now();
        let auth = self.inner.store.auth();
        let txn = self.inner.store.begin_write().await?;
        if let Some((hash, expires_at)) = single_use
            && !auth.mark_id_token_used(&txn, &hash, expires_at).await?
        {
            return Err(unauthenticated(
                ErrorReason::IdTokenInvalid,
                "this ID token was already used to sign in; get a new one",
            ));
        }
        let profile = OidcProfile {
            issuer: normalize_issuer(&identity.issuer),
            subject: identity.subject.clone(),
            email: identity.email.clone(),
            email_verified: identity.email_verified,
            name: initial_display_name(identity),
            picture: identity.picture.clone(),
        };
        let (user, new_user) = auth.upsert_oidc_user(&txn, &profile, now).await?;
        self.inner.limits.check_user(user.id)?;
        let session = auth
            .create_session(
                &txn,
                &NewAuthSession {
                    user: user.id,
                    device_name: client.device_name.clone(),
                    user_agent: client.context.user_agent.clone().unwrap_or_default(),
                    ip_address: client
                        .context
                        .client_ip
                        .map(|ip| ip.to_string())
                        .unwrap_or_default(),
                    method,
                    now,
                    expires_at: now + chrono_duration(self.inner.config.session_max_lifetime),
                },
            )
            .await?;
        let refresh_token = random_token();
        let refresh_expires_at = self.refresh_expiry(now, session.expires_at);
        auth.insert_refresh_token(
            &txn,
            &RefreshTokenRecord {
                token_hash: token_hash(&refresh_token),
                session_id: session.id,
                user: user.id,
                key_id: self.inner.secrets.current_key_id().to_owned(),
                created_at: now,
                expires_at: refresh_expires_at,
                used_at: None,
                successor_hash: None,
            },
        )
        .await?;
        self.inner
            .audit
            .append(
                &txn,
                &AuditEvent {
                    actor: Some(user.id),
                    action: AuditAction::LoginSucceeded,
                    target: format!("session/{}", session.id),
                    outcome: AuditOutcome::Success,
                    context: client.context.clone(),
                    metadata: BTreeMap::from([
                        ("method".to_owned(), method.as_str().to_owned()),
                        ("new_user".to_owned(), new_user.to_string()),
                    ]),
                },
            )
            .await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        Ok(SignedIn {
            tokens: SessionTokens {
                access: self.inner.tokens.issue_for_session(user.id, session.id),
                refresh_token,
                refresh_expires_at,
                session_id: session.id,
            },
            user,
            new_user,
            gmail_access_granted: false,
        })
    }

    fn refresh_expiry(&self, now: DateTime<Utc>, session_end: DateTime<Utc>) -> DateTime<Utc> {
        (now + chrono_duration(self.inner.config.session_idle_timeout)).min(session_end)
    }

    /// Seals and stores Google's tokens; returns whether a refresh token is now held.
    async fn store_google_tokens(
        &self,
        user: UserId,
        access_token: &str,
        access_expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<&str>,
        scopes: &str,
    ) -> Result<bool> {
        let sealer = &self.inner.sealer;
        let key = sealer.data_key(user).await?;
        let record = user.to_string();
        let sealed_access = sealer
            .seal(
                &key,
                GOOGLE_ACCESS_PURPOSE,
                &record,
                access_token.as_bytes(),
            )
            .await?;
        let sealed_refresh = match refresh_token {
            Some(token) => Some(
                sealer
                    .seal(&key, GOOGLE_REFRESH_PURPOSE, &record, token.as_bytes())
                    .await?,
            ),
            None => None,
        };
        let auth = self.inner.store.auth();
        let previous = auth.google_link(user).await?;
        // A new refresh token heals a broken link; without one the stored token (kept by
        // save_google_link) is as good or as dead as it was.
        let reauth_required =
            sealed_refresh.is_none() && previous.as_ref().is_some_and(|link| link.reauth_required);
        let has_refresh = sealed_refresh.is_some()
            || previous
                .as_ref()
                .is_some_and(|link| link.sealed_refresh_token.is_some() && !link.reauth_required);
        auth.save_google_link(
            self.inner.store.connection(),
            &GoogleLink {
                user,
                sealed_access_token: Some(sealed_access),
                access_expires_at,
                sealed_refresh_token: sealed_refresh,
                scopes: scopes.to_owned(),
                reauth_required,
                updated_at: self.now(),
            },
        )
        .await?;
        Ok(has_refresh)
    }

    /// Exchanges a refresh token for a new pair.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty token; UNAUTHENTICATED with REFRESH_TOKEN_INVALID,
    /// REFRESH_TOKEN_REUSED (the session is now revoked) or SESSION_REVOKED.
    pub async fn refresh(&self, refresh_token: &str, client: &ClientInfo) -> Result<SessionTokens> {
        self.inner.limits.check_ip(client.context.client_ip)?;
        if refresh_token.is_empty() {
            return Err(Error::invalid_field("refresh_token", "is required"));
        }
        let invalid = || {
            unauthenticated(
                ErrorReason::RefreshTokenInvalid,
                "the refresh token is unknown or expired; sign in again",
            )
        };
        if refresh_token.len() > 256 {
            return Err(invalid());
        }
        let now = self.now();
        let hash = token_hash(refresh_token);
        let auth = self.inner.store.auth();
        let txn = self.inner.store.begin_write().await?;
        let record = auth.refresh_token(&txn, &hash).await?.ok_or_else(invalid)?;
        self.inner.limits.check_user(record.user)?;
        let session = auth
            .session(&txn, record.session_id)
            .await?
            .ok_or_else(invalid)?;
        if session.revoked_at.is_some() {
            return Err(unauthenticated(
                ErrorReason::SessionRevoked,
                "this session was signed out or revoked; sign in again",
            ));
        }
        if !session.is_active(now) {
            return Err(invalid());
        }
        let secrets = &self.inner.secrets;
        let successor = secrets
            .refresh_successor(&record.key_id, refresh_token)
            .ok_or_else(invalid)?;
        let successor_hash = token_hash(&successor);
        if record.used_at.is_none() {
            if record.expires_at <= now {
                return Err(invalid());
            }
            if auth
                .consume_refresh_token(&txn, &hash, &successor_hash, now)
                .await?
            {
                let expires_at = self.refresh_expiry(now, session.expires_at);
                auth.insert_refresh_token(
                    &txn,
                    &RefreshTokenRecord {
                        token_hash: successor_hash,
                        session_id: session.id,
                        user: session.user,
                        key_id: secrets.current_key_id().to_owned(),
                        created_at: now,
                        expires_at,
                        used_at: None,
                        successor_hash: None,
                    },
                )
                .await?;
                auth.touch_session(
                    &txn,
                    session.id,
                    client.context.user_agent.as_deref().unwrap_or_default(),
                    &client
                        .context
                        .client_ip
                        .map(|ip| ip.to_string())
                        .unwrap_or_default(),
                    now,
                )
                .await?;
                self.inner
                    .audit
                    .append(
                        &txn,
                        &AuditEvent {
                            actor: Some(session.user),
                            action: AuditAction::TokenRefreshed,
                            target: format!("session/{}", session.id),
                            outcome: AuditOutcome::Success,
                            context: client.context.clone(),
                            metadata: BTreeMap::new(),
                        },
                    )
                    .await?;
                txn.commit().await.map_err(assistd_store::db_error)?;
                return Ok(SessionTokens {
                    access: self
                        .inner
                        .tokens
                        .issue_for_session(session.user, session.id),
                    refresh_token: successor,
                    refresh_expires_at: expires_at,
                    session_id: session.id,
                });
            }
        }
        // Used already (by an earlier call or a concurrent one that just committed).
        let record = auth.refresh_token(&txn, &hash).await?.ok_or_else(invalid)?;
        let used_at = record.used_at.unwrap_or(now);
        let in_grace = now - used_at <= chrono_duration(self.inner.config.refresh_grace);
        let live_successor = match record.successor_hash.as_deref() {
            Some(stored) if stored == successor_hash => auth
                .refresh_token(&txn, stored)
                .await?
                .filter(|s| s.used_at.is_none() && s.expires_at > now),
            _ => None,
        };
        if in_grace && let Some(live) = live_successor {
            // A lost response, retried: the same new refresh token, a fresh access token.
            txn.commit().await.map_err(assistd_store::db_error)?;
            return Ok(SessionTokens {
                access: self
                    .inner
                    .tokens
                    .issue_for_session(session.user, session.id),
                refresh_token: successor,
                refresh_expires_at: live.expires_at,
                session_id: session.id,
            });
        }
        // Reuse: whoever holds this token is not the session's rightful client, or the
        // rightful client lost track. Either way the family is revoked.
        // Of concurrent replays only the one that revokes writes the audit row.
        if auth
            .revoke_session(&txn, session.user, session.id, "refresh_token_reused", now)
            .await?
        {
            self.inner
                .audit
                .append(
                    &txn,
                    &AuditEvent {
                        actor: Some(session.user),
                        action: AuditAction::RefreshTokenReuseDetected,
                        target: format!("session/{}", session.id),
                        outcome: AuditOutcome::Failure,
                        context: client.context.clone(),
                        metadata: BTreeMap::new(),
                    },
                )
                .await?;
        }
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.gate.forget_all();
        Err(unauthenticated(
            ErrorReason::RefreshTokenReused,
            "this refresh token was already used; the session has been revoked for safety, sign in again",
        ))
    }

    /// Revokes the caller's session. A token minted outside any session has nothing to sign
    /// out of.
    ///
    /// # Errors
    /// The database failed.
    pub async fn sign_out(
        &self,
        user: UserId,
        session: Option<Uuid>,
        context: &RequestContext,
    ) -> Result<()> {
        let Some(session) = session else {
            return Ok(());
        };
        self.revoke(user, session, AuditAction::SignedOut, "signed_out", context)
            .await
            .map(|_| ())
    }

    async fn revoke(
        &self,
        user: UserId,
        session: Uuid,
        action: AuditAction,
        reason: &str,
        context: &RequestContext,
    ) -> Result<bool> {
        let now = self.now();
        let txn = self.inner.store.begin_write().await?;
        let revoked = self
            .inner
            .store
            .auth()
            .revoke_session(&txn, user, session, reason, now)
            .await?;
        if revoked {
            self.inner
                .audit
                .append(
                    &txn,
                    &AuditEvent {
                        actor: Some(user),
                        action,
                        target: format!("session/{session}"),
                        outcome: AuditOutcome::Success,
                        context: context.clone(),
                        metadata: BTreeMap::new(),
                    },
                )
                .await?;
        }
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.gate.forget_all();
        Ok(revoked)
    }

    /// The caller's account.
    ///
    /// # Errors
    /// UNAUTHENTICATED (ACCOUNT_NOT_FOUND) when the account was deleted.
    pub async fn current_user(&self, user: UserId) -> Result<User> {
        self.inner
            .store
            .users()
            .get(user)
            .await
            .map_err(account_gone)
    }

    /// Changes the display name.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a bad name; UNAUTHENTICATED (ACCOUNT_NOT_FOUND).
    pub async fn update_display_name(
        &self,
        user: UserId,
        display_name: &str,
        context: &RequestContext,
    ) -> Result<User> {
        let name = validate_display_name(display_name)
            .map_err(|message| Error::invalid_field("user.display_name", message))?;
        let txn = self.inner.store.begin_write().await?;
        let updated = self
            .inner
            .store
            .users()
            .set_display_name(&txn, user, &name, self.now())
            .await
            .map_err(account_gone)?;
        self.inner
            .audit
            .append(
                &txn,
                &AuditEvent {
                    actor: Some(user),
                    action: AuditAction::ProfileUpdated,
                    target: format!("user/{user}"),
                    outcome: AuditOutcome::Success,
                    context: context.clone(),
                    metadata: BTreeMap::from([("fields".to_owned(), "display_name".to_owned())]),
                },
            )
            .await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        Ok(updated)
    }

    /// The user's active sessions, newest first, strictly after the `after` cursor (creation
    /// time, id) when given, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_sessions(
        &self,
        user: UserId,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuthSession>> {
        self.inner
            .store
            .auth()
            .list_active_sessions(user, self.now(), after, limit)
            .await
    }

    /// Revokes one of the user's sessions.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no active session with that id.
    pub async fn revoke_session(
        &self,
        user: UserId,
        current: Option<Uuid>,
        session: Uuid,
        context: &RequestContext,
    ) -> Result<()> {
        let (action, reason) = if current == Some(session) {
            (AuditAction::SignedOut, "signed_out")
        } else {
            (AuditAction::SessionRevoked, "revoked")
        };
        if self.revoke(user, session, action, reason, context).await? {
            Ok(())
        } else {
            Err(Error::NotFound {
                resource: "session",
                id: session.to_string(),
            })
        }
    }

    /// Revokes all of the user's sessions but `current`; returns how many.
    ///
    /// # Errors
    /// The database failed.
    pub async fn revoke_other_sessions(
        &self,
        user: UserId,
        current: Option<Uuid>,
        context: &RequestContext,
    ) -> Result<u64> {
        let now = self.now();
        let txn = self.inner.store.begin_write().await?;
        let count = self
            .inner
            .store
            .auth()
            .revoke_other_sessions(&txn, user, current, "revoked", now)
            .await?;
        if count > 0 {
            self.inner
                .audit
                .append(
                    &txn,
                    &AuditEvent {
                        actor: Some(user),
                        action: AuditAction::SessionRevoked,
                        target: "session/*".into(),
                        outcome: AuditOutcome::Success,
                        context: context.clone(),
                        metadata: BTreeMap::from([("count".to_owned(), count.to_string())]),
                    },
                )
                .await?;
        }
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.gate.forget_all();
        Ok(count)
    }

    /// Deletes the account: every row of the user goes (through foreign keys), their data
    /// key is destroyed, one audit row stays. The confirmation must equal the account's email
    /// address (case-insensitively), or the account id when it has no email address.
    ///
    /// # Errors
    /// INVALID_ARGUMENT (CONFIRMATION_MISMATCH); UNAUTHENTICATED (ACCOUNT_NOT_FOUND).
    pub async fn delete_account(
        &self,
        user: UserId,
        confirm_email: &str,
        context: &RequestContext,
    ) -> Result<DateTime<Utc>> {
        let account = self.current_user(user).await?;
        let expected = account.email.clone().unwrap_or_else(|| user.to_string());
        if confirm_email.is_empty() || !expected.eq_ignore_ascii_case(confirm_email.trim()) {
            return Err(Error::InvalidArgument {
                violations: vec![assistd_domain::FieldViolation::new(
                    "confirm_email",
                    "must equal the account's email address as GetCurrentUser returns it",
                )],
                reason: Some(ErrorReason::ConfirmationMismatch),
            });
        }
        let now = self.now();
        let txn = self.inner.store.begin_write().await?;
        self.inner.sealer.shred(&txn, user).await?;
        self.inner
            .store
            .users()
            .delete_in(&txn, user)
            .await
            .map_err(account_gone)?;
        // The audit head is locked last, as in every other transaction that writes rows of
        // the user and an audit row, so two of them cannot wait on each other.
        self.inner
            .audit
            .append(
                &txn,
                &AuditEvent {
                    actor: Some(user),
                    action: AuditAction::AccountDeleted,
                    target: format!("user/{user}"),
                    outcome: AuditOutcome::Success,
                    context: context.clone(),
                    metadata: BTreeMap::new(),
                },
            )
            .await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.sealer.cache().forget_user(user);
        self.inner.gate.forget_all();
        Ok(now)
    }

    /// A usable Google access token for the user, refreshed through the token endpoint when
    /// the stored one has (nearly) expired. For the Gmail work.
    ///
    /// # Errors
    /// FAILED_PRECONDITION (GOOGLE_REAUTH_REQUIRED) when the user never granted offline
    /// access or Google refused the refresh token (the link is then marked broken);
    /// UNAVAILABLE when Google is unreachable.
    pub async fn google_access_token(&self, user: UserId) -> Result<assistd_crypto::Secret> {
        let reauth = || Error::FailedPrecondition {
            reason: ErrorReason::GoogleReauthRequired,
            message: "Google access must be granted again: sign in with Gmail access".into(),
        };
        let auth = self.inner.store.auth();
        let link = auth.google_link(user).await?.ok_or_else(reauth)?;
        if link.reauth_required {
            return Err(reauth());
        }
        let now = self.now();
        let record = user.to_string();
        if let (Some(sealed), Some(expires_at)) =
            (&link.sealed_access_token, link.access_expires_at)
            && expires_at > now + chrono::Duration::seconds(60)
        {
            return self
                .inner
                .sealer
                .open(user, GOOGLE_ACCESS_PURPOSE, &record, sealed)
                .await;
        }
        let sealed_refresh = link.sealed_refresh_token.as_ref().ok_or_else(reauth)?;
        let refresh = self
            .inner
            .sealer
            .open(user, GOOGLE_REFRESH_PURPOSE, &record, sealed_refresh)
            .await?;
        let refresh = refresh
            .expose_secret_str()
            .map_err(|_| Error::internal("stored Google refresh token is not UTF-8"))?
            .to_owned();
        let refreshed = match self.oidc()?.refresh_access_token(&refresh).await {
            Ok(refreshed) => refreshed,
            Err(OidcError::InvalidGrant) => {
                auth.mark_google_reauth_required(user, now).await?;
                return Err(reauth());
            }
            Err(err) => return Err(provider_error(err)),
        };
        self.store_google_tokens(
            user,
            &refreshed.access_token,
            refreshed.expires_at,
            refreshed.refresh_token.as_deref(),
            &link.scopes,
        )
        .await?;
        Ok(assistd_crypto::Secret::new(
            refreshed.access_token.into_bytes(),
        ))
    }
}

fn check_device_name(device_name: &str, violations: &mut Vec<assistd_domain::FieldViolation>) {
    if device_name.chars().count() > 64 || device_name.chars().any(char::is_control) {
        violations.push(assistd_domain::FieldViolation::new(
            "device_name",
            "must be at most 64 printable characters",
        ));
    }
}

/// Google's ID tokens say `accounts.google.com` or `https://accounts.google.com`; accounts are
/// keyed by the URL form.
fn normalize_issuer(issuer: &str) -> String {
    if issuer == "accounts.google.com" {
        assistd_identity::GOOGLE_ISSUER.to_owned()
    } else {
        issuer.to_owned()
    }
}

fn account_gone(err: Error) -> Error {
    match err {
        Error::NotFound { .. } => unauthenticated(
            ErrorReason::AccountNotFound,
            "the account of this token no longer exists",
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(validate_display_name("  Ada  ").unwrap(), "Ada");
        assert!(validate_display_name("   ").is_err());
        assert!(validate_display_name(&"x".repeat(101)).is_err());
        assert!(validate_display_name("a\u{7}b").is_err());
        assert_eq!(
            validate_display_name(&"é".repeat(100))
                .unwrap()
                .chars()
                .count(),
            100
        );
    }

    #[test]
    fn google_issuer_forms_are_one_identity() {
        assert_eq!(
            normalize_issuer("accounts.google.com"),
            "https://accounts.google.com"
        );
        assert_eq!(normalize_issuer("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }

    #[test]
    fn the_default_configuration_is_valid_and_limits_are_checked() {
        assert!(SignInConfig::default().validate().is_ok());
        let config = SignInConfig {
            login_attempt_ttl: Duration::from_secs(11 * 60),
            ..SignInConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
