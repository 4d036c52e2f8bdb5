//! Log output (`tracing` with a filter from `RUST_LOG` or the config, as text or JSON) and the
//! call log: one line per call, written when the call is over.
//!
//! A call is over when the last byte of its response has been handed to the connection (the
//! trailers of a stream), or when the client went away first: a cancelled call, a closed
//! browser tab or a dropped connection is logged as CANCELLED at that moment. The latency is
//! the whole call's, from the request's arrival to that moment, so a 1.5 s send or an hour-long
//! watch stream logs what it took, not the time to its response headers.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::bearer::Caller;
use crate::config::{LogConfig, LogFormat};
use crate::metrics::RpcMetrics;

/// The target of the call log's lines (`RUST_LOG=assistd::call=off` silences them).
pub const CALL_LOG_TARGET: &str = "assistd::call";

/// Installs the global subscriber. Calling it again (as tests do) keeps the first one.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// What is known about one call while it runs; shared between the layer outside the bearer
/// check (which logs) and the one inside it (which learns the caller).
#[derive(Debug, Default)]
struct CallFacts {
    caller: OnceLock<String>,
    bytes_in: AtomicU64,
}

/// Logs (and, with metrics on, counts) every call once it is over. Put it outside the bearer
/// layer and [`CallerLayer`] inside it.
#[derive(Clone, Debug, Default)]
pub struct CallLogLayer {
    metrics: Option<Arc<RpcMetrics>>,
}

impl CallLogLayer {
    /// A call log that also feeds `metrics`, when given.
    #[must_use]
    pub fn new(metrics: Option<Arc<RpcMetrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLog {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`CallLogLayer`] makes.
#[derive(Clone, Debug)]
pub struct CallLog<S> {
    inner: S,
    metrics: Option<Arc<RpcMetrics>>,
}

impl<S, ResBody> Service<http::Request<Body>> for CallLog<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Send + Clone + 'static,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let method = request.uri().path().to_owned();
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!("rpc", method = %method, request_id = %request_id);
        let facts = Arc::new(CallFacts::default());
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(Arc::clone(&facts));
        let body = Body::new(CountedBody {
            inner: body,
            count: CountTo::Shared(Arc::clone(&facts)),
        });
        let request = http::Request::from_parts(parts, body);
        let metrics = self.metrics.clone();
        if let Some(metrics) = &metrics {
            metrics.call_started(&method);
        }
        let mut guard = CallGuard(Some(CallRecord {
            started,
            method,
            request_id,
            facts,
            bytes_out: 0,
            code: None,
            metrics,
        }));
        // The service that was polled ready handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                // Dropped here (the client went away before the response started) the guard
                // logs the call as cancelled.
                let response = inner.call(request).await?;
                let code = response.headers().get("grpc-status").map(code_of);
                if let Some(record) = guard.0.as_mut() {
                    record.code = code;
                }
                Ok(response.map(|body| {
                    Body::new(CountedBody {
                        inner: body,
                        count: CountTo::Call(guard),
                    })
                }))
            }
            .instrument(span),
        )
    }
}

/// Puts the caller the bearer layer verified into the call's log record. Goes inside the
/// bearer layer; public calls have no caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallerLayer;

impl<S> Layer<S> for CallerLayer {
    type Service = CallerOf<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerOf { inner }
    }
}

/// The service [`CallerLayer`] makes.
#[derive(Clone, Debug)]
pub struct CallerOf<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for CallerOf<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let extensions = request.extensions();
        if let (Some(facts), Some(caller)) = (
            extensions.get::<Arc<CallFacts>>(),
            extensions.get::<Caller>(),
        ) {
            let _ = facts.caller.set(match caller.service {
                Some(service) => format!("service:{service} for user:{}", caller.user),
                None => format!("user:{}", caller.user),
            });
        }
        self.inner.call(request)
    }
}

/// One call in progress.
#[derive(Debug)]
struct CallRecord {
    started: Instant,
    method: String,
    request_id: String,
    facts: Arc<CallFacts>,
    bytes_out: u64,
    /// The status the response headers or trailers carried, once seen.
    code: Option<tonic::Code>,
    metrics: Option<Arc<RpcMetrics>>,
}

impl CallRecord {
    fn finish(self, code: tonic::Code) {
        let latency = self.started.elapsed();
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bytes_in = self.facts.bytes_in.load(Ordering::Relaxed);
        let caller = self.facts.caller.get().map_or("-", String::as_str);
        tracing::info!(
            target: CALL_LOG_TARGET,
            method = %self.method,
            request_id = %self.request_id,
            caller,
            grpc_code = ?code,
            latency_us,
            bytes_in,
            bytes_out = self.bytes_out,
            "rpc finished"
        );
        if let Some(metrics) = &self.metrics {
            metrics.call_finished(&self.method, code, latency, bytes_in, self.bytes_out);
        }
    }
}

/// Logs its call exactly once: when told the call is over, or when dropped before that (the
/// client went away), as CANCELLED unless the response headers had already carried a status.
#[derive(Debug)]
struct CallGuard(Option<CallRecord>);

impl CallGuard {
    fn finish(&mut self, code: Option<tonic::Code>) {
        if let Some(record) = self.0.take() {
            let code = code.or(record.code).unwrap_or(tonic::Code::Unknown);
            record.finish(code);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            let code = record.code.unwrap_or(tonic::Code::Cancelled);
            record.finish(code);
        }
    }
}

/// Where a [`CountedBody`] counts its bytes.
#[derive(Debug)]
enum CountTo {
    /// A request body: into the call's shared facts.
    Shared(Arc<CallFacts>),
    /// A response body: into the call's record, which it finishes at the end of the stream.
    Call(CallGuard),
}

/// A body that counts the bytes of its data frames; a response body also ends its call.
#[derive(Debug)]
struct CountedBody<B> {
    inner: B,
    count: CountTo,
}

impl<B> HttpBody for CountedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match (&polled, &mut this.count) {
            (Poll::Ready(Some(Ok(frame))), CountTo::Shared(facts)) => {
                if let Some(data) = frame.data_ref() {
                    facts
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            (Poll::Ready(Some(Ok(frame))), CountTo::Call(guard)) => {
                if let Some(data) = frame.data_ref()
                    && let Some(record) = guard.0.as_mut()
                {
                    record.bytes_out = record.bytes_out.saturating_add(data.len() as u64);
                }
                if let Some(trailers) = frame.trailers_ref() {
                    guard.finish(trailers.get("grpc-status").map(code_of));
                }
            }
            // The stream broke on the server's side: no status reached the client.
            (Poll::Ready(Some(Err(_))), CountTo::Call(guard)) => {
                guard.finish(Some(tonic::Code::Unknown));
            }
            (Poll::Ready(None), CountTo::Call(guard)) => guard.finish(None),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The gRPC code a `grpc-status` value names (UNKNOWN for garbage).
fn code_of(value: &http::HeaderValue) -> tonic::Code {
    value
        .to_str()
        .ok()
        .and_then(|code| code.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32)
}
