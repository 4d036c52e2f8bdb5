//! Sealing one value under a data key: AES-256-GCM with a random nonce and associated data
//! that binds the value to where it belongs.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use assistd_domain::UserId;
use rand::TryRngCore as _;
use zeroize::Zeroizing;

use crate::{CryptoError, Secret};

/// First byte of every sealed value in the current format:
/// `0x01 | nonce (12 bytes) | ciphertext | tag (16 bytes)`.
pub const SEAL_FORMAT_V1: u8 = 1;

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

/// Domain separation: these associated data can never be confused with another use of AES-GCM.
const SEAL_AAD_LABEL: &[u8] = b"assistd/seal/v1\0";

/// Fills `buf` from the operating system's random generator.
///
/// # Panics
/// The OS generator failed; there is no safe way to go on without randomness.
pub(crate) fn fill_random(buf: &mut [u8]) {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random generator failed");
}

/// An AES-256 data key in plaintext. Never `Clone`, never `Debug`-printed, zeroized on drop;
/// it exists only in memory, and is stored only wrapped by a
/// [`KeyEncryptionKey`](crate::KeyEncryptionKey).
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A fresh random key from the operating system's generator.
    #[must_use]
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut key[..]);
        Self(key)
    }

    /// A key from exactly 32 bytes (an unwrapped or KMS-generated key).
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::Internal(format!(
                "a data key must be {KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// The raw key, for wrapping it.
    pub(crate) fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Whether two keys are the same (constant time over the 32 bytes).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0[..]).expect("a 32-byte key is a valid AES-256 key")
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// Where a sealed value belongs. All four fields are bound into the ciphertext as associated
/// data, so opening it anywhere else fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealContext<'a> {
    /// The user who owns the value.
    pub owner: UserId,
    /// What the value is, i.e. the column it lives in, e.g. `"gemini_api_key"` or
    /// `"google_refresh_token"`.
    pub purpose: &'a str,
    /// The row that holds it (its id as text).
    pub record: &'a str,
    /// Version of the owner's data key that sealed it (bumped when a data key is replaced).
    pub key_version: u32,
}

impl SealContext<'_> {
    /// The associated data: a label, the format byte, then every field in a fixed order with
    /// its length in front of variable-length ones, so no two contexts encode alike
    /// (`purpose="a", record="bc"` differs from `purpose="ab", record="c"`).
    fn associated_data(&self, format: u8) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            SEAL_AAD_LABEL.len() + 1 + 16 + 8 + self.purpose.len() + 8 + self.record.len() + 4,
        );
        aad.extend_from_slice(SEAL_AAD_LABEL);
        aad.push(format);
        aad.extend_from_slice(self.owner.as_uuid().as_bytes());
        push_length_prefixed(&mut aad, self.purpose.as_bytes());
        push_length_prefixed(&mut aad, self.record.as_bytes());
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        aad
    }
}

fn push_length_prefixed(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// Seals `plaintext` under `key` for `context`: `0x01 | random 96-bit nonce | ciphertext | tag`.
///
/// A fresh nonce per call means sealing the same value twice gives different bytes. With
/// random 96-bit nonces one data key stays well inside AES-GCM's limits for far more than the
/// handful of values a user has.
///
/// # Panics
/// The plaintext exceeds AES-GCM's limit of 64 GiB, or the OS random generator failed.
#[must_use]
pub fn seal(key: &DataKey, context: &SealContext<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let aad = context.associated_data(SEAL_FORMAT_V1);
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    sealed.push(SEAL_FORMAT_V1);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let tag = key
        .cipher()
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(nonce),
            &aad,
            (&mut sealed[1 + NONCE_LEN..]).into(),
        )
        .expect("plaintext within AES-GCM limits");
    sealed.extend_from_slice(&tag);
    sealed
}

/// Opens a value made by [`seal`] with the same key and context.
///
/// # Errors
/// [`CryptoError::InvalidCiphertext`] when the bytes are truncated, of an unknown format, were
/// altered in any way, or belong to another owner, purpose, record or key version. The
/// failure says nothing about which.
pub fn open(
    key: &DataKey,
    context: &SealContext<'_>,
    sealed: &[u8],
) -> Result<Secret, CryptoError> {
    let Some((&format, rest)) = sealed.split_first() else {
        return Err(CryptoError::InvalidCiphertext("sealed value is empty"));
    };
    if format != SEAL_FORMAT_V1 {
        return Err(CryptoError::InvalidCiphertext(
            "unknown sealed value format",
        ));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::InvalidCiphertext("sealed value is truncated"));
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce).expect("split at the nonce length");
    let tag = aes_gcm::Tag::try_from(tag).expect("split at the tag length");
    let aad = context.associated_data(format);
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    key.cipher()
        .decrypt_inout_detached(&nonce, &aad, (&mut plaintext[..]).into(), &tag)
        .map_err(|_| CryptoError::InvalidCiphertext("sealed value failed authentication"))?;
    Ok(Secret::new(std::mem::take(&mut *plaintext)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(owner: UserId) -> SealContext<'static> {
        SealContext {
            owner,
            purpose: "gemini_api_key",
            record: "0196f1c2-0000-7000-8000-000000000001",
            key_version: 1,
        }
    }

    #[test]
    fn associated_data_is_unambiguous() {
        let owner = UserId::new();
        let a = SealContext {
            purpose: "a",
            record: "bc",
            ..context(owner)
        };
        let b = SealContext {
            purpose: "ab",
            record: "c",
            ..context(owner)
        };
        assert_ne!(a.associated_data(1), b.associated_data(1));
    }

    #[test]
    fn layout_is_format_nonce_ciphertext_tag() {
        let key = DataKey::generate();
        let sealed = seal(&key, &context(UserId::new()), b"hello");
        assert_eq!(sealed[0], SEAL_FORMAT_V1);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(format!("{key:?}"), "DataKey([redacted])");
    }
}
