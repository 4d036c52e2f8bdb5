//! What the server opens before it serves: the database, the access-token keys, the keyring
//! and the secret sealer built on it, and the audit log. The admin commands open the same
//! through the public functions here.

use std::sync::Arc;

use anyhow::Context as _;
use assistd_core::SecretSealer;
use assistd_crypto::{
    CachePolicy, DataKeyCache, KeyEncryptionKey, Keyring, KmsKek, KmsSettings, LocalKek,
};
use assistd_domain::SystemClock;
use assistd_identity::{AccessTokenSettings, AccessTokens, SigningKey};
use assistd_store::Store;
use assistd_store::audit::{AuditChainKey, AuditLog};

use crate::config::{Config, KekConfig, KekProvider};
use crate::metrics::{MeteredKek, UpstreamMetrics};

/// Creates the data directory with mode 0700 if it is missing.
fn create_data_dir(config: &Config) -> anyhow::Result<()> {
    assistd_domain::secret_file::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))
}

/// Opens the database configured in `config` (creating the data directory first).
///
/// # Errors
/// The data directory cannot be created or the database cannot be reached.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    create_data_dir(config)?;
    Store::connect(&config.database_settings())
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                assistd_store::redact_url_password(&config.database_url())
            )
        })
}

/// The access-token signing keys: the current one (generated on first start) and the
/// previous ones that still verify.
pub(super) fn signing_keys(config: &Config) -> anyhow::Result<(SigningKey, Vec<SigningKey>)> {
    create_data_dir(config)?;
    let current = SigningKey::load_or_generate(&config.signing_key_file())?;
    let previous = config
        .auth
        .previous_signing_key_files
        .iter()
        .map(|path| SigningKey::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((current, previous))
}

/// Loads (or on first start generates) the access-token keys configured in `config`.
///
/// # Errors
/// A key file is unreadable or malformed.
pub fn access_tokens(config: &Config) -> anyhow::Result<AccessTokens> {
    let (current, previous) = signing_keys(config)?;
    Ok(access_tokens_with(config, current, previous))
}

pub(super) fn access_tokens_with(
    config: &Config,
    current: SigningKey,
    previous: Vec<SigningKey>,
) -> AccessTokens {
    AccessTokens::new(
        AccessTokenSettings {
            issuer: config.auth.issuer.clone(),
            audience: config.auth.audience.clone(),
            ttl: config.auth.access_token_ttl,
        },
        current,
        previous,
        Arc::new(SystemClock),
    )
}

/// The key-encryption key `kek` describes; a KMS key's calls are counted in `upstream`.
async fn key_encryption_key(
    config: &Config,
    kek: &KekConfig,
    upstream: Option<&Arc<UpstreamMetrics>>,
) -> anyhow::Result<Arc<dyn KeyEncryptionKey>> {
    Ok(match kek.provider {
        KekProvider::Local if !kek.master_key.is_empty() => {
            Arc::new(LocalKek::from_base64(&kek.master_key).context("keys: master_key")?)
        }
        KekProvider::Local => {
            let path = config.master_key_file(kek);
            Arc::new(
                LocalKek::load_or_generate(&path)
                    .with_context(|| format!("keys: master key file {}", path.display()))?,
            )
        }
        KekProvider::Kms => {
            let mut settings = KmsSettings::new(kek.kms_key_id.clone());
            settings.region = Some(kek.kms_region.clone()).filter(|r| !r.is_empty());
            settings.endpoint_url = Some(kek.kms_endpoint.clone()).filter(|e| !e.is_empty());
            let kms: Arc<dyn KeyEncryptionKey> = Arc::new(KmsKek::connect(settings).await);
            match upstream {
                Some(upstream) => Arc::new(MeteredKek::new(kms, Arc::clone(upstream), "kms")),
                None => kms,
            }
        }
    })
}

/// The keyring configured in `config`: the current KEK and every previous one.
///
/// # Errors
/// A key file is unreadable or a key malformed.
pub async fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    keyring_with(config, None).await
}

async fn keyring_with(
    config: &Config,
    upstream: Option<&Arc<UpstreamMetrics>>,
) -> anyhow::Result<Keyring> {
    create_data_dir(config)?;
    let mut keyring = Keyring::new(key_encryption_key(config, &config.keys.kek, upstream).await?);
    for previous in &config.keys.previous {
        keyring = keyring.with_previous(key_encryption_key(config, previous, upstream).await?);
    }
    Ok(keyring)
}

/// The audit log of `store`, keyed with the configured chain key.
///
/// # Errors
/// The chain key file is unreadable or malformed.
pub fn audit_log(config: &Config, store: &Store) -> anyhow::Result<AuditLog> {
    create_data_dir(config)?;
    let key = AuditChainKey::load_or_generate(&config.audit_chain_key_file())?;
    Ok(AuditLog::new(store, key))
}

/// The secret sealer: keyring, data key cache and store.
///
/// # Errors
/// The keyring cannot be built.
pub async fn secret_sealer(config: &Config, store: &Store) -> anyhow::Result<SecretSealer> {
    secret_sealer_with(config, store, None).await
}

pub(super) async fn secret_sealer_with(
    config: &Config,
    store: &Store,
    upstream: Option<&Arc<UpstreamMetrics>>,
) -> anyhow::Result<SecretSealer> {
    let keyring = Arc::new(keyring_with(config, upstream).await?);
    let cache = Arc::new(DataKeyCache::new(
        keyring.clone(),
        CachePolicy {
            max_age: config.keys.cache_max_age,
            max_uses: config.keys.cache_max_uses,
        },
    ));
    Ok(SecretSealer::new(store, keyring, cache))
}
