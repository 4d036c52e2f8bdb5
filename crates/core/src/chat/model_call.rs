//! One model call of an exchange: unary (generateContent) or streamed
//! (streamGenerateContent, text relayed as it arrives), retried with backoff while nothing
//! had arrived yet, and abandoned as soon as the client goes away or the server stops its
//! exchanges to shut down.

use std::time::Instant;

use assistd_gemini::{ApiKey, EncodedRequest};
use backon::{BackoffBuilder, ExponentialBuilder};

use super::ExchangeEvent;
use super::exchange::Exchange;
use super::turn::Turn;

/// How one model call ended.
pub(super) enum Outcome {
    /// Gemini finished the turn.
    Complete(Turn),
    /// The client went away; what had arrived.
    Cancelled(Turn),
    /// The server is shutting down; what had arrived.
    Stopped(Turn),
    /// The stream broke after text had arrived.
    Interrupted(Turn, assistd_gemini::Error),
    /// The call failed before any text.
    Failed(assistd_gemini::Error),
}

/// How one attempt of a model call ended.
enum Attempt {
    /// No further attempt: this is the call's outcome.
    Done(Box<Outcome>),
    /// Failed before anything was relayed, in a way another attempt may cure.
    Retry(assistd_gemini::Error),
}

/// Whether an attempt that failed before any text may be repeated.
fn retryable(err: &assistd_gemini::Error) -> bool {
    matches!(
        err,
        assistd_gemini::Error::Unavailable { .. } | assistd_gemini::Error::StreamInterrupted { .. }
    )
}

impl Exchange<'_> {
    /// Calls the model, retrying failures before any text with backoff.
    ///
    /// The waits come from backon's exponential schedule (`retry_backoff`, doubled for each
    /// further retry, at most `max_retries` of them), with jitter so that exchanges failing
    /// together do not retry together. The loop stays here rather than in backon's
    /// `Retryable`: a wait must end early when the client goes away, and an attempt decides
    /// for itself whether it may be repeated (not once text was relayed).
    pub(super) async fn call_model(
        &self,
        key: &ApiKey,
        model: &str,
        request: &EncodedRequest,
        started: Instant,
    ) -> Outcome {
        let config = &self.inner.config;
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(config.retry_backoff)
            .with_factor(2.0)
            .without_max_delay()
            .with_max_times(usize::try_from(config.max_retries).unwrap_or(usize::MAX))
            .with_jitter()
            .build();
        let mut attempt = 0u32;
        loop {
            let result = if self.request.streaming {
                self.stream_once(key, model, request, started).await
            } else {
                self.generate_once(key, model, request, started).await
            };
            match result {
                Attempt::Done(outcome) => return *outcome,
                Attempt::Retry(err) => {
                    let Some(delay) = delays.next() else {
                        return Outcome::Failed(err);
                    };
                    attempt += 1;
                    tracing::info!(error = %err, attempt, ?delay, "retrying a failed Gemini call");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.events.closed() => return Outcome::Cancelled(Turn::default()),
                        () = self.inner.stopping.cancelled() => return Outcome::Stopped(Turn::default()),
                    }
                }
            }
        }
    }

    /// One generateContent call: the whole reply at once.
    async fn generate_once(
        &self,
        key: &ApiKey,
        model: &str,
        request: &EncodedRequest,
        started: Instant,
    ) -> Attempt {
        let response = tokio::select! {
            response = Box::pin(self.inner.gemini.generate_content(key, model, request)) => response,
            () = self.events.closed() => return Attempt::Done(Box::new(Outcome::Cancelled(Turn::default()))),
            () = self.inner.stopping.cancelled() => return Attempt::Done(Box::new(Outcome::Stopped(Turn::default()))),
        };
        match response {
            Ok(response) => {
                let mut turn = Turn::default();
                turn.absorb(response);
                if !turn.text.is_empty() {
                    turn.first_text = Some(started.elapsed());
                }
                Attempt::Done(Box::new(Outcome::Complete(turn)))
            }
            Err(err) if retryable(&err) => Attempt::Retry(err),
            Err(err) => Attempt::Done(Box::new(Outcome::Failed(err))),
        }
    }

    /// One streamGenerateContent call: text deltas relayed as they arrive.
    async fn stream_once(
        &self,
        key: &ApiKey,
        model: &str,
        request: &EncodedRequest,
        started: Instant,
    ) -> Attempt {
        // Boxed, like the other one-off steps of an exchange: an open exchange's task then
        // holds only the state of the step it waits in (here: the next SSE event), not room
        // for the largest step it ever takes. With thousands of idle streams that is most of
        // the server's memory.
        let opened = tokio::select! {
            opened = Box::pin(self.inner.gemini.stream_generate_content(key, model, request)) => opened,
            () = self.events.closed() => return Attempt::Done(Box::new(Outcome::Cancelled(Turn::default()))),
            () = self.inner.stopping.cancelled() => return Attempt::Done(Box::new(Outcome::Stopped(Turn::default()))),
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) if retryable(&err) => return Attempt::Retry(err),
            Err(err) => return Attempt::Done(Box::new(Outcome::Failed(err))),
        };
        let mut turn = Turn::default();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = self.events.closed() => return Attempt::Done(Box::new(Outcome::Cancelled(turn))),
                () = self.inner.stopping.cancelled() => return Attempt::Done(Box::new(Outcome::Stopped(turn))),
            };
            match next {
                None if turn.finished() => return Attempt::Done(Box::new(Outcome::Complete(turn))),
                None => {
                    let err = assistd_gemini::Error::StreamInterrupted {
                        message: "the stream ended without a finish reason".into(),
                    };
                    return self.broken(turn, err);
                }
                Some(Ok(chunk)) => {
                    let added = turn.absorb(chunk);
                    if !added.is_empty() {
                        turn.first_text.get_or_insert_with(|| started.elapsed());
                        if self
                            .events
                            .send(Ok(ExchangeEvent::TextDelta(added)))
                            .await
                            .is_err()
                        {
                            return Attempt::Done(Box::new(Outcome::Cancelled(turn)));
                        }
                    }
                }
                Some(Err(err)) => return self.broken(turn, err),
            }
        }
    }

    /// A stream that failed: retried while nothing was relayed, else an interrupted reply.
    fn broken(&self, turn: Turn, err: assistd_gemini::Error) -> Attempt {
        if turn.text.is_empty() && turn.calls.is_empty() {
            if retryable(&err) {
                Attempt::Retry(err)
            } else {
                Attempt::Done(Box::new(Outcome::Failed(err)))
            }
        } else {
            Attempt::Done(Box::new(Outcome::Interrupted(turn, err)))
        }
    }
}
