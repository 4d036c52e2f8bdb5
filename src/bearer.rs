//! The bearer-token layer: every call except the explicitly public ones must carry
//! `authorization: Bearer <access token>`. The layer verifies the token, checks that its
//! account still exists and that its session (if it names one) is still active, and hands the
//! caller's user id to handlers through the request extensions; handlers never read a user id
//! from a request field.

use std::sync::Arc;
use std::task::{Context, Poll};

use assistd_core::auth::SessionGate;
use assistd_domain::{AuthSessionId, Error, ErrorReason, UserId};
use assistd_identity::{AccessClaims, AccessTokens, TokenError};
use futures::future::BoxFuture;
use tonic::Status;
use tower::{Layer, Service};

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

/// The authenticated caller, put into the request extensions by [`BearerLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user the access token was issued to.
    pub user: UserId,
    /// The sign-in session of the token, if it was issued in one.
    pub session: Option<AuthSessionId>,
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
}

impl BearerLayer {
    /// A layer that verifies tokens with `tokens`, and the accounts and sessions they name
    /// with `sessions`.
    #[must_use]
    pub fn new(tokens: AccessTokens, sessions: Arc<SessionGate>) -> Self {
        Self { tokens, sessions }
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            tokens: self.tokens.clone(),
            sessions: Arc::clone(&self.sessions),
        }
    }
}

/// Verifies the bearer token of each non-public call; answers UNAUTHENTICATED without
/// calling the handler when it is missing or not acceptable.
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    tokens: AccessTokens,
    sessions: Arc<SessionGate>,
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
        let verified = authenticate(&self.tokens, request.headers());
        let sessions = Arc::clone(&self.sessions);
        Box::pin(async move {
            // Every caller's account must still exist, and its session, when the token names
            // one, must be the account's and active: a token outlives neither.
            let checked = match verified {
                Ok(claims) => sessions
                    .check(claims.user, claims.session)
                    .await
                    .map(|()| claims),
                Err(err) => Err(err),
            };
            match checked {
                Ok(claims) => {
                    request.extensions_mut().insert(Caller {
                        user: claims.user,
                        session: claims.session,
                    });
                    inner.call(request).await
                }
                Err(err) => {
                    tracing::info!(method = request.uri().path(), error = %err, "rejected unauthenticated call");
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

/// The verified claims of the bearer token in `headers`.
fn authenticate(tokens: &AccessTokens, headers: &http::HeaderMap) -> Result<AccessClaims, Error> {
    let unauthenticated = |reason: ErrorReason, message: &str| Error::Unauthenticated {
        reason,
        message: message.to_owned(),
    };
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        unauthenticated(
            ErrorReason::AccessTokenMissing,
            "this call needs `authorization: Bearer <access token>` metadata; sign in to get a token",
        )
    })?;
    let token = value
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
        })?;
    tokens.verify(token).map_err(|err| {
        let reason = match err {
            TokenError::Expired => ErrorReason::AccessTokenExpired,
            _ => ErrorReason::AccessTokenInvalid,
        };
        unauthenticated(reason, &err.to_string())
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
}
