//! The current KEK and the ones before it.

use std::collections::HashMap;
use std::sync::Arc;

use assistd_domain::UserId;

use crate::{CryptoError, DataKey, KeyEncryptionKey, WrappedDataKey};

/// The KEKs this process knows: the current one, which wraps every new data key, and previous
/// ones, which only unwrap keys stored before a rotation.
///
/// A `Keyring` is itself a [`KeyEncryptionKey`] (its id is the current KEK's), so a
/// [`DataKeyCache`](crate::DataKeyCache) over a keyring opens keys wrapped by any of them.
pub struct Keyring {
    current: Arc<dyn KeyEncryptionKey>,
    by_id: HashMap<String, Arc<dyn KeyEncryptionKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&str> = self.by_id.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("Keyring")
            .field("current", &self.current.id())
            .field("known", &ids)
            .finish()
    }
}

impl Keyring {
    /// A keyring whose current (and so far only) KEK is `current`.
    pub fn new(current: Arc<dyn KeyEncryptionKey>) -> Self {
        let mut by_id = HashMap::new();
        by_id.insert(current.id().to_owned(), Arc::clone(&current));
        Self { current, by_id }
    }

    /// Adds a previous KEK, used only to unwrap keys it wrapped. Adding the current KEK again
    /// changes nothing.
    #[must_use]
    pub fn with_previous(mut self, kek: Arc<dyn KeyEncryptionKey>) -> Self {
        self.by_id.entry(kek.id().to_owned()).or_insert(kek);
        self
    }

    /// The KEK that wraps new keys.
    #[must_use]
    pub fn current(&self) -> &Arc<dyn KeyEncryptionKey> {
        &self.current
    }

    /// The KEK named `kek_id`.
    ///
    /// # Errors
    /// [`CryptoError::UnknownKek`] when it is not configured.
    pub fn get(&self, kek_id: &str) -> Result<&Arc<dyn KeyEncryptionKey>, CryptoError> {
        self.by_id
            .get(kek_id)
            .ok_or_else(|| CryptoError::UnknownKek {
                kek_id: kek_id.to_owned(),
            })
    }

    /// Whether `wrapped` is already wrapped by the current KEK (rotation skips it).
    #[must_use]
    pub fn is_current(&self, wrapped: &WrappedDataKey) -> bool {
        wrapped.kek_id() == self.current.id()
    }

    /// Re-wraps `owner`'s data key under the current KEK, without touching anything sealed
    /// with it. Returns `wrapped` unchanged when it is already current, so running a rotation
    /// again is harmless. Before returning a new wrapping it unwraps it once more and checks
    /// it yields the same key: a rotation must never store a wrapped key that does not open.
    ///
    /// # Errors
    /// The old KEK is unknown, unavailable or refuses; the wrapped key does not open; the
    /// current KEK is unavailable or refuses; or the check fails.
    pub async fn rewrap(
        &self,
        owner: UserId,
        wrapped: &WrappedDataKey,
    ) -> Result<WrappedDataKey, CryptoError> {
        if self.is_current(wrapped) {
            return Ok(wrapped.clone());
        }
        let key = self.get(wrapped.kek_id())?.unwrap(owner, wrapped).await?;
        let rewrapped = self.current.wrap(owner, &key).await?;
        let check = self.current.unwrap(owner, &rewrapped).await?;
        if !check.same_as(&key) {
            return Err(CryptoError::Internal(
                "a re-wrapped data key did not unwrap to the same key".to_owned(),
            ));
        }
        Ok(rewrapped)
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for Keyring {
    fn id(&self) -> &str {
        self.current.id()
    }

    async fn generate_data_key(
        &self,
        owner: UserId,
    ) -> Result<(DataKey, WrappedDataKey), CryptoError> {
        self.current.generate_data_key(owner).await
    }

    async fn wrap(&self, owner: UserId, key: &DataKey) -> Result<WrappedDataKey, CryptoError> {
        self.current.wrap(owner, key).await
    }

    async fn unwrap(
        &self,
        owner: UserId,
        wrapped: &WrappedDataKey,
    ) -> Result<DataKey, CryptoError> {
        self.get(wrapped.kek_id())?.unwrap(owner, wrapped).await
    }
}
