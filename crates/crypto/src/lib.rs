//! Envelope encryption for assistd: how users' own secrets (their Gemini API key, their Google
//! OAuth tokens) are kept at rest.
//!
//! ```text
//!   key-encryption key (KEK)  ── local master key file, or an AWS KMS key
//!        │ wraps (owner bound: AES-GCM AAD locally, EncryptionContext {"user_id"} in KMS)
//!        ▼
//!   per-user data key (256-bit AES)      ── stored only wrapped: WrappedDataKey
//!        │ seals (AES-256-GCM, random 96-bit nonce,
//!        │        AAD = owner | purpose | record | key version)
//!        ▼
//!   sealed secret                        ── stored in the row that owns it
//! ```
//!
//! - [`Secret`] holds plaintext; it redacts itself in `Debug`/`Display`, is never `Clone` or
//!   serializable, is zeroized on drop, and is read only through
//!   [`Secret::expose_secret`].
//! - [`seal`] / [`open`] encrypt one value under a [`DataKey`], bound by a [`SealContext`] to
//!   its owner, purpose, record and key version: a sealed value copied to another user,
//!   column, row or key version does not open.
//! - [`KeyEncryptionKey`] is the one interface of the KEK providers, [`LocalKek`] and
//!   [`KmsKek`]. Their failures fail closed and are classified by [`CryptoError::class`]:
//!   retryable unavailability, a KEK an operator must fix, an invalid ciphertext, or a bug.
//! - [`Keyring`] knows the current KEK and the previous ones, opens whatever a stored key names
//!   and re-wraps data keys under the current KEK ([`Keyring::rewrap`]) for rotation.
//! - [`MailKey`] seals a user's synced mail; it is stored sealed under their data key, and
//!   derives the key of their blind index ([`blind_index`]: keyed 16-byte word tokens).
//! - [`DataKeyCache`] keeps unwrapped data keys for a bounded time and number of uses, so a
//!   busy user costs one KMS `Decrypt` per period rather than one per request.
//!
//! Nothing here knows about gRPC or the database: callers store [`WrappedDataKey`]s and sealed
//! bytes wherever they like.
//!
//! ```
//! use std::sync::Arc;
//! use assistd_crypto::{CachePolicy, DataKeyCache, Keyring, LocalKek, SealContext, WrappedDataKey};
//! use assistd_domain::UserId;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // At start-up: the KEKs (current first, then retired ones still referenced) and the cache.
//! let dir = tempfile::tempdir().unwrap();
//! let kek = LocalKek::load_or_generate(&dir.path().join("master.key")).unwrap();
//! let cache = DataKeyCache::new(Arc::new(Keyring::new(Arc::new(kek))), CachePolicy::default());
//!
//! // First secret of a user: a data key, stored wrapped as (kek_id, bytes) on the user.
//! let owner = UserId::new();
//! let (_, wrapped) = cache.generate_data_key(owner).await.unwrap();
//! let (kek_id, wrapped_bytes) = wrapped.clone().into_parts();
//!
//! // Storing a secret: seal it for its row and column.
//! let context = SealContext { owner, purpose: "gemini_api_key", record: "row-id", key_version: 1 };
//! let sealed = cache.seal(&wrapped, &context, b"AIza...").await.unwrap();
//!
//! // Revealing it later, from what was stored.
//! let wrapped = WrappedDataKey::new(kek_id, wrapped_bytes);
//! let secret = cache.open(&wrapped, &context, &sealed).await.unwrap();
//! assert_eq!(secret.expose_secret(), b"AIza...");
//! # });
//! ```

mod cache;
mod error;
mod kek;
mod keyring;
mod kms;
mod local;
mod mail;
mod seal;
mod secret;

pub use cache::{CachePolicy, CacheStats, DataKeyCache};
pub use error::{CryptoError, ErrorClass, KekRefusal};
pub use kek::{KeyEncryptionKey, WrappedDataKey};
pub use keyring::Keyring;
pub use kms::{KmsKek, KmsSettings};
pub use local::LocalKek;
pub use mail::{
    BLIND_INDEX_LEN, IndexKey, MAIL_KEY_PURPOSE, MESSAGE_BODY_PURPOSE, MESSAGE_HEADER_PURPOSE,
    MailKey, blind_index,
};
pub use seal::{DataKey, SEAL_FORMAT_V1, SealContext, open, seal};
pub use secret::Secret;
