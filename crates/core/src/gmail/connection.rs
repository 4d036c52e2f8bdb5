//! GetConnection and Disconnect: the state of the link, read from the stored Google grant
//! and the connection row, and unlinking.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditOutcome, RequestContext};
use assistd_domain::gmail::{ConnectionState, GmailConnection, SyncFailure};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_store::GmailConnectionState;

use super::GmailService;
use crate::auth::GoogleGrant;

/// The state the stored grant and connection row add up to.
pub(super) fn state_of(
    grant: Option<&GoogleGrant>,
    row: Option<&assistd_store::GmailConnection>,
) -> ConnectionState {
    let Some(grant) = grant.filter(|g| g.has_refresh_token) else {
        return ConnectionState::NotConnected;
    };
    match row.map(|r| r.state) {
        Some(GmailConnectionState::NotConnected) => ConnectionState::NotConnected,
        Some(GmailConnectionState::ReauthRequired) => ConnectionState::ReauthRequired,
        Some(GmailConnectionState::Connected)
            if grant.reauth_required || !grant.has_gmail_scope() =>
        {
            ConnectionState::ReauthRequired
        }
        Some(GmailConnectionState::Connected) => ConnectionState::Connected,
        None if grant.has_gmail_scope() && grant.reauth_required => ConnectionState::ReauthRequired,
        None if grant.has_gmail_scope() => ConnectionState::Connected,
        None => ConnectionState::NotConnected,
    }
}

/// Why a sync cannot start, from the stored state alone; `None` when it may.
pub(super) fn sync_precondition(
    grant: Option<&GoogleGrant>,
    row: Option<&assistd_store::GmailConnection>,
) -> Option<Error> {
    let not_connected = || Error::FailedPrecondition {
        reason: ErrorReason::GmailNotConnected,
        message: "Gmail is not connected: sign in with request_gmail_access to connect it".into(),
    };
    let Some(grant) = grant.filter(|g| g.has_refresh_token) else {
        return Some(not_connected());
    };
    if row.is_some_and(|r| r.state == GmailConnectionState::NotConnected) {
        return Some(not_connected());
    }
    if grant.reauth_required {
        return Some(super::gmail_error(
            assistd_gmail::GmailError::ReauthRequired,
        ));
    }
    let row_needs_reauth = row.is_some_and(|r| r.state == GmailConnectionState::ReauthRequired);
    if !grant.has_gmail_scope()
        || (row_needs_reauth
            && row
                .and_then(|r| r.last_error.as_ref())
                .is_some_and(|e| e.reason == ErrorReason::GmailScopeMissing.as_str()))
    {
        return Some(super::gmail_error(assistd_gmail::GmailError::ScopeMissing));
    }
    if row_needs_reauth {
        return Some(super::gmail_error(
            assistd_gmail::GmailError::ReauthRequired,
        ));
    }
    None
}

impl GmailService {
    /// The user's Gmail link and sync state.
    ///
    /// # Errors
    /// The database failed.
    pub async fn connection(&self, user: UserId) -> Result<GmailConnection> {
        let grant = self.inner.auth.google_grant(user).await?;
        let gmail = self.inner.store.gmail();
        let row = gmail.connection(user).await?;
        let count = gmail.message_count(user).await?;
        Ok(self.describe(grant.as_ref(), row.as_ref(), count))
    }

    pub(super) fn describe(
        &self,
        grant: Option<&GoogleGrant>,
        row: Option<&assistd_store::GmailConnection>,
        synced_message_count: u64,
    ) -> GmailConnection {
        let state = state_of(grant, row);
        let now = self.now();
        let connected = state != ConnectionState::NotConnected;
        GmailConnection {
            state,
            email_address: row
                .and_then(|r| r.email_address.clone())
                .unwrap_or_default(),
            scopes: if connected {
                grant.map(|g| g.scopes.clone()).unwrap_or_default()
            } else {
                Vec::new()
            },
            connected_at: if connected {
                row.and_then(|r| r.connected_at)
                    .or_else(|| grant.map(|g| g.updated_at))
            } else {
                None
            },
            last_sync_at: row.and_then(|r| r.last_sync_at),
            history_id: row.and_then(|r| r.history_id),
            synced_message_count,
            sync_in_progress: row
                .and_then(|r| r.sync_lease.as_ref())
                .is_some_and(|lease| lease.expires_at > now),
            last_sync_error: row
                .and_then(|r| r.last_error.as_ref())
                .map(|e| SyncFailure {
                    reason: e.reason.clone(),
                    message: e.message.clone(),
                    at: e.at,
                }),
        }
    }

    /// Unlinks Gmail: revokes the grant at Google (best effort), destroys the stored Google
    /// tokens, stops syncing, and unless `keep_synced_mail` deletes the synced mail, its
    /// search terms and the mail key. Succeeds when not connected.
    ///
    /// # Errors
    /// The database or the key service failed.
    pub async fn disconnect(
        &self,
        user: UserId,
        keep_synced_mail: bool,
        context: &RequestContext,
    ) -> Result<GmailConnection> {
        let had_tokens = self.inner.auth.revoke_google_grant(user).await?;
        let now = self.now();
        let gmail = self.inner.store.gmail();
        let had_connection = gmail.disconnect(user, !keep_synced_mail, now).await?;
        if had_tokens || had_connection {
            self.inner
                .auth
                .record_google_event(
                    user,
                    AuditAction::GmailDisconnected,
                    AuditOutcome::Success,
                    context,
                    BTreeMap::from([(
                        "synced_mail".to_owned(),
                        if keep_synced_mail { "kept" } else { "deleted" }.to_owned(),
                    )]),
                )
                .await;
        }
        self.connection(user).await
    }
}
