//! What both sign-in paths share once the provider has vouched for the person: the policy
//! check, the audit row of a refusal, and opening the session with its first refresh token.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome};
use assistd_domain::auth::{AuthSession, SignInMethod, User};
use assistd_domain::{Error, ErrorReason, FieldViolation, Result};
use assistd_identity::{VerifiedIdentity, random_token, token_hash};
use assistd_store::{DatabaseTransaction, NewAuthSession, OidcProfile};
use chrono::{DateTime, Utc};

use super::{AuthService, ClientInfo, SessionTokens, chrono_duration, unauthenticated};

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

/// An ID token to accept once: the hash of its signed part, and until when to remember it.
pub(super) type SingleUse = (String, DateTime<Utc>);

impl AuthService {
    /// Creates or updates the account and opens a session, in one transaction with its audit
    /// row (and the ID token's single-use record, when given).
    pub(super) async fn open_session(
        &self,
        identity: &VerifiedIdentity,
        method: SignInMethod,
        client: &ClientInfo,
        single_use: Option<SingleUse>,
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
        let (user, new_user) = auth
            .upsert_oidc_user(&txn, &profile_of(identity), now)
            .await?;
        self.inner.limits.check_user(user.id)?;
        let session = self
            .create_session(&txn, &user, method, client, now)
            .await?;
        let (refresh_token, refresh_expires_at) =
            self.issue_first_refresh_token(&txn, &session, now).await?;
        let event = AuditEvent {
            actor: Some(user.id),
            action: AuditAction::LoginSucceeded,
            target: format!("session/{}", session.id),
            outcome: AuditOutcome::Success,
            context: client.context.clone(),
            metadata: BTreeMap::from([
                ("method".to_owned(), method.as_str().to_owned()),
                ("new_user".to_owned(), new_user.to_string()),
            ]),
        };
        self.inner.audit.append(&txn, &event).await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        Ok(SignedIn {
            tokens: self.session_tokens(&session, refresh_token, refresh_expires_at),
            user,
            new_user,
            gmail_access_granted: false,
        })
    }

    /// Opens the session row, labelled with what the client told about itself.
    async fn create_session(
        &self,
        txn: &DatabaseTransaction,
        user: &User,
        method: SignInMethod,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<AuthSession> {
        let new = NewAuthSession {
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
        };
        self.inner.store.auth().create_session(txn, &new).await
    }

    /// Starts the session's token family: a random refresh token, of which only the hash is
    /// stored. Returns the token and when it expires unused.
    async fn issue_first_refresh_token(
        &self,
        txn: &DatabaseTransaction,
        session: &AuthSession,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>)> {
        let refresh_token = random_token();
        let record = self.refresh_record(token_hash(&refresh_token), session, now);
        let expires_at = record.expires_at;
        self.inner
            .store
            .auth()
            .insert_refresh_token(txn, &record)
            .await?;
        Ok((refresh_token, expires_at))
    }

    /// Clears expired login attempts and used-ID-token records; both sign-in paths call it, so
    /// neither table grows without bound whichever path a deployment uses.
    pub(super) async fn purge_expired(&self, now: DateTime<Utc>) {
        if let Err(err) = self.inner.store.auth().purge_expired(now).await {
            tracing::warn!(error = %err, "purging expired sign-in records failed");
        }
    }

    /// Refuses an identity this server's policy does not admit: an unverified email address
    /// when verification is required, or a Workspace domain outside the allowed ones.
    pub(super) fn check_policy(&self, identity: &VerifiedIdentity) -> Result<()> {
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

    /// Writes the audit row of a refused sign-in. Only refusals of the person (and provider
    /// outages) are recorded; a failure to record one is logged, never returned, so the
    /// client still learns why it was refused.
    pub(super) async fn record_failure(&self, err: &Error, client: &ClientInfo) {
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
}

/// Adds a violation when the client's device label is too long or not printable.
pub(super) fn check_device_name(device_name: &str, violations: &mut Vec<FieldViolation>) {
    if device_name.chars().count() > 64 || device_name.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            "device_name",
            "must be at most 64 printable characters",
        ));
    }
}

/// What the store keeps of the verified identity.
fn profile_of(identity: &VerifiedIdentity) -> OidcProfile {
    OidcProfile {
        issuer: normalize_issuer(&identity.issuer),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        email_verified: identity.email_verified,
        name: initial_display_name(identity),
        picture: identity.picture.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_issuer_forms_are_one_identity() {
        assert_eq!(
            normalize_issuer("accounts.google.com"),
            "https://accounts.google.com"
        );
        assert_eq!(normalize_issuer("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }
}
