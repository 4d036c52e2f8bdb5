//! The user's OAuth access token as this crate holds it, and where it comes from.

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::GmailError;

/// An OAuth 2.0 access token for the Gmail API.
///
/// Zeroized on drop, without `Clone`, `Display` or `Serialize`; its `Debug` prints
/// `AccessToken([redacted])`, and it is read only through [`AccessToken::expose_secret`] to
/// build the `Authorization` header.
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Wraps `token`.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(Zeroizing::new(token.into()))
    }

    /// The token itself. Only for the `Authorization` header.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// Hands out one user's access token (e.g. `AuthService::google_access_token`).
#[async_trait]
pub trait AccessTokenSource: Send + Sync {
    /// The user's current access token. `refresh = true` is asked after Gmail answered 401
    /// to the token given before: the source must then return a freshly refreshed token
    /// (not a cached one).
    ///
    /// # Errors
    /// [`GmailError::ReauthRequired`] when the grant is gone (the token endpoint answered
    /// `invalid_grant`, no refresh token is stored); [`GmailError::Unavailable`] when the
    /// token endpoint cannot be reached. Other errors are passed through to the caller.
    async fn access_token(&self, refresh: bool) -> Result<AccessToken, GmailError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let token = AccessToken::new("ya29.secret");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(token.expose_secret(), "ya29.secret");
    }
}
