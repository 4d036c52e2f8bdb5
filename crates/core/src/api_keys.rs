//! Users' own provider API keys: validated with the provider before they are stored, sealed
//! under the user's data key, never shown again (only a hint), revealed inside the server when
//! chat or Gmail calls the provider for the user. Every change is audited in the same
//! transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use assistd_crypto::Secret;
use assistd_domain::apikey::{ApiKeyInfo, ApiKeyStatus, Provider, key_hint};
use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::{Clock, Error, ErrorReason, FieldViolation, Result, UserId};
use assistd_gemini::GeminiClient;
use assistd_store::audit::AuditLog;
use assistd_store::{NewApiKey, Store, db_error};

use crate::secrets::SecretSealer;

/// How often at most `last_used` is written when a key is revealed repeatedly.
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// What the provider said about a key.
enum Verdict {
    /// It works.
    Valid,
    /// The provider rejected it; the detail says why, in the provider's words.
    Rejected(String),
    /// The provider could not be asked; the error says why.
    Unreachable(Error),
}

/// Stores, checks, reveals and deletes users' API keys.
#[derive(Clone, Debug)]
pub struct ApiKeyVault {
    store: Store,
    sealer: SecretSealer,
    audit: AuditLog,
    gemini: GeminiClient,
    /// When keys were validated and last used.
    clock: Arc<dyn Clock>,
}

fn missing(provider: Provider) -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::ApiKeyMissing,
        message: format!(
            "no {} API key is stored; add yours with SetApiKey",
            provider_name(provider)
        ),
    }
}

/// A key the provider refused, as the error of a call that needed it.
fn key_invalid(provider: Provider) -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::ApiKeyInvalid,
        message: format!(
            "{name} rejected your API key; set a new one in settings (SetApiKey)",
            name = provider_name(provider)
        ),
    }
}

/// A user's key in the clear for one call, with the stored ciphertext it came from.
pub struct RevealedKey {
    secret: Secret,
    sealed: Vec<u8>,
    provider: Provider,
}

impl RevealedKey {
    /// The key itself. Only for the request header of a provider call.
    #[must_use]
    pub fn expose_secret(&self) -> &Secret {
        &self.secret
    }
}

impl std::fmt::Debug for RevealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedKey")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Gemini => "Gemini",
    }
}

fn not_found(provider: Provider) -> Error {
    Error::NotFound {
        resource: "API key",
        id: provider.as_str().to_owned(),
    }
}

impl ApiKeyVault {
    /// A vault storing keys in `store`, sealed by `sealer`, audited to `audit`, checked with
    /// `gemini`, stamping validations and uses with the time of `clock`.
    #[must_use]
    pub fn new(
        store: &Store,
        sealer: SecretSealer,
        audit: AuditLog,
        gemini: GeminiClient,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store: store.clone(),
            sealer,
            audit,
            gemini,
            clock,
        }
    }

    /// Asks the provider whether `key` works, with its free model listing.
    async fn verdict(&self, provider: Provider, key: &str) -> Verdict {
        match provider {
            Provider::Gemini => {
                let key = match assistd_gemini::ApiKey::new(key.to_owned()) {
                    Ok(key) => key,
                    Err(err) => return Verdict::Rejected(err.to_string()),
                };
                match self.gemini.list_models(&key, Some(1), None).await {
                    Ok(_) => Verdict::Valid,
                    Err(err) if err.rejects_key() => Verdict::Rejected(err.to_string()),
                    Err(err) => Verdict::Unreachable(provider_error(err)),
                }
            }
        }
    }

    /// Validates and stores the user's key for `provider`, replacing any earlier one.
    /// Returns what may be shown of it and whether a key was replaced.
    ///
    /// # Errors
    /// INVALID_ARGUMENT (`API_KEY_INVALID`) when the provider rejects it, and nothing is
    /// stored; UNAVAILABLE or RESOURCE_EXHAUSTED when the provider cannot be asked, unless
    /// `allow_unverified`, in which case it is stored as UNVERIFIED; key-service and database
    /// failures.
    pub async fn set(
        &self,
        user: UserId,
        context: &RequestContext,
        provider: Provider,
        key: Secret,
        allow_unverified: bool,
    ) -> Result<(ApiKeyInfo, bool)> {
        let text = key
            .expose_secret_str()
            .map_err(|_| Error::invalid_field("api_key", "the API key must be ASCII text"))?;
        // A token can outlive its account; refuse before asking the key service for anything.
        if let Err(Error::NotFound { .. }) = self.store.users().get(user).await {
            return Err(Error::Unauthenticated {
                reason: ErrorReason::AccountNotFound,
                message: "the account this access token belongs to no longer exists; sign in again"
                    .into(),
            });
        }
        let (status, detail, validated_at) = match self.verdict(provider, text).await {
            Verdict::Valid => (ApiKeyStatus::Valid, None, Some(self.clock.now())),
            Verdict::Rejected(detail) => {
                self.record_rejection(user, context, provider).await?;
                return Err(rejected(provider, &detail));
            }
            Verdict::Unreachable(_) if allow_unverified => (
                ApiKeyStatus::Unverified,
                Some(format!(
                    "{} could not be reached to check the key",
                    provider_name(provider)
                )),
                None,
            ),
            Verdict::Unreachable(err) => return Err(err),
        };
        // Seal before taking the write lock: unwrapping the data key may call KMS, and on
        // SQLite no other writer should wait for that. The row id the ciphertext is bound to
        // is the existing row's; `put` re-checks it inside the transaction.
        let data_key = self.sealer.data_key(user).await?;
        let repository = self.store.api_keys();
        let existing = repository
            .get(self.store.connection(), user, provider)
            .await?;
        let id = existing.as_ref().map_or_else(uuid::Uuid::now_v7, |e| e.id);
        let sealed = self
            .sealer
            .seal(
                &data_key,
                provider.seal_purpose(),
                &id.to_string(),
                key.expose_secret(),
            )
            .await?;
        let txn = self.store.begin_write().await?;
        let hint = key_hint(text);
        let (stored, replaced) = repository
            .put(
                &txn,
                user,
                NewApiKey {
                    id,
                    provider,
                    sealed,
                    hint: hint.clone(),
                    status,
                    status_detail: detail,
                    validated_at,
                },
            )
            .await?;
        self.audit
            .append(
                &txn,
                &key_event(
                    user,
                    context,
                    provider,
                    AuditAction::ApiKeySet,
                    AuditOutcome::Success,
                    BTreeMap::from([
                        ("hint".to_owned(), hint),
                        ("status".to_owned(), status.as_str().to_owned()),
                        ("replaced".to_owned(), replaced.to_string()),
                    ]),
                ),
            )
            .await?;
        txn.commit().await.map_err(db_error)?;
        Ok((stored.info, replaced))
    }

    /// What may be shown of the user's key for `provider`.
    ///
    /// # Errors
    /// NOT_FOUND when none is stored; the database failed.
    pub async fn get(&self, user: UserId, provider: Provider) -> Result<ApiKeyInfo> {
        self.store
            .api_keys()
            .get(self.store.connection(), user, provider)
            .await?
            .map(|stored| stored.info)
            .ok_or_else(|| not_found(provider))
    }

    /// What may be shown of each of the user's keys.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list(&self, user: UserId) -> Result<Vec<ApiKeyInfo>> {
        Ok(self
            .store
            .api_keys()
            .list(user)
            .await?
            .into_iter()
            .map(|stored| stored.info)
            .collect())
    }

    /// Checks the stored key with the provider again and records the result.
    ///
    /// # Errors
    /// NOT_FOUND when none is stored; UNAVAILABLE or RESOURCE_EXHAUSTED when the provider
    /// cannot be asked (the stored status is left as it was); key-service and database
    /// failures. A rejected key is not an error: the returned status says INVALID.
    pub async fn validate(
        &self,
        user: UserId,
        context: &RequestContext,
        provider: Provider,
    ) -> Result<ApiKeyInfo> {
        let (stored, secret) = self
            .open(user, provider)
            .await?
            .ok_or_else(|| not_found(provider))?;
        let text = secret
            .expose_secret_str()
            .map_err(|_| Error::internal("a stored API key is not UTF-8"))?;
        let (status, detail) = match self.verdict(provider, text).await {
            Verdict::Valid => (ApiKeyStatus::Valid, None),
            Verdict::Rejected(detail) => (
                ApiKeyStatus::Invalid,
                Some(format!(
                    "{} rejected this API key: {detail}",
                    provider_name(provider)
                )),
            ),
            Verdict::Unreachable(err) => return Err(err),
        };
        drop(secret);
        let txn = self.store.begin_write().await?;
        // Only the key that was checked gets the verdict: if it was replaced meanwhile, the new
        // key keeps its own status and is returned as it stands.
        let Some(updated) = self
            .store
            .api_keys()
            .set_status(
                &txn,
                user,
                provider,
                &stored.sealed,
                status,
                detail,
                Some(self.clock.now()),
            )
            .await?
        else {
            drop(txn);
            return self.get(user, provider).await;
        };
        self.audit
            .append(
                &txn,
                &key_event(
                    user,
                    context,
                    provider,
                    AuditAction::ApiKeyValidated,
                    if status == ApiKeyStatus::Valid {
                        AuditOutcome::Success
                    } else {
                        AuditOutcome::Failure
                    },
                    BTreeMap::from([("status".to_owned(), status.as_str().to_owned())]),
                ),
            )
            .await?;
        txn.commit().await.map_err(db_error)?;
        Ok(updated.info)
    }

    /// Deletes the user's key for `provider`.
    ///
    /// # Errors
    /// NOT_FOUND when none is stored; the database failed.
    pub async fn delete(
        &self,
        user: UserId,
        context: &RequestContext,
        provider: Provider,
    ) -> Result<()> {
        let txn = self.store.begin_write().await?;
        if !self.store.api_keys().delete(&txn, user, provider).await? {
            return Err(not_found(provider));
        }
        self.audit
            .append(
                &txn,
                &key_event(
                    user,
                    context,
                    provider,
                    AuditAction::ApiKeyDeleted,
                    AuditOutcome::Success,
                    BTreeMap::new(),
                ),
            )
            .await?;
        txn.commit().await.map_err(db_error)
    }

    /// The user's key for `provider`, in the clear, for calling the provider on their behalf;
    /// stamps it as used. Only server code calls this; no RPC returns its result.
    ///
    /// # Errors
    /// FAILED_PRECONDITION (`API_KEY_MISSING`) when none is stored; key-service and database
    /// failures.
    pub async fn reveal(&self, user: UserId, provider: Provider) -> Result<Secret> {
        let (_, secret) = self
            .open(user, provider)
            .await?
            .ok_or_else(|| missing(provider))?;
        self.store
            .api_keys()
            .touch_used(user, provider, self.clock.now(), LAST_USED_RESOLUTION)
            .await?;
        Ok(secret)
    }

    /// The user's key for `provider` for a model call, refusing one already known to be
    /// rejected; stamps it as used. The returned handle names the stored key, so that
    /// [`ApiKeyVault::mark_rejected`] can mark exactly this key if the provider refuses it.
    ///
    /// # Errors
    /// FAILED_PRECONDITION `API_KEY_MISSING` when none is stored, `API_KEY_INVALID` when the
    /// stored key is marked INVALID; key-service and database failures.
    pub async fn reveal_usable(&self, user: UserId, provider: Provider) -> Result<RevealedKey> {
        let (stored, secret) = self
            .open(user, provider)
            .await?
            .ok_or_else(|| missing(provider))?;
        if stored.info.status == ApiKeyStatus::Invalid {
            return Err(key_invalid(provider));
        }
        self.store
            .api_keys()
            .touch_used(user, provider, self.clock.now(), LAST_USED_RESOLUTION)
            .await?;
        Ok(RevealedKey {
            secret,
            sealed: stored.sealed,
            provider,
        })
    }

    /// Marks the key behind `key` INVALID because the provider refused it during use
    /// (`detail` in the provider's words), audited in the same transaction. A key replaced
    /// meanwhile keeps its own status. Returns the error to answer with: FAILED_PRECONDITION
    /// `API_KEY_INVALID`.
    ///
    /// # Errors
    /// The database failed (that error is returned instead).
    pub async fn mark_rejected(
        &self,
        user: UserId,
        context: &RequestContext,
        key: &RevealedKey,
        detail: &str,
    ) -> Result<Error> {
        let provider = key.provider;
        let txn = self.store.begin_write().await?;
        let updated = self
            .store
            .api_keys()
            .set_status(
                &txn,
                user,
                provider,
                &key.sealed,
                ApiKeyStatus::Invalid,
                Some(format!(
                    "{} rejected this API key: {detail}",
                    provider_name(provider)
                )),
                Some(self.clock.now()),
            )
            .await?;
        if updated.is_some() {
            self.audit
                .append(
                    &txn,
                    &key_event(
                        user,
                        context,
                        provider,
                        AuditAction::ApiKeyValidated,
                        AuditOutcome::Failure,
                        BTreeMap::from([
                            (
                                "status".to_owned(),
                                ApiKeyStatus::Invalid.as_str().to_owned(),
                            ),
                            ("during".to_owned(), "use".to_owned()),
                        ]),
                    ),
                )
                .await?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(key_invalid(provider))
    }

    /// Records a refused attempt to store a key (the provider rejected it), in its own
    /// transaction: nothing else is written.
    async fn record_rejection(
        &self,
        user: UserId,
        context: &RequestContext,
        provider: Provider,
    ) -> Result<()> {
        let txn = self.store.begin_write().await?;
        self.audit
            .append(
                &txn,
                &key_event(
                    user,
                    context,
                    provider,
                    AuditAction::ApiKeySet,
                    AuditOutcome::Failure,
                    BTreeMap::from([("reason".to_owned(), "API_KEY_INVALID".to_owned())]),
                ),
            )
            .await?;
        txn.commit().await.map_err(db_error)
    }

    /// The stored key row and the key in the clear, if the user has one.
    async fn open(
        &self,
        user: UserId,
        provider: Provider,
    ) -> Result<Option<(assistd_store::StoredApiKey, Secret)>> {
        let Some(stored) = self
            .store
            .api_keys()
            .get(self.store.connection(), user, provider)
            .await?
        else {
            return Ok(None);
        };
        let secret = self
            .sealer
            .open(
                user,
                provider.seal_purpose(),
                &stored.id.to_string(),
                &stored.sealed,
            )
            .await?;
        Ok(Some((stored, secret)))
    }
}

/// The error for a key the provider rejected: INVALID_ARGUMENT on `api_key`, with the
/// provider's words (which never contain the key).
fn rejected(provider: Provider, detail: &str) -> Error {
    Error::InvalidArgument {
        violations: vec![FieldViolation::new(
            "api_key",
            format!(
                "{} rejected this API key: {detail}",
                provider_name(provider)
            ),
        )],
        reason: Some(ErrorReason::ApiKeyInvalid),
    }
}

/// Maps a provider failure that is not about the key.
fn provider_error(err: assistd_gemini::Error) -> Error {
    match err {
        assistd_gemini::Error::RateLimited { retry_after, .. } => Error::ResourceExhausted {
            reason: ErrorReason::ProviderRateLimited,
            message: "Gemini answered that the quota of this key is exhausted; try again later"
                .into(),
            retry_after,
        },
        other => {
            tracing::warn!(error = %other, "Gemini could not check an API key");
            Error::Unavailable {
                reason: ErrorReason::ProviderUnavailable,
                message: "Gemini could not be reached to check the key; try again, or store it unverified with allow_unverified".into(),
                retry_after: None,
            }
        }
    }
}

/// The audit row of an action on the user's key for `provider`.
fn key_event(
    user: UserId,
    context: &RequestContext,
    provider: Provider,
    action: AuditAction,
    outcome: AuditOutcome,
    metadata: BTreeMap<String, String>,
) -> AuditEvent {
    AuditEvent {
        actor: Some(user),
        action,
        target: format!("api_key/{}", provider.as_str()),
        outcome,
        context: context.clone(),
        metadata,
    }
}
