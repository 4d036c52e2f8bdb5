//! Token endpoint work of the OpenID client: exchanging an authorization code, verifying an
//! ID token, refreshing an access token and revoking a grant, with how the provider's error
//! answers are classified.

use std::borrow::Cow;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use openidconnect::core::CoreErrorResponseType;
use openidconnect::{
    AuthorizationCode, OAuth2TokenResponse, PkceCodeVerifier, RefreshToken, RequestTokenError,
};

use super::discovery::Provider;
use super::id_token::{AudienceRule, ClaimRules};
use super::*;

impl OidcClient {
    /// Redeems an authorization code (with the PKCE verifier and the redirect URI used in the
    /// authorization URL) and verifies the ID token in the answer, which must carry
    /// `expected_nonce` and be issued to this client id.
    ///
    /// # Errors
    /// [`OidcError::CodeRejected`] when the provider refuses the code or verifier;
    /// [`OidcError::InvalidIdToken`] when the ID token is missing or fails a check;
    /// [`OidcError::Unavailable`] and [`OidcError::Misconfigured`] as their names say.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        expected_nonce: &str,
    ) -> Result<CodeExchange, OidcError> {
        if expected_nonce.is_empty() {
            return Err(OidcError::Misconfigured(
                "the expected nonce is empty".into(),
            ));
        }
        let verifier = checked_pkce_verifier(pkce_verifier)?;
        let redirect_uri = redirect_url(redirect_uri)?;
        let provider = self.provider().await?;

        let started = Instant::now();
        let response = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(verifier)
            .set_redirect_uri(Cow::Owned(redirect_uri))
            .request_async(&self.inner.http)
            .await
            .map_err(|e| self.token_endpoint_error(&e, Grant::AuthorizationCode));
        self.inner.calls.record("token", started, &response);
        let response = response?;

        let id_token = response.raw_id_token().ok_or_else(|| {
            OidcError::InvalidIdToken("the token response carries no ID token".into())
        })?;
        let identity = self
            .verify(
                &provider,
                id_token,
                AudienceRule::ClientIdOnly,
                Some(expected_nonce),
            )
            .await?;

        let now = self.inner.clock.now();
        Ok(CodeExchange {
            identity,
            id_token: id_token.to_string(),
            access_token: response.access_token().secret().clone(),
            access_token_expires_at: expires_at(now, response.expires_in()),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            scopes: response
                .scopes()
                .map(|scopes| scopes.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        })
    }

    /// Verifies an ID token a client obtained by itself. `aud` may be this client id or one of
    /// the additional audiences; when `expected_nonce` is given, the token's nonce must equal
    /// it.
    ///
    /// # Errors
    /// [`OidcError::InvalidIdToken`] when a check fails; [`OidcError::Unavailable`] when
    /// discovery or the JWKS cannot be fetched.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        expected_nonce: Option<&str>,
    ) -> Result<VerifiedIdentity, OidcError> {
        let provider = self.provider().await?;
        self.verify(
            &provider,
            id_token,
            AudienceRule::AnyAccepted,
            expected_nonce,
        )
        .await
    }

    /// Obtains a new access token with a refresh token. An ID token in the answer is ignored.
    ///
    /// # Errors
    /// [`OidcError::InvalidGrant`] when the refresh token was revoked or has expired;
    /// [`OidcError::Unavailable`] and [`OidcError::Misconfigured`] as their names say.
    pub async fn refresh_access_token(
        &self,
        refresh_token: &str,
    ) -> Result<RefreshedAccess, OidcError> {
        let provider = self.provider().await?;
        let refresh_token = RefreshToken::new(refresh_token.to_owned());
        let started = Instant::now();
        let response = provider
            .client
            .exchange_refresh_token(&refresh_token)
            .request_async(&self.inner.http)
            .await
            .map_err(|e| self.token_endpoint_error(&e, Grant::RefreshToken));
        self.inner.calls.record("token", started, &response);
        let response = response?;
        let now = self.inner.clock.now();
        Ok(RefreshedAccess {
            access_token: response.access_token().secret().clone(),
            expires_at: expires_at(now, response.expires_in()),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Revokes a token at the provider's revocation endpoint (RFC 7009: a form POST of
    /// `token` and `token_type_hint`, as Google's endpoint takes it, without client
    /// credentials: the token itself is what is revoked). Revoking a refresh token ends the whole grant at Google. Returns `false`
    /// when the discovery document names no revocation endpoint.
    ///
    /// # Errors
    /// [`OidcError::Unavailable`] when the endpoint is unreachable or answers an error other
    /// than "unknown token"; the caller decides whether that matters (revocation is usually
    /// best effort).
    pub async fn revoke_token(
        &self,
        token: &str,
        is_refresh_token: bool,
    ) -> Result<bool, OidcError> {
        let provider = self.provider().await?;
        let Some(endpoint) = provider.revocation_endpoint.clone() else {
            return Ok(false);
        };
        let hint = if is_refresh_token {
            "refresh_token"
        } else {
            "access_token"
        };
        let started = Instant::now();
        let form = [("token", token), ("token_type_hint", hint)];
        let result = self
            .inner
            .http
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("revocation request failed: {}", error_chain(&e)))
            })
            .and_then(|response| {
                let status = response.status();
                // RFC 7009 §2.2: an unknown or already invalid token is not an error. Google
                // answers 400 `invalid_token` for it.
                if status.is_success() || status == reqwest::StatusCode::BAD_REQUEST {
                    Ok(true)
                } else {
                    Err(OidcError::Unavailable(format!(
                        "the revocation endpoint answered HTTP {status}"
                    )))
                }
            });
        self.inner.calls.record("revoke", started, &result);
        result
    }

    /// The one ID token verification both sign-in paths share.
    async fn verify(
        &self,
        provider: &Provider,
        token: &str,
        audience: AudienceRule,
        expected_nonce: Option<&str>,
    ) -> Result<VerifiedIdentity, OidcError> {
        let inner = &self.inner;
        let header = id_token::peek_header(token)?;
        let key = inner
            .jwks
            .key(
                &inner.http,
                &provider.jwks_uri,
                &header.kid,
                inner.clock.as_ref(),
                &inner.calls,
            )
            .await?;
        let claims = id_token::verify_signature(token, header.alg, &key)?;
        id_token::check_claims(
            claims,
            &ClaimRules {
                issuer: &provider.issuer,
                client_id: &inner.client_id,
                additional_audiences: &inner.additional_audiences,
                audience,
                expected_nonce,
                clock_skew: inner.clock_skew,
                now: inner.clock.now(),
            },
        )
    }

    fn token_endpoint_error<RE: std::error::Error>(
        &self,
        error: &RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
        grant: Grant,
    ) -> OidcError {
        let error = classify_token_endpoint_error(error, grant);
        if let OidcError::Unavailable(reason) = &error {
            tracing::warn!(%reason, "OpenID token endpoint failed");
            // The endpoint may have moved: read the discovery document again next time.
            self.inner.discovery.mark_stale();
        }
        error
    }
}

pub(super) fn classify_token_endpoint_error<RE: std::error::Error>(
    error: &RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
    grant: Grant,
) -> OidcError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error();
            let described = match response.error_description() {
                Some(description) => format!("{code}: {}", truncate(description, 200)),
                None => code.to_string(),
            };
            match (code, grant) {
                (
                    CoreErrorResponseType::InvalidGrant | CoreErrorResponseType::InvalidRequest,
                    Grant::AuthorizationCode,
                ) => OidcError::CodeRejected(described),
                (CoreErrorResponseType::InvalidGrant, Grant::RefreshToken) => {
                    OidcError::InvalidGrant
                }
                (CoreErrorResponseType::Extension(_), _) => {
                    OidcError::Unavailable(format!("the token endpoint answered {described}"))
                }
                _ => OidcError::Misconfigured(format!("the token endpoint answered {described}")),
            }
        }
        RequestTokenError::Request(e) => {
            OidcError::Unavailable(format!("token endpoint request failed: {}", error_chain(e)))
        }
        RequestTokenError::Parse(_, _) => {
            OidcError::Unavailable("the token endpoint's answer is unparsable".into())
        }
        RequestTokenError::Other(reason) => {
            OidcError::Unavailable(format!("token endpoint: {}", truncate(reason, 200)))
        }
    }
}

/// Checks a PKCE verifier against RFC 7636 (43-128 unreserved characters); openidconnect
/// panics on a wrong length.
pub(super) fn checked_pkce_verifier(verifier: &str) -> Result<PkceCodeVerifier, OidcError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if (43..=128).contains(&verifier.len()) && verifier.bytes().all(allowed) {
        Ok(PkceCodeVerifier::new(verifier.to_owned()))
    } else {
        Err(OidcError::Misconfigured(
            "the PKCE verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~".into(),
        ))
    }
}

pub(super) fn expires_at(
    now: DateTime<Utc>,
    expires_in: Option<Duration>,
) -> Option<DateTime<Utc>> {
    let expires_in = chrono::Duration::from_std(expires_in?).ok()?;
    now.checked_add_signed(expires_in)
}
