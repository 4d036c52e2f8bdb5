//! The issuer's signing keys: fetched from `jwks_uri`, kept as long as `Cache-Control: max-age`
//! allows, and fetched again early when a token names a key we do not know, at most once a
//! minute so a flood of made-up `kid`s cannot make us hammer the provider.

use std::collections::HashMap;

use assistd_domain::Clock;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::{CallReport, OidcError};

/// Lifetime of a key set whose response carries no `max-age`.
const DEFAULT_TTL: chrono::Duration = chrono::Duration::hours(1);
/// Longest lifetime, whatever `max-age` says.
const MAX_TTL: chrono::Duration = chrono::Duration::hours(24);
/// Shortest lifetime, whatever `max-age` (or `no-cache`) says, so that traffic cannot turn into
/// one JWKS request per token.
const MIN_TTL: chrono::Duration = chrono::Duration::seconds(60);
/// Least time between two fetches caused by unknown `kid`s.
const UNKNOWN_KID_REFETCH_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

/// A public key that may verify ID tokens, with the one algorithm it is used with.
#[derive(Clone)]
pub(super) struct VerificationKey {
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
}

#[derive(Default)]
pub(super) struct JwksCache {
    state: Mutex<State>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    set: Option<KeySet>,
    last_unknown_kid_refetch: Option<DateTime<Utc>>,
}

struct KeySet {
    uri: Url,
    keys: HashMap<String, VerificationKey>,
    fetched_at: DateTime<Utc>,
    fresh_until: DateTime<Utc>,
}

impl KeySet {
    fn is_fresh(&self, uri: &Url, now: DateTime<Utc>) -> bool {
        &self.uri == uri && self.fetched_at <= now && now < self.fresh_until
    }
}

impl JwksCache {
    /// The key named `kid` in the key set at `uri`.
    ///
    /// # Errors
    /// `Unavailable` when no key set could ever be fetched, `InvalidIdToken` for a `kid` that
    /// is not in the set (after one allowed refetch).
    pub(super) async fn key(
        &self,
        http: &reqwest::Client,
        uri: &Url,
        kid: &str,
        clock: &dyn Clock,
        calls: &CallReport,
    ) -> Result<VerificationKey, OidcError> {
        // Held across fetches: concurrent verifications wait for one request instead of
        // each sending their own.
        let mut state = self.state.lock().await;
        let now = clock.now();

        let fresh = state.set.as_ref().is_some_and(|s| s.is_fresh(uri, now));
        if !fresh {
            match fetch(http, uri, now, calls).await {
                Ok(set) => state.set = Some(set),
                Err(error) => match &state.set {
                    Some(stale) if &stale.uri == uri => {
                        tracing::warn!(%error, "JWKS fetch failed; using the previous key set");
                    }
                    _ => return Err(error),
                },
            }
        }
        if let Some(key) = lookup(&state, kid) {
            return Ok(key);
        }

        // An unknown kid may be a key the provider just rotated in: look again, unless we
        // have just fetched or did so for an unknown kid less than a minute ago.
        let may_refetch = fresh
            && state
                .last_unknown_kid_refetch
                .is_none_or(|t| now < t || now - t >= UNKNOWN_KID_REFETCH_INTERVAL);
        if may_refetch {
            state.last_unknown_kid_refetch = Some(now);
            match fetch(http, uri, now, calls).await {
                Ok(set) => {
                    state.set = Some(set);
                    if let Some(key) = lookup(&state, kid) {
                        return Ok(key);
                    }
                }
                // The keys we hold do not include this kid, and the provider cannot say
                // otherwise right now: the token is not verifiable, which is its problem.
                Err(error) => tracing::warn!(%error, "JWKS refetch for an unknown kid failed"),
            }
        }
        Err(OidcError::InvalidIdToken(
            "the ID token was signed by an unknown key".into(),
        ))
    }
}

fn lookup(state: &State, kid: &str) -> Option<VerificationKey> {
    state.set.as_ref()?.keys.get(kid).cloned()
}

/// Fetches the key set, reporting the request to `calls`.
async fn fetch(
    http: &reqwest::Client,
    uri: &Url,
    now: DateTime<Utc>,
    calls: &CallReport,
) -> Result<KeySet, OidcError> {
    let started = std::time::Instant::now();
    let fetched = fetch_key_set(http, uri, now).await;
    calls.record("jwks", started, &fetched);
    fetched
}

async fn fetch_key_set(
    http: &reqwest::Client,
    uri: &Url,
    now: DateTime<Utc>,
) -> Result<KeySet, OidcError> {
    let response = http
        .get(uri.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| OidcError::Unavailable(format!("JWKS request failed: {e}")))?;
    if !response.status().is_success() {
        return Err(OidcError::Unavailable(format!(
            "JWKS answered HTTP {}",
            response.status()
        )));
    }
    let ttl = response
        .headers()
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(max_age);
    let ttl = cache_ttl(ttl);
    let body = response
        .bytes()
        .await
        .map_err(|e| OidcError::Unavailable(format!("JWKS unreadable: {e}")))?;
    let keys = parse_jwks(&body)?;
    if keys.is_empty() {
        tracing::warn!(%uri, "the JWKS holds no usable RS256/ES256 signing key");
    }
    Ok(KeySet {
        uri: uri.clone(),
        keys,
        fetched_at: now,
        fresh_until: now + ttl,
    })
}

/// `max-age` of one `Cache-Control` header value, if any. `no-cache` and `no-store` count as 0.
pub(super) fn max_age(header: &str) -> Option<u64> {
    header.split(',').find_map(|directive| {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "max-age" => value.trim().trim_matches('"').parse().ok(),
            "no-cache" | "no-store" => Some(0),
            _ => None,
        }
    })
}

/// How long a key set is used: `max-age` within [`MIN_TTL`, `MAX_TTL`], else one hour.
pub(super) fn cache_ttl(max_age: Option<u64>) -> chrono::Duration {
    match max_age {
        None => DEFAULT_TTL,
        Some(seconds) => {
            // Clamp before converting: a huge header value must not overflow a TimeDelta.
            let seconds = seconds.clamp(
                MIN_TTL.num_seconds().unsigned_abs(),
                MAX_TTL.num_seconds().unsigned_abs(),
            );
            chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
        }
    }
}

#[derive(Deserialize)]
struct JwkSetDocument {
    keys: Vec<serde_json::Value>,
}

/// The signing keys of a JWKS document, by `kid`. Keys without `kid`, for encryption, of
/// other types or curves, or meant for other algorithms are skipped; so are symmetric (`oct`)
/// keys, whatever they claim.
pub(super) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, VerificationKey>, OidcError> {
    let document: JwkSetDocument = serde_json::from_slice(body)
        .map_err(|e| OidcError::Unavailable(format!("JWKS unparsable: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &document.keys {
        let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
        let Some(kid) = field("kid").filter(|k| !k.is_empty()) else {
            continue;
        };
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let key = match (field("kty"), field("alg")) {
            (Some("RSA"), None | Some("RS256")) => match (field("n"), field("e")) {
                (Some(n), Some(e)) => {
                    DecodingKey::from_rsa_components(n, e)
                        .ok()
                        .map(|key| VerificationKey {
                            algorithm: Algorithm::RS256,
                            key,
                        })
                }
                _ => None,
            },
            (Some("EC"), None | Some("ES256")) if field("crv") == Some("P-256") => {
                match (field("x"), field("y")) {
                    (Some(x), Some(y)) => {
                        DecodingKey::from_ec_components(x, y)
                            .ok()
                            .map(|key| VerificationKey {
                                algorithm: Algorithm::ES256,
                                key,
                            })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(key) = key {
            // The first of several keys with one kid wins; a later one cannot displace it.
            keys.entry(kid.to_owned()).or_insert(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19213, must-revalidate"),
            Some(19213)
        );
        assert_eq!(max_age("Max-Age = 60"), Some(60));
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn ttl_defaults_to_an_hour_and_is_clamped() {
        assert_eq!(cache_ttl(None), chrono::Duration::hours(1));
        assert_eq!(cache_ttl(Some(300)), chrono::Duration::seconds(300));
        assert_eq!(cache_ttl(Some(0)), chrono::Duration::seconds(60));
        assert_eq!(cache_ttl(Some(10 * 86_400)), chrono::Duration::hours(24));
        assert_eq!(cache_ttl(Some(u64::MAX)), chrono::Duration::hours(24));
    }

    #[test]
    fn only_asymmetric_signing_keys_with_kid_are_kept() {
        // A 2048-bit modulus is not needed to parse: jsonwebtoken checks the key when verifying.
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["rsa"].algorithm, Algorithm::RS256);
        assert!(matches!(
            parse_jwks(b"not json"),
            Err(OidcError::Unavailable(_))
        ));
    }
}
