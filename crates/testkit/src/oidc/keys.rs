//! The provider's RSA keys: the embedded test-only PEMs (loaded as `assistd-devkit`'s signing
//! keys, which compute kids, JWKs and signatures), and which of them the provider publishes.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Value, json};

// Test-only keys, public in the repository (see keys/README.md): never use them elsewhere.
/// The signing key at start.
const SIGNING_1: &str = include_str!("keys/signing-1.pem");
/// The key the first rotation switches to.
const SIGNING_2: &str = include_str!("keys/signing-2.pem");
/// A key never published: it signs hostile tokens.
const FOREIGN: &str = include_str!("keys/foreign.pem");

pub(super) use assistd_devkit::oidc::SigningKey;

/// Loads an embedded test key.
fn embedded(pem: &str) -> SigningKey {
    SigningKey::from_pkcs8_pem(pem).expect("the embedded test key is RSA PKCS#8")
}

/// A fresh 2048-bit key, for rotations beyond the embedded keys (slow-ish in debug builds,
/// hence the embedded ones).
fn generated() -> SigningKey {
    SigningKey::generate().expect("generate an RSA test key")
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
        let current = Arc::new(embedded(SIGNING_1));
        Self {
            published: vec![Arc::clone(&current)],
            current,
            spare: VecDeque::from([embedded(SIGNING_2)]),
            foreign: Arc::new(embedded(FOREIGN)),
        }
    }
}

impl Keyring {
    /// Makes a new key current; the published keys become it alone or it and the old ones.
    pub(super) fn rotate(&mut self, keep_old: bool) {
        let next = Arc::new(self.spare.pop_front().unwrap_or_else(generated));
        if !keep_old {
            self.published.clear();
        }
        self.published.insert(0, Arc::clone(&next));
        self.current = next;
    }

    /// The JWKS document.
    pub(super) fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(|key| key.jwk().clone()).collect::<Vec<_>>() })
    }
}
