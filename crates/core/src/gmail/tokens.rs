//! The user's Google access token as the Gmail client asks for it: the stored one while it
//! is valid, a refreshed one after Gmail answered 401.

use assistd_domain::{Error, ErrorReason, UserId};
use assistd_gmail::{AccessToken, AccessTokenSource, GmailError};

use crate::auth::AuthService;

/// The access tokens of one user, from the sign-in service.
pub(super) struct UserTokens {
    pub(super) auth: AuthService,
    pub(super) user: UserId,
}

#[async_trait::async_trait]
impl AccessTokenSource for UserTokens {
    async fn access_token(&self, refresh: bool) -> Result<AccessToken, GmailError> {
        match self.auth.google_access_token_with(self.user, refresh).await {
            Ok(secret) => secret
                .expose_secret_str()
                .map(AccessToken::new)
                .map_err(|_| {
                    GmailError::Protocol("the stored Google access token is not UTF-8".into())
                }),
            Err(Error::FailedPrecondition {
                reason: ErrorReason::GoogleReauthRequired,
                ..
            }) => Err(GmailError::ReauthRequired),
            Err(err) => {
                tracing::warn!(user = %self.user, error = %err, "no Google access token for Gmail");
                Err(GmailError::Unavailable(
                    "the Google token endpoint could not renew the access token".into(),
                ))
            }
        }
    }
}
