//! A KMS endpoint for the failure paths moto does not play.
//!
//! It speaks the KMS JSON 1.1 protocol (`POST /` with `X-Amz-Target: TrentService.<Operation>`),
//! counts every request by operation, answers operations told to fail with the given status
//! and body (e.g. `{"__type":"DisabledException","message":"…"}`), and forwards everything
//! else to an upstream KMS (moto) when it has one, or answers a 500
//! `KMSInternalException` otherwise.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde_json::json;

use crate::serve::{Bound, Serving};

/// The content type of KMS requests and answers.
const AMZ_JSON: &str = "application/x-amz-json-1.1";

/// What the endpoint answers an operation with instead of forwarding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    status: StatusCode,
    body: String,
    delay: Duration,
}

impl Fault {
    /// A KMS error: `status` with `{"__type": error_type, "message": message}`, as AWS
    /// answers e.g. `400 DisabledException`.
    ///
    /// # Panics
    /// `status` is not an HTTP status (100–999).
    #[must_use]
    pub fn kms(status: u16, error_type: &str, message: &str) -> Self {
        Self::raw(
            status,
            &json!({ "__type": error_type, "message": message }).to_string(),
        )
    }

    /// Any status and raw body (a bare 500, an HTML 503 from a load balancer, a malformed
    /// success …).
    ///
    /// # Panics
    /// `status` is not an HTTP status (100–999).
    #[must_use]
    pub fn raw(status: u16, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status)
                .unwrap_or_else(|_| panic!("{status} is not an HTTP status")),
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer, after `delay` (a hanging KMS).
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The HTTP status answered.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The body answered.
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// How long the answer waits.
    #[must_use]
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// A running fault-injecting, request-counting KMS endpoint on 127.0.0.1. Dropping it stops
/// it and closes its connections.
pub struct KmsProxy {
    endpoint: String,
    shared: Arc<Shared>,
    server: Serving,
}

impl std::fmt::Debug for KmsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsProxy")
            .field("addr", &self.server.addr())
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl KmsProxy {
    /// Starts an endpoint on 127.0.0.1 and an ephemeral port, forwarding the operations not
    /// told to fail to `upstream` (e.g. [`MotoKms::endpoint`](super::MotoKms::endpoint)) when
    /// given, and answering them with a 500 `KMSInternalException` otherwise.
    ///
    /// # Panics
    /// No port can be bound on 127.0.0.1.
    pub async fn start(upstream: Option<&str>) -> Self {
        let bound = Bound::localhost("KMS test endpoint").await;
        let endpoint = format!("http://{}", bound.addr());
        let shared = Arc::new(Shared {
            upstream: upstream.map(|url| url.trim_end_matches('/').to_owned()),
            client: reqwest::Client::new(),
            state: Mutex::default(),
        });
        let server = bound.serve({
            let shared = Arc::clone(&shared);
            move |request, _| handle(Arc::clone(&shared), request)
        });
        Self {
            endpoint,
            shared,
            server,
        }
    }

    /// The socket address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Its URL, e.g. `http://127.0.0.1:41234`, for `KmsSettings::endpoint_url`,
    /// [`sdk_config`](super::sdk_config) or [`server_env`](super::server_env).
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// From now on, `operation` (e.g. `"Decrypt"`) is answered with `fault`, replacing any
    /// fault it had.
    pub fn fail(&self, operation: &str, fault: Fault) {
        self.shared
            .lock()
            .faults
            .insert(operation.to_owned(), fault);
    }

    /// From now on, `operation` is forwarded again.
    pub fn heal(&self, operation: &str) {
        self.shared.lock().faults.remove(operation);
    }

    /// From now on, every operation is forwarded again.
    pub fn heal_all(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many `operation` requests (e.g. `"Decrypt"`, `"GenerateDataKey"`, `"Encrypt"`)
    /// arrived so far, failed or forwarded.
    #[must_use]
    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .counts
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// How many requests arrived so far, by operation.
    #[must_use]
    pub fn counts(&self) -> HashMap<String, usize> {
        self.shared.lock().counts.clone()
    }
}

/// State shared by the handle and the connections.
struct Shared {
    upstream: Option<String>,
    client: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    faults: HashMap<String, Fault>,
    counts: HashMap<String, usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("KMS test endpoint state poisoned")
    }
}

/// Counts the request, then answers it with its operation's fault or forwards it.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let operation = target.strip_prefix("TrentService.").unwrap_or(target);
    let fault = {
        let mut state = shared.lock();
        *state.counts.entry(operation.to_owned()).or_default() += 1;
        state.faults.get(operation).cloned()
    };
    if let Some(fault) = fault {
        if !fault.delay.is_zero() {
            tokio::time::sleep(fault.delay).await;
        }
        return Ok(answer(fault.status, fault.body.into()));
    }
    let Some(upstream) = &shared.upstream else {
        return Ok(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "__type": "KMSInternalException",
                "message": "the KMS test endpoint has no upstream",
            })
            .to_string()
            .into(),
        ));
    };
    let mut headers = parts.headers;
    for hop in [HOST, CONTENT_LENGTH, CONNECTION, TRANSFER_ENCODING] {
        headers.remove(hop);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let forwarded = shared
        .client
        .request(parts.method, format!("{upstream}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    Ok(match forwarded {
        Ok(upstream_answer) => {
            let status = upstream_answer.status();
            let body = upstream_answer.bytes().await.unwrap_or_default();
            answer(status, body)
        }
        Err(err) => answer(StatusCode::BAD_GATEWAY, format!("upstream: {err}").into()),
    })
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    response
}
