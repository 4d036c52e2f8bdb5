//! Helpers shared by the tests; the KMS peers (moto, the fault-injecting endpoint) come from
//! `assistd_testkit::kms`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use assistd_crypto::{CryptoError, DataKey, KeyEncryptionKey, KmsKek, KmsSettings, WrappedDataKey};
use assistd_domain::UserId;
use assistd_testkit::kms::sdk_config;

/// A KEK that counts `unwrap` calls of the KEK it wraps and can make each one slow, so tests
/// can see how many times the cache really asked.
pub(crate) struct CountingKek {
    inner: Arc<dyn KeyEncryptionKey>,
    unwraps: AtomicUsize,
    delay: Duration,
}

impl CountingKek {
    pub(crate) fn new(inner: Arc<dyn KeyEncryptionKey>, delay: Duration) -> Self {
        Self {
            inner,
            unwraps: AtomicUsize::new(0),
            delay,
        }
    }

    pub(crate) fn unwraps(&self) -> usize {
        self.unwraps.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for CountingKek {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn wrap(&self, owner: UserId, key: &DataKey) -> Result<WrappedDataKey, CryptoError> {
        self.inner.wrap(owner, key).await
    }

    async fn unwrap(
        &self,
        owner: UserId,
        wrapped: &WrappedDataKey,
    ) -> Result<DataKey, CryptoError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.unwrap(owner, wrapped).await
    }
}

/// Settings for tests: one attempt (no retry delays) and short timeouts.
pub(crate) fn test_settings(key_id: &str) -> KmsSettings {
    KmsSettings {
        max_attempts: 1,
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(10),
        ..KmsSettings::new(key_id)
    }
}

/// A KMS KEK for `key_id` talking to `endpoint` (moto or a `KmsProxy`), with the testkit's
/// SDK config and [`test_settings`].
pub(crate) async fn kms_kek(endpoint: &str, key_id: &str) -> KmsKek {
    KmsKek::from_sdk_config(&sdk_config(endpoint).await, &test_settings(key_id))
}

/// `bytes` with byte `index` XORed with `mask`.
pub(crate) fn flipped(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= mask;
    out
}
