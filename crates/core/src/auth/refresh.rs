//! Refresh-token rotation. Every refresh exchanges the presented token for its successor; a
//! token presented again within the grace window yields the same successor (a client that
//! lost the response retries), and after it counts as reuse, which revokes the whole session.
//!
//! The successor is derived from the presented token with a server key, never stored in the
//! clear, so concurrent refreshes with one token all arrive at the same successor and the
//! database decides which of them consumes the token.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome};
use assistd_domain::auth::AuthSession;
use assistd_domain::{Error, ErrorReason, Result};
use assistd_identity::token_hash;
use assistd_store::{DatabaseTransaction, RefreshTokenRecord};
use chrono::{DateTime, Utc};

use super::{AuthService, ClientInfo, SessionTokens, chrono_duration, unauthenticated};

/// Longest refresh token accepted; anything longer was never issued by this server.
const MAX_REFRESH_TOKEN_LEN: usize = 256;

/// An unknown, expired or otherwise unusable refresh token: the client must sign in again.
fn invalid() -> Error {
    unauthenticated(
        ErrorReason::RefreshTokenInvalid,
        "the refresh token is unknown or expired; sign in again",
    )
}

/// The successor a refresh token is exchanged for, and its hash as stored.
struct Successor {
    token: String,
    hash: String,
}

impl AuthService {
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
        if refresh_token.len() > MAX_REFRESH_TOKEN_LEN {
            return Err(invalid());
        }
        let now = self.now();
        let hash = token_hash(refresh_token);
        let txn = self.inner.store.begin_write().await?;
        let (record, session) = self.presented_token(&txn, &hash, now).await?;
        let token = self
            .inner
            .secrets
            .refresh_successor(&record.key_id, refresh_token)
            .ok_or_else(invalid)?;
        let successor = Successor {
            hash: token_hash(&token),
            token,
        };
        if record.used_at.is_none() {
            if record.expires_at <= now {
                return Err(invalid());
            }
            if self
                .inner
                .store
                .auth()
                .consume_refresh_token(&txn, &hash, &successor.hash, now)
                .await?
            {
                return self.rotate(txn, &session, successor, client, now).await;
            }
        }
        // Used already (by an earlier call or a concurrent one that just committed).
        self.retry_or_reuse(txn, &hash, &session, successor, client, now)
            .await
    }

    /// The presented token's record and its session, which must still be active; counts the
    /// call against the session's user.
    async fn presented_token(
        &self,
        txn: &DatabaseTransaction,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(RefreshTokenRecord, AuthSession)> {
        let auth = self.inner.store.auth();
        let record = auth.refresh_token(txn, hash).await?.ok_or_else(invalid)?;
        self.inner.limits.check_user(record.user)?;
        let session = auth
            .session(txn, record.session_id)
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
        Ok((record, session))
    }

    /// This call consumed the token: stores the successor, records the session's use and
    /// the audit row, and hands out the new pair.
    async fn rotate(
        &self,
        txn: DatabaseTransaction,
        session: &AuthSession,
        successor: Successor,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<SessionTokens> {
        let auth = self.inner.store.auth();
        let record = self.refresh_record(successor.hash, session, now);
        let expires_at = record.expires_at;
        auth.insert_refresh_token(&txn, &record).await?;
        let context = &client.context;
        let ip_address = context
            .client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        auth.touch_session(
            &txn,
            session.id,
            context.user_agent.as_deref().unwrap_or_default(),
            &ip_address,
            now,
        )
        .await?;
        let event = session_event(session, AuditAction::TokenRefreshed, client);
        self.inner.audit.append(&txn, &event).await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        Ok(self.session_tokens(session, successor.token, expires_at))
    }

    /// The token was used before. Within the grace window, and while its successor is still
    /// unused, this is a lost response retried: the same successor again. Otherwise it is
    /// reuse and the session is revoked.
    async fn retry_or_reuse(
        &self,
        txn: DatabaseTransaction,
        hash: &str,
        session: &AuthSession,
        successor: Successor,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<SessionTokens> {
        if let Some(expires_at) = self
            .live_successor_in_grace(&txn, hash, &successor.hash, now)
            .await?
        {
            txn.commit().await.map_err(assistd_store::db_error)?;
            return Ok(self.session_tokens(session, successor.token, expires_at));
        }
        self.revoke_reused_family(txn, session, client, now).await?;
        Err(unauthenticated(
            ErrorReason::RefreshTokenReused,
            "this refresh token was already used; the session has been revoked for safety, sign in again",
        ))
    }

    /// When the token was used within the grace window and its recorded successor is the one
    /// derived now and still unused and unexpired: that successor's expiry.
    async fn live_successor_in_grace(
        &self,
        txn: &DatabaseTransaction,
        hash: &str,
        successor_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let auth = self.inner.store.auth();
        let record = auth.refresh_token(txn, hash).await?.ok_or_else(invalid)?;
        let used_at = record.used_at.unwrap_or(now);
        if now - used_at > chrono_duration(self.inner.config.refresh_grace) {
            return Ok(None);
        }
        let live = match record.successor_hash.as_deref() {
            Some(stored) if stored == successor_hash => auth
                .refresh_token(txn, stored)
                .await?
                .filter(|s| s.used_at.is_none() && s.expires_at > now),
            _ => None,
        };
        Ok(live.map(|live| live.expires_at))
    }

    /// Reuse: whoever holds this token is not the session's rightful client, or the rightful
    /// client lost track. Either way the family is revoked. Of concurrent replays only the one
    /// that revokes writes the audit row.
    async fn revoke_reused_family(
        &self,
        txn: DatabaseTransaction,
        session: &AuthSession,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if self
            .inner
            .store
            .auth()
            .revoke_session(&txn, session.user, session.id, "refresh_token_reused", now)
            .await?
        {
            let mut event = session_event(session, AuditAction::RefreshTokenReuseDetected, client);
            event.outcome = AuditOutcome::Failure;
            self.inner.audit.append(&txn, &event).await?;
        }
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.gate.forget_all();
        Ok(())
    }

    /// The pair handed out for `session`: a fresh access token and `refresh_token`.
    pub(super) fn session_tokens(
        &self,
        session: &AuthSession,
        refresh_token: String,
        refresh_expires_at: DateTime<Utc>,
    ) -> SessionTokens {
        SessionTokens {
            access: self
                .inner
                .tokens
                .issue_for_session(session.user, session.id),
            refresh_token,
            refresh_expires_at,
            session_id: session.id,
        }
    }
}

/// The audit row of a refresh-token event of `session`.
fn session_event(session: &AuthSession, action: AuditAction, client: &ClientInfo) -> AuditEvent {
    AuditEvent {
        actor: Some(session.user),
        action,
        target: format!("session/{}", session.id),
        outcome: AuditOutcome::Success,
        context: client.context.clone(),
        metadata: BTreeMap::new(),
    }
}
