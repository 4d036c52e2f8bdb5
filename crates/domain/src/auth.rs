//! Accounts and their sign-in sessions as the rest of assistd sees them: who a user is, which
//! devices are signed in, and how each signed in. The store maps its rows into these; the
//! sign-in service and the gRPC edge work with them and never with rows.

use chrono::{DateTime, Utc};

use crate::{AuthSessionId, UserId};

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The account's id, the `sub` of its access tokens.
    pub id: UserId,
    /// Name shown in clients.
    pub display_name: Option<String>,
    /// Email address from the identity provider, if known.
    pub email: Option<String>,
    /// Whether the identity provider reported the email address as verified.
    pub email_verified: bool,
    /// URL of the profile picture the identity provider sent, if any.
    pub picture_url: Option<String>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the profile last changed.
    pub updated_at: DateTime<Utc>,
    /// When the user last signed in (a new session), if ever.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// How a session was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInMethod {
    /// BeginLogin and CompleteLogin.
    GoogleRedirect,
    /// SignInWithIdToken.
    GoogleIdToken,
}

impl SignInMethod {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GoogleRedirect => "google_redirect",
            Self::GoogleIdToken => "google_id_token",
        }
    }

    /// The method stored as `text`; `None` for a name this version does not know (a newer
    /// replica may have written it).
    #[must_use]
    pub fn from_stored(text: &str) -> Option<Self> {
        match text {
            "google_redirect" => Some(Self::GoogleRedirect),
            "google_id_token" => Some(Self::GoogleIdToken),
            _ => None,
        }
    }
}

/// One signed-in device of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSession {
    /// Session id.
    pub id: AuthSessionId,
    /// Whose session it is.
    pub user: UserId,
    /// Label the client gave at sign-in.
    pub device_name: String,
    /// User agent at the latest sign-in or refresh.
    pub user_agent: String,
    /// Client address at the latest sign-in or refresh.
    pub ip_address: String,
    /// How it was opened; `None` for a name this version does not know.
    pub method: Option<SignInMethod>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it last signed in or refreshed.
    pub last_used_at: DateTime<Utc>,
    /// Its absolute end.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl AuthSession {
    /// Whether the session is usable at `now`.
    #[must_use]
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_methods_round_trip_through_their_stored_names() {
        for method in [SignInMethod::GoogleRedirect, SignInMethod::GoogleIdToken] {
            assert_eq!(SignInMethod::from_stored(method.as_str()), Some(method));
        }
        assert_eq!(SignInMethod::from_stored("passkey"), None);
    }
}
