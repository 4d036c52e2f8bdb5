//! Log output: `tracing` with a filter from `RUST_LOG` (or the config), as text or JSON.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogConfig, LogFormat};

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

/// The span of one call: its gRPC method and request id.
pub fn make_rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("rpc", method = %request.uri().path(), request_id = %request_id)
}

/// Logs calls that end with the response headers (a "trailers-only" error response).
pub fn on_rpc_response<B>(
    response: &http::Response<B>,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    if let Some(code) = response.headers().get("grpc-status") {
        log_finished(code, latency);
    }
}

/// Logs calls that end with trailers: successes, and errors after a streamed response.
pub fn on_rpc_eos(
    trailers: Option<&http::HeaderMap>,
    duration: std::time::Duration,
    _span: &tracing::Span,
) {
    if let Some(code) = trailers.and_then(|trailers| trailers.get("grpc-status")) {
        log_finished(code, duration);
    }
}

fn log_finished(code: &http::HeaderValue, latency: std::time::Duration) {
    let code = code
        .to_str()
        .ok()
        .and_then(|code| code.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    tracing::info!(grpc_code = ?code, latency_us, "rpc finished");
}
