//! A KMS endpoint for failure paths moto does not play: it speaks the KMS JSON 1.1 protocol
//! (`POST /` with `X-Amz-Target: TrentService.<Operation>`), counts every request by
//! operation, answers operations told to fail with the given status and error body (e.g.
//! `{"__type":"DisabledException","message":"…"}`), and forwards everything else to an
//! upstream KMS (moto) when it has one, or answers 500 otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the endpoint answers an operation with.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    status: u16,
    body: String,
    delay: Duration,
}

impl Fault {
    /// A KMS error: `status` with `{"__type": error_type, "message": message}`.
    pub(crate) fn kms(status: u16, error_type: &str, message: &str) -> Self {
        Self {
            status,
            body: format!(r#"{{"__type":"{error_type}","message":"{message}"}}"#),
            delay: Duration::ZERO,
        }
    }

    /// Any status and raw body (a bare 500, an HTML 503 from a load balancer, a malformed
    /// success …).
    pub(crate) fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer, after `delay` (a hanging KMS).
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

struct ProxyState {
    upstream: Option<String>,
    client: reqwest::Client,
    faults: Mutex<HashMap<String, Fault>>,
    counts: Mutex<HashMap<String, usize>>,
}

/// A running endpoint; it stops with the test's runtime.
pub(crate) struct KmsProxy {
    endpoint: String,
    state: Arc<ProxyState>,
}

impl KmsProxy {
    /// Starts an endpoint on a free loopback port, forwarding to `upstream` when given.
    pub(crate) async fn start(upstream: Option<&str>) -> Self {
        let state = Arc::new(ProxyState {
            upstream: upstream.map(str::to_owned),
            client: reqwest::Client::new(),
            faults: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the KMS test endpoint");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("KMS test endpoint");
        });
        Self { endpoint, state }
    }

    /// Its URL, for `KmsSettings::endpoint_url` or an SDK config.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// From now on, `operation` (e.g. `"Decrypt"`) is answered with `fault`.
    pub(crate) fn fail(&self, operation: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(operation.to_owned(), fault);
    }

    /// From now on, `operation` is forwarded again.
    pub(crate) fn heal(&self, operation: &str) {
        self.state.faults.lock().unwrap().remove(operation);
    }

    /// How many `operation` requests arrived so far.
    pub(crate) fn count(&self, operation: &str) -> usize {
        self.state
            .counts
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

async fn handle(State(state): State<Arc<ProxyState>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let operation = target
        .strip_prefix("TrentService.")
        .unwrap_or(target)
        .to_owned();
    *state
        .counts
        .lock()
        .unwrap()
        .entry(operation.clone())
        .or_default() += 1;
    let fault = state.faults.lock().unwrap().get(&operation).cloned();
    if let Some(fault) = fault {
        tokio::time::sleep(fault.delay).await;
        return json_response(fault.status, fault.body.into());
    }
    let Some(upstream) = &state.upstream else {
        return json_response(
            500,
            r#"{"__type":"KMSInternalException","message":"no upstream"}"#.into(),
        );
    };
    let mut forwarded = headers.clone();
    forwarded.remove(header::HOST);
    forwarded.remove(header::CONTENT_LENGTH);
    match state
        .client
        .post(format!("{upstream}/"))
        .headers(forwarded)
        .body(body)
        .send()
        .await
    {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let body = answer.bytes().await.unwrap_or_default();
            json_response(status, body)
        }
        Err(err) => json_response(502, format!("upstream: {err}").into()),
    }
}

fn json_response(status: u16, body: Bytes) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}
