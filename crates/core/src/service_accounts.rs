//! Service accounts: creating, listing and revoking them (operators), and authenticating the
//! calls services make with the tokens they sign (the bearer layer).
//!
//! Nothing about an account is remembered between calls: each call reads its row, so a
//! revocation takes effect on the next call on every replica. That read is one query on
//! primary keys, whatever the length of the account's user list: the row, whether the named
//! user is on the list, and whether that user exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::service_account::{NewServiceAccount, ServiceAccount, UserScope};
use assistd_domain::{Clock, Error, ErrorReason, FieldViolation, Result, ServiceAccountId, UserId};
use assistd_identity::{SigningKey, TokenError, verify_service_token};
use assistd_store::audit::AuditLog;
use assistd_store::{Store, db_error};

/// The metadata key that names the user a service call is for.
pub const ON_BEHALF_OF_METADATA: &str = "x-assistd-on-behalf-of";

/// A new account and its private key, which exists nowhere else: show it once.
pub struct CreatedServiceAccount {
    /// The stored account.
    pub account: ServiceAccount,
    /// Its private key. Secret material: hand it to the operator, never log it.
    pub private_key: SigningKey,
}

/// A service call that may go ahead: who calls, for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCall {
    /// The calling account.
    pub account: ServiceAccountId,
    /// Its name, for the audit row.
    pub name: String,
    /// The user the call is for.
    pub user: UserId,
}

/// Service accounts over `store`, audited to `audit`.
#[derive(Clone)]
pub struct ServiceAccounts {
    store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    audience: String,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ServiceAccounts {
    /// Accounts in `store`; their tokens must name `audience` (the access-token audience).
    #[must_use]
    pub fn new(store: Store, audit: AuditLog, clock: Arc<dyn Clock>, audience: String) -> Self {
        Self {
            store,
            audit,
            clock,
            audience,
        }
    }

    /// Creates an account with a fresh Ed25519 key pair, audited.
    ///
    /// # Errors
    /// INVALID_ARGUMENT when the name is taken or a listed user has no account; the database
    /// failed.
    pub async fn create(&self, new: &NewServiceAccount) -> Result<CreatedServiceAccount> {
        let private_key = SigningKey::generate();
        let txn = self.store.begin_write().await?;
        let account = self
            .store
            .service_accounts()
            .create(&txn, new, private_key.public_key(), self.clock.now())
            .await?;
        let users = match &account.users {
            UserScope::Any => "any".to_owned(),
            UserScope::Listed(users) => users.len().to_string(),
        };
        self.audit
            .append(
                &txn,
                &admin_event(
                    AuditAction::ServiceAccountCreated,
                    account.id,
                    BTreeMap::from([
                        ("name".to_owned(), account.name.clone()),
                        (
                            "allowed_methods".to_owned(),
                            account.allowed_methods.join(" "),
                        ),
                        ("users".to_owned(), users),
                    ]),
                ),
            )
            .await?;
        txn.commit().await.map_err(db_error)?;
        Ok(CreatedServiceAccount {
            account,
            private_key,
        })
    }

    /// Every account, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list(&self) -> Result<Vec<ServiceAccount>> {
        self.store.service_accounts().list().await
    }

    /// Revokes the account: its next call, on any replica, is refused. Audited.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such account; the database failed.
    pub async fn revoke(&self, id: ServiceAccountId) -> Result<()> {
        let txn = self.store.begin_write().await?;
        self.store
            .service_accounts()
            .revoke(&txn, id, self.clock.now())
            .await?;
        self.audit
            .append(
                &txn,
                &admin_event(AuditAction::ServiceAccountRevoked, id, BTreeMap::new()),
            )
            .await?;
        txn.commit().await.map_err(db_error)
    }

    /// Checks a call a service makes to `method` with `token`, signed by `account`, for the
    /// user named in `on_behalf_of` (the [`ON_BEHALF_OF_METADATA`] value). Refusals after the
    /// token verified are audited in the named user's trail when there is one.
    ///
    /// # Errors
    /// UNAUTHENTICATED for an unknown account, a bad or expired token (ACCESS_TOKEN_INVALID /
    /// ACCESS_TOKEN_EXPIRED) or a revoked account (SERVICE_ACCOUNT_REVOKED);
    /// PERMISSION_DENIED when the account may not call `method` (RPC_NOT_ALLOWED) or act for
    /// the user (USER_NOT_ALLOWED); INVALID_ARGUMENT without a well-formed user id; NOT_FOUND
    /// for a user without an account; the database failed.
    pub async fn authorize(
        &self,
        token: &str,
        account: ServiceAccountId,
        method: &str,
        on_behalf_of: Option<&str>,
        context: &RequestContext,
    ) -> Result<ServiceCall> {
        let invalid = |message: String| Error::Unauthenticated {
            reason: ErrorReason::AccessTokenInvalid,
            message,
        };
        // Read before the token is checked, so that one lookup answers everything; a caller
        // whose token fails still hears about the token first.
        let user = on_behalf_of
            .ok_or_else(|| {
                Error::from(FieldViolation::new(
                    ON_BEHALF_OF_METADATA,
                    "a service call names the user it is for in this metadata",
                ))
            })
            .and_then(|named| {
                named.trim().parse::<UserId>().map_err(|_| {
                    FieldViolation::new(ON_BEHALF_OF_METADATA, "must be a user id (a UUID)").into()
                })
            });
        let found = self
            .store
            .service_accounts()
            .get_acting_for(account, user.as_ref().ok().copied())
            .await?
            .ok_or_else(|| invalid(TokenError::UnknownKey.to_string()))?;
        verify_service_token(
            token,
            account,
            &found.public_key,
            &self.audience,
            self.clock.now(),
        )
        .map_err(|err| match err {
            TokenError::Expired => Error::Unauthenticated {
                reason: ErrorReason::AccessTokenExpired,
                message: "the service token has expired; sign a new one".into(),
            },
            other => invalid(other.to_string()),
        })?;
        if !found.is_active() {
            return Err(Error::Unauthenticated {
                reason: ErrorReason::ServiceAccountRevoked,
                message: format!("service account {} was revoked", found.name),
            });
        }
        let user = user?;
        let call = ServiceCall {
            account,
            name: found.name.clone(),
            user,
        };
        let refusal = if !found.allows_method(method) {
            Some(Error::PermissionDenied {
                reason: ErrorReason::RpcNotAllowed,
                message: format!("service account {} may not call {method}", found.name),
            })
        } else if !found.user_allowed {
            Some(Error::PermissionDenied {
                reason: ErrorReason::UserNotAllowed,
                message: format!("service account {} may not act for user {user}", found.name),
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // Listed users exist (their rows go with their account), so this writes into a
            // real trail; a user the account may not act for sees nothing of it.
            if found.user_allowed {
                self.record(&call, method, AuditOutcome::Failure, context)
                    .await?;
            }
            return Err(refusal);
        }
        // An account that may act for anyone still needs the user to exist.
        if !found.user_exists {
            return Err(Error::NotFound {
                resource: "user",
                id: user.to_string(),
            });
        }
        Ok(call)
    }

    /// Records in the user's audit trail that the service called `method` for them.
    ///
    /// # Errors
    /// The database failed (the call must then not go ahead).
    pub async fn record(
        &self,
        call: &ServiceCall,
        method: &str,
        outcome: AuditOutcome,
        context: &RequestContext,
    ) -> Result<()> {
        let txn = self.store.begin_write().await?;
        self.audit
            .append(
                &txn,
                &AuditEvent {
                    actor: Some(call.user),
                    action: AuditAction::ServiceCall,
                    target: format!("service_account/{}", call.account),
                    outcome,
                    context: context.clone(),
                    metadata: BTreeMap::from([
                        ("service_account_id".to_owned(), call.account.to_string()),
                        ("service_account_name".to_owned(), call.name.clone()),
                        ("method".to_owned(), method.to_owned()),
                    ]),
                },
            )
            .await?;
        txn.commit().await.map_err(db_error)
    }
}

/// The audit row of an operator's action on a service account.
fn admin_event(
    action: AuditAction,
    id: ServiceAccountId,
    metadata: BTreeMap<String, String>,
) -> AuditEvent {
    AuditEvent {
        actor: None,
        action,
        target: format!("service_account/{id}"),
        outcome: AuditOutcome::Success,
        context: RequestContext::default(),
        metadata,
    }
}
