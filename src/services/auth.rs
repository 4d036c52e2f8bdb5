//! AuthService: sign-in with the OpenID provider, device sessions and the account.

use assistd_core::auth::{AuthService, ClientInfo, SessionTokens, SignedIn};
use assistd_domain::AuthSessionId;
use assistd_domain::auth::{AuthSession, SignInMethod, User};
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::{decode_token, encode_token, from_micros, micros, next_page, page_size, timestamp};
use crate::auth::{caller, caller_session};
use crate::proto::auth::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::{invalid_field, status};

/// The gRPC face of [`AuthService`].
#[derive(Clone, Debug)]
pub struct AuthApi {
    service: AuthService,
    addresses: ClientAddressPolicy,
}

impl AuthApi {
    /// Serves `service`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(service: AuthService, addresses: ClientAddressPolicy) -> Self {
        Self { service, addresses }
    }

    fn client<T>(&self, request: &Request<T>, device_name: &str) -> ClientInfo {
        ClientInfo {
            context: self.addresses.context(request),
            device_name: device_name.to_owned(),
        }
    }
}

fn user_to_proto(user: &User) -> pb::User {
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

fn tokens_to_proto(tokens: SessionTokens) -> pb::SessionTokens {
    pb::SessionTokens {
        access_token: tokens.access.token,
        token_type: "Bearer".into(),
        access_token_expire_time: Some(timestamp(tokens.access.expires_at)),
        refresh_token: tokens.refresh_token,
        refresh_token_expire_time: Some(timestamp(tokens.refresh_expires_at)),
        session_id: tokens.session_id.to_string(),
    }
}

fn session_to_proto(session: &AuthSession, current: Option<AuthSessionId>) -> pb::Session {
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

/// Page tokens of ListSessions: creation time and id of the last session.
fn encode_page_token(session: &AuthSession) -> String {
    encode_token(
        "sessions",
        &[micros(session.created_at), session.id.to_string()],
    )
}

fn decode_page_token(token: &str) -> Result<(DateTime<Utc>, AuthSessionId), Status> {
    let fields = decode_token(token, "sessions", "ListSessions", 2)?;
    from_micros(&fields[0])
        .zip(fields[1].parse::<AuthSessionId>().ok())
        .ok_or_else(|| {
            invalid_field(
                "page_token",
                "not a token from a previous ListSessions response",
            )
        })
}

fn signed_in(signed: SignedIn) -> (pb::SessionTokens, pb::User, bool, bool) {
    (
        tokens_to_proto(signed.tokens),
        user_to_proto(&signed.user),
        signed.new_user,
        signed.gmail_access_granted,
    )
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn begin_login(
        &self,
        request: Request<pb::BeginLoginRequest>,
    ) -> Result<Response<pb::BeginLoginResponse>, Status> {
        let client = self.client(&request, "");
        let body = request.into_inner();
        let began = self
            .service
            .begin_login(
                &body.redirect_uri,
                body.request_gmail_access,
                Some(body.login_hint.as_str()),
                &client,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::BeginLoginResponse {
            authorization_url: began.authorization_url,
            state: began.state,
            expire_time: Some(timestamp(began.expires_at)),
        }))
    }

    async fn complete_login(
        &self,
        request: Request<pb::CompleteLoginRequest>,
    ) -> Result<Response<pb::CompleteLoginResponse>, Status> {
        let client = self.client(&request, &request.get_ref().device_name);
        let body = request.into_inner();
        let signed = self
            .service
            .complete_login(&body.state, &body.code, &client)
            .await
            .map_err(status)?;
        let (tokens, user, new_user, gmail_access_granted) = signed_in(signed);
        Ok(Response::new(pb::CompleteLoginResponse {
            tokens: Some(tokens),
            user: Some(user),
            new_user,
            gmail_access_granted,
        }))
    }

    async fn sign_in_with_id_token(
        &self,
        request: Request<pb::SignInWithIdTokenRequest>,
    ) -> Result<Response<pb::SignInWithIdTokenResponse>, Status> {
        let client = self.client(&request, &request.get_ref().device_name);
        let body = request.into_inner();
        let signed = self
            .service
            .sign_in_with_id_token(&body.id_token, &body.nonce, &client)
            .await
            .map_err(status)?;
        let (tokens, user, new_user, _) = signed_in(signed);
        Ok(Response::new(pb::SignInWithIdTokenResponse {
            tokens: Some(tokens),
            user: Some(user),
            new_user,
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let client = self.client(&request, "");
        let body = request.into_inner();
        let tokens = self
            .service
            .refresh(&body.refresh_token, &client)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(tokens_to_proto(tokens)),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let user = caller(&request)?;
        let session = caller_session(&request)?;
        let context = self.addresses.context(&request);
        self.service
            .sign_out(user, session, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let user = caller(&request)?;
        let user = self.service.current_user(user).await.map_err(status)?;
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let body = request.into_inner();
        let paths = body.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(invalid_field(
                "update_mask",
                "is required and must name at least one path; allowed: display_name",
            ));
        }
        if let Some(path) = paths.iter().find(|p| p.as_str() != "display_name") {
            return Err(invalid_field(
                "update_mask",
                format!("path {path:?} cannot be updated; allowed: display_name"),
            ));
        }
        let display_name = body.user.map(|u| u.display_name).unwrap_or_default();
        let user = self
            .service
            .update_display_name(user, &display_name, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateProfileResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let user = caller(&request)?;
        let current = caller_session(&request)?;
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 100)?;
        let after = if body.page_token.is_empty() {
            None
        } else {
            Some(decode_page_token(&body.page_token)?)
        };
        let mut sessions = self
            .service
            .list_sessions(user, after, limit + 1)
            .await
            .map_err(status)?;
        let next_page_token = next_page(&mut sessions, limit, encode_page_token);
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions
                .iter()
                .map(|s| session_to_proto(s, current))
                .collect(),
            next_page_token,
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let user = caller(&request)?;
        let current = caller_session(&request)?;
        let context = self.addresses.context(&request);
        let body = request.into_inner();
        let session = body
            .session_id
            .parse::<AuthSessionId>()
            .map_err(|_| invalid_field("session_id", "must be a session id (UUID text)"))?;
        self.service
            .revoke_session(user, current, session, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn revoke_other_sessions(
        &self,
        request: Request<pb::RevokeOtherSessionsRequest>,
    ) -> Result<Response<pb::RevokeOtherSessionsResponse>, Status> {
        let user = caller(&request)?;
        let current = caller_session(&request)?;
        let context = self.addresses.context(&request);
        let count = self
            .service
            .revoke_other_sessions(user, current, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeOtherSessionsResponse {
            revoked_count: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        let body = request.into_inner();
        let deleted_at = self
            .service
            .delete_account(user, &body.confirm_email, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteAccountResponse {
            delete_time: Some(timestamp(deleted_at)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        let token = encode_token(
            "sessions",
            &["1780000000123456".into(), Uuid::nil().to_string()],
        );
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        assert_eq!(
            decode_page_token(&token).unwrap(),
            (at, AuthSessionId::from_uuid(Uuid::nil()))
        );
        assert!(decode_page_token("not-base64!").is_err());
        assert!(decode_page_token(&encode_token("messages", &["1".into(), "x".into()])).is_err());
    }
}
