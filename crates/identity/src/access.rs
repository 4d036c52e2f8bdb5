//! Issuing and verifying access tokens.

use std::sync::Arc;
use std::time::Duration;

use assistd_domain::{AuthSessionId, Clock, UserId};
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};

use crate::SigningKey;

/// The value of the `typ` claim in access tokens; other token kinds use other values.
pub const TOKEN_TYPE_ACCESS: &str = "access";

/// The longest lifetime an access token may have.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Clock skew tolerated when checking `exp` and `iat`.
const LEEWAY_SECONDS: i64 = 30;

/// Most verified tokens remembered; the memory is emptied when it fills up.
const VERIFIED_CACHE_CAPACITY: usize = 100_000;

/// Who issues tokens, for whom, and for how long.
#[derive(Clone, Debug)]
pub struct AccessTokenSettings {
    /// The `iss` claim: this deployment's URL or name.
    pub issuer: String,
    /// The `aud` claim: the API the tokens are for.
    pub audience: String,
    /// Lifetime of a new token; at most [`MAX_ACCESS_TOKEN_TTL`].
    pub ttl: Duration,
}

/// Why a presented token was rejected. The messages are safe to show to the client: they
/// never contain the token or key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or a required claim is missing or mistyped.
    #[error("the access token is malformed")]
    Malformed,
    /// The header names an algorithm other than EdDSA (including `none`).
    #[error("the access token uses an algorithm this server does not accept")]
    UnsupportedAlgorithm,
    /// No `kid`, or a `kid` of a key this server does not hold.
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the access token signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the access token has expired; refresh it")]
    Expired,
    /// `iat` lies in the future, or the token claims a lifetime longer than allowed.
    #[error("the access token's validity period is not acceptable")]
    BadValidityPeriod,
    /// `iss` is not this server.
    #[error("the access token was issued by someone else")]
    WrongIssuer,
    /// `aud` is not this API.
    #[error("the access token is meant for a different audience")]
    WrongAudience,
    /// `typ` is not `access` (e.g. a refresh or ID token).
    #[error("the token is not an access token")]
    WrongType,
}

/// A newly issued access token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWT. A bearer credential: never log it.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a verified access token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    /// The authenticated user.
    pub user: UserId,
    /// The sign-in session the token belongs to (`sid`); `None` for tokens minted outside a
    /// session (the admin command, tests).
    pub session: Option<AuthSessionId>,
    /// The token's unique id (`jti`).
    pub token_id: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// The claims as they travel in the JWT.
#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
    typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// Issues and verifies access tokens.
#[derive(Clone, Debug)]
pub struct AccessTokens {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AccessTokenSettings,
    /// The key that signs; also verifies.
    current: SigningKey,
    /// Earlier keys that still verify tokens they signed.
    previous: Vec<SigningKey>,
    validation: Validation,
    clock: Arc<dyn Clock>,
    /// Tokens whose signature and claims were verified, by their exact text. A client sends
    /// the same token with every call for up to 15 minutes; remembering the outcome saves an
    /// Ed25519 verification per call. Expiry is still checked on every use.
    verified: std::sync::Mutex<std::collections::HashMap<Box<str>, AccessClaims>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the remembered tokens: they are bearer credentials.
        f.debug_struct("AccessTokens")
            .field("settings", &self.settings)
            .field("current_kid", &self.current.kid())
            .field(
                "previous_kids",
                &self
                    .previous
                    .iter()
                    .map(SigningKey::kid)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Signs with `current` and verifies with `current` and `previous`.
    ///
    /// # Panics
    /// `settings.ttl` exceeds [`MAX_ACCESS_TOKEN_TTL`] or is zero; configuration validation
    /// rejects both earlier.
    #[must_use]
    pub fn new(
        settings: AccessTokenSettings,
        current: SigningKey,
        previous: Vec<SigningKey>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        assert!(
            !settings.ttl.is_zero() && settings.ttl <= MAX_ACCESS_TOKEN_TTL,
            "access token lifetime must be between 1 s and 15 min"
        );
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked against the injected clock below, not the system time.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            inner: Arc::new(Inner {
                settings,
                current,
                previous,
                validation,
                clock,
                verified: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    /// The settings tokens are issued under.
    #[must_use]
    pub fn settings(&self) -> &AccessTokenSettings {
        &self.inner.settings
    }

    /// A token for `user`, valid from now for the configured lifetime.
    #[must_use]
    pub fn issue(&self, user: UserId) -> IssuedToken {
        self.issue_at(user, self.inner.clock.now())
    }

    /// A token for `user` as if issued at `issued_at` (tests use it to mint expired tokens).
    ///
    /// # Panics
    /// Signing failed, which only happens with a corrupt key.
    #[must_use]
    pub fn issue_at(&self, user: UserId, issued_at: DateTime<Utc>) -> IssuedToken {
        self.issue_with(user, None, issued_at)
    }

    /// A token for `user` in the sign-in session `session`, valid from now: it stops working
    /// when the session is revoked.
    #[must_use]
    pub fn issue_for_session(&self, user: UserId, session: AuthSessionId) -> IssuedToken {
        self.issue_with(user, Some(session), self.inner.clock.now())
    }

    fn issue_with(
        &self,
        user: UserId,
        session: Option<AuthSessionId>,
        issued_at: DateTime<Utc>,
    ) -> IssuedToken {
        let ttl = chrono::Duration::from_std(self.inner.settings.ttl).expect("ttl fits");
        let expires_at = issued_at + ttl;
        let claims = WireClaims {
            iss: self.inner.settings.issuer.clone(),
            aud: self.inner.settings.audience.clone(),
            sub: user.to_string(),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            jti: uuid::Uuid::now_v7().simple().to_string(),
            typ: TOKEN_TYPE_ACCESS.to_owned(),
            sid: session.map(|id| id.to_string()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.inner.current.kid().to_owned());
        header.typ = Some("at+jwt".to_owned());
        let token = encode(&header, &claims, self.inner.current.encoding_key())
            .expect("signing with a valid Ed25519 key cannot fail");
        IssuedToken { token, expires_at }
    }

    /// Verifies `token` completely: algorithm, key id, signature, issuer, audience, type,
    /// issue and expiry times.
    ///
    /// # Errors
    /// The reason the token is not acceptable.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = self.inner.clock.now().timestamp();
        let remembered = self.verified().get(token).cloned();
        if let Some(claims) = remembered {
            if claims.expires_at.timestamp() <= now - LEEWAY_SECONDS {
                self.verified().remove(token);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let claims = self.verify_uncached(token)?;
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            verified.clear();
        }
        verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    fn verified(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Box<str>, AccessClaims>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep using it.
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full verification, without the memory of earlier results.
    fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = std::iter::once(&self.inner.current)
            .chain(&self.inner.previous)
            .find(|key| key.kid() == kid)
            .ok_or(TokenError::UnknownKey)?;
        let data = decode::<WireClaims>(token, key.decoding_key(), &self.inner.validation)
            .map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm,
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        if claims.typ != TOKEN_TYPE_ACCESS {
            return Err(TokenError::WrongType);
        }
        let now = self.inner.clock.now().timestamp();
        if claims.exp <= now - LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        let max_ttl = i64::try_from(MAX_ACCESS_TOKEN_TTL.as_secs()).expect("fits");
        if claims.iat > now + LEEWAY_SECONDS
            || claims.exp - claims.iat > max_ttl
            || claims.exp < claims.iat
        {
            return Err(TokenError::BadValidityPeriod);
        }
        let user = claims
            .sub
            .parse::<UserId>()
            .map_err(|_| TokenError::Malformed)?;
        let timestamp = |secs| {
            Utc.timestamp_opt(secs, 0)
                .single()
                .ok_or(TokenError::Malformed)
        };
        let session = claims
            .sid
            .as_deref()
            .map(str::parse::<AuthSessionId>)
            .transpose()
            .map_err(|_| TokenError::Malformed)?;
        Ok(AccessClaims {
            user,
            session,
            token_id: claims.jti,
            issued_at: timestamp(claims.iat)?,
            expires_at: timestamp(claims.exp)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assistd_domain::SystemClock;

    fn settings() -> AccessTokenSettings {
        AccessTokenSettings {
            issuer: "https://assistd.test".into(),
            audience: "assistd-api".into(),
            ttl: Duration::from_secs(600),
        }
    }

    fn tokens(key: SigningKey, previous: Vec<SigningKey>) -> AccessTokens {
        AccessTokens::new(settings(), key, previous, Arc::new(SystemClock))
    }

    #[test]
    fn issued_tokens_verify_and_name_the_user() {
        let tokens = tokens(SigningKey::generate(), vec![]);
        let user = UserId::new();
        let issued = tokens.issue(user);
        let claims = tokens.verify(&issued.token).unwrap();
        assert_eq!(claims.user, user);
        assert_eq!(claims.expires_at, issued.expires_at.with_nanosecond_zero());
        assert!(!format!("{issued:?}").contains(&issued.token));
    }

    #[test]
    fn expired_and_future_tokens_are_rejected() {
        let tokens = tokens(SigningKey::generate(), vec![]);
        let user = UserId::new();
        let old = tokens.issue_at(user, Utc::now() - chrono::Duration::minutes(11));
        assert_eq!(tokens.verify(&old.token), Err(TokenError::Expired));
        let future = tokens.issue_at(user, Utc::now() + chrono::Duration::minutes(5));
        assert_eq!(
            tokens.verify(&future.token),
            Err(TokenError::BadValidityPeriod)
        );
    }

    #[test]
    fn previous_keys_verify_but_unknown_keys_do_not() {
        let old_key = SigningKey::generate();
        let old_pem = old_key.expose_pkcs8_pem();
        let old = tokens(old_key, vec![]);
        let token = old.issue(UserId::new()).token;
        let rotated = tokens(
            SigningKey::generate(),
            vec![SigningKey::from_pem(&old_pem).unwrap()],
        );
        assert!(rotated.verify(&token).is_ok());
        let stranger = tokens(SigningKey::generate(), vec![]);
        assert_eq!(stranger.verify(&token), Err(TokenError::UnknownKey));
        assert_eq!(stranger.verify("not.a.jwt"), Err(TokenError::Malformed));
    }

    #[derive(Debug)]
    struct TestClock(std::sync::Mutex<DateTime<Utc>>);

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn remembered_tokens_still_expire_and_are_never_printed() {
        let clock = Arc::new(TestClock(std::sync::Mutex::new(Utc::now())));
        let tokens = AccessTokens::new(settings(), SigningKey::generate(), vec![], clock.clone());
        let issued = tokens.issue(UserId::new());
        assert!(tokens.verify(&issued.token).is_ok());
        assert!(
            tokens.verify(&issued.token).is_ok(),
            "the remembered outcome"
        );
        assert!(!format!("{tokens:?}").contains(&issued.token));
        *clock.0.lock().unwrap() += chrono::Duration::minutes(11);
        assert_eq!(tokens.verify(&issued.token), Err(TokenError::Expired));
        assert_eq!(tokens.verify(&issued.token), Err(TokenError::Expired));
        // A token differing in one signature character is verified on its own, not by memory.
        *clock.0.lock().unwrap() -= chrono::Duration::minutes(11);
        let (signed, signature) = issued.token.rsplit_once('.').unwrap();
        let mut flipped: Vec<char> = signature.chars().collect();
        flipped[10] = if flipped[10] == 'A' { 'B' } else { 'A' };
        let forged = format!("{signed}.{}", flipped.into_iter().collect::<String>());
        assert_ne!(forged, issued.token);
        assert_eq!(tokens.verify(&forged), Err(TokenError::BadSignature));
        assert!(tokens.verify(&issued.token).is_ok());
    }

    trait NanosZero {
        fn with_nanosecond_zero(self) -> Self;
    }
    impl NanosZero for DateTime<Utc> {
        fn with_nanosecond_zero(self) -> Self {
            chrono::Timelike::with_nanosecond(&self, 0).unwrap()
        }
    }
}
