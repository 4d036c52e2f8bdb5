//! Accounts, device sessions and session tokens as protobuf messages.

use assistd_core::auth::{SessionTokens, SignedIn};
use assistd_domain::AuthSessionId;
use assistd_domain::auth::{AuthSession, SignInMethod, User};

use crate::proto::auth::v1 as pb;
use crate::services::timestamp;

pub(super) fn user_to_proto(user: &User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email.clone().unwrap_or_default(),
        email_verified: user.email_verified,
        display_name: user.display_name.clone().unwrap_or_default(),
        picture_url: user.picture_url.clone().unwrap_or_default(),
        create_time: Some(timestamp(user.created_at)),
        update_time: Some(timestamp(user.updated_at)),
        last_sign_in_time: user.last_sign_in_at.map(timestamp),
    }
}

pub(super) fn tokens_to_proto(tokens: SessionTokens) -> pb::SessionTokens {
    pb::SessionTokens {
        access_token: tokens.access.token,
        token_type: "Bearer".into(),
        access_token_expire_time: Some(timestamp(tokens.access.expires_at)),
        refresh_token: tokens.refresh_token,
        refresh_token_expire_time: Some(timestamp(tokens.refresh_expires_at)),
        session_id: tokens.session_id.to_string(),
    }
}

pub(super) fn session_to_proto(
    session: &AuthSession,
    current: Option<AuthSessionId>,
) -> pb::Session {
    pb::Session {
        id: session.id.to_string(),
        device_name: session.device_name.clone(),
        user_agent: session.user_agent.clone(),
        ip_address: session.ip_address.clone(),
        sign_in_method: match session.method {
            Some(SignInMethod::GoogleRedirect) => pb::SignInMethod::GoogleRedirect,
            Some(SignInMethod::GoogleIdToken) => pb::SignInMethod::GoogleIdToken,
            None => pb::SignInMethod::Unspecified,
        }
        .into(),
        create_time: Some(timestamp(session.created_at)),
        last_used_time: Some(timestamp(session.last_used_at)),
        expire_time: Some(timestamp(session.expires_at)),
        current: current == Some(session.id),
    }
}

pub(super) fn signed_in(signed: SignedIn) -> (pb::SessionTokens, pb::User, bool, bool) {
    (
        tokens_to_proto(signed.tokens),
        user_to_proto(&signed.user),
        signed.new_user,
        signed.gmail_access_granted,
    )
}
