//! The bearer-token layer: every call except the explicitly public ones must carry
//! `authorization: Bearer <access token>`. The layer verifies the token, checks that its
//! account still exists and that its session (if it names one) is still active, and hands the
//! caller's user id to handlers through the request extensions; handlers never read a user id
//! from a request field.

use std::sync::Arc;
use std::task::{Context, Poll};

use assistd_core::auth::SessionGate;
use assistd_core::{ON_BEHALF_OF_METADATA, ServiceAccounts};
use assistd_domain::audit::{AuditOutcome, RequestContext};
use assistd_domain::{AuthSessionId, Error, ErrorReason, ServiceAccountId, UserId};
use assistd_identity::{AccessClaims, AccessTokens, TokenError, service_token_account};
use futures::future::BoxFuture;
use tonic::Status;
use tower::{Layer, Service};

use crate::request_context::ClientAddressPolicy;
use crate::status::status;

/// Methods (full gRPC paths) and services (path prefixes ending in `/`) that need no token.
const PUBLIC: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/assistd.auth.v1.AuthService/BeginLogin",
    "/assistd.auth.v1.AuthService/CompleteLogin",
    "/assistd.auth.v1.AuthService/SignInWithIdToken",
    "/assistd.auth.v1.AuthService/Refresh",
];

/// Whether the gRPC method at `path` may be called without a token.
#[must_use]
pub fn is_public(path: &str) -> bool {
    PUBLIC.iter().any(|public| {
        if public.ends_with('/') {
            path.starts_with(public)
        } else {
            path == *public
        }
    })
}

/// Every RPC of assistd's contracts that needs a token, as full gRPC paths
/// (`/assistd.chat.v1.ChatService/ListSessions`): what a service account may be allowed.
#[must_use]
pub fn authenticated_methods() -> Vec<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes");
    set.file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("/{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .filter(|path| !is_public(path))
        .collect()
}

/// The authenticated caller, put into the request extensions by [`BearerLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user the access token was issued to, or the user a service call is for.
    pub user: UserId,
    /// The sign-in session of the token, if it was issued in one.
    pub session: Option<AuthSessionId>,
    /// The service account making the call for `user`, if a service calls.
    pub service: Option<ServiceAccountId>,
}

/// The authenticated caller of an RPC.
///
/// # Errors
/// INTERNAL when the bearer layer did not run, which is a wiring bug.
fn caller_of<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .copied()
        .ok_or_else(|| {
            status(Error::internal(
                "authenticated RPC reached without a caller",
            ))
        })
}

/// The caller of an authenticated RPC.
///
/// # Errors
/// INTERNAL when the bearer layer did not run, which is a wiring bug.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<UserId, Status> {
    caller_of(request).map(|caller| caller.user)
}

/// The caller's sign-in session, if the token was issued in one.
///
/// # Errors
/// INTERNAL when the bearer layer did not run, which is a wiring bug.
pub fn caller_session<T>(request: &tonic::Request<T>) -> Result<Option<AuthSessionId>, Status> {
    caller_of(request).map(|caller| caller.session)
}

/// Adds [`BearerAuth`] around the routes.
#[derive(Clone, Debug)]
pub struct BearerLayer {
    tokens: AccessTokens,
    sessions: Arc<SessionGate>,
    services: ServiceAccounts,
    addresses: ClientAddressPolicy,
}

impl BearerLayer {
    /// A layer that verifies users' tokens with `tokens` and the accounts and sessions they
    /// name with `sessions`, and the tokens services sign with `services` (auditing their
    /// calls with the client addresses `addresses` finds).
    #[must_use]
    pub fn new(
        tokens: AccessTokens,
        sessions: Arc<SessionGate>,
        services: ServiceAccounts,
        addresses: ClientAddressPolicy,
    ) -> Self {
        Self {
            tokens,
            sessions,
            services,
            addresses,
        }
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            tokens: self.tokens.clone(),
            sessions: Arc::clone(&self.sessions),
            services: self.services.clone(),
            addresses: self.addresses.clone(),
        }
    }
}

/// Verifies the bearer token of each non-public call; answers without calling the handler when
/// it is missing or not acceptable (UNAUTHENTICATED), or when a service may not make the call
/// (PERMISSION_DENIED, or INVALID_ARGUMENT without a user named).
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    tokens: AccessTokens,
    sessions: Arc<SessionGate>,
    services: ServiceAccounts,
    addresses: ClientAddressPolicy,
}

impl<S, B, R> Service<http::Request<B>> for BearerAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if is_public(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The service that was polled ready handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let token = bearer_token(request.headers()).map(str::to_owned);
        let tokens = self.tokens.clone();
        let sessions = Arc::clone(&self.sessions);
        let services = self.services.clone();
        let addresses = self.addresses.clone();
        Box::pin(async move {
            let checked = match token {
                Ok(token) => match service_token_account(&token) {
                    Some(account) => {
                        let call = IncomingServiceCall::of(&addresses, &request);
                        authorize_service(&services, call, &token, account).await
                    }
                    None => authenticate_user(&tokens, &sessions, &token).await,
                },
                Err(err) => Err(err),
            };
            match checked {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(err) => {
                    tracing::info!(method = request.uri().path(), error = %err, "refused a call before its handler");
                    if request.version() <= http::Version::HTTP_11 {
                        drain(request.into_body()).await;
                    }
                    Ok(status(err).into_http())
                }
            }
        })
    }
}

/// The most of a refused call's body that is read before answering.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
/// The longest a refused call waits for the rest of its body.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops what is left of a refused HTTP/1.1 call's body, at most [`DRAIN_LIMIT`]
/// bytes for at most [`DRAIN_TIME`], keeping none of it. Over HTTP/1.1 an answer sent before
/// the body was read makes the server close the connection under a client that may still be
/// writing it (the client sees EPIPE) or about to reuse it (it sees the socket hang up, without
/// knowing whether its next call went out). HTTP/2 streams end on their own and need none of
/// this. The bounds keep a client that never finishes from holding the refusal open.
async fn drain<B>(body: B)
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use bytes::Buf as _;
    use http_body_util::BodyExt as _;
    let discard = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.remaining());
            }
            if read > DRAIN_LIMIT {
                break;
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIME, discard).await.is_err() {
        tracing::debug!("a refused call's body did not arrive in time");
    }
}

fn unauthenticated(reason: ErrorReason, message: &str) -> Error {
    Error::Unauthenticated {
        reason,
        message: message.to_owned(),
    }
}

/// The bearer token in `headers`.
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, Error> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        unauthenticated(
            ErrorReason::AccessTokenMissing,
            "this call needs `authorization: Bearer <access token>` metadata; sign in to get a token",
        )
    })?;
    value
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            unauthenticated(
                ErrorReason::AccessTokenInvalid,
                "the authorization metadata must be `Bearer <access token>`",
            )
        })
}

/// The user a user's access token names, once its session (if any) is checked.
async fn authenticate_user(
    tokens: &AccessTokens,
    sessions: &SessionGate,
    token: &str,
) -> Result<Caller, Error> {
    let claims = verify_access_token(tokens, token)?;
    // Every caller's account must still exist, and its session, when the token names one,
    // must be the account's and active: a token outlives neither.
    sessions.check(claims.user, claims.session).await?;
    Ok(Caller {
        user: claims.user,
        session: claims.session,
        service: None,
    })
}

/// The verified claims of a user's access token.
fn verify_access_token(tokens: &AccessTokens, token: &str) -> Result<AccessClaims, Error> {
    tokens.verify(token).map_err(|err| {
        let reason = match err {
            TokenError::Expired => ErrorReason::AccessTokenExpired,
            _ => ErrorReason::AccessTokenInvalid,
        };
        unauthenticated(reason, &err.to_string())
    })
}

/// What the bearer layer reads of a service's call before checking it.
struct IncomingServiceCall {
    method: String,
    context: RequestContext,
    on_behalf_of: Option<String>,
}

impl IncomingServiceCall {
    fn of<B>(addresses: &ClientAddressPolicy, request: &http::Request<B>) -> Self {
        Self {
            method: request.uri().path().to_owned(),
            context: addresses.context_of_http(request),
            on_behalf_of: request
                .headers()
                .get(ON_BEHALF_OF_METADATA)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// The caller of a service's call: the account's token, RPC allowlist and users checked, and
/// the call recorded in the user's audit trail before it goes ahead.
async fn authorize_service(
    services: &ServiceAccounts,
    incoming: IncomingServiceCall,
    token: &str,
    account: ServiceAccountId,
) -> Result<Caller, Error> {
    let call = services
        .authorize(
            token,
            account,
            &incoming.method,
            incoming.on_behalf_of.as_deref(),
            &incoming.context,
        )
        .await?;
    services
        .record(
            &call,
            &incoming.method,
            AuditOutcome::Success,
            &incoming.context,
        )
        .await?;
    Ok(Caller {
        user: call.user,
        session: None,
        service: Some(call.account),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_login_health_and_reflection_are_public() {
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(is_public(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(is_public("/assistd.auth.v1.AuthService/BeginLogin"));
        assert!(!is_public("/assistd.auth.v1.AuthService/BeginLoginX"));
        assert!(!is_public("/assistd.auth.v1.AuthService/SignOut"));
        assert!(!is_public(
            "/assistd.preferences.v1.PreferencesService/GetPreferences"
        ));
        assert!(!is_public("/grpc.health.v1.HealthX/Check"));
    }

    #[test]
    fn authenticated_methods_are_every_rpc_but_the_public_ones() {
        let methods = authenticated_methods();
        assert!(methods.contains(&"/assistd.chat.v1.ChatService/ListSessions".to_owned()));
        assert!(
            methods
                .contains(&"/assistd.preferences.v1.PreferencesService/GetPreferences".to_owned())
        );
        assert!(methods.contains(&"/assistd.auth.v1.AuthService/SignOut".to_owned()));
        assert!(!methods.contains(&"/assistd.auth.v1.AuthService/Refresh".to_owned()));
        assert!(!methods.iter().any(|m| m.starts_with("/grpc.")));
    }
}
