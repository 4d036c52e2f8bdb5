//! The provider's RSA keys: the embedded test-only PEMs, what the JWKS says of them, and
//! which of them the provider publishes.

use std::collections::VecDeque;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

// Test-only keys, public in the repository (see keys/README.md): never use them elsewhere.
/// The signing key at start.
const SIGNING_1: &str = include_str!("keys/signing-1.pem");
/// The key the first rotation switches to.
const SIGNING_2: &str = include_str!("keys/signing-2.pem");
/// A key never published: it signs hostile tokens.
const FOREIGN: &str = include_str!("keys/foreign.pem");

/// One RSA key pair with what a token header and a JWKS say of it.
pub(super) struct SigningKey {
    /// Derived from the public key, so a kid always names one key.
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    /// Modulus, base64url without padding.
    pub(super) n: String,
    /// Public exponent, base64url without padding.
    pub(super) e: String,
    /// The public key as a `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo), the
    /// secret of the HS256 alg-confusion attack.
    pub(super) public_pem: String,
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    fn from_pkcs8_pem(pem: &str) -> Self {
        let der = pem_contents(pem);
        let pair = RsaKeyPair::from_pkcs8(&der).expect("the embedded test key is RSA PKCS#8");
        Self::new(&pair, pem)
    }

    /// A fresh 2048-bit key, for rotations beyond the embedded keys (slow-ish in debug
    /// builds, hence the embedded ones).
    fn generate() -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA test key");
        let der = pair.as_der().expect("encode a generated RSA key as PKCS#8");
        let pem = to_pem("PRIVATE KEY", der.as_ref());
        Self::new(&pair, &pem)
    }

    fn new(pair: &RsaKeyPair, private_pem: &str) -> Self {
        let public = pair.public_key();
        let spki = public
            .as_der()
            .expect("encode an RSA public key as SubjectPublicKeyInfo");
        let digest = Sha256::digest(spki.as_ref());
        let kid = digest[..20]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            kid,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes())
                .expect("jsonwebtoken takes an RSA PKCS#8 PEM"),
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            public_pem: to_pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    /// The key's JWKS entry.
    pub(super) fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": self.n,
            "e": self.e,
        })
    }
}

/// The current key, the published ones, the ones rotations switch to, and the foreign one.
pub(super) struct Keyring {
    /// Signs what the provider issues and [`super::OidcProvider::mint`]s.
    pub(super) current: Arc<SigningKey>,
    /// What the JWKS lists, newest first; always holds `current`.
    published: Vec<Arc<SigningKey>>,
    /// Keys for the next rotations; once empty, rotations generate keys.
    spare: VecDeque<SigningKey>,
    /// Never published.
    pub(super) foreign: Arc<SigningKey>,
}

impl Default for Keyring {
    fn default() -> Self {
        let current = Arc::new(SigningKey::from_pkcs8_pem(SIGNING_1));
        Self {
            published: vec![Arc::clone(&current)],
            current,
            spare: VecDeque::from([SigningKey::from_pkcs8_pem(SIGNING_2)]),
            foreign: Arc::new(SigningKey::from_pkcs8_pem(FOREIGN)),
        }
    }
}

impl Keyring {
    /// Makes a new key current; the published keys become it alone or it and the old ones.
    pub(super) fn rotate(&mut self, keep_old: bool) {
        let next = Arc::new(self.spare.pop_front().unwrap_or_else(SigningKey::generate));
        if !keep_old {
            self.published.clear();
        }
        self.published.insert(0, Arc::clone(&next));
        self.current = next;
    }

    /// The JWKS document.
    pub(super) fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(|key| key.jwk()).collect::<Vec<_>>() })
    }
}

/// The DER inside a PEM's armour.
fn pem_contents(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    STANDARD
        .decode(body)
        .expect("the embedded test key PEM is base64")
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
