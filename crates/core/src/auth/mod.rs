//! Signing in with the configured OpenID provider (Google by default), assistd's own device
//! sessions with rotating refresh tokens, and the account lifecycle.
//!
//! Refresh tokens rotate on every use. Each session is one token family: presenting a token
//! that was already exchanged, after the grace window, revokes the session (RFC 9700 §4.14).
//! Within the grace window the same token yields the same successor again, because the
//! successor is derived from the token with a server key ([`DerivedSecrets`]); the database
//! holds only hashes, so concurrent refreshes with one token all receive one successor.
//!
//! [`AuthService`] is one type; its operations live one group per file:
//! - `login`: the redirect flow, BeginLogin and CompleteLogin;
//! - `id_token`: signing in with an ID token the client obtained itself;
//! - `sign_in`: what both sign-in paths share, up to the opened session;
//! - `refresh`: refresh-token rotation and reuse detection;
//! - `sessions`: listing, revoking and signing out of sessions;
//! - `account`: the current user, the profile and account deletion;
//! - `google`: the user's stored Google tokens.
//!
//! The [`SessionGate`] answers the authentication layer, [`SignInRateLimits`] bound the
//! sign-in calls and [`SignInConfig`] is their configuration.

use std::sync::Arc;
use std::time::Duration;

use assistd_domain::audit::RequestContext;
use assistd_domain::auth::AuthSession;
use assistd_domain::{AuthSessionId, Clock, Error, ErrorReason, Result};
use assistd_identity::{AccessTokens, DerivedSecrets, IssuedToken, OidcClient, OidcError};
use assistd_store::audit::AuditLog;
use assistd_store::{RefreshTokenRecord, Store};
use chrono::{DateTime, Utc};

use crate::SecretSealer;

mod account;
mod config;
mod google;
mod id_token;
mod login;
mod rate_limits;
mod refresh;
mod session_gate;
mod sessions;
mod sign_in;

pub use account::validate_display_name;
pub use config::{MAX_LOGIN_ATTEMPT_TTL, SignInConfig};
pub use google::GoogleGrant;
pub use login::{BeganLogin, GmailConsent};
pub use rate_limits::SignInRateLimits;
pub use session_gate::SessionGate;
pub use sign_in::SignedIn;

/// assistd's tokens for one session.
pub struct SessionTokens {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token. A bearer credential: never log it.
    pub refresh_token: String,
    /// When the refresh token expires unused.
    pub refresh_expires_at: DateTime<Utc>,
    /// The session.
    pub session_id: AuthSessionId,
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

/// Who is calling, as the edge saw it.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Request id, address, user agent.
    pub context: RequestContext,
    /// Label for a new session.
    pub device_name: String,
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

    /// Tells `observer` about every request sent to the identity provider (discovery, JWKS,
    /// token endpoint), for metrics. Without sign-in configured there are none. The first
    /// observer set stays.
    pub fn observe_provider_calls(&self, observer: assistd_identity::ProviderCallObserver) {
        if let Some(oidc) = &self.inner.oidc {
            oidc.observe_calls(observer);
        }
    }

    /// The export of a user's data, from this service's store and audit log.
    #[must_use]
    pub fn data_export(&self) -> crate::export::DataExport {
        crate::export::DataExport::new(
            self.inner.store.clone(),
            self.inner.audit.clone(),
            Arc::clone(&self.inner.clock),
        )
    }

    /// The sign-in rate limits.
    #[must_use]
    pub fn rate_limits(&self) -> &SignInRateLimits {
        &self.inner.limits
    }

    /// The OpenID client, or FAILED_PRECONDITION when this server has sign-in switched off.
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

    /// Now, by the injected clock: every expiry the service decides is measured with it.
    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// When a refresh token issued at `now` expires unused: after the idle timeout, but never
    /// after its session ends.
    fn refresh_expiry(&self, now: DateTime<Utc>, session_end: DateTime<Utc>) -> DateTime<Utc> {
        (now + chrono_duration(self.inner.config.session_idle_timeout)).min(session_end)
    }

    /// The stored record of a new, unused refresh token of `session` with hash `token_hash`,
    /// issued `now` under the current server key.
    fn refresh_record(
        &self,
        token_hash: String,
        session: &AuthSession,
        now: DateTime<Utc>,
    ) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash,
            session_id: session.id,
            user: session.user,
            key_id: self.inner.secrets.current_key_id().to_owned(),
            created_at: now,
            expires_at: self.refresh_expiry(now, session.expires_at),
            used_at: None,
            successor_hash: None,
        }
    }
}

/// Where an outcome of the sign-in is decided.
fn unauthenticated(reason: ErrorReason, message: impl Into<String>) -> Error {
    Error::Unauthenticated {
        reason,
        message: message.into(),
    }
}

/// The domain error for a failure of the identity provider, by what the provider refused.
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

/// A configured duration as a chrono one; configuration beyond chrono's range means "never".
fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}
