//! The redirect sign-in: BeginLogin sends the browser to the provider with a fresh state,
//! PKCE challenge and nonce; CompleteLogin takes the state back once, exchanges the code and
//! opens the session.
//!
//! The PKCE verifier and nonce are derived from the state with a server key, so a login
//! begun on one replica finishes on another and the database holds only the state's hash.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditOutcome};
use assistd_domain::auth::SignInMethod;
use assistd_domain::{Error, ErrorReason, FieldViolation, Result};
use assistd_identity::{AuthorizationRequest, CodeExchange, OidcClient, random_token, token_hash};
use assistd_store::LoginAttempt;
use chrono::{DateTime, Utc};

use super::sign_in::check_device_name;
use super::{AuthService, ClientInfo, SignedIn, chrono_duration, provider_error, unauthenticated};

/// Which Gmail permissions a redirect sign-in asks Google for besides signing in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GmailConsent {
    /// None: only `openid email profile`.
    #[default]
    None,
    /// `gmail.readonly` with offline access, so mail can be synced.
    Read,
    /// `gmail.readonly` and `gmail.compose`, so the chat can also create drafts.
    ReadAndCompose,
}

impl GmailConsent {
    /// Whether Gmail read access (and a refresh token) is asked for.
    #[must_use]
    pub const fn access(self) -> bool {
        !matches!(self, Self::None)
    }
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

impl AuthService {
    /// Starts a redirect sign-in.
    ///
    /// # Errors
    /// INVALID_ARGUMENT (REDIRECT_URI_NOT_ALLOWED) for a redirect URI outside the allowlist or
    /// an overlong login hint; UNAVAILABLE when discovery fails.
    pub async fn begin_login(
        &self,
        redirect_uri: &str,
        gmail: GmailConsent,
        login_hint: Option<&str>,
        client: &ClientInfo,
    ) -> Result<BeganLogin> {
        self.inner.limits.check_ip(client.context.client_ip)?;
        self.check_begin_login(redirect_uri, login_hint)?;
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
            gmail_access: gmail.access(),
            gmail_compose: gmail == GmailConsent::ReadAndCompose,
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
            request_gmail: gmail.access(),
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

    /// The redirect URI must be one of the allowed ones, compared exactly: anything looser
    /// would let a crafted login send the code to another site.
    fn check_begin_login(&self, redirect_uri: &str, login_hint: Option<&str>) -> Result<()> {
        if !self
            .inner
            .config
            .allowed_redirect_uris
            .iter()
            .any(|allowed| allowed == redirect_uri)
        {
            return Err(Error::InvalidArgument {
                violations: vec![FieldViolation::new(
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
        Ok(())
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
        check_complete_login(state, code, &client.device_name)?;
        let oidc = self.oidc()?;
        let (attempt, exchange) = match self.exchange_code(oidc, state, code).await {
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
        // The ID token of the exchange signs in once, like one presented to
        // SignInWithIdToken: recorded as used, it cannot open a second session there.
        let single_use = self.single_use_record(&exchange.id_token, &exchange.identity);
        let mut signed_in = self
            .open_session(
                &exchange.identity,
                SignInMethod::GoogleRedirect,
                client,
                Some(single_use),
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
        if signed_in.gmail_access_granted {
            // The Gmail link is (re)connected: a broken one heals, and a sync is due now.
            let connected = self
                .inner
                .store
                .gmail()
                .connect(
                    user,
                    exchange.identity.email.as_deref().unwrap_or_default(),
                    &exchange.scopes,
                    self.now(),
                )
                .await;
            if let Err(err) = connected {
                tracing::error!(error = %err, %user, "recording the Gmail connection failed");
            }
            self.record_google_event(
                user,
                AuditAction::GmailConnected,
                AuditOutcome::Success,
                &client.context,
                BTreeMap::from([("scopes".to_owned(), granted_scopes)]),
            )
            .await;
        }
        Ok(signed_in)
    }

    /// Takes the login attempt of `state` (once) and exchanges the code with the verifier and
    /// nonce derived from that state; the identity must pass the sign-in policy.
    async fn exchange_code(
        &self,
        oidc: &OidcClient,
        state: &str,
        code: &str,
    ) -> Result<(LoginAttempt, CodeExchange)> {
        let attempt = self
            .inner
            .store
            .auth()
            .take_login_attempt(&token_hash(state), self.now())
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
}

/// The state and code must be present, bounded and printable, and the device label valid.
fn check_complete_login(state: &str, code: &str, device_name: &str) -> Result<()> {
    let mut violations = Vec::new();
    for (field, value) in [("state", state), ("code", code)] {
        if value.is_empty() {
            violations.push(FieldViolation::new(field, "is required"));
        } else if value.len() > 2048 || value.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                field,
                "must be at most 2048 printable characters",
            ));
        }
    }
    check_device_name(device_name, &mut violations);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations.into())
    }
}
