//! Services whose contracts are published but whose implementation has not shipped yet. Their
//! RPCs answer UNIMPLEMENTED with a message naming what is missing, instead of the bare
//! "unimplemented" a client would otherwise get. A service leaves this list when it ships.

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tower::{Layer, Service};

/// Full gRPC service names not yet implemented, and what each lacks.
pub const PLANNED_SERVICES: &[(&str, &str)] = &[(
    "assistd.gmail.v1.GmailService",
    "the Gmail connection (sync, search, summaries and triage)",
)];

/// The planned service a gRPC path belongs to, with what it lacks.
fn planned(path: &str) -> Option<(&'static str, &'static str)> {
    let service = path.strip_prefix('/')?.split('/').next()?;
    PLANNED_SERVICES
        .iter()
        .find(|(name, _)| *name == service)
        .copied()
}

/// Answers calls to planned services with UNIMPLEMENTED.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlannedLayer;

impl<S> Layer<S> for PlannedLayer {
    type Service = Planned<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Planned { inner }
    }
}

/// See [`PlannedLayer`].
#[derive(Clone, Debug)]
pub struct Planned<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Planned<S>
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match planned(request.uri().path()) {
            None => Either::Left(self.inner.call(request)),
            Some((service, missing)) => {
                let method = request.uri().path().rsplit('/').next().unwrap_or_default();
                let status = Status::unimplemented(format!(
                    "{service}/{method} is not available on this server yet: {missing} has not shipped"
                ));
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_paths_are_recognised_by_service() {
        assert!(planned("/assistd.gmail.v1.GmailService/ListMessages").is_some());
        assert!(planned("/assistd.preferences.v1.PreferencesService/GetPreferences").is_none());
        assert!(planned("/assistd.gmail.v1.GmailServiceX/ListMessages").is_none());
    }
}
