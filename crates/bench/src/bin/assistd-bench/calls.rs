//! The measured scenarios: N tasks calling one RPC over one transport in a loop, each call
//! timed once the warm-up is over.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use assistd::proto::preferences::v1::GetPreferencesRequest;
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd_bench::cli::{authed, connect_endpoint};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};

use crate::server::Server;

/// Most native gRPC connections one scenario opens; callers share them round-robin, as a
/// server-side client with a small channel pool would.
const MAX_CHANNELS: usize = 4;
/// A single call slower than this counts as an error, so a hung server cannot hang the bench.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How calls reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Native gRPC over HTTP/2.
    Grpc,
    /// grpc-web over HTTP/1.1, as a browser calls.
    GrpcWeb,
}

impl Transport {
    /// Every transport, in the order measured and printed.
    pub(crate) const ALL: [Self; 2] = [Self::Grpc, Self::GrpcWeb];

    /// Its name in the results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
        }
    }
}

/// The RPC called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// `grpc.health.v1.Health/Check`: the ceiling, no authentication or database.
    Health,
    /// The authenticated `PreferencesService/GetPreferences`.
    GetPreferences,
}

impl Rpc {
    /// Every RPC, in the order measured and printed.
    pub(crate) const ALL: [Self; 2] = [Self::Health, Self::GetPreferences];

    /// Its name in the results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::GetPreferences => "GetPreferences",
        }
    }
}

/// What one scenario measured.
pub(crate) struct ScenarioResult {
    pub(crate) transport: Transport,
    pub(crate) rpc: Rpc,
    pub(crate) concurrency: usize,
    /// Latencies of the successful measured calls.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: u64,
    measured: Duration,
}

impl ScenarioResult {
    /// Successful calls per second of the measured window.
    pub(crate) fn calls_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.measured.as_secs_f64()
    }

    /// The length of the measured window, in seconds.
    pub(crate) fn measured_seconds(&self) -> f64 {
        self.measured.as_secs_f64()
    }
}

/// A grpc-web client transport: HTTP/1.1 through tonic-web's client layer.
type GrpcWebTransport =
    GrpcWebClientService<HyperClient<HttpConnector, GrpcWebCall<tonic::body::Body>>>;

/// One calling task's clients.
#[expect(
    clippy::large_enum_variant,
    reason = "one per task, built before measuring; boxing would only add an indirection per call"
)]
enum Caller {
    Grpc {
        health: HealthClient<Channel>,
        preferences: PreferencesServiceClient<Channel>,
    },
    GrpcWeb {
        health: HealthClient<GrpcWebTransport>,
        preferences: PreferencesServiceClient<GrpcWebTransport>,
    },
}

impl Caller {
    async fn call(&mut self, rpc: Rpc, token: &AsciiMetadataValue) -> Result<(), tonic::Status> {
        let health_request = || HealthCheckRequest {
            service: String::new(),
        };
        let call = async {
            match (self, rpc) {
                (Caller::Grpc { health, .. }, Rpc::Health) => {
                    serving(health.check(health_request()).await?.get_ref().status())
                }
                (Caller::GrpcWeb { health, .. }, Rpc::Health) => {
                    serving(health.check(health_request()).await?.get_ref().status())
                }
                (Caller::Grpc { preferences, .. }, Rpc::GetPreferences) => preferences
                    .get_preferences(authed(GetPreferencesRequest::default(), token))
                    .await
                    .map(drop),
                (Caller::GrpcWeb { preferences, .. }, Rpc::GetPreferences) => preferences
                    .get_preferences(authed(GetPreferencesRequest::default(), token))
                    .await
                    .map(drop),
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {CALL_TIMEOUT:?}"
                )))
            })
    }
}

/// A health answer other than SERVING is as much a failure as an error status.
fn serving(status: ServingStatus) -> Result<(), tonic::Status> {
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(tonic::Status::unavailable(format!(
            "health check answered {status:?}"
        )))
    }
}

#[derive(Default)]
struct WorkerOutcome {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// `concurrency` tasks call `rpc` on `server` over `transport` for `warmup`, unmeasured, then
/// for `duration`, measured.
pub(crate) async fn run_scenario(
    server: &Server,
    token: &AsciiMetadataValue,
    transport: Transport,
    rpc: Rpc,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<ScenarioResult> {
    let callers = callers(server, transport, concurrency).await?;
    let measure_from = Instant::now() + warmup;
    let until = measure_from + duration;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            let token = token.clone();
            tokio::spawn(async move {
                let mut outcome = WorkerOutcome::default();
                loop {
                    let started = Instant::now();
                    // A call counts when it starts inside the window; the last one of each
                    // task may end just after it, which overstates calls/s by at most
                    // `concurrency` calls per window.
                    if started >= until {
                        break;
                    }
                    let result = caller.call(rpc, &token).await;
                    let latency = started.elapsed();
                    if started < measure_from {
                        continue;
                    }
                    match result {
                        Ok(()) => outcome.latencies.push(latency),
                        Err(status) => {
                            outcome.errors += 1;
                            outcome
                                .first_error
                                .get_or_insert_with(|| status.to_string());
                        }
                    }
                }
                outcome
            })
        })
        .collect();

    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let outcome = task.await.context("a calling task panicked")?;
        latencies.extend(outcome.latencies);
        errors += outcome.errors;
        if first_error.is_none() {
            first_error = outcome.first_error;
        }
    }
    if let Some(message) = first_error {
        eprintln!(
            "first error of {} {} at c={concurrency} ({errors} errors): {message}",
            transport.name(),
            rpc.name()
        );
    }
    Ok(ScenarioResult {
        transport,
        rpc,
        concurrency,
        latencies,
        errors,
        measured: duration,
    })
}

/// One caller per task, its connections opened before anything is timed.
async fn callers(
    server: &Server,
    transport: Transport,
    concurrency: usize,
) -> anyhow::Result<Vec<Caller>> {
    Ok(match transport {
        Transport::Grpc => {
            let mut channels = Vec::new();
            for _ in 0..concurrency.min(MAX_CHANNELS) {
                channels.push(connect_endpoint(server.endpoint().clone(), CONNECT_TIMEOUT).await?);
            }
            (0..concurrency)
                .map(|i| {
                    let channel = channels[i % channels.len()].clone();
                    Caller::Grpc {
                        health: HealthClient::new(channel.clone()),
                        preferences: PreferencesServiceClient::new(channel),
                    }
                })
                .collect()
        }
        Transport::GrpcWeb => {
            ensure!(
                !server.tls(),
                "the grpc-web scenarios speak plaintext HTTP/1.1 only"
            );
            let origin: http::Uri = server
                .address()
                .parse()
                .context("parsing the server address")?;
            // Browsers disable Nagle's algorithm; without this, HTTP/1.1 requests written in
            // two parts stall on delayed ACKs and measure the kernel instead of the server.
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            // One client for all tasks: its pool keeps one HTTP/1.1 connection per in-flight
            // call, like a browser's connection pool (without the browser's per-host cap).
            let client = HyperClient::builder(TokioExecutor::new()).build(connector);
            let web = tower::ServiceBuilder::new()
                .layer(GrpcWebClientLayer::new())
                .service(client);
            (0..concurrency)
                .map(|_| Caller::GrpcWeb {
                    health: HealthClient::with_origin(web.clone(), origin.clone()),
                    preferences: PreferencesServiceClient::with_origin(web.clone(), origin.clone()),
                })
                .collect()
        }
    })
}
