//! The key-encryption-key interface shared by every provider.

use assistd_domain::UserId;

use crate::{CryptoError, DataKey};

/// A data key encrypted ("wrapped") by a key-encryption key, together with the id of that KEK.
///
/// Not secret: it is what gets stored (both parts), and opening it takes the KEK. `Debug`
/// prints the KEK id and the length only, to keep logs short.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    kek_id: String,
    ciphertext: Vec<u8>,
}

impl WrappedDataKey {
    /// A wrapped key as read from storage: the KEK id stored beside it and its bytes.
    pub fn new(kek_id: impl Into<String>, ciphertext: Vec<u8>) -> Self {
        Self {
            kek_id: kek_id.into(),
            ciphertext,
        }
    }

    /// Id of the KEK that wrapped this key ([`KeyEncryptionKey::id`]).
    #[must_use]
    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }

    /// The wrapped bytes, to store.
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Both parts, to store.
    #[must_use]
    pub fn into_parts(self) -> (String, Vec<u8>) {
        (self.kek_id, self.ciphertext)
    }
}

impl std::fmt::Debug for WrappedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedDataKey")
            .field("kek_id", &self.kek_id)
            .field("len", &self.ciphertext.len())
            .finish()
    }
}

/// A key-encryption key (KEK): makes, wraps and unwraps users' data keys.
///
/// Every operation binds the owner: a data key wrapped for one user does not unwrap for
/// another. Implementations fail closed with a classified [`CryptoError`] and never return a
/// data key they could not protect.
#[async_trait::async_trait]
pub trait KeyEncryptionKey: Send + Sync {
    /// A stable name of this KEK, stored beside every key it wraps so that rotation knows
    /// which KEK wrapped what (e.g. `local:1f2e3d4c5b6a7988`, `kms:arn:aws:kms:…`). It never
    /// reveals key material.
    fn id(&self) -> &str;

    /// A new data key for `owner`, in plaintext (to use now) and wrapped (to store).
    ///
    /// # Errors
    /// The KEK is unavailable or refuses.
    async fn generate_data_key(
        &self,
        owner: UserId,
    ) -> Result<(DataKey, WrappedDataKey), CryptoError> {
        let key = DataKey::generate();
        let wrapped = self.wrap(owner, &key).await?;
        Ok((key, wrapped))
    }

    /// Wraps an existing data key of `owner` under this KEK (used by rotation).
    ///
    /// # Errors
    /// The KEK is unavailable or refuses.
    async fn wrap(&self, owner: UserId, key: &DataKey) -> Result<WrappedDataKey, CryptoError>;

    /// Unwraps a data key of `owner` that this KEK wrapped.
    ///
    /// # Errors
    /// The wrapped key names another KEK, was altered, or belongs to another owner; or the KEK
    /// is unavailable or refuses.
    async fn unwrap(&self, owner: UserId, wrapped: &WrappedDataKey)
    -> Result<DataKey, CryptoError>;
}

/// Fails with [`KekRefusal::WrongKey`](crate::KekRefusal::WrongKey) unless `wrapped` names
/// the KEK `kek_id`.
pub(crate) fn ensure_wrapped_by(kek_id: &str, wrapped: &WrappedDataKey) -> Result<(), CryptoError> {
    if wrapped.kek_id() == kek_id {
        Ok(())
    } else {
        Err(CryptoError::KekRefused {
            kek_id: kek_id.to_owned(),
            reason: crate::KekRefusal::WrongKey,
            message: format!("the data key was wrapped by {}", wrapped.kek_id()),
        })
    }
}
