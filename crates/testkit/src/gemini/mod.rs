//! A Gemini API server on 127.0.0.1 for tests.
//!
//! It speaks the `v1beta` REST shapes of the peer description (`peers/gemini/README.md`),
//! over HTTP/1.1 and HTTP/2 with prior knowledge (h2c) alike:
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /v1beta/models?pageSize=&pageToken=` | the catalogue, paginated with Google-style page tokens |
//! | `GET /v1beta/models/{model}` | one model, or the 404 body |
//! | `POST /v1beta/models/{model}:generateContent` | the next [`ScriptedReply`]: text, thought summaries, function calls (with `id` and `thoughtSignature`), a finish reason with `safetyRatings`, or a blocked prompt |
//! | `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` | the same, one SSE event per piece, framed by `\r\n\r\n`, optionally split into several writes and paced |
//!
//! Which reply a generate call gets: the next [queued](GeminiServer::push_reply) one, else
//! what the [responder](GeminiServer::respond_with) makes of the request body, else
//! [`ScriptedReply::default`]. A request whose model turns carry a function call without
//! the `thoughtSignature` the server issued for it gets Gemini 3's 400 `INVALID_ARGUMENT`
//! ([switchable](GeminiServer::require_thought_signatures)).
//!
//! The key is read from `x-goog-api-key` (or `?key=`, which Google also accepts): none gets
//! the 403 body, one not [allowed](GeminiServer::allow_key) gets the 400 `API_KEY_INVALID`
//! body, byte for byte as in the examples. Tests can [inject faults](GeminiServer::inject)
//! (every error body, a raw body, a stall, a dropped connection, a stream cut or stalled
//! after n events), add latency, and read back every request with keys replaced by
//! [markers](key_marker) and every stream's [log](GeminiServer::streams): when each event
//! was written and whether the client went away before the end.
//!
//! | tool | for |
//! | --- | --- |
//! | [`GeminiServer::push_reply`], [`GeminiServer::respond_with`] | what the model answers |
//! | [`GeminiServer::inject`], [`Fault`], [`ErrorBody`] | errors, stalls, drops, [`Fault::DisconnectAfter`], [`Fault::StallAfter`] |
//! | [`GeminiServer::split_stream_events`], [`GeminiServer::set_chunk_interval`] | SSE events in several TCP writes, paced |
//! | [`GeminiServer::requests`], [`GeminiServer::generate_requests`] | what the client sent (bodies as JSON), and over which HTTP version ([`RecordedRequest::version`]) |
//! | [`GeminiServer::issued_calls`] | function calls made, with the signatures to echo |
//! | [`GeminiServer::answer_triage`], [`TriageAnswer`], [`GeminiServer::triage_call_count`] | structured (JSON) triage answers: whole, partial, malformed |
//! | [`GeminiServer::streams`], [`GeminiServer::wait_for_stream_disconnects`], [`GeminiServer::stream_write_times`] | client disconnects and per-event write instants |

mod api;
pub mod bodies;
mod fault;
mod record;
mod reply;
mod signature;
mod stream;
mod structured;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use assistd_devkit::model::api::model_resource;
use serde_json::Value;

use crate::serve::{AllowedHosts, Bound, Serving};

pub use fault::{ErrorBody, Fault, FaultRule};
pub use record::{RecordedRequest, key_marker};
pub use reply::ScriptedReply;
pub use signature::IssuedCall;
pub use stream::{StreamEnd, StreamLog};
pub use structured::{TriageAnswer, asks_for_json, schema_message_ids, triage_item, triage_reply};

/// What [`GeminiServer::respond_with`] takes: the request body in, the reply out.
pub type Responder = dyn Fn(&Value) -> ScriptedReply + Send + Sync;

pub use assistd_devkit::model::api::API_KEY_HEADER;

/// A running Gemini API server. Dropping it stops it and closes its connections.
pub struct GeminiServer {
    shared: Arc<Shared>,
    server: Serving,
}

impl std::fmt::Debug for GeminiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiServer")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl GeminiServer {
    /// Starts a server on 127.0.0.1 and an ephemeral port. It accepts no key until told
    /// ([`GeminiServer::allow_key`]) and lists the two models of the peer example
    /// (`models/gemini-2.5-flash`, `models/text-embedding-004`).
    ///
    /// # Panics
    /// No port can be bound on 127.0.0.1.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let bound = Bound::localhost("Gemini test server").await;
        let hosts = AllowedHosts::for_addr(bound.addr());
        let server = bound.answer_only_to(hosts).serve({
            let shared = Arc::clone(&shared);
            move |request, hangup| api::handle(Arc::clone(&shared), hangup, request)
        });
        Self { shared, server }
    }

    /// The socket address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL to configure a client with, e.g. `http://127.0.0.1:41234` (no version).
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Accepts `key` from now on.
    pub fn allow_key(&self, key: impl Into<String>) {
        self.shared.lock().keys.insert(key.into());
    }

    /// Stops accepting `key` (it gets the `API_KEY_INVALID` body), as when a user deletes it
    /// in Google AI Studio. It is still redacted in recordings.
    pub fn revoke_key(&self, key: &str) {
        let mut state = self.shared.lock();
        if state.keys.remove(key) {
            state.revoked.insert(key.to_owned());
        }
    }

    /// Appends a model (a `Model` JSON object, see [`example_model`]) to the catalogue.
    pub fn add_model(&self, model: Value) {
        self.shared.lock().models.push(model);
    }

    /// Replaces the catalogue.
    pub fn set_models(&self, models: Vec<Value>) {
        self.shared.lock().models = models;
    }

    /// The catalogue, in listing order.
    #[must_use]
    pub fn models(&self) -> Vec<Value> {
        self.shared.lock().models.clone()
    }

    /// Queues the answer to a future generate call; calls take replies in order and fall
    /// back to the [responder](GeminiServer::respond_with), else to
    /// [`ScriptedReply::default`] (the peer example's text), when none is queued.
    pub fn push_reply(&self, reply: ScriptedReply) {
        self.shared.lock().replies.push_back(reply);
    }

    /// Answers generate calls the queue has no reply for with `responder(request body)`,
    /// e.g. a function call unless the last turn is a `functionResponse`. Replaces the
    /// previous responder. It runs on the server's task, without the server's lock.
    pub fn respond_with(
        &self,
        responder: impl Fn(&Value) -> ScriptedReply + Send + Sync + 'static,
    ) {
        self.shared.lock().responder = Some(Arc::new(responder));
    }

    /// Removes the responder: unqueued calls get [`ScriptedReply::default`] again.
    pub fn clear_responder(&self) {
        self.shared.lock().responder = None;
    }

    /// Whether a generate request whose model turns hold a `functionCall` part without the
    /// `thoughtSignature` this server issued for that call (or, for a call it never made,
    /// without any) is refused with Gemini 3's 400 `INVALID_ARGUMENT` ("Function call is
    /// missing a thought_signature in functionCall parts. … function call
    /// `default_api:NAME` , position N. …", N the 1-based index of the turn in `contents`).
    /// On by default. Google's documented placeholders (`skip_thought_signature_validator`)
    /// pass.
    pub fn require_thought_signatures(&self, required: bool) {
        self.shared.lock().require_signatures = required;
    }

    /// Every function call made so far, with the `id` and `thoughtSignature` issued for it.
    #[must_use]
    pub fn issued_calls(&self) -> Vec<IssuedCall> {
        self.shared.lock().issued.clone()
    }

    /// Writes each SSE event in `pieces` TCP writes with `gap` between them (1: whole
    /// events, the default). The last piece is the event's final `\n` alone, the others
    /// cut anywhere, inside the JSON or a UTF-8 character.
    pub fn split_stream_events(&self, pieces: usize, gap: Duration) {
        let mut state = self.shared.lock();
        state.shape.pieces = pieces.max(1);
        state.shape.piece_gap = gap;
    }

    /// Pauses `interval` before every SSE event but the first (zero, the default, sends
    /// them back to back).
    pub fn set_chunk_interval(&self, interval: Duration) {
        self.shared.lock().shape.interval = interval;
    }

    /// Adds a fault rule. Rules are tried in the order added; the first that matches a
    /// request applies (and counts down if limited). Faults come after the latency and before
    /// the key check, as when Google's front end fails.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    /// The next `n` requests (any key) get `fault`.
    pub fn fail_next(&self, n: usize, fault: impl Into<Fault>) {
        self.inject(FaultRule::next(n, fault));
    }

    /// Every request gets `fault` until [`GeminiServer::clear_faults`].
    pub fn fail_always(&self, fault: impl Into<Fault>) {
        self.inject(FaultRule::always(fault));
    }

    /// Every request carrying `key` gets `fault` until [`GeminiServer::clear_faults`].
    pub fn fail_key(&self, key: impl Into<String>, fault: impl Into<Fault>) {
        self.inject(FaultRule::always(fault).for_key(key));
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Delays every answer (and fault) by `latency`; zero turns it off.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Whether every answer carries `Connection: close`, so the client does not keep the
    /// connection for another call (HTTP/1.1) and the server closes it after the answer. Off
    /// by default.
    pub fn close_connections(&self, close: bool) {
        self.shared.lock().close_connections = close;
    }

    /// Every request received so far, in arrival order, keys replaced by markers.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests arrived so far.
    #[must_use]
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Forgets the recorded requests (not the [stream logs](GeminiServer::streams)).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// The JSON bodies of the generate calls (`generateContent`, `streamGenerateContent`)
    /// received so far, keys replaced by markers: `contents`, `systemInstruction`, `tools`,
    /// echoed `thoughtSignature`s.
    #[must_use]
    pub fn generate_requests(&self) -> Vec<Value> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|request| {
                request.path.contains(":generateContent")
                    || request.path.contains(":streamGenerateContent")
            })
            .filter_map(RecordedRequest::json)
            .collect()
    }

    /// A log of every SSE stream answered so far, in order.
    #[must_use]
    pub fn streams(&self) -> Vec<StreamLog> {
        self.shared.lock().streams.clone()
    }

    /// How many SSE streams lost their client before their end ([`StreamEnd::ClientGone`]).
    #[must_use]
    pub fn stream_disconnects(&self) -> usize {
        self.shared
            .lock()
            .streams
            .iter()
            .filter(|log| matches!(log.end, StreamEnd::ClientGone { .. }))
            .count()
    }

    /// Per SSE stream, when each event was written (see [`StreamLog::written`]).
    #[must_use]
    pub fn stream_write_times(&self) -> Vec<Vec<Instant>> {
        self.shared
            .lock()
            .streams
            .iter()
            .map(|log| log.written.clone())
            .collect()
    }

    /// Waits up to `within` until `n` SSE streams lost their client, and returns when the
    /// server noticed the `n`th (in the order noticed); `None` if fewer did in time.
    pub async fn wait_for_stream_disconnects(&self, n: usize, within: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut gone: Vec<Instant> = self
                .shared
                .lock()
                .streams
                .iter()
                .filter_map(|log| match log.end {
                    StreamEnd::ClientGone { at } => Some(at),
                    _ => None,
                })
                .collect();
            gone.sort();
            if n > 0 && gone.len() >= n {
                return Some(gone[n - 1]);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A `Model` object shaped like the peer example's `gemini-2.5-flash`, named `models/{id}`,
/// serving generateContent and countTokens.
#[must_use]
pub fn example_model(id: &str) -> Value {
    model_resource(
        id,
        id,
        &format!("{id}, a model of the assistd test server."),
        true,
    )
}

/// State shared by the handle and the connections.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("Gemini test server state poisoned")
    }
}

struct State {
    keys: HashSet<String>,
    /// Keys once accepted, still redacted from recordings.
    revoked: HashSet<String>,
    models: Vec<Value>,
    replies: VecDeque<ScriptedReply>,
    faults: Vec<FaultRule>,
    latency: Duration,
    close_connections: bool,
    requests: Vec<RecordedRequest>,
    /// Generate calls answered, for response ids.
    responses: u64,
    responder: Option<Arc<Responder>>,
    require_signatures: bool,
    signer: signature::Signer,
    issued: Vec<IssuedCall>,
    shape: stream::Shape,
    streams: Vec<StreamLog>,
}

impl Default for State {
    fn default() -> Self {
        let example: Value =
            serde_json::from_str(bodies::MODELS_LIST).expect("the models example is JSON");
        let models = example["models"]
            .as_array()
            .cloned()
            .expect("the models example lists models");
        Self {
            keys: HashSet::new(),
            revoked: HashSet::new(),
            models,
            replies: VecDeque::new(),
            faults: Vec::new(),
            latency: Duration::ZERO,
            close_connections: false,
            requests: Vec::new(),
            responses: 0,
            responder: None,
            require_signatures: true,
            signer: signature::Signer::default(),
            issued: Vec::new(),
            shape: stream::Shape::default(),
            streams: Vec::new(),
        }
    }
}

impl State {
    /// Records a request, replacing `extra_secrets` and every known key by its marker;
    /// returns its index in `requests`.
    fn record(
        &mut self,
        parts: &http::request::Parts,
        body: &[u8],
        extra_secrets: &[String],
    ) -> usize {
        let mut secrets: Vec<String> = self.keys.iter().chain(&self.revoked).cloned().collect();
        secrets.extend_from_slice(extra_secrets);
        self.requests
            .push(RecordedRequest::new(parts, body, &secrets));
        self.requests.len() - 1
    }

    /// Issues an id and a signature for each function call of `reply`, and remembers them.
    fn issue_calls(&mut self, reply: &ScriptedReply) -> Vec<reply::CallTag> {
        reply
            .function_calls()
            .into_iter()
            .map(|(name, args)| {
                let tag = self.signer.issue();
                self.issued.push(IssuedCall {
                    id: tag.id.clone(),
                    name: name.to_owned(),
                    args: args.clone(),
                    signature: tag.signature.clone(),
                });
                tag
            })
            .collect()
    }

    /// The fault for a request carrying `key`, counting down a limited rule.
    fn take_fault(&mut self, key: Option<&str>) -> Option<Fault> {
        let index = self.faults.iter().position(|rule| rule.matches(key))?;
        let rule = &mut self.faults[index];
        let fault = rule.fault.clone();
        if let Some(remaining) = &mut rule.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                self.faults.remove(index);
            }
        }
        Some(fault)
    }
}
