//! Tokens that service accounts sign for themselves.
//!
//! A service holds the Ed25519 private key of its account and signs a short JWT per use: header
//! `alg` `EdDSA` and `kid` the account id; claims `iss` and `sub` the account id, `aud` this
//! deployment's access-token audience, `typ` `service`, `iat` and `exp` at most five minutes
//! apart, and a `jti`. assistd checks it against the public key it stored for the account; the
//! token is presented as `authorization: Bearer …` like a user's access token.

use std::time::Duration;

use assistd_domain::ServiceAccountId;
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};

use crate::{SigningKey, TokenError};

/// The value of the `typ` claim in service tokens.
pub const TOKEN_TYPE_SERVICE: &str = "service";

/// The longest lifetime (`exp - iat`) a service token may claim.
pub const MAX_SERVICE_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Clock skew tolerated when checking `exp` and `iat`.
const LEEWAY_SECONDS: i64 = 30;

/// What a verified service token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceClaims {
    /// The service account that signed it.
    pub account: ServiceAccountId,
    /// When it was signed.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    typ: String,
}

/// The service account a token names in its `kid` header, read without verifying anything:
/// the caller then fetches that account's public key and calls [`verify_service_token`].
/// `None` when the token is not a JWT or its `kid` is not a service account id (assistd's own
/// access tokens have key ids of another form).
#[must_use]
pub fn service_token_account(token: &str) -> Option<ServiceAccountId> {
    decode_header(token).ok()?.kid?.parse().ok()
}

/// Verifies a service token completely against the account's raw Ed25519 `public_key`: the
/// algorithm, the signature, `iss` = `sub` = `kid` = the account, `aud`, `typ`, and the times
/// against `now`.
///
/// # Errors
/// The reason the token is not acceptable.
pub fn verify_service_token(
    token: &str,
    account: ServiceAccountId,
    public_key: &[u8],
    audience: &str,
    now: DateTime<Utc>,
) -> Result<ServiceClaims, TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    if header.kid.as_deref() != Some(account.to_string().as_str()) {
        return Err(TokenError::UnknownKey);
    }
    let subject = account.to_string();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&subject]);
    validation.set_audience(&[audience]);
    validation.sub = Some(subject);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = decode::<WireClaims>(token, &DecodingKey::from_ed_der(public_key), &validation)
        .map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            match err.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm,
                _ => TokenError::Malformed,
            }
        })?;
    let claims = data.claims;
    if claims.typ != TOKEN_TYPE_SERVICE {
        return Err(TokenError::WrongType);
    }
    let now = now.timestamp();
    if claims.exp <= now - LEEWAY_SECONDS {
        return Err(TokenError::Expired);
    }
    let max_ttl = i64::try_from(MAX_SERVICE_TOKEN_TTL.as_secs()).expect("fits");
    if claims.iat > now + LEEWAY_SECONDS
        || claims.exp < claims.iat
        || claims.exp - claims.iat > max_ttl
    {
        return Err(TokenError::BadValidityPeriod);
    }
    let timestamp = |secs| {
        Utc.timestamp_opt(secs, 0)
            .single()
            .ok_or(TokenError::Malformed)
    };
    Ok(ServiceClaims {
        account,
        issued_at: timestamp(claims.iat)?,
        expires_at: timestamp(claims.exp)?,
    })
}

/// A service token for `account`, signed with its private `key`, valid from `now` for `ttl`
/// (at most [`MAX_SERVICE_TOKEN_TTL`]). What a calling service does; assistd uses it in its
/// command that prints a token for grpcurl, and tests use it.
///
/// # Errors
/// `ttl` is zero or longer than [`MAX_SERVICE_TOKEN_TTL`].
pub fn sign_service_token(
    key: &SigningKey,
    account: ServiceAccountId,
    audience: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<String, TokenError> {
    if ttl.is_zero() || ttl > MAX_SERVICE_TOKEN_TTL {
        return Err(TokenError::BadValidityPeriod);
    }
    let ttl = chrono::Duration::from_std(ttl).map_err(|_| TokenError::BadValidityPeriod)?;
    let claims = WireClaims {
        iss: account.to_string(),
        sub: account.to_string(),
        aud: audience.to_owned(),
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
        jti: uuid::Uuid::now_v7().simple().to_string(),
        typ: TOKEN_TYPE_SERVICE.to_owned(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(account.to_string());
    Ok(encode(&header, &claims, key.encoding_key())
        .expect("signing with a valid Ed25519 key cannot fail"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIENCE: &str = "assistd-api";

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
    }

    #[test]
    fn a_signed_token_verifies_against_its_account_only() {
        let key = SigningKey::generate();
        let account = ServiceAccountId::new();
        let token =
            sign_service_token(&key, account, AUDIENCE, Duration::from_secs(60), now()).unwrap();
        assert_eq!(service_token_account(&token), Some(account));
        let claims =
            verify_service_token(&token, account, key.public_key(), AUDIENCE, now()).unwrap();
        assert_eq!(claims.account, account);

        let other = SigningKey::generate();
        assert_eq!(
            verify_service_token(&token, account, other.public_key(), AUDIENCE, now()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_service_token(
                &token,
                ServiceAccountId::new(),
                key.public_key(),
                AUDIENCE,
                now()
            ),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            verify_service_token(&token, account, key.public_key(), "elsewhere", now()),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn times_are_checked() {
        let key = SigningKey::generate();
        let account = ServiceAccountId::new();
        let token =
            sign_service_token(&key, account, AUDIENCE, Duration::from_secs(60), now()).unwrap();
        let later = now() + chrono::Duration::seconds(60 + LEEWAY_SECONDS);
        assert_eq!(
            verify_service_token(&token, account, key.public_key(), AUDIENCE, later),
            Err(TokenError::Expired)
        );
        let earlier = now() - chrono::Duration::seconds(LEEWAY_SECONDS + 1);
        assert_eq!(
            verify_service_token(&token, account, key.public_key(), AUDIENCE, earlier),
            Err(TokenError::BadValidityPeriod)
        );
        assert_eq!(
            sign_service_token(&key, account, AUDIENCE, Duration::from_secs(301), now()),
            Err(TokenError::BadValidityPeriod)
        );
    }

    #[test]
    fn a_user_access_token_names_no_service_account() {
        use std::sync::Arc;
        let tokens = crate::AccessTokens::new(
            crate::AccessTokenSettings {
                issuer: "https://assistd.example".into(),
                audience: AUDIENCE.into(),
                ttl: Duration::from_secs(600),
            },
            SigningKey::generate(),
            Vec::new(),
            Arc::new(assistd_domain::SystemClock),
        );
        let issued = tokens.issue(assistd_domain::UserId::new());
        assert_eq!(service_token_account(&issued.token), None);
        assert_eq!(service_token_account("not a token"), None);
    }
}
