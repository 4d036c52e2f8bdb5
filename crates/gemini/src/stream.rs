//! The answer of `streamGenerateContent?alt=sse`, one [`GenerateContentResponse`] per event.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::generate::GenerateContentResponse;
use crate::sse::SseParser;

/// Largest event accepted. Google's are a few kilobytes; inline images can be larger.
pub(crate) const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Chunks of a response body as they arrive.
type Body = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;
/// Why reading the body failed, for the log.
type BodyError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A streamed answer: the events of `streamGenerateContent`, each a
/// [`GenerateContentResponse`] holding the next piece of the answer, yielded as soon as
/// its event is complete. Read it with [`ContentStream::next`] or as a [`Stream`].
///
/// It ends (`None`) after the body ends following an event with a `finishReason` or a
/// blocked prompt. Otherwise the last item is an error, after which it yields nothing:
/// [`Error::StreamInterrupted`] when the connection failed mid-body or the body ended early,
/// [`Error::Unavailable`] after `stream_idle_timeout` without a byte, [`Error::Unexpected`]
/// for an event that does not decode or is larger than 8 MiB.
///
/// Dropping it drops the response body, which ends the call at once (ending generation, and
/// its billing, early): over HTTP/1.1 the connection is closed, over HTTP/2 only its stream is
/// reset.
pub struct ContentStream {
    /// `None` once the stream ended: the connection is released.
    body: Option<Body>,
    parser: SseParser,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    status: u16,
    /// Events yielded so far.
    events: usize,
    /// An event ended the answer (a `finishReason`, a blocked prompt).
    finished: bool,
    /// Scrubbed from error messages, like the unary calls do.
    secret: Zeroizing<String>,
}

impl ContentStream {
    /// A stream over the body of a 2xx answer with HTTP status `status`.
    pub(crate) fn new(response: reqwest::Response, idle_timeout: Duration, secret: &str) -> Self {
        use futures::TryStreamExt as _;
        let status = response.status().as_u16();
        let body = response
            .bytes_stream()
            // The URL holds no key, but the log has no use for it either.
            .map_err(|error| -> BodyError { Box::new(error.without_url()) });
        Self::from_body(Box::pin(body), status, idle_timeout, secret)
    }

    fn from_body(body: Body, status: u16, idle_timeout: Duration, secret: &str) -> Self {
        Self {
            body: Some(body),
            parser: SseParser::new(MAX_EVENT_BYTES),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            status,
            events: 0,
            finished: false,
            secret: Zeroizing::new(secret.to_owned()),
        }
    }

    /// The next piece of the answer; `None` once the answer is complete (or after an error).
    pub async fn next(&mut self) -> Option<Result<GenerateContentResponse, Error>> {
        futures::StreamExt::next(self).await
    }

    /// Whether an event ended the answer (a `finishReason` or a blocked prompt) so far.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// How many events were yielded so far.
    #[must_use]
    pub fn events(&self) -> usize {
        self.events
    }

    /// Ends the stream with `error`: drops the body (ending the call) and scrubs it.
    fn fail(&mut self, error: Error) -> Error {
        self.body = None;
        error.scrub(&self.secret)
    }

    fn decode(&mut self, data: &[u8]) -> Result<GenerateContentResponse, Error> {
        match serde_json::from_slice::<GenerateContentResponse>(data) {
            Ok(response) => {
                self.events += 1;
                self.finished |= response.is_final();
                Ok(response)
            }
            Err(cause) => {
                let error = Error::Unexpected {
                    status: Some(self.status),
                    message: format!(
                        "event {} of the stream does not decode ({cause})",
                        self.events + 1
                    ),
                };
                Err(self.fail(error))
            }
        }
    }
}

impl Stream for ContentStream {
    type Item = Result<GenerateContentResponse, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Events already received go out before anything else is read.
            match this.parser.next_event() {
                Ok(Some(data)) => return Poll::Ready(Some(this.decode(&data))),
                Ok(None) => {}
                Err(_) => {
                    let error = Error::Unexpected {
                        status: Some(this.status),
                        message: format!(
                            "event {} of the stream is larger than {MAX_EVENT_BYTES} bytes",
                            this.events + 1
                        ),
                    };
                    return Poll::Ready(Some(Err(this.fail(error))));
                }
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.parser.push(&chunk);
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Err(cause))) => {
                    let error = Error::StreamInterrupted {
                        message: format!(
                            "the connection failed after {} events, before the answer was complete: {}",
                            this.events,
                            causes(&*cause)
                        ),
                    };
                    return Poll::Ready(Some(Err(this.fail(error))));
                }
                Poll::Ready(None) => {
                    this.body = None;
                    if this.finished {
                        return Poll::Ready(None);
                    }
                    let cut = if this.parser.has_partial_event() {
                        " in the middle of an event"
                    } else {
                        ""
                    };
                    let error = Error::StreamInterrupted {
                        message: format!(
                            "the answer ended{cut} after {} events without a finish reason",
                            this.events
                        ),
                    };
                    return Poll::Ready(Some(Err(this.fail(error))));
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let error = Error::Unavailable {
                            status: None,
                            message: format!(
                                "the stream sent nothing for {:?} after {} events",
                                this.idle_timeout, this.events
                            ),
                            source: None,
                        };
                        return Poll::Ready(Some(Err(this.fail(error))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// An error and its sources, `: `-joined (reqwest's own message is only "error decoding
/// response body"; the cause below says what happened).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl fmt::Debug for ContentStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentStream")
            .field("status", &self.status)
            .field("events", &self.events)
            .field("finished", &self.finished)
            .field("open", &self.body.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AIzaSyA-stream-unit-test-key-00000000001";

    fn stream_of(chunks: Vec<Result<&'static [u8], &'static str>>) -> ContentStream {
        let body = futures::stream::iter(chunks.into_iter().map(|chunk| {
            chunk
                .map(Bytes::from_static)
                .map_err(|message| -> BodyError { message.into() })
        }));
        ContentStream::from_body(Box::pin(body), 200, Duration::from_secs(5), SECRET)
    }

    fn event(text: &str, finish: Option<&str>) -> String {
        let mut candidate = serde_json::json!({
            "content": {"parts": [{"text": text}], "role": "model"}, "index": 0
        });
        if let Some(reason) = finish {
            candidate["finishReason"] = reason.into();
        }
        format!(
            "data: {}\r\n\r\n",
            serde_json::json!({"candidates": [candidate]})
        )
    }

    fn leak(text: String) -> &'static [u8] {
        Box::leak(text.into_boxed_str()).as_bytes()
    }

    #[test]
    fn a_stream_can_move_to_another_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<ContentStream>();
    }

    #[tokio::test]
    async fn yields_each_event_and_ends_after_the_finish_reason() {
        let body = format!("{}{}", event("Hel", None), event("lo", Some("STOP")));
        let mut stream = stream_of(leak(body).chunks(7).map(Ok).collect());
        let mut texts = Vec::new();
        while let Some(item) = stream.next().await {
            texts.push(item.unwrap().text());
        }
        assert_eq!(texts, ["Hel", "lo"]);
        assert!(stream.is_finished());
        assert_eq!(stream.events(), 2);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn the_end_of_the_body_without_a_finish_reason_is_an_interruption() {
        let mut stream = stream_of(vec![Ok(leak(event("partial", None)))]);
        assert_eq!(stream.next().await.unwrap().unwrap().text(), "partial");
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(&error, Error::StreamInterrupted { message } if message.contains("after 1 events")),
            "{error:?}"
        );
        assert!(error.is_retryable());
        assert!(stream.next().await.is_none());

        // Cut inside an event.
        let mut stream = stream_of(vec![Ok(b"data: {\"candidates\": [")]);
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(&error, Error::StreamInterrupted { message, .. } if message.contains("in the middle of an event")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_transport_error_mid_body_is_an_interruption_with_its_source() {
        let mut stream = stream_of(vec![Ok(leak(event("a", None))), Err("connection reset")]);
        stream.next().await.unwrap().unwrap();
        let error = stream.next().await.unwrap().unwrap_err();
        let Error::StreamInterrupted { message } = &error else {
            panic!("{error:?}");
        };
        assert!(message.ends_with("complete: connection reset"), "{message}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_blocked_prompt_ends_the_answer() {
        let mut stream = stream_of(vec![Ok(
            b"data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}\n\n",
        )]);
        let response = stream.next().await.unwrap().unwrap();
        assert_eq!(response.block_reason(), Some("SAFETY"));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_malformed_event_is_unexpected_and_scrubbed() {
        let body = format!("data: {{\"candidates\": \"{SECRET}\"}}\n\n");
        let mut stream = stream_of(vec![Ok(leak(body)), Ok(leak(event("never", None)))]);
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(&error, Error::Unexpected { status: Some(200), message } if message.contains("event 1")),
            "{error:?}"
        );
        assert!(!format!("{error:?}").contains(SECRET));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn silence_longer_than_the_idle_timeout_is_unavailable() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, BodyError>>();
        let mut stream =
            ContentStream::from_body(Box::pin(receiver), 200, Duration::from_secs(30), SECRET);
        sender
            .unbounded_send(Ok(Bytes::from(event("first", None))))
            .unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().text(), "first");
        let started = Instant::now();
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(&error, Error::Unavailable { status: None, message, .. } if message.contains("30s")),
            "{error:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(error.is_retryable());
        drop(sender);
    }
}
