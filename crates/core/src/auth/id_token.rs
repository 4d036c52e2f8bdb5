//! Signing in with an ID token the client obtained itself (Android, iOS, Google Identity
//! Services). Each token signs in once, on either path (the redirect flow records the ID token
//! of its code exchange too): it is remembered by its signed part until the verifier would
//! refuse it anyway.

use assistd_domain::auth::SignInMethod;
use assistd_domain::{FieldViolation, Result};
use assistd_identity::{OidcClient, VerifiedIdentity, token_hash};

use super::sign_in::{SingleUse, check_device_name};
use super::{AuthService, ClientInfo, SignedIn, chrono_duration, provider_error};

impl AuthService {
    /// Signs in with an ID token the client obtained itself; each token is accepted once.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty or oversized token, nonce or device name;
    /// UNAUTHENTICATED with ID_TOKEN_INVALID (including a replay), EMAIL_NOT_VERIFIED or
    /// DOMAIN_NOT_ALLOWED; UNAVAILABLE when the provider's keys cannot be fetched.
    pub async fn sign_in_with_id_token(
        &self,
        id_token: &str,
        nonce: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        self.inner.limits.check_ip(client.context.client_ip)?;
        check_id_token_request(id_token, nonce, &client.device_name)?;
        let oidc = self.oidc()?;
        let identity = match self.verify_id_token(oidc, id_token, nonce).await {
            Ok(identity) => identity,
            Err(err) => {
                self.record_failure(&err, client).await;
                return Err(err);
            }
        };
        let single_use = self.single_use_record(id_token, &identity);
        let result = self
            .open_session(
                &identity,
                SignInMethod::GoogleIdToken,
                client,
                Some(single_use),
            )
            .await;
        match &result {
            Ok(_) => self.purge_expired(self.now()).await,
            Err(err) => self.record_failure(err, client).await,
        }
        result
    }

    /// The provider's signature, audience, times and nonce, then this server's policy.
    async fn verify_id_token(
        &self,
        oidc: &OidcClient,
        id_token: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity> {
        let identity = oidc
            .verify_id_token(id_token, Some(nonce).filter(|n| !n.is_empty()))
            .await
            .map_err(provider_error)?;
        self.check_policy(&identity)?;
        Ok(identity)
    }

    /// How the token is remembered as used: by its signed part, since an ECDSA signature can
    /// be rewritten into another valid one and the whole text would let a replay through.
    /// Kept until the verifier would refuse the token anyway (its expiry plus the tolerated
    /// skew).
    pub(super) fn single_use_record(
        &self,
        id_token: &str,
        identity: &VerifiedIdentity,
    ) -> SingleUse {
        let signed_part = id_token
            .rsplit_once('.')
            .map_or(id_token, |(signed, _)| signed);
        let remember_until = identity.expires_at + chrono_duration(self.inner.config.clock_skew);
        (token_hash(signed_part), remember_until)
    }
}

/// The token must look like a JWT of bounded size, the nonce be bounded, the device label
/// valid.
fn check_id_token_request(id_token: &str, nonce: &str, device_name: &str) -> Result<()> {
    let mut violations = Vec::new();
    if id_token.is_empty() {
        violations.push(FieldViolation::new("id_token", "is required"));
    } else if id_token.len() > 8192 || id_token.split('.').count() != 3 {
        violations.push(FieldViolation::new(
            "id_token",
            "must be a JWT (three dot-separated parts) of at most 8192 characters",
        ));
    }
    if nonce.chars().count() > 256 {
        violations.push(FieldViolation::new(
            "nonce",
            "must be at most 256 characters",
        ));
    }
    check_device_name(device_name, &mut violations);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations.into())
    }
}
