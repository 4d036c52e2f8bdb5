//! The `[sign_in]` configuration section: which OpenID provider and clients are trusted,
//! where a login may redirect, how long sessions live and how fast sign-in may be called.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest a login attempt may stay open.
pub const MAX_LOGIN_ATTEMPT_TTL: Duration = Duration::from_secs(10 * 60);

/// The `[sign_in]` configuration section.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SignInConfig {
    /// The OpenID issuer; Google by default.
    pub issuer: String,
    /// This server's OAuth client id. Empty disables sign-in (the sign-in RPCs answer
    /// FAILED_PRECONDITION).
    pub client_id: String,
    /// The OAuth client secret. Prefer the environment (`ASSISTD_SIGN_IN__CLIENT_SECRET`).
    /// Never serialized or printed.
    #[serde(skip_serializing)]
    pub client_secret: String,
    /// Further client ids (Android, iOS, Google Identity Services) whose ID tokens
    /// SignInWithIdToken accepts.
    pub additional_client_ids: Vec<String>,
    /// Redirect URIs BeginLogin accepts, compared exactly.
    pub allowed_redirect_uris: Vec<String>,
    /// Refuse accounts whose email address the provider has not verified.
    pub require_email_verified: bool,
    /// When not empty, only Google Workspace accounts of these domains (`hd`) may sign in.
    pub allowed_hosted_domains: Vec<String>,
    /// How long a login attempt stays open; at most 10 minutes.
    #[serde(with = "humantime_serde")]
    pub login_attempt_ttl: Duration,
    /// A session whose refresh token is not used for this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, however often it refreshes.
    #[serde(with = "humantime_serde")]
    pub session_max_lifetime: Duration,
    /// How long after a refresh the same refresh token still yields the same new token (a
    /// client that lost the response retries) instead of counting as reuse.
    #[serde(with = "humantime_serde")]
    pub refresh_grace: Duration,
    /// Clock skew tolerated on ID token times.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Timeout of each request to the identity provider.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Sign-in calls (BeginLogin, CompleteLogin, SignInWithIdToken, Refresh) allowed per
    /// client IP per minute.
    pub sign_in_per_ip_per_minute: u32,
    /// Sign-ins and refreshes allowed per user per minute.
    pub sign_in_per_user_per_minute: u32,
}

impl std::fmt::Debug for SignInConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("allowed_redirect_uris", &self.allowed_redirect_uris)
            .finish_non_exhaustive()
    }
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            issuer: assistd_identity::GOOGLE_ISSUER.to_owned(),
            client_id: String::new(),
            client_secret: String::new(),
            additional_client_ids: Vec::new(),
            allowed_redirect_uris: Vec::new(),
            require_email_verified: true,
            allowed_hosted_domains: Vec::new(),
            login_attempt_ttl: MAX_LOGIN_ATTEMPT_TTL,
            session_idle_timeout: Duration::from_secs(30 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(90 * 24 * 3600),
            refresh_grace: Duration::from_secs(30),
            clock_skew: assistd_identity::DEFAULT_CLOCK_SKEW,
            http_timeout: assistd_identity::DEFAULT_HTTP_TIMEOUT,
            sign_in_per_ip_per_minute: 60,
            sign_in_per_user_per_minute: 30,
        }
    }
}

impl SignInConfig {
    /// Checks the values that have limits.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.login_attempt_ttl.is_zero() || self.login_attempt_ttl > MAX_LOGIN_ATTEMPT_TTL {
            return Err("sign_in.login_attempt_ttl must be between 1 s and 10 min".into());
        }
        if self.session_idle_timeout.is_zero() || self.session_max_lifetime.is_zero() {
            return Err(
                "sign_in.session_idle_timeout and sign_in.session_max_lifetime must be positive"
                    .into(),
            );
        }
        if self.sign_in_per_ip_per_minute == 0 || self.sign_in_per_user_per_minute == 0 {
            return Err("sign_in rate limits must be at least 1 per minute".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid_and_limits_are_checked() {
        assert!(SignInConfig::default().validate().is_ok());
        let config = SignInConfig {
            login_attempt_ttl: Duration::from_secs(11 * 60),
            ..SignInConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
