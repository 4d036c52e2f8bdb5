//! The user's Google tokens, sealed with their data key: stored at sign-in, and handed to
//! the Gmail work as a usable access token, refreshed through Google when it has expired.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_identity::OidcError;
use assistd_store::GoogleLink;
use chrono::{DateTime, Utc};

use super::{AuthService, provider_error};

/// Sealing purpose of Google access tokens.
const GOOGLE_ACCESS_PURPOSE: &str = "google_access_token";
/// Sealing purpose of Google refresh tokens.
const GOOGLE_REFRESH_PURPOSE: &str = "google_refresh_token";

/// A stored access token this close to its expiry is refreshed rather than handed out, so
/// it does not expire in the middle of the caller's request.
const ACCESS_TOKEN_MARGIN_SECONDS: i64 = 60;

/// The user must grant Google access again.
fn reauth() -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::GoogleReauthRequired,
        message: "Google access must be granted again: sign in with Gmail access".into(),
    }
}

impl AuthService {
    /// A usable Google access token for the user, refreshed through the token endpoint when
    /// the stored one has (nearly) expired. For the Gmail work.
    ///
    /// # Errors
    /// FAILED_PRECONDITION (GOOGLE_REAUTH_REQUIRED) when the user never granted offline
    /// access or Google refused the refresh token (the link is then marked broken);
    /// UNAVAILABLE when Google is unreachable.
    pub async fn google_access_token(&self, user: UserId) -> Result<assistd_crypto::Secret> {
        self.google_access_token_with(user, false).await
    }

    /// Like [`AuthService::google_access_token`]; with `force_refresh` the stored access
    /// token is not used even if it has not expired by its clock: for a caller whose request
    /// Google just refused with 401 (the token was revoked or rotated early).
    ///
    /// # Errors
    /// As [`AuthService::google_access_token`].
    pub async fn google_access_token_with(
        &self,
        user: UserId,
        force_refresh: bool,
    ) -> Result<assistd_crypto::Secret> {
        let auth = self.inner.store.auth();
        let link = auth.google_link(user).await?.ok_or_else(reauth)?;
        if link.reauth_required {
            return Err(reauth());
        }
        let now = self.now();
        let record = user.to_string();
        if !force_refresh
            && let (Some(sealed), Some(expires_at)) =
                (&link.sealed_access_token, link.access_expires_at)
            && expires_at > now + chrono::Duration::seconds(ACCESS_TOKEN_MARGIN_SECONDS)
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
                self.record_google_event(
                    user,
                    AuditAction::GoogleReauthRequired,
                    AuditOutcome::Failure,
                    &RequestContext::default(),
                    BTreeMap::from([("reason".to_owned(), "invalid_grant".to_owned())]),
                )
                .await;
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

    /// Seals and stores Google's tokens; returns whether a refresh token is now held.
    pub(super) async fn store_google_tokens(
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
        // Without a new refresh token the stored one, and the scopes it was granted with,
        // stay: a later sign-in without Gmail access must not hide the Gmail grant.
        let scopes = match previous.as_ref() {
            Some(link) if sealed_refresh.is_none() && link.sealed_refresh_token.is_some() => {
                let mut union: Vec<&str> = link.scopes.split_whitespace().collect();
                for scope in scopes.split_whitespace() {
                    if !union.contains(&scope) {
                        union.push(scope);
                    }
                }
                union.join(" ")
            }
            _ => scopes.to_owned(),
        };
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
                scopes,
                reauth_required,
                updated_at: self.now(),
            },
        )
        .await?;
        Ok(has_refresh)
    }
}

/// What the user's stored Google grant allows, without opening any token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleGrant {
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// A refresh token is stored (offline access).
    pub has_refresh_token: bool,
    /// Google refused the refresh token; a new consent is needed.
    pub reauth_required: bool,
    /// When the stored tokens last changed (the latest consent or refresh).
    pub updated_at: DateTime<Utc>,
}

impl GoogleGrant {
    /// The grant includes `gmail.readonly`.
    #[must_use]
    pub fn has_gmail_scope(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s == assistd_identity::GMAIL_READONLY_SCOPE)
    }

    /// The grant includes `gmail.compose`: drafts may be created.
    #[must_use]
    pub fn has_compose_scope(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s == assistd_identity::GMAIL_COMPOSE_SCOPE)
    }
}

impl AuthService {
    /// The user's stored Google grant, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn google_grant(&self, user: UserId) -> Result<Option<GoogleGrant>> {
        let link = self.inner.store.auth().google_link(user).await?;
        Ok(link.map(|link| GoogleGrant {
            scopes: link.scopes.split_whitespace().map(str::to_owned).collect(),
            has_refresh_token: link.sealed_refresh_token.is_some(),
            reauth_required: link.reauth_required,
            updated_at: link.updated_at,
        }))
    }

    /// Ends the user's Google grant: revokes it at the provider's revocation endpoint (the
    /// refresh token, or the access token when no refresh token is held; best effort: a
    /// failure is logged, not returned) and deletes the stored tokens. Returns whether tokens
    /// were stored. Idempotent.
    ///
    /// # Errors
    /// The database or the key service failed (the tokens are then kept).
    pub async fn revoke_google_grant(&self, user: UserId) -> Result<bool> {
        let auth = self.inner.store.auth();
        let Some(link) = auth.google_link(user).await? else {
            return Ok(false);
        };
        let record = user.to_string();
        let token = match (&link.sealed_refresh_token, &link.sealed_access_token) {
            (Some(sealed), _) => Some((GOOGLE_REFRESH_PURPOSE, sealed, true)),
            (None, Some(sealed)) => Some((GOOGLE_ACCESS_PURPOSE, sealed, false)),
            (None, None) => None,
        };
        if let (Some((purpose, sealed, is_refresh)), Some(oidc)) = (token, self.inner.oidc.as_ref())
        {
            match self.inner.sealer.open(user, purpose, &record, sealed).await {
                Ok(secret) => match secret.expose_secret_str() {
                    Ok(token) => match oidc.revoke_token(token, is_refresh).await {
                        Ok(true) => tracing::debug!(%user, "Google grant revoked"),
                        Ok(false) => tracing::info!(
                            %user,
                            "the identity provider names no revocation endpoint; the grant stays listed in the Google account"
                        ),
                        Err(err) => {
                            tracing::warn!(%user, error = %err, "revoking the Google grant failed");
                        }
                    },
                    Err(_) => tracing::warn!(%user, "stored Google token is not UTF-8"),
                },
                Err(err) => {
                    tracing::warn!(%user, error = %err, "opening the Google token to revoke it failed");
                }
            }
        }
        auth.delete_google_link(user).await
    }

    /// Appends an audit row about the user's Google grant; a failure is logged, not returned
    /// (the grant's state is already decided and stored).
    pub async fn record_google_event(
        &self,
        user: UserId,
        action: AuditAction,
        outcome: AuditOutcome,
        context: &RequestContext,
        metadata: BTreeMap<String, String>,
    ) {
        let event = AuditEvent {
            actor: Some(user),
            action,
            target: format!("user/{user}/gmail"),
            outcome,
            context: context.clone(),
            metadata,
        };
        let written = async {
            let txn = self.inner.store.begin_write().await?;
            self.inner.audit.append(&txn, &event).await?;
            txn.commit().await.map_err(assistd_store::db_error)
        }
        .await;
        if let Err(err) = written {
            tracing::warn!(error = %err, %user, action = action.as_str(), "recording a Google grant event in the audit log failed");
        }
    }
}
