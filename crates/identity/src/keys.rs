//! Ed25519 signing keys: generation, PKCS#8 PEM files (mode 0600), key ids.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use zeroize::Zeroizing;

const PEM_LABEL: &str = "PRIVATE KEY";

/// Why a signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The bytes or text are not a PKCS#8 Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key")]
    NotEd25519Pkcs8,
    /// The file is not a PKCS#8 PEM Ed25519 private key.
    #[error("signing key file {path} is not a PKCS#8 PEM Ed25519 private key")]
    Malformed {
        /// The key file.
        path: String,
    },
}

/// An Ed25519 key that signs (and verifies) access tokens. Deliberately neither `Clone` nor
/// `Debug`-printing its material; the PKCS#8 bytes are zeroized on drop.
pub struct SigningKey {
    kid: String,
    public_key: Vec<u8>,
    pkcs8: Zeroizing<Vec<u8>>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    ///
    /// # Panics
    /// The system random generator failed, which leaves no safe way to continue.
    #[must_use]
    pub fn generate() -> Self {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("system random generator failed");
        Self::from_pkcs8_der(document.as_ref()).expect("a freshly generated key parses")
    }

    /// A key from PKCS#8 DER bytes.
    ///
    /// # Errors
    /// The bytes are not an Ed25519 PKCS#8 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| KeyError::NotEd25519Pkcs8)?;
        let public = pair.public_key().as_ref();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public);
        // The key id is derived from the public key, so it names the key without any state.
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(Self {
            kid,
            public_key: public.to_vec(),
            pkcs8: Zeroizing::new(der.to_vec()),
            encoding: EncodingKey::from_ed_der(der),
            decoding: DecodingKey::from_ed_der(public),
        })
    }

    /// A key from PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    /// The text is not a PEM-armoured Ed25519 PKCS#8 key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let body: Zeroizing<String> = Zeroizing::new(
            pem.lines()
                .map(str::trim)
                .skip_while(|line| *line != format!("-----BEGIN {PEM_LABEL}-----"))
                .skip(1)
                .take_while(|line| *line != format!("-----END {PEM_LABEL}-----"))
                .collect(),
        );
        let der = Zeroizing::new(
            STANDARD
                .decode(body.as_bytes())
                .map_err(|_| KeyError::NotEd25519Pkcs8)?,
        );
        Self::from_pkcs8_der(&der)
    }

    /// The key as PKCS#8 PEM text. This is secret material.
    #[must_use]
    pub fn expose_pkcs8_pem(&self) -> Zeroizing<String> {
        let encoded = Zeroizing::new(STANDARD.encode(&*self.pkcs8));
        let mut pem = Zeroizing::new(format!("-----BEGIN {PEM_LABEL}-----\n"));
        for chunk in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        pem
    }

    /// Reads the key at `path`.
    ///
    /// # Errors
    /// The file is unreadable or not a key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_pem(&text).map_err(|_| KeyError::Malformed {
            path: path.display().to_string(),
        })
    }

    /// Reads the key at `path`, or generates one and writes it there with mode 0600 (the
    /// parent directory is created with mode 0700).
    ///
    /// # Errors
    /// The file exists but is unreadable or malformed, or cannot be written.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let mut generated = None;
        let (pem, created) = assistd_domain::secret_file::read_or_create(path, || {
            let key = Self::generate();
            let pem = Zeroizing::new(key.expose_pkcs8_pem().as_bytes().to_vec());
            generated = Some(key);
            pem
        })
        .map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let key = match generated.filter(|_| created) {
            Some(key) => key,
            None => std::str::from_utf8(&pem)
                .ok()
                .and_then(|pem| Self::from_pem(pem).ok())
                .ok_or_else(|| KeyError::Malformed {
                    path: path.display().to_string(),
                })?,
        };
        if created {
            tracing::info!(path = %path.display(), kid = %key.kid, "generated a new access-token signing key");
        }
        Ok(key)
    }

    /// The key id put into the `kid` header of tokens this key signs.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte Ed25519 public key (as published in a JWKS `x`).
    #[must_use]
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key_id() {
        let key = SigningKey::generate();
        let again = SigningKey::from_pem(&key.expose_pkcs8_pem()).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_ne!(key.kid(), SigningKey::generate().kid());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn load_or_generate_writes_a_private_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/access.pem");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let second = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.kid(), second.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            SigningKey::load(&path),
            Err(KeyError::Malformed { .. })
        ));
    }
}
