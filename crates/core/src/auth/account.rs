//! The caller's account: reading it, changing the display name, and deleting it with
//! everything it owns.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::auth::User;
use assistd_domain::{Error, ErrorReason, FieldViolation, Result, UserId};
use chrono::{DateTime, Utc};

use super::{AuthService, unauthenticated};

impl AuthService {
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
        let event = AuditEvent {
            actor: Some(user),
            action: AuditAction::ProfileUpdated,
            target: format!("user/{user}"),
            outcome: AuditOutcome::Success,
            context: context.clone(),
            metadata: BTreeMap::from([("fields".to_owned(), "display_name".to_owned())]),
        };
        self.inner.audit.append(&txn, &event).await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        Ok(updated)
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
                violations: vec![FieldViolation::new(
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
        let event = AuditEvent {
            actor: Some(user),
            action: AuditAction::AccountDeleted,
            target: format!("user/{user}"),
            outcome: AuditOutcome::Success,
            context: context.clone(),
            metadata: BTreeMap::new(),
        };
        self.inner.audit.append(&txn, &event).await?;
        txn.commit().await.map_err(assistd_store::db_error)?;
        self.inner.sealer.cache().forget_user(user);
        self.inner.gate.forget_all();
        Ok(now)
    }
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

/// A valid token whose account is gone is a sign-in problem, not a missing resource: the
/// client must sign in again.
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
}
