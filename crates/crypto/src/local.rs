//! The local key-encryption key: a 256-bit master key kept in a file or given by config.

use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use assistd_domain::UserId;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::kek::ensure_wrapped_by;
use crate::seal::{KEY_LEN, NONCE_LEN, TAG_LEN, fill_random};
use crate::{CryptoError, DataKey, KeyEncryptionKey, WrappedDataKey};

const PEM_BEGIN: &str = "-----BEGIN ASSISTD MASTER KEY-----";
const PEM_END: &str = "-----END ASSISTD MASTER KEY-----";

/// Format byte of a locally wrapped key: `0x01 | nonce (12) | wrapped key (32) | tag (16)`.
const WRAP_FORMAT_V1: u8 = 1;
const WRAPPED_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
const WRAP_AAD_LABEL: &[u8] = b"assistd/local-kek-wrap/v1\0";
const ID_LABEL: &[u8] = b"assistd/local-kek-id/v1\0";

/// A key-encryption key held by this process: a 256-bit master key that wraps data keys with
/// AES-256-GCM, the owner's id bound as associated data.
///
/// The default provider. Never `Clone` or `Debug`-printing its key; zeroized on drop. Its
/// [`id`](KeyEncryptionKey::id) is `local:` followed by 16 hex digits of a labelled SHA-256
/// of the key: stable across restarts, different for every key, and useless to an attacker.
pub struct LocalKek {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalKek {
    /// A fresh random master key, in memory only (tests, or to print one for configuration).
    #[must_use]
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut key[..]);
        Self::from_key(key)
    }

    fn from_key(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(ID_LABEL);
        hasher.update(&key[..]);
        let digest = hasher.finalize();
        let id = format!("local:{}", hex(&digest[..8]));
        Self { id, key }
    }

    /// A master key from base64 text (standard alphabet, 32 bytes), e.g. from an environment
    /// variable. Surrounding whitespace and `-----BEGIN/END ASSISTD MASTER KEY-----` armour
    /// are accepted.
    ///
    /// # Errors
    /// The text is not base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let body: Zeroizing<String> = Zeroizing::new(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with("-----"))
                .collect(),
        );
        let bytes = Zeroizing::new(
            STANDARD
                .decode(body.as_bytes())
                .map_err(|_| CryptoError::MalformedMasterKey("not base64"))?,
        );
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::MalformedMasterKey(
                "a master key is 32 bytes (44 base64 characters)",
            ));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(Self::from_key(key))
    }

    /// The master key as base64 text. This is the secret that protects every user's data
    /// key: only for writing it to its file or handing it to a secret store.
    #[must_use]
    pub fn expose_master_key_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(&self.key[..]))
    }

    /// The file text: the base64 key between `ASSISTD MASTER KEY` armour lines.
    fn file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{PEM_BEGIN}\n{}\n{PEM_END}\n",
            &*self.expose_master_key_base64()
        ))
    }

    /// Reads the master key file at `path` (armoured or bare base64). Warns when the file is
    /// readable by group or others.
    ///
    /// # Errors
    /// The file is unreadable or does not hold a 256-bit key.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            CryptoError::MasterKeyFile {
                path: path.display().to_string(),
                source,
            }
        })?);
        #[cfg(unix)]
        if let Ok(metadata) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the master key file is readable by other users; chmod 600 it");
            }
        }
        Self::from_base64(&text)
    }

    /// Reads the master key file at `path`, or on first run generates a key and writes it
    /// there with mode 0600 (creating the parent directory with mode 0700).
    ///
    /// Two processes starting at once agree on one key: the key is written completely to a
    /// private temporary file first, then linked into place, which fails if the file already
    /// exists; the loser reads the winner's key. No reader ever sees a half-written file.
    ///
    /// # Errors
    /// The file exists but is unreadable or malformed, or cannot be written.
    pub fn load_or_generate(path: &Path) -> Result<Self, CryptoError> {
        let mut generated = None;
        let (_, created) = assistd_domain::secret_file::read_or_create(path, || {
            let kek = Self::generate();
            let text = Zeroizing::new(kek.file_text().as_bytes().to_vec());
            generated = Some(kek);
            text
        })
        .map_err(|source| CryptoError::MasterKeyFile {
            path: path.display().to_string(),
            source,
        })?;
        match generated.filter(|_| created) {
            Some(kek) => {
                tracing::info!(path = %path.display(), kek_id = %kek.id, "generated a new local master key");
                Ok(kek)
            }
            // Another process (or an earlier run) wrote the file: use its key.
            None => Self::load(path),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.key[..]).expect("a 32-byte key is a valid AES-256 key")
    }
}

fn wrap_aad(owner: UserId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + 1 + 16);
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.push(WRAP_FORMAT_V1);
    aad.extend_from_slice(owner.as_uuid().as_bytes());
    aad
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl KeyEncryptionKey for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, owner: UserId, key: &DataKey) -> Result<WrappedDataKey, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.expose_bytes());
        let tag = self
            .cipher()
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                &wrap_aad(owner),
                (&mut out[1 + NONCE_LEN..]).into(),
            )
            .map_err(|_| CryptoError::Internal("wrapping a data key failed".to_owned()))?;
        out.extend_from_slice(&tag);
        Ok(WrappedDataKey::new(self.id.clone(), out))
    }

    async fn unwrap(
        &self,
        owner: UserId,
        wrapped: &WrappedDataKey,
    ) -> Result<DataKey, CryptoError> {
        ensure_wrapped_by(&self.id, wrapped)?;
        let bytes = wrapped.ciphertext();
        if bytes.len() != WRAPPED_LEN || bytes[0] != WRAP_FORMAT_V1 {
            return Err(CryptoError::InvalidCiphertext(
                "wrapped data key has the wrong length or format",
            ));
        }
        let nonce = Nonce::<Aes256Gcm>::try_from(&bytes[1..1 + NONCE_LEN]).expect("nonce length");
        let tag = aes_gcm::Tag::try_from(&bytes[1 + NONCE_LEN + KEY_LEN..]).expect("tag length");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes[1 + NONCE_LEN..1 + NONCE_LEN + KEY_LEN]);
        self.cipher()
            .decrypt_inout_detached(&nonce, &wrap_aad(owner), (&mut key[..]).into(), &tag)
            .map_err(|_| {
                CryptoError::InvalidCiphertext(
                    "wrapped data key failed authentication (altered, or another owner's)",
                )
            })?;
        DataKey::from_slice(&key[..])
    }
}
