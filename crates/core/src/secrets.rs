//! Sealing and opening users' secrets with their own data key (envelope encryption).
//!
//! Each user has one data key, created on first use, stored only wrapped by the
//! key-encryption key. Every secret is sealed with AES-256-GCM under that data key and bound
//! to its owner, purpose, row and key version. Destroying the data key row makes every secret
//! of the user unreadable (crypto-shredding).

use std::sync::Arc;

use assistd_crypto::{DataKeyCache, Keyring, SealContext, Secret, WrappedDataKey};
use assistd_domain::{Result, UserId};
use assistd_store::{ConnectionTrait, InsertOutcome, Store, StoredDataKey};

/// The version of newly created data keys (bumped if a user's data key is ever replaced).
const DATA_KEY_VERSION: i32 = 1;

/// A user's data key as the sealer uses it.
#[derive(Debug, Clone)]
pub struct UserDataKey {
    user: UserId,
    wrapped: WrappedDataKey,
    version: u32,
}

/// Seals and opens users' secrets.
#[derive(Clone, Debug)]
pub struct SecretSealer {
    store: Store,
    keyring: Arc<Keyring>,
    cache: Arc<DataKeyCache>,
}

impl SecretSealer {
    /// A sealer over `store`, with data keys wrapped by `keyring` and cached by `cache` (which
    /// must sit in front of the same keyring).
    #[must_use]
    pub fn new(store: &Store, keyring: Arc<Keyring>, cache: Arc<DataKeyCache>) -> Self {
        Self {
            store: store.clone(),
            keyring,
            cache,
        }
    }

    /// The keyring (current and previous key-encryption keys).
    #[must_use]
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The data key cache.
    #[must_use]
    pub fn cache(&self) -> &Arc<DataKeyCache> {
        &self.cache
    }

    /// The user's data key, created (and wrapped by the current key-encryption key) on first
    /// use.
    ///
    /// # Errors
    /// The key-encryption key is unavailable or refuses; the database failed.
    pub async fn data_key(&self, user: UserId) -> Result<UserDataKey> {
        let repository = self.store.data_keys();
        if let Some(stored) = repository.get(self.store.connection(), user).await? {
            return Ok(to_user_key(stored));
        }
        let (_key, wrapped) = self.cache.generate_data_key(user).await?;
        let stored = StoredDataKey {
            user,
            kek_id: wrapped.kek_id().to_owned(),
            wrapped: wrapped.ciphertext().to_vec(),
            key_version: DATA_KEY_VERSION,
        };
        match repository.insert(self.store.connection(), &stored).await? {
            InsertOutcome::Inserted => Ok(to_user_key(stored)),
            // Another request created the user's key first: use that one.
            InsertOutcome::AlreadyExists => repository
                .get(self.store.connection(), user)
                .await?
                .map(to_user_key)
                .ok_or_else(|| {
                    assistd_domain::Error::internal("data key vanished after a concurrent insert")
                }),
        }
    }

    /// The user's data key in plaintext (from the cache, or unwrapped by the KEK) with its
    /// version, for keys that are wrapped under it, such as the Gmail mail key. Created on
    /// first use like [`SecretSealer::data_key`].
    ///
    /// # Errors
    /// The key-encryption key is unavailable or refuses; the database failed.
    pub async fn unwrapped_data_key(
        &self,
        user: UserId,
    ) -> Result<(Arc<assistd_crypto::DataKey>, u32)> {
        let key = self.data_key(user).await?;
        let plain = self.cache.data_key(user, &key.wrapped).await?;
        Ok((plain, key.version))
    }

    /// Seals `plaintext` as the user's `purpose` secret stored in row `record`.
    ///
    /// # Errors
    /// The data key cannot be unwrapped.
    pub async fn seal(
        &self,
        key: &UserDataKey,
        purpose: &str,
        record: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let context = SealContext {
            owner: key.user,
            purpose,
            record,
            key_version: key.version,
        };
        Ok(self.cache.seal(&key.wrapped, &context, plaintext).await?)
    }

    /// Opens the user's `purpose` secret stored in row `record`.
    ///
    /// # Errors
    /// The user has no data key (it was destroyed), it cannot be unwrapped, or the value does
    /// not open here (tampered with, or copied from another user, purpose or row).
    pub async fn open(
        &self,
        user: UserId,
        purpose: &str,
        record: &str,
        sealed: &[u8],
    ) -> Result<Secret> {
        let stored = self
            .store
            .data_keys()
            .get(self.store.connection(), user)
            .await?
            .ok_or_else(|| {
                assistd_domain::Error::internal(format!(
                    "user {user} has no data key; their secrets were shredded"
                ))
            })?;
        let key = to_user_key(stored);
        let context = SealContext {
            owner: user,
            purpose,
            record,
            key_version: key.version,
        };
        Ok(self.cache.open(&key.wrapped, &context, sealed).await?)
    }

    /// Destroys the user's data key and forgets any cached copy: every secret sealed under it
    /// becomes unreadable.
    ///
    /// # Errors
    /// The database failed.
    pub async fn shred<C: ConnectionTrait>(&self, db: &C, user: UserId) -> Result<()> {
        self.store.data_keys().destroy(db, user).await?;
        self.cache.forget_user(user);
        Ok(())
    }
}

fn to_user_key(stored: StoredDataKey) -> UserDataKey {
    UserDataKey {
        user: stored.user,
        wrapped: WrappedDataKey::new(stored.kek_id, stored.wrapped),
        version: u32::try_from(stored.key_version).unwrap_or(1),
    }
}
