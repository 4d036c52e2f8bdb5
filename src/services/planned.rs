//! RPCs whose contracts are published but whose implementation has not shipped yet. They
//! answer UNIMPLEMENTED with a message naming what is missing, instead of the bare
//! "unimplemented" a client would otherwise get. A method leaves this list when it ships.

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tower::{Layer, Service};

/// What the Gmail AI RPCs lack.
const GMAIL_AI: &str = "AI summaries and triage of synced mail (with the user's Gemini key)";

/// Full gRPC method paths (`/package.Service/Method`) not yet implemented, and what each
/// lacks.
pub const PLANNED_METHODS: &[(&str, &str)] = &[
    ("/assistd.gmail.v1.GmailService/SummarizeMessage", GMAIL_AI),
    ("/assistd.gmail.v1.GmailService/SummarizeThread", GMAIL_AI),
    ("/assistd.gmail.v1.GmailService/TriageInbox", GMAIL_AI),
];

/// What the planned method at `path` lacks, if it is one.
fn planned(path: &str) -> Option<&'static str> {
    PLANNED_METHODS
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, missing)| *missing)
}

/// The UNIMPLEMENTED status of the planned method at `path` (`/package.Service/Method`).
#[must_use]
pub fn unimplemented(path: &str) -> Status {
    let method = path.trim_start_matches('/');
    let missing = planned(path).unwrap_or("this method");
    Status::unimplemented(format!(
        "{method} is not available on this server yet: {missing} has not shipped"
    ))
}

/// Answers calls to planned methods with UNIMPLEMENTED.
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
        let path = request.uri().path();
        if planned(path).is_some() {
            let status = unimplemented(path);
            Either::Right(ready(Ok(status.into_http())))
        } else {
            Either::Left(self.inner.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_paths_are_recognised_by_method() {
        assert!(planned("/assistd.gmail.v1.GmailService/SummarizeMessage").is_some());
        assert!(planned("/assistd.gmail.v1.GmailService/TriageInbox").is_some());
        assert!(planned("/assistd.gmail.v1.GmailService/ListMessages").is_none());
        assert!(planned("/assistd.gmail.v1.GmailService/SummarizeMessageX").is_none());
        assert!(planned("/assistd.preferences.v1.PreferencesService/GetPreferences").is_none());
    }

    #[test]
    fn the_answer_names_the_method_and_what_is_missing() {
        let status = unimplemented("/assistd.gmail.v1.GmailService/SummarizeThread");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status
                .message()
                .starts_with("assistd.gmail.v1.GmailService/SummarizeThread is not available")
        );
        assert!(status.message().contains("Gemini"));
    }
}
