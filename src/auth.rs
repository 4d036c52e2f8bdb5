//! The authentication layer: every call except the explicitly public ones must carry
//! `authorization: Bearer <access token>`. The layer verifies the token and hands the caller's
//! user id to handlers through the request extensions; handlers never read a user id from a
//! request field.

use std::task::{Context, Poll};

use assistd_domain::{Error, ErrorReason, UserId};
use assistd_identity::{AccessTokens, TokenError};
use futures::future::{Either, Ready, ready};
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

/// The authenticated caller, put into the request extensions by [`AuthLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user the access token was issued to.
    pub user: UserId,
}

/// The caller of an authenticated RPC.
///
/// # Errors
/// INTERNAL when the authentication layer did not run, which is a wiring bug.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<UserId, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.user)
        .ok_or_else(|| {
            status(Error::internal(
                "authenticated RPC reached without a caller",
            ))
        })
}

/// Adds [`Authenticate`] around the routes.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: AccessTokens,
}

impl AuthLayer {
    /// A layer that verifies tokens with `tokens`.
    #[must_use]
    pub fn new(tokens: AccessTokens) -> Self {
        Self { tokens }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// Verifies the bearer token of each non-public call; answers UNAUTHENTICATED without
/// calling the handler when it is missing or not acceptable.
#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    inner: S,
    tokens: AccessTokens,
}

impl<S, B, R> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if is_public(request.uri().path()) {
            return Either::Left(self.inner.call(request));
        }
        match authenticate(&self.tokens, request.headers()) {
            Ok(user) => {
                request.extensions_mut().insert(Caller { user });
                Either::Left(self.inner.call(request))
            }
            Err(err) => {
                tracing::info!(method = request.uri().path(), error = %err, "rejected unauthenticated call");
                Either::Right(ready(Ok(status(err).into_http())))
            }
        }
    }
}

/// The user of the bearer token in `headers`.
fn authenticate(tokens: &AccessTokens, headers: &http::HeaderMap) -> Result<UserId, Error> {
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
    tokens
        .verify(token)
        .map(|claims| claims.user)
        .map_err(|err| {
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
