//! The user's own audit trail, as `ListAuditEvents` shows it: the rows the user acted in,
//! newest first. Writing rows is not here: each operation appends its row in the transaction
//! of its change (see `assistd_store::audit`).

use assistd_domain::audit::{AuditFilter, AuditRecord};
use assistd_domain::{Result, UserId};
use assistd_store::audit::AuditLog;

/// Reads a user's audit trail.
#[derive(Clone, Debug)]
pub struct AuditTrail {
    log: AuditLog,
}

impl AuditTrail {
    /// Reads through `log`.
    #[must_use]
    pub const fn new(log: AuditLog) -> Self {
        Self { log }
    }

    /// The user's own events, newest first: at most `limit` of those matching `filter`, older
    /// than the event numbered `before_seq` when given. Nobody else's rows are ever read.
    ///
    /// # Errors
    /// The database failed.
    pub async fn events(
        &self,
        user: UserId,
        before_seq: Option<i64>,
        limit: u64,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>> {
        self.log
            .list_for_user(user, before_seq, limit, filter)
            .await
    }
}
