//! RSA signing keys for ID tokens: generated on first start and kept in a PEM file when one is
//! given (so ID tokens a browser holds survive a restart), what a JWKS says of them, and RS256
//! signing. The test provider of `assistd-testkit` signs with the same type (and its own
//! embedded test keys, which never reach this crate).

use std::path::Path;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// An RSA key pair that signs ID tokens, with its JWKS entry.
pub struct SigningKey {
    /// Derived from the public key, so a kid always names one key.
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    /// The public key as a `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo).
    public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the PKCS#8 PEM at `path`, or generates a 2048-bit key and writes it there (mode
    /// 0600 on Unix); with no path, a fresh key that lives as long as the process.
    ///
    /// # Errors
    /// The file cannot be read or written, or holds no RSA PKCS#8 key.
    pub fn load_or_generate(path: Option<&Path>) -> std::io::Result<Self> {
        if let Some(path) = path
            && path.exists()
        {
            let pem = std::fs::read_to_string(path)?;
            return Self::from_pkcs8_pem(&pem).map_err(|err| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {err}; delete it to generate a new key", path.display()),
                )
            });
        }
        let pem = generate_pem()?;
        if let Some(path) = path {
            write_private(path, &pem)?;
        }
        Self::from_pkcs8_pem(&pem).map_err(std::io::Error::other)
    }

    /// A fresh 2048-bit key that lives as long as the process.
    ///
    /// # Errors
    /// The system could not generate or encode the key.
    pub fn generate() -> std::io::Result<Self> {
        Self::from_pkcs8_pem(&generate_pem()?).map_err(std::io::Error::other)
    }

    /// Loads an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    /// The text is not a PEM of an RSA PKCS#8 private key; the message says which part failed.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, String> {
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|_| "the key file is not a PEM".to_owned())?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| "the key file is not an RSA PKCS#8 private key".to_owned())?;
        let public = pair.public_key();
        let spki = public
            .as_der()
            .map_err(|_| "the public key cannot be encoded".to_owned())?;
        let digest = Sha256::digest(spki.as_ref());
        let kid: String = digest[..20]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|err| format!("the key cannot sign RS256: {err}"))?;
        let jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        Ok(Self {
            kid,
            encoding,
            jwk,
            public_pem: to_pem("PUBLIC KEY", spki.as_ref()),
        })
    }

    /// The key id: the first 20 bytes of the SHA-256 of the public key, in hex.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's JWKS entry (`kty`, `kid`, `use`, `alg`, `n`, `e`).
    #[must_use]
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key as a `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo).
    #[must_use]
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The JWKS document that publishes this key alone.
    #[must_use]
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// `claims` as an RS256 JWT, its header naming the kid.
    #[must_use]
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(Some(&self.kid), claims)
    }

    /// `claims` as an RS256 JWT whose header names `kid` (or none): a relying party's tests
    /// need tokens that name another key than the one that signed them.
    #[must_use]
    pub fn sign_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("an RSA key that loaded signs RS256")
    }

    /// `claims` as an RS256 JWT, its header naming the kid and marking `critical` as
    /// extensions the recipient must understand (`crit`, RFC 7515 §4.1.11): a relying party's
    /// tests need validly signed tokens that demand extensions it does not know.
    #[must_use]
    pub fn sign_with_critical(&self, critical: &[&str], claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        header.crit = Some(critical.iter().map(|&name| name.to_owned()).collect());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("an RSA key that loaded signs RS256")
    }
}

/// A fresh 2048-bit RSA key as a PKCS#8 PEM.
fn generate_pem() -> std::io::Result<String> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| std::io::Error::other("generating an RSA key failed"))?;
    let der = pair
        .as_der()
        .map_err(|_| std::io::Error::other("encoding an RSA key as PKCS#8 failed"))?;
    Ok(to_pem("PRIVATE KEY", der.as_ref()))
}

/// The `at_hash` of an access token for RS256: the left half of its SHA-256, base64url.
#[must_use]
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, pem.as_bytes())
}

/// `der` armoured as a PEM of `label`, 64 characters a line, ending with a newline.
fn to_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_key_is_loaded_again_with_the_same_kid() {
        let dir = std::env::temp_dir().join(format!("devkit-key-{}", rand::random::<u64>()));
        let path = dir.join("oidc.pem");
        let first = SigningKey::load_or_generate(Some(&path)).unwrap();
        let again = SigningKey::load_or_generate(Some(&path)).unwrap();
        assert_eq!(first.kid, again.kid);
        assert_eq!(first.jwks()["keys"][0]["kid"], json!(first.kid));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_critical_header_names_the_extensions_and_the_kid() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign_with_critical(&["exp"], &json!({"sub": "1"}));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.crit, Some(vec!["exp".to_owned()]));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.alg, Algorithm::RS256);
    }
}
