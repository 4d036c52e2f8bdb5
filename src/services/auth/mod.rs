//! AuthService: sign-in with the OpenID provider, device sessions and the account. The
//! handlers read requests through `requests.rs` and answer through `convert.rs`.

mod convert;
mod export;
mod requests;

use assistd_core::auth::{AuthService, ClientInfo, GmailConsent};
use assistd_core::export::Requester;
use assistd_domain::AuthSessionId;
use tonic::{Request, Response, Status};

use self::convert::{session_to_proto, signed_in, tokens_to_proto, user_to_proto};
use self::requests::{ListSessions, ProfileUpdate, SessionCursor};
use super::{invalid, required_id, timestamp};
use crate::bearer::{caller, caller_session};
use crate::metrics::SignInMetrics;
use crate::proto::auth::v1 as pb;
use crate::request_context::ClientAddressPolicy;
use crate::status::status;

/// The gRPC face of [`AuthService`].
#[derive(Clone, Debug)]
pub struct AuthApi {
    service: AuthService,
    addresses: ClientAddressPolicy,
    metrics: Option<std::sync::Arc<SignInMetrics>>,
}

impl AuthApi {
    /// Serves `service`, recording client addresses per `addresses`.
    #[must_use]
    pub fn new(service: AuthService, addresses: ClientAddressPolicy) -> Self {
        Self {
            service,
            addresses,
            metrics: None,
        }
    }

    /// This API, counting sign-in outcomes in `metrics` when given.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<std::sync::Arc<SignInMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts the outcome of a sign-in or refresh, then hands it on.
    fn count<T>(&self, method: &str, result: Result<T, Status>) -> Result<T, Status> {
        if let Some(metrics) = &self.metrics {
            metrics.record(method, &result);
        }
        result
    }

    fn client<T>(&self, request: &Request<T>, device_name: &str) -> ClientInfo {
        ClientInfo {
            context: self.addresses.context(request),
            device_name: device_name.to_owned(),
        }
    }
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
                if body.request_gmail_compose {
                    GmailConsent::ReadAndCompose
                } else if body.request_gmail_access {
                    GmailConsent::Read
                } else {
                    GmailConsent::None
                },
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
        let signed = self.count(
            "complete_login",
            self.service
                .complete_login(&body.state, &body.code, &client)
                .await
                .map_err(status),
        )?;
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
        let signed = self.count(
            "sign_in_with_id_token",
            self.service
                .sign_in_with_id_token(&body.id_token, &body.nonce, &client)
                .await
                .map_err(status),
        )?;
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
        let tokens = self.count(
            "refresh",
            self.service
                .refresh(&body.refresh_token, &client)
                .await
                .map_err(status),
        )?;
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
        let update = ProfileUpdate::try_from(request.into_inner()).map_err(invalid)?;
        let user = self
            .service
            .update_display_name(user, &update.display_name, &context)
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
        let list = ListSessions::try_from(request.into_inner()).map_err(invalid)?;
        let mut sessions = self
            .service
            .list_sessions(
                user,
                list.page.position().map_err(invalid)?,
                list.page.size().fetch(),
            )
            .await
            .map_err(status)?;
        let next_page_token = list.page.finish(&mut sessions, |last| {
            SessionCursor::new(last.created_at, last.id)
        });
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
        let session: AuthSessionId =
            required_id("session_id", &request.into_inner().session_id).map_err(invalid)?;
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

    type ExportDataStream = export::ExportStream;

    async fn export_data(
        &self,
        request: Request<pb::ExportDataRequest>,
    ) -> Result<Response<Self::ExportDataStream>, Status> {
        let user = caller(&request)?;
        let context = self.addresses.context(&request);
        Ok(Response::new(export::start(
            self.service.data_export(),
            user,
            Requester::User(context),
        )))
    }
}
