//! ID token checks: header, signature, then claims (issuer, audience, authorized party, time,
//! nonce). Every error message is fixed text, safe for clients.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Deserializer};

use super::jwks::VerificationKey;
use super::{GOOGLE_ISSUER, OidcError, VerifiedIdentity};

/// Larger tokens are refused before any decoding (Google's are about 1 KiB).
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// The issuer Google sometimes writes without the scheme.
const GOOGLE_ISSUER_WITHOUT_SCHEME: &str = "accounts.google.com";

fn invalid(reason: &str) -> OidcError {
    OidcError::InvalidIdToken(reason.to_owned())
}

/// What the header says, after checking the algorithm is one we accept.
#[derive(Debug)]
pub(super) struct TokenHeader {
    pub(super) alg: Algorithm,
    pub(super) kid: String,
}

/// Reads the header of a compact JWS without trusting it: only RS256 and ES256 pass (never
/// `none`, never HMAC, which an attacker could key with our client secret or a public key),
/// a `kid` is required and a `crit` refused.
pub(super) fn peek_header(token: &str) -> Result<TokenHeader, OidcError> {
    if token.len() > MAX_ID_TOKEN_BYTES {
        return Err(invalid("the ID token is too large"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, _] = parts.as_slice() else {
        return Err(invalid("the ID token is not a signed JWT"));
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| invalid("the ID token header is malformed"))?;
    let alg = match header.get("alg").and_then(serde_json::Value::as_str) {
        Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        _ => {
            return Err(invalid(
                "the ID token uses an algorithm this server does not accept",
            ));
        }
    };
    // RFC 7515 §4.1.11: a recipient must reject a token whose `crit` names an extension it
    // does not understand. This server understands none, so any `crit` is refused (an empty
    // or malformed one is invalid by the same section).
    if header.get("crit").is_some() {
        return Err(invalid(
            "the ID token requires header extensions this server does not understand",
        ));
    }
    let kid = header
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .filter(|kid| !kid.is_empty())
        .ok_or_else(|| invalid("the ID token names no signing key"))?;
    Ok(TokenHeader {
        alg,
        kid: kid.to_owned(),
    })
}

/// Verifies the signature with `key` and returns the claims, unchecked.
pub(super) fn verify_signature(
    token: &str,
    alg: Algorithm,
    key: &VerificationKey,
) -> Result<IdTokenClaims, OidcError> {
    if key.algorithm != alg {
        return Err(invalid(
            "the ID token's algorithm does not match its signing key",
        ));
    }
    let mut validation = Validation::new(alg);
    // Claims are checked by `check_claims`, against the injected clock.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<IdTokenClaims>(token, &key.key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => invalid("the ID token signature is invalid"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidClaimFormat(_) => {
                invalid("the ID token's claims are malformed")
            }
            _ => invalid("the ID token is malformed"),
        })
}

/// The claims we read. Unknown claims are ignored.
#[derive(Debug, Deserialize)]
pub(super) struct IdTokenClaims {
    iss: String,
    sub: String,
    aud: Audiences,
    #[serde(default)]
    azp: Option<String>,
    #[serde(deserialize_with = "numeric_date")]
    exp: i64,
    #[serde(deserialize_with = "numeric_date")]
    iat: i64,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    nbf: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    email_verified: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    picture: Option<String>,
    #[serde(default)]
    hd: Option<String>,
}

/// `aud` is a string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
}

impl Audiences {
    fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// Seconds since the epoch, as an integer or (rarely) a fraction, truncated.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom("not a NumericDate"))
}

/// An optional NumericDate: absent or `null` is `None`.
fn optional_numeric_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Date(#[serde(deserialize_with = "numeric_date")] i64);
    Ok(Option::<Date>::deserialize(deserializer)?.map(|Date(date)| date))
}

/// A boolean, or the strings `"true"`/`"false"` that Google once sent for `email_verified`.
fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        String(String),
    }
    match Option::<BoolOrString>::deserialize(deserializer)? {
        None => Ok(false),
        Some(BoolOrString::Bool(b)) => Ok(b),
        Some(BoolOrString::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(BoolOrString::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(BoolOrString::String(_)) => Err(serde::de::Error::custom("not a boolean")),
    }
}

/// Which audiences a path accepts.
#[derive(Clone, Copy, Debug)]
pub(super) enum AudienceRule {
    /// Code exchange: the token was issued to this server's client id.
    ClientIdOnly,
    /// Sign-in with an ID token: this client id or one of the additional audiences.
    AnyAccepted,
}

/// What the claims are checked against.
#[derive(Debug)]
pub(super) struct ClaimRules<'a> {
    /// The issuer from the discovery document.
    pub(super) issuer: &'a str,
    pub(super) client_id: &'a str,
    pub(super) additional_audiences: &'a [String],
    pub(super) audience: AudienceRule,
    /// When given, `nonce` must be present and equal.
    pub(super) expected_nonce: Option<&'a str>,
    pub(super) clock_skew: Duration,
    pub(super) now: DateTime<Utc>,
}

impl ClaimRules<'_> {
    /// Whether `id` may be the audience (or authorized party) on this path.
    fn accepts(&self, id: &str) -> bool {
        id == self.client_id
            || matches!(self.audience, AudienceRule::AnyAccepted)
                && self.additional_audiences.iter().any(|a| a == id)
    }

    /// Whether `id` is one of our client ids at all.
    fn trusts(&self, id: &str) -> bool {
        id == self.client_id || self.additional_audiences.iter().any(|a| a == id)
    }

    fn issuer_matches(&self, iss: &str) -> bool {
        iss == self.issuer || self.issuer == GOOGLE_ISSUER && iss == GOOGLE_ISSUER_WITHOUT_SCHEME
    }
}

/// Checks verified-signature claims against `rules` (OpenID Connect Core 1.0, 3.1.3.7).
pub(super) fn check_claims(
    claims: IdTokenClaims,
    rules: &ClaimRules<'_>,
) -> Result<VerifiedIdentity, OidcError> {
    if !rules.issuer_matches(&claims.iss) {
        return Err(invalid("the ID token was issued by someone else"));
    }
    if claims.sub.is_empty() {
        return Err(invalid("the ID token has no subject"));
    }

    let audiences = claims.aud.as_slice();
    let Some(audience) = audiences
        .iter()
        .find(|a| *a == rules.client_id)
        .or_else(|| audiences.iter().find(|a| rules.accepts(a)))
    else {
        return Err(invalid("the ID token is meant for a different audience"));
    };
    // Core 3.1.3.7 (3): reject tokens that also name audiences we do not trust.
    if !audiences.iter().all(|a| rules.trusts(a)) {
        return Err(invalid("the ID token names an untrusted audience"));
    }
    match claims.azp.as_deref() {
        None if audiences.len() > 1 => {
            return Err(invalid(
                "the ID token has several audiences but no authorized party",
            ));
        }
        Some(azp) if !rules.accepts(azp) => {
            return Err(invalid(
                "the ID token's authorized party is not an accepted client",
            ));
        }
        _ => {}
    }

    let skew = i64::try_from(rules.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let now = rules.now.timestamp();
    if claims.exp <= now.saturating_sub(skew) {
        return Err(invalid("the ID token has expired"));
    }
    if claims.iat > now.saturating_add(skew) {
        return Err(invalid("the ID token was issued in the future"));
    }
    // RFC 7519 §4.1.5: not to be accepted before `nbf`, with the same skew as `exp` and `iat`.
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(invalid("the ID token is not valid yet"));
    }
    let (Some(issued_at), Some(expires_at)) = (
        DateTime::from_timestamp(claims.iat, 0),
        DateTime::from_timestamp(claims.exp, 0),
    ) else {
        return Err(invalid("the ID token's times are out of range"));
    };

    if let Some(expected) = rules.expected_nonce
        && claims.nonce.as_deref() != Some(expected)
    {
        return Err(invalid("the ID token's nonce does not match"));
    }

    Ok(VerifiedIdentity {
        issuer: claims.iss,
        subject: claims.sub,
        audience: audience.clone(),
        email: claims.email,
        email_verified: claims.email_verified,
        name: claims.name,
        picture: claims.picture,
        hosted_domain: claims.hd,
        issued_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const ISSUER: &str = "https://idp.example";
    const CLIENT: &str = "web-client";
    const ANDROID: &str = "android-client";
    const NOW: i64 = 1_700_000_000;

    fn additional() -> Vec<String> {
        vec![ANDROID.to_owned()]
    }

    fn rules<'a>(
        issuer: &'a str,
        additional: &'a [String],
        audience: AudienceRule,
        nonce: Option<&'a str>,
    ) -> ClaimRules<'a> {
        ClaimRules {
            issuer,
            client_id: CLIENT,
            additional_audiences: additional,
            audience,
            expected_nonce: nonce,
            clock_skew: Duration::from_secs(60),
            now: DateTime::from_timestamp(NOW, 0).unwrap(),
        }
    }

    fn claims(overrides: Value) -> Value {
        let mut claims = json!({
            "iss": ISSUER, "sub": "1234", "aud": CLIENT, "iat": NOW - 10, "exp": NOW + 3600,
            "nonce": "n-1", "email": "a@example.com", "email_verified": true,
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn check(overrides: Value, rules: &ClaimRules<'_>) -> Result<VerifiedIdentity, OidcError> {
        let claims: IdTokenClaims = serde_json::from_value(claims(overrides))
            .map_err(|_| invalid("the ID token's claims are malformed"))?;
        check_claims(claims, rules)
    }

    fn rejected(result: Result<VerifiedIdentity, OidcError>, why: &str) {
        match result {
            Err(OidcError::InvalidIdToken(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected rejection for {why:?}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_good_token() {
        let extra = additional();
        let identity = check(
            json!({"hd": "example.com", "name": "A", "picture": "https://p"}),
            &rules(ISSUER, &extra, AudienceRule::ClientIdOnly, Some("n-1")),
        )
        .unwrap();
        assert_eq!(identity.subject, "1234");
        assert_eq!(identity.audience, CLIENT);
        assert_eq!(identity.hosted_domain.as_deref(), Some("example.com"));
        assert!(identity.email_verified);
        assert_eq!(identity.expires_at.timestamp(), NOW + 3600);
    }

    #[test]
    fn google_issuer_alias_only_for_google() {
        let extra = additional();
        let google = rules(GOOGLE_ISSUER, &extra, AudienceRule::AnyAccepted, None);
        assert!(check(json!({"iss": "accounts.google.com"}), &google).is_ok());
        assert!(check(json!({"iss": GOOGLE_ISSUER}), &google).is_ok());
        rejected(
            check(json!({"iss": "https://accounts.google.com/"}), &google),
            "issued by someone else",
        );
        let other = rules(ISSUER, &extra, AudienceRule::AnyAccepted, None);
        rejected(
            check(json!({"iss": "accounts.google.com"}), &other),
            "issued by someone else",
        );
        rejected(
            check(json!({"iss": "idp.example"}), &other),
            "issued by someone else",
        );
    }

    #[test]
    fn audience_rules() {
        let extra = additional();
        let exchange = rules(ISSUER, &extra, AudienceRule::ClientIdOnly, None);
        let sign_in = rules(ISSUER, &extra, AudienceRule::AnyAccepted, None);

        rejected(
            check(json!({"aud": "someone"}), &sign_in),
            "different audience",
        );
        rejected(check(json!({"aud": []}), &sign_in), "different audience");
        // Additional audiences only count for sign-in with an ID token.
        assert_eq!(
            check(json!({"aud": ANDROID}), &sign_in).unwrap().audience,
            ANDROID
        );
        rejected(
            check(json!({"aud": ANDROID}), &exchange),
            "different audience",
        );
        // Several audiences need an accepted azp, and all must be trusted.
        rejected(
            check(json!({"aud": [CLIENT, ANDROID]}), &sign_in),
            "no authorized party",
        );
        let both = check(json!({"aud": [ANDROID, CLIENT], "azp": ANDROID}), &sign_in).unwrap();
        assert_eq!(both.audience, CLIENT);
        rejected(
            check(json!({"aud": [CLIENT, "evil"], "azp": CLIENT}), &sign_in),
            "untrusted audience",
        );
        // A present azp must be accepted on the path.
        rejected(check(json!({"azp": "evil"}), &sign_in), "authorized party");
        assert!(check(json!({"azp": ANDROID}), &sign_in).is_ok());
        rejected(
            check(json!({"azp": ANDROID}), &exchange),
            "authorized party",
        );
        assert!(check(json!({"azp": CLIENT}), &exchange).is_ok());
    }

    #[test]
    fn time_rules_use_the_given_now_and_skew() {
        let extra = additional();
        let r = rules(ISSUER, &extra, AudienceRule::AnyAccepted, None);
        assert!(check(json!({"exp": NOW - 59}), &r).is_ok());
        rejected(check(json!({"exp": NOW - 60}), &r), "expired");
        rejected(check(json!({"exp": NOW - 3600}), &r), "expired");
        assert!(check(json!({"iat": NOW + 60}), &r).is_ok());
        rejected(check(json!({"iat": NOW + 61}), &r), "in the future");
        assert!(check(json!({"iat": NOW as f64 + 0.5}), &r).is_ok());
        assert!(check(json!({"nbf": NOW + 60}), &r).is_ok());
        assert!(check(json!({"nbf": NOW - 3600}), &r).is_ok());
        assert!(check(json!({"nbf": null}), &r).is_ok());
        rejected(check(json!({"nbf": NOW + 61}), &r), "not valid yet");
        rejected(
            check(json!({"nbf": NOW + 3600, "iat": NOW}), &r),
            "not valid yet",
        );
        rejected(check(json!({"nbf": "tomorrow"}), &r), "malformed");
        rejected(check(json!({"exp": null}), &r), "malformed");
        rejected(check(json!({"iat": "yesterday"}), &r), "malformed");
    }

    #[test]
    fn nonce_rules() {
        let extra = additional();
        assert!(
            check(
                json!({}),
                &rules(ISSUER, &extra, AudienceRule::ClientIdOnly, Some("n-1"))
            )
            .is_ok()
        );
        rejected(
            check(
                json!({}),
                &rules(ISSUER, &extra, AudienceRule::ClientIdOnly, Some("n-2")),
            ),
            "nonce",
        );
        rejected(
            check(
                json!({"nonce": null}),
                &rules(ISSUER, &extra, AudienceRule::ClientIdOnly, Some("n-1")),
            ),
            "nonce",
        );
        // Without an expected nonce, any or none is fine.
        assert!(
            check(
                json!({"nonce": null}),
                &rules(ISSUER, &extra, AudienceRule::AnyAccepted, None)
            )
            .is_ok()
        );
    }

    #[test]
    fn email_verified_may_be_a_string() {
        let extra = additional();
        let r = rules(ISSUER, &extra, AudienceRule::AnyAccepted, None);
        assert!(
            check(json!({"email_verified": "true"}), &r)
                .unwrap()
                .email_verified
        );
        assert!(
            !check(json!({"email_verified": "false"}), &r)
                .unwrap()
                .email_verified
        );
        assert!(
            !check(json!({"email_verified": null}), &r)
                .unwrap()
                .email_verified
        );
        rejected(check(json!({"email_verified": "yes"}), &r), "malformed");
    }

    #[test]
    fn header_allows_only_rs256_and_es256_with_a_kid() {
        let token =
            |header: Value| format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header.to_string()));
        let header = peek_header(&token(json!({"alg": "RS256", "kid": "k1"}))).unwrap();
        assert_eq!((header.alg, header.kid.as_str()), (Algorithm::RS256, "k1"));
        assert!(peek_header(&token(json!({"alg": "ES256", "kid": "k1"}))).is_ok());
        for alg in ["none", "None", "HS256", "HS512", "RS512", "PS256", "EdDSA"] {
            let err = peek_header(&token(json!({"alg": alg, "kid": "k1"}))).unwrap_err();
            assert_eq!(
                err,
                invalid("the ID token uses an algorithm this server does not accept")
            );
        }
        for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
            let err = peek_header(&token(json!({"alg": "RS256", "kid": "k1", "crit": crit})))
                .unwrap_err();
            assert_eq!(
                err,
                invalid("the ID token requires header extensions this server does not understand")
            );
        }
        assert!(peek_header(&token(json!({"alg": "RS256"}))).is_err());
        assert!(peek_header(&token(json!({"alg": "RS256", "kid": ""}))).is_err());
        assert!(peek_header("a.b").is_err());
        assert!(peek_header("a.b.c.d.e").is_err());
        assert!(peek_header("!!.e30.c2ln").is_err());
        assert!(peek_header(&"a".repeat(MAX_ID_TOKEN_BYTES + 1)).is_err());
    }
}
