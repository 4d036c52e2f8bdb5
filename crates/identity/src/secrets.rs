//! Secrets of sign-in that the server derives instead of storing: the PKCE verifier and nonce
//! of a login attempt (from its `state`) and the successor of a refresh token (from the token).
//!
//! Each is an HMAC-SHA256 under a key derived from an access-token signing key, so replicas
//! that share the signing keys derive the same values and a database dump holds none of them.
//! Deriving a refresh token's successor (rather than drawing it at random) is what lets a
//! client that lost the response to a refresh retry with the same token and get the same new
//! token, while the server keeps only hashes.

use aws_lc_rs::{digest, hmac, rand::SecureRandom as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::SigningKey;

/// Label of the key derivation; a new version gets a new label.
const DERIVATION_LABEL: &[u8] = b"assistd sign-in secrets v1";

/// Derives sign-in secrets with keys tied to the signing keys' ids.
pub struct DerivedSecrets {
    current: (String, hmac::Key),
    previous: Vec<(String, hmac::Key)>,
}

impl std::fmt::Debug for DerivedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedSecrets")
            .field("current_key_id", &self.current.0)
            .finish_non_exhaustive()
    }
}

fn derive_key(signing: &SigningKey) -> (String, hmac::Key) {
    let pem = signing.expose_pkcs8_pem();
    let extract = hmac::Key::new(hmac::HMAC_SHA256, pem.as_bytes());
    let tag = hmac::sign(&extract, DERIVATION_LABEL);
    (
        signing.kid().to_owned(),
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()),
    )
}

impl DerivedSecrets {
    /// Keys derived from the current signing key and from previous ones (which still derive
    /// the values of attempts and tokens made under them).
    #[must_use]
    pub fn new(current: &SigningKey, previous: &[SigningKey]) -> Self {
        Self {
            current: derive_key(current),
            previous: previous.iter().map(derive_key).collect(),
        }
    }

    /// The id of the key new values are derived with.
    #[must_use]
    pub fn current_key_id(&self) -> &str {
        &self.current.0
    }

    fn key(&self, key_id: &str) -> Option<&hmac::Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|(id, _)| id == key_id)
            .map(|(_, key)| key)
    }

    fn derive(&self, key_id: &str, purpose: &str, input: &str) -> Option<String> {
        let key = self.key(key_id)?;
        let mut context = hmac::Context::with_key(key);
        context.update(purpose.as_bytes());
        context.update(&[0]);
        context.update(input.as_bytes());
        Some(URL_SAFE_NO_PAD.encode(context.sign().as_ref()))
    }

    /// The PKCE verifier of the login attempt with `state` (43 characters, RFC 7636).
    #[must_use]
    pub fn pkce_verifier(&self, key_id: &str, state: &str) -> Option<String> {
        self.derive(key_id, "pkce-verifier", state)
    }

    /// The OpenID nonce of the login attempt with `state`.
    #[must_use]
    pub fn nonce(&self, key_id: &str, state: &str) -> Option<String> {
        self.derive(key_id, "nonce", state)
    }

    /// The refresh token that replaces `token` when it is exchanged.
    #[must_use]
    pub fn refresh_successor(&self, key_id: &str, token: &str) -> Option<String> {
        self.derive(key_id, "refresh-successor", token)
    }
}

/// 256 random bits, base64url without padding: a new refresh token or login `state`.
///
/// # Panics
/// The system random generator failed.
#[must_use]
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `token` in lowercase hex: how tokens are stored and looked up.
#[must_use]
pub fn token_hash(token: &str) -> String {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_are_stable_per_key_and_differ_by_purpose_and_key() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let secrets = DerivedSecrets::new(&a, std::slice::from_ref(&b));
        let other = DerivedSecrets::new(&b, &[]);
        let state = random_token();
        let verifier = secrets.pkce_verifier(a.kid(), &state).unwrap();
        assert_eq!(verifier.len(), 43);
        assert_eq!(secrets.pkce_verifier(a.kid(), &state).unwrap(), verifier);
        assert_ne!(secrets.nonce(a.kid(), &state).unwrap(), verifier);
        assert_eq!(
            secrets.refresh_successor(b.kid(), &state),
            other.refresh_successor(b.kid(), &state)
        );
        assert_ne!(
            secrets.refresh_successor(a.kid(), &state),
            secrets.refresh_successor(b.kid(), &state)
        );
        assert_eq!(secrets.nonce("unknown", &state), None);
    }

    #[test]
    fn random_tokens_are_256_bits_and_hashes_are_hex() {
        let token = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, random_token());
        let hash = token_hash("abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
