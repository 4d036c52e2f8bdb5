//! Metrics in the Prometheus (OpenMetrics) text format, served on a listener of their own
//! (`server.metrics_listen`, off by default) so the API port never answers scrapes.
//!
//! Everything is registered in one [`Registry`] per server: calls by method and code, their
//! latency and size, calls in flight, upstream calls (Gemini, KMS, the Google sign-in
//! provider) by outcome and latency, sign-in outcomes, and values read at scrape time from
//! their owners (the database pool, the data-key cache, the audit log). Method labels are
//! limited to the methods the server knows, so a client cannot create series by calling
//! made-up paths.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use assistd_crypto::DataKeyCache;
use assistd_store::Store;
use assistd_store::audit::AuditLog;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The label of a method the server does not serve.
const UNKNOWN_METHOD: &str = "unknown";

/// Latency buckets: 0.5 ms doubling to about 70 min over 24 buckets, so unary calls and long
/// streams both land inside the range.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_5, 2.0, 24)
}

/// Labels of a call counted by method and code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

/// Labels of a per-method series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// Labels of an upstream call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    peer: String,
    operation: String,
    outcome: String,
}

/// Labels of an upstream call's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLatencyLabels {
    peer: String,
    operation: String,
}

/// Labels of a sign-in outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    method: String,
    outcome: String,
}

/// The metrics of gRPC calls, fed by the call log.
#[derive(Debug)]
pub struct RpcMetrics {
    known: HashSet<String>,
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<MethodLabels, Gauge>,
    bytes_in: Family<MethodLabels, Counter>,
    bytes_out: Family<MethodLabels, Counter>,
}

impl RpcMetrics {
    fn label(&self, path: &str) -> MethodLabels {
        let method = if self.known.contains(path) {
            path.to_owned()
        } else {
            UNKNOWN_METHOD.to_owned()
        };
        MethodLabels { method }
    }

    /// A call to `path` arrived.
    pub fn call_started(&self, path: &str) {
        self.in_flight.get_or_create(&self.label(path)).inc();
    }

    /// A call to `path` is over.
    pub fn call_finished(
        &self,
        path: &str,
        code: tonic::Code,
        latency: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let labels = self.label(path);
        self.in_flight.get_or_create(&labels).dec();
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
        self.bytes_in.get_or_create(&labels).inc_by(bytes_in);
        self.bytes_out.get_or_create(&labels).inc_by(bytes_out);
        self.calls
            .get_or_create(&CallLabels {
                method: labels.method,
                code: code_name(code).to_owned(),
            })
            .inc();
    }
}

/// The metrics of calls to services outside assistd.
#[derive(Debug)]
pub struct UpstreamMetrics {
    calls: Family<UpstreamLabels, Counter>,
    latency: Family<UpstreamLatencyLabels, Histogram, fn() -> Histogram>,
}

impl UpstreamMetrics {
    /// One call to `peer` (`gemini`, `kms`, `google`) ended with `outcome` after `elapsed`.
    pub fn record(&self, peer: &str, operation: &str, outcome: &str, elapsed: Duration) {
        self.calls
            .get_or_create(&UpstreamLabels {
                peer: peer.to_owned(),
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&UpstreamLatencyLabels {
                peer: peer.to_owned(),
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// Sign-in outcomes, counted at the AuthService edge.
#[derive(Debug)]
pub struct SignInMetrics {
    outcomes: Family<SignInLabels, Counter>,
}

impl SignInMetrics {
    /// `method` (`complete_login`, `sign_in_with_id_token`, `refresh`) ended with `result`:
    /// `ok`, or the error's ErrorInfo reason (or its code when it has none).
    pub fn record<T>(&self, method: &str, result: &Result<T, tonic::Status>) {
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(status) => {
                use tonic_types::StatusExt as _;
                status
                    .get_error_details()
                    .error_info()
                    .map(|info| info.reason.clone())
                    .unwrap_or_else(|| code_name(status.code()).to_owned())
            }
        };
        self.outcomes
            .get_or_create(&SignInLabels {
                method: method.to_owned(),
                outcome,
            })
            .inc();
    }
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls, fed by the call log.
    pub rpc: Arc<RpcMetrics>,
    /// Upstream calls.
    pub upstream: Arc<UpstreamMetrics>,
    /// Sign-in outcomes.
    pub sign_in: Arc<SignInMetrics>,
}

/// Values owned elsewhere, read at each scrape.
#[derive(Debug)]
struct ScrapeTime {
    store: Store,
    cache: Arc<DataKeyCache>,
    audit: AuditLog,
}

impl Metrics {
    /// The metrics of a server whose methods are described by `descriptor_sets` (encoded
    /// `FileDescriptorSet`s).
    ///
    /// # Errors
    /// A descriptor set does not decode.
    pub fn new(descriptor_sets: &[&[u8]]) -> anyhow::Result<Self> {
        let mut known = HashSet::new();
        for set in descriptor_sets {
            let set = prost_types::FileDescriptorSet::decode(*set)
                .context("decoding a file descriptor set")?;
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = service.name.unwrap_or_default();
                    for method in service.method {
                        known.insert(format!(
                            "/{package}.{service_name}/{}",
                            method.name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        let histogram: fn() -> Histogram = || Histogram::new(latency_buckets());
        let rpc = Arc::new(RpcMetrics {
            known,
            calls: Family::default(),
            latency: Family::new_with_constructor(histogram),
            in_flight: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
        });
        let upstream = Arc::new(UpstreamMetrics {
            calls: Family::default(),
            latency: Family::new_with_constructor(histogram),
        });
        let sign_in = Arc::new(SignInMetrics {
            outcomes: Family::default(),
        });
        let mut registry = Registry::default();
        let assistd = registry.sub_registry_with_prefix("assistd");
        assistd.register(
            "rpc_calls",
            "Finished gRPC calls (native and grpc-web) by full method and gRPC code; CANCELLED when the client went away",
            rpc.calls.clone(),
        );
        assistd.register(
            "rpc_duration_seconds",
            "Whole-call latency, from the request's arrival to the end of the response stream",
            rpc.latency.clone(),
        );
        assistd.register(
            "rpc_in_flight",
            "Calls in progress, open streams included",
            rpc.in_flight.clone(),
        );
        assistd.register(
            "rpc_received_bytes",
            "gRPC message bytes received (grpc-web after decoding)",
            rpc.bytes_in.clone(),
        );
        assistd.register(
            "rpc_sent_bytes",
            "gRPC message bytes sent (before grpc-web encoding)",
            rpc.bytes_out.clone(),
        );
        assistd.register(
            "upstream_calls",
            "Calls to services outside assistd by peer, operation and outcome",
            upstream.calls.clone(),
        );
        assistd.register(
            "upstream_duration_seconds",
            "Latency of calls to services outside assistd (for streams: until the response headers)",
            upstream.latency.clone(),
        );
        assistd.register(
            "sign_in_outcomes",
            "Sign-in and refresh attempts by method and outcome (ok or the error reason)",
            sign_in.outcomes.clone(),
        );
        Ok(Self {
            registry,
            rpc,
            upstream,
            sign_in,
        })
    }

    /// Reads the database pool, the data-key cache and the audit log's append count from
    /// their owners at every scrape.
    pub fn read_at_scrape(&mut self, store: Store, cache: Arc<DataKeyCache>, audit: AuditLog) {
        self.registry.register_collector(Box::new(ScrapeTime {
            store,
            cache,
            audit,
        }));
    }

    /// The whole exposition, in the OpenMetrics text format.
    ///
    /// # Errors
    /// Encoding failed (a bug: writing to a `String` does not fail).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (size, idle, max) = pool_figures(&self.store);
        let connections = encoder.encode_descriptor(
            "assistd_db_pool_connections",
            "Open database connections by state (in_use, idle)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        encode_gauges(
            connections,
            "state",
            &[("in_use", size.saturating_sub(idle)), ("idle", idle)],
        )?;
        let gauge = ConstGauge::new(i64::from(max));
        gauge.encode(encoder.encode_descriptor(
            "assistd_db_pool_max_connections",
            "The most connections the database pool opens",
            None,
            gauge.metric_type(),
        )?)?;

        let stats = self.cache.stats();
        let lookups = encoder.encode_descriptor(
            "assistd_data_key_cache_lookups",
            "Data-key cache lookups by result (hit, miss); a miss unwraps the key with the KEK",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        encode_counters(
            lookups,
            "result",
            &[("hit", stats.hits), ("miss", stats.misses)],
        )?;

        let appends = ConstCounter::new(self.audit.appended());
        appends.encode(encoder.encode_descriptor(
            "assistd_audit_appends",
            "Audit rows appended by this server (each in its change's transaction)",
            None,
            appends.metric_type(),
        )?)?;
        Ok(())
    }
}

fn encode_gauges(
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    label: &'static str,
    values: &[(&'static str, u32)],
) -> Result<(), std::fmt::Error> {
    for (value, figure) in values {
        let labels = [(label, *value)];
        ConstGauge::new(i64::from(*figure)).encode(encoder.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_counters(
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> Result<(), std::fmt::Error> {
    for (value, figure) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*figure).encode(encoder.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The pool's open connections, idle ones, and its maximum.
fn pool_figures(store: &Store) -> (u32, u32, u32) {
    use assistd_store::Backend;
    let connection = store.connection();
    match store.backend() {
        Backend::Sqlite => {
            let pool = connection.get_sqlite_connection_pool();
            (
                pool.size(),
                u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                pool.options().get_max_connections(),
            )
        }
        Backend::Postgres => {
            let pool = connection.get_postgres_connection_pool();
            (
                pool.size(),
                u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                pool.options().get_max_connections(),
            )
        }
    }
}

/// The lower-case name of `code`, as labels carry it (`ok`, `cancelled`, `not_found` …).
#[must_use]
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` fires. Plain HTTP/1.1, one small
/// response per scrape; anything else is 404.
pub fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, _) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener: accept failed");
                    continue;
                }
            };
            let metrics = Arc::clone(&metrics);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
                }
            });
        }
    })
}

fn answer<B>(request: &http::Request<B>, metrics: &Metrics) -> http::Response<String> {
    let respond = |status: http::StatusCode, content_type: &'static str, body: String| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body)
            .unwrap_or_default()
    };
    if request.method() != http::Method::GET || request.uri().path() != "/metrics" {
        return respond(
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are at GET /metrics\n".to_owned(),
        );
    }
    match metrics.encode() {
        Ok(text) => respond(
            http::StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(_) => respond(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "encoding the metrics failed\n".to_owned(),
        ),
    }
}

/// Binds the metrics listener at `address`.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics listener {address}"))
}

/// A key-encryption key whose calls are counted as upstream calls to `peer` (for AWS KMS:
/// `GenerateDataKey`, `Encrypt`, `Decrypt`).
pub struct MeteredKek {
    inner: Arc<dyn assistd_crypto::KeyEncryptionKey>,
    metrics: Arc<UpstreamMetrics>,
    peer: &'static str,
}

impl std::fmt::Debug for MeteredKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredKek")
            .field("id", &self.inner.id())
            .field("peer", &self.peer)
            .finish()
    }
}

impl MeteredKek {
    /// `inner`, with its calls counted in `metrics` under `peer`.
    #[must_use]
    pub fn new(
        inner: Arc<dyn assistd_crypto::KeyEncryptionKey>,
        metrics: Arc<UpstreamMetrics>,
        peer: &'static str,
    ) -> Self {
        Self {
            inner,
            metrics,
            peer,
        }
    }

    fn record<T>(
        &self,
        operation: &str,
        started: std::time::Instant,
        result: &Result<T, assistd_crypto::CryptoError>,
    ) {
        use assistd_crypto::CryptoError;
        let outcome = match result {
            Ok(_) => "ok",
            Err(CryptoError::KekUnavailable { .. }) => "unavailable",
            Err(CryptoError::KekRefused { .. }) => "refused",
            Err(CryptoError::InvalidCiphertext(_)) => "invalid_ciphertext",
            Err(_) => "error",
        };
        self.metrics
            .record(self.peer, operation, outcome, started.elapsed());
    }
}

#[async_trait::async_trait]
impl assistd_crypto::KeyEncryptionKey for MeteredKek {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn generate_data_key(
        &self,
        owner: assistd_domain::UserId,
    ) -> Result<
        (assistd_crypto::DataKey, assistd_crypto::WrappedDataKey),
        assistd_crypto::CryptoError,
    > {
        let started = std::time::Instant::now();
        let result = self.inner.generate_data_key(owner).await;
        self.record("GenerateDataKey", started, &result);
        result
    }

    async fn wrap(
        &self,
        owner: assistd_domain::UserId,
        key: &assistd_crypto::DataKey,
    ) -> Result<assistd_crypto::WrappedDataKey, assistd_crypto::CryptoError> {
        let started = std::time::Instant::now();
        let result = self.inner.wrap(owner, key).await;
        self.record("Encrypt", started, &result);
        result
    }

    async fn unwrap(
        &self,
        owner: assistd_domain::UserId,
        wrapped: &assistd_crypto::WrappedDataKey,
    ) -> Result<assistd_crypto::DataKey, assistd_crypto::CryptoError> {
        let started = std::time::Instant::now();
        let result = self.inner.unwrap(owner, wrapped).await;
        self.record("Decrypt", started, &result);
        result
    }
}
