//! What browsers need of the server: CORS for the configured origins, and the timing details
//! of their calls.

use std::time::Duration;

use anyhow::Context as _;
use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// CORS for grpc-web from `origins`: the headers a browser client sends and the ones it
/// must read (status, message and details live in headers and trailers).
pub(super) fn cors_layer(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).with_context(|| format!("CORS origin {origin:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let header = HeaderName::from_static;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("x-request-id"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("x-request-id"),
        ])
        .max_age(Duration::from_secs(24 * 60 * 60)))
}

/// Lets an allowed origin read the timing details of its calls (`Timing-Allow-Origin`), so a
/// browser's resource timing shows, e.g., the protocol a call went over (`nextHopProtocol`,
/// which Chromium blanks for cross-origin calls otherwise). Runs outside the CORS layer and
/// names exactly the origin that layer allowed, so other origins learn nothing more.
pub(super) fn timing_allow_origin<B>(mut response: http::Response<B>) -> http::Response<B> {
    if let Some(origin) = response
        .headers()
        .get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .cloned()
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("timing-allow-origin"), origin);
    }
    response
}
