//! Signing ID tokens, honest and hostile.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::keys::{Keyring, SigningKey};

/// A token the provider's JWKS must not vouch for, for tests of a relying party's ID token
/// checks. Each carries the claims given to [`super::OidcProvider::mint_hostile`] unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hostile {
    /// Header `{"alg":"none"}` (with the current kid) and an empty signature: `h.p.`.
    AlgNone,
    /// HS256 whose HMAC secret is the current key's public key PEM (SubjectPublicKeyInfo,
    /// as published), with the current kid: the classic RS/HS algorithm confusion.
    Hs256WithPublicKey,
    /// RS256 signed by a key the JWKS does not list, under a kid it does not list.
    UnknownKid,
    /// RS256 signed by a key the JWKS does not list, claiming the current kid.
    ForeignKeySameKid,
    /// A token [minted](super::OidcProvider::mint) honestly whose signature bytes were then
    /// altered.
    BadSignature,
    /// RS256 without a `kid`, signed by a key the JWKS does not list: a relying party that
    /// falls back to "the only key" when the kid is missing still has to reject it.
    NoKid,
    /// RS256 by the current key under its kid, validly signed, whose header marks `exp` as a
    /// critical extension (`"crit": ["exp"]`): RFC 7515 §4.1.11 requires a recipient that
    /// does not understand a listed extension (and `exp` is a claim, not a header extension)
    /// to reject the token.
    UnknownCritical,
}

/// An RS256 JWT of `claims` signed by `key`, its header naming `kid`.
pub(super) fn rs256(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    key.sign_with_kid(kid, claims)
}

/// A hostile token of `claims`.
pub(super) fn hostile(keys: &Keyring, claims: &Value, kind: Hostile) -> String {
    let current = &keys.current;
    match kind {
        Hostile::AlgNone => {
            let header = json!({ "alg": "none", "typ": "JWT", "kid": current.kid() });
            format!("{}.{}.", segment(&header), segment(claims))
        }
        Hostile::Hs256WithPublicKey => {
            let mut header = Header::new(Algorithm::HS256);
            header.typ = Some("JWT".to_owned());
            header.kid = Some(current.kid().to_owned());
            let secret = EncodingKey::from_secret(current.public_pem().as_bytes());
            jsonwebtoken::encode(&header, claims, &secret).expect("HS256-sign a test token")
        }
        Hostile::UnknownKid => {
            let kid = format!("unknown-{}", keys.foreign.kid());
            rs256(&keys.foreign, Some(&kid), claims)
        }
        Hostile::ForeignKeySameKid => rs256(&keys.foreign, Some(current.kid()), claims),
        Hostile::BadSignature => {
            let token = rs256(current, Some(current.kid()), claims);
            let (signed, signature) = token
                .rsplit_once('.')
                .expect("a JWS has a signature segment");
            let mut signature = URL_SAFE_NO_PAD
                .decode(signature)
                .expect("a JWS signature is base64url");
            let middle = signature.len() / 2;
            signature[middle] ^= 0x01;
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
        Hostile::NoKid => rs256(&keys.foreign, None, claims),
        Hostile::UnknownCritical => current.sign_with_critical(&["exp"], claims),
    }
}

pub(super) use assistd_devkit::oidc::at_hash;

/// A JSON value as a JWS segment.
fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON serialises"))
}
