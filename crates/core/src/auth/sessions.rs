//! A user's own sessions: listing them, revoking one or all others, and signing out. Every
//! revocation clears this replica's [`SessionGate`](super::SessionGate) at once.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::auth::AuthSession;
use assistd_domain::{AuthSessionId, Error, Result, UserId};
use chrono::{DateTime, Utc};

use super::AuthService;

impl AuthService {
    /// Revokes the caller's session. A token minted outside any session has nothing to sign
    /// out of.
    ///
    /// # Errors
    /// The database failed.
    pub async fn sign_out(
        &self,
        user: UserId,
        session: Option<AuthSessionId>,
        context: &RequestContext,
    ) -> Result<()> {
        let Some(session) = session else {
            return Ok(());
        };
        self.revoke(user, session, AuditAction::SignedOut, "signed_out", context)
            .await
            .map(|_| ())
    }

    /// The user's active sessions, newest first, strictly after the `after` cursor (creation
    /// time, id) when given, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_sessions(
        &self,
        user: UserId,
        after: Option<(DateTime<Utc>, AuthSessionId)>,
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
        current: Option<AuthSessionId>,
        session: AuthSessionId,
        context: &RequestContext,
    ) -> Result<()> {
        // Revoking the session one is calling from is signing out, and audited as such.
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
        current: Option<AuthSessionId>,
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
            let event = AuditEvent {
                actor: Some(user),
                action: AuditAction::SessionRevoked,
                target: "session/*".into(),
                outcome: AuditOutcome::Success,
                context: context.clone(),
                metadata: BTreeMap::from([("count".to_owned(), count.to_string())]),
            };
            self.inner.audit.append(&txn, &event).await?;
        }
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.gate.forget_all();
        Ok(count)
    }

    /// Revokes one active session of the user with its audit row; `false` when there was no
    /// such session.
    async fn revoke(
        &self,
        user: UserId,
        session: AuthSessionId,
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
            let event = AuditEvent {
                actor: Some(user),
                action,
                target: format!("session/{session}"),
                outcome: AuditOutcome::Success,
                context: context.clone(),
                metadata: BTreeMap::new(),
            };
            self.inner.audit.append(&txn, &event).await?;
        }
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.gate.forget_all();
        Ok(revoked)
    }
}
