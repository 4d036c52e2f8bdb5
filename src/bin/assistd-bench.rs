//! `assistd-bench`: throughput and latency of a real `assistd serve`, as clients see them.
//!
//! The server runs as a separate child process on a fresh database (an SQLite file in a
//! temporary directory, or a new PostgreSQL database that is dropped afterwards), so client and
//! server are measured as separate processes, as in production. For each transport (native
//! gRPC over HTTP/2, grpc-web over HTTP/1.1), each RPC (`grpc.health.v1.Health/Check` and the
//! authenticated `PreferencesService/GetPreferences`) and each concurrency level, N tasks call
//! in a loop for a fixed time after an unmeasured warm-up; the bench reports calls, errors,
//! calls/s and p50/p99 latency. It also times how long an `UpdatePreferences` takes to arrive
//! on a `WatchPreferences` stream opened on another connection.
//!
//! It only measures and prints; it asserts nothing about speed. Run it with:
//!
//! ```text
//! cargo build --release --bins && target/release/assistd-bench --database both
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd::proto::preferences::v1::{
    GetPreferencesRequest, Preferences, Theme, UpdatePreferencesRequest, WatchPreferencesRequest,
};
use clap::{Parser, ValueEnum};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};

/// Most native gRPC connections one scenario opens; callers share them round-robin, as a
/// server-side client with a small channel pool would.
const MAX_CHANNELS: usize = 4;
/// How long the server may take to answer the health check with SERVING after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A single call slower than this counts as an error, so a hung server cannot hang the bench.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one watch sample may take before the bench gives up.
const WATCH_SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's grace period on SIGTERM; the bench waits a little longer before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Tokens are issued with the longest lifetime the server accepts (15 minutes); a fresh one is
/// issued before each scenario, which therefore must finish well within it.
const TOKEN_TTL: &str = "15m";
const MAX_SCENARIO_TIME: Duration = Duration::from_secs(14 * 60);

/// Measures throughput and latency of a real `assistd serve` child process over gRPC and
/// grpc-web, and the propagation delay of preference changes to WatchPreferences streams.
#[derive(Debug, Parser)]
#[command(
    after_help = "Build first: cargo build --release --bins && target/release/assistd-bench --database both"
)]
struct Cli {
    /// The `assistd` executable to start as the server. Default: `assistd` in the same
    /// directory as this executable.
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,

    /// Which database backs the server; `both` runs SQLite first, then PostgreSQL.
    #[arg(long, value_enum, default_value_t = DatabaseChoice::Sqlite)]
    database: DatabaseChoice,

    /// PostgreSQL URL of a role allowed to create and drop databases. The bench creates a
    /// fresh database `assistd_bench_<uuid>` on that server (via `psql`) and drops it at the end.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_admin_url: String,

    /// Comma-separated numbers of concurrent calling tasks; every transport and RPC is measured
    /// at each.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "1,16,64"
    )]
    concurrency: Vec<usize>,

    /// Measured time per scenario: seconds (`5`, `2.5`, `5s`) or milliseconds (`500ms`).
    #[arg(long, value_name = "TIME", default_value = "5s", value_parser = parse_duration)]
    duration: Duration,

    /// Unmeasured time per scenario before measuring starts, so connections, pools and caches
    /// are warm. Same format as --duration.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,

    /// Number of sequential UpdatePreferences calls whose arrival on a WatchPreferences stream
    /// is timed.
    #[arg(long, value_name = "N", default_value_t = 200)]
    watch_samples: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DatabaseChoice {
    /// An SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server of --postgres-admin-url.
    Postgres,
    /// SQLite, then PostgreSQL.
    Both,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a time like 5, 2.5s or 500ms"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|err| format!("{text:?}: {err}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Grpc,
    GrpcWeb,
}

impl Transport {
    const ALL: [Self; 2] = [Self::Grpc, Self::GrpcWeb];

    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    Health,
    GetPreferences,
}

impl Rpc {
    const ALL: [Self; 2] = [Self::Health, Self::GetPreferences];

    fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::GetPreferences => "GetPreferences",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        !cli.concurrency.is_empty() && !cli.concurrency.contains(&0),
        "--concurrency must list numbers of at least 1"
    );
    ensure!(!cli.duration.is_zero(), "--duration must be positive");
    ensure!(cli.watch_samples > 0, "--watch-samples must be at least 1");
    ensure!(
        cli.warmup + cli.duration <= MAX_SCENARIO_TIME,
        "--warmup plus --duration must stay within {MAX_SCENARIO_TIME:?}, the lifetime of the \
         access token each scenario uses"
    );
    let server_bin = match &cli.server_bin {
        Some(path) => path.clone(),
        None => default_server_bin()?,
    };
    ensure!(
        server_bin.is_file(),
        "server executable {} not found; build it with `cargo build --release --bins` or pass \
         --server-bin",
        server_bin.display()
    );

    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "machine: nproc = {cpus}; client (this process, tokio multi-thread runtime with {cpus} \
         workers) and server (`{}` child process) share the machine and its cores",
        server_bin.display()
    );
    println!(
        "settings: warmup {:?}, duration {:?} per scenario, concurrency {:?}, {} watch samples",
        cli.warmup, cli.duration, cli.concurrency, cli.watch_samples
    );

    if matches!(cli.database, DatabaseChoice::Sqlite | DatabaseChoice::Both) {
        bench_database(&cli, &server_bin, "SQLite", None).await?;
    }
    if matches!(
        cli.database,
        DatabaseChoice::Postgres | DatabaseChoice::Both
    ) {
        let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
        let result = bench_database(&cli, &server_bin, "PostgreSQL", Some(&database.url)).await;
        // Drop the database even when the run failed, but report the run's error first.
        let dropped = database.drop_database().await;
        result?;
        dropped?;
    }
    Ok(())
}

fn default_server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe
        .parent()
        .context("the bench executable has no parent directory")?;
    Ok(dir.join(format!("assistd{}", std::env::consts::EXE_SUFFIX)))
}

/// Runs every scenario and the watch measurement against one server and prints the results.
async fn bench_database(
    cli: &Cli,
    server_bin: &Path,
    label: &str,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    eprintln!("{label}: starting {}", server_bin.display());
    let mut server = Server::start(server_bin, database_url)
        .await
        .with_context(|| format!("starting the server on {label}"))?;
    let measured = measure_all(cli, &server, label).await;
    // Stop the server whatever happened, so no child outlives the bench.
    let stopped = server.stop().await;
    let (results, watch) = measured?;
    stopped?;

    println!();
    println!("## {label}");
    println!();
    println!("| transport | rpc | concurrency | calls | errors | calls/s | p50 | p99 |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for result in &results {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            result.transport.name(),
            result.rpc.name(),
            result.concurrency,
            result.latencies.len(),
            result.errors,
            result.calls_per_second(),
            format_latency(percentile(&result.latencies, 0.50)),
            format_latency(percentile(&result.latencies, 0.99)),
        );
    }
    println!();
    for transport in Transport::ALL {
        for &concurrency in &cli.concurrency {
            let rate = |rpc| {
                results
                    .iter()
                    .find(|r| {
                        r.transport == transport && r.rpc == rpc && r.concurrency == concurrency
                    })
                    .map_or(0.0, ScenarioResult::calls_per_second)
            };
            let health = rate(Rpc::Health);
            let ratio = if health > 0.0 {
                format!("{:.1}%", 100.0 * rate(Rpc::GetPreferences) / health)
            } else {
                "n/a (no successful health calls)".to_owned()
            };
            println!(
                "GetPreferences / health at c={concurrency} over {}: {ratio}",
                transport.name()
            );
        }
    }
    println!();
    println!(
        "watch propagation (UpdatePreferences on one grpc connection until the change arrives on \
         a WatchPreferences stream on another, {} samples): p50 {}, p99 {}, max {}",
        watch.len(),
        format_latency(percentile(&watch, 0.50)),
        format_latency(percentile(&watch, 0.99)),
        format_latency(watch.last().copied()),
    );
    Ok(())
}

async fn measure_all(
    cli: &Cli,
    server: &Server,
    label: &str,
) -> anyhow::Result<(Vec<ScenarioResult>, Vec<Duration>)> {
    let mut results = Vec::new();
    for transport in Transport::ALL {
        for rpc in Rpc::ALL {
            for &concurrency in &cli.concurrency {
                eprintln!(
                    "{label}: {} {} c={concurrency}",
                    transport.name(),
                    rpc.name()
                );
                let token = server.fresh_token().await?;
                let result =
                    run_scenario(cli, &server.address, &token, transport, rpc, concurrency)
                        .await
                        .with_context(|| {
                            format!(
                                "{} {} at concurrency {concurrency}",
                                transport.name(),
                                rpc.name()
                            )
                        })?;
                results.push(result);
            }
        }
    }
    eprintln!("{label}: watch propagation");
    let token = server.fresh_token().await?;
    let watch = measure_watch(&server.address, &token, cli.watch_samples)
        .await
        .context("measuring watch propagation")?;
    Ok((results, watch))
}

/// A fresh PostgreSQL database for one run. `psql` does the administration because the bench
/// has no database driver of its own; the server brings its own.
struct PostgresDatabase {
    admin_url: String,
    name: String,
    /// The admin URL with its database replaced by this one.
    url: String,
}

impl PostgresDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("assistd_bench_{}", uuid::Uuid::now_v7().simple());
        let url = with_database(admin_url, &name)?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        eprintln!("PostgreSQL: created database {name}");
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        // FORCE ends connections a killed server may have left behind.
        psql(
            &self.admin_url,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        )
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        eprintln!("PostgreSQL: dropped database {}", self.name);
        Ok(())
    }
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        // -X: ignore ~/.psqlrc, which could change output or behaviour.
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!(
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `url` with its database path replaced by `database`, keeping any `?query`.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base
        .find("://")
        .map(|i| i + 3)
        .with_context(|| "--postgres-admin-url must look like postgres://USER@HOST:PORT/DB")?;
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    Ok(match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    })
}

/// A running `assistd serve` child process on its own data directory.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    address: String,
    launcher: Launcher,
    user_id: String,
    _data_dir: TempDir,
}

impl Server {
    async fn start(bin: &Path, database_url: Option<&str>) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("assistd-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let port = free_port()?;
        let mut env: Vec<(&'static str, OsString)> = vec![
            ("ASSISTD_DATA_DIR", data_dir.path().join("data").into()),
            ("ASSISTD_SERVER__LISTEN", format!("127.0.0.1:{port}").into()),
            ("ASSISTD_LOG__FILTER", "warn".into()),
            ("ASSISTD_AUTH__ACCESS_TOKEN_TTL", TOKEN_TTL.into()),
            (
                "ASSISTD_SERVER__SHUTDOWN_GRACE",
                format!("{}s", SHUTDOWN_GRACE.as_secs()).into(),
            ),
        ];
        if let Some(url) = database_url {
            env.push(("DATABASE_URL", url.into()));
        }
        let launcher = Launcher {
            bin: bin.to_owned(),
            env,
        };
        let user_id = launcher
            .admin(&["create-user", "--display-name", "assistd-bench"])
            .await
            .context("creating the bench user")?;

        let mut child = launcher
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Warnings and errors of the server stay visible next to the bench's own output.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} serve", bin.display()))?;
        let address = format!("http://127.0.0.1:{port}");
        wait_until_serving(&address, &mut child).await?;
        Ok(Self {
            child,
            address,
            launcher,
            user_id,
            _data_dir: data_dir,
        })
    }

    /// A new `Bearer` token for the bench user, so no scenario outlives its token.
    async fn fresh_token(&self) -> anyhow::Result<AsciiMetadataValue> {
        let token = self
            .launcher
            .admin(&["issue-token", "--user-id", &self.user_id])
            .await
            .context("issuing an access token")?;
        format!("Bearer {token}")
            .parse()
            .context("the issued token is not valid ASCII metadata")
    }

    /// SIGTERM, so the server shuts down as in production and closes its database connections,
    /// then SIGKILL if it outlives its grace period.
    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await
                .context("running kill -TERM")?;
            if !status.success() {
                eprintln!("warning: kill -TERM {pid} failed: {status}");
            }
        }
        match tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), self.child.wait()).await
        {
            Ok(status) => {
                let status = status.context("waiting for the server to exit")?;
                if !status.success() {
                    eprintln!("warning: the server exited with {status}");
                }
            }
            Err(_) => {
                eprintln!("warning: the server ignored SIGTERM; killing it");
                self.child
                    .kill()
                    .await
                    .context("killing the server process")?;
            }
        }
        Ok(())
    }
}

/// How to run the server executable with the bench's environment.
struct Launcher {
    bin: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Launcher {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        // The caller's own assistd settings (a config file, RUST_LOG, DATABASE_URL) must not
        // leak into the benchmarked server, or the SQLite run could end up on PostgreSQL.
        for (key, _) in std::env::vars_os() {
            let is_assistd = key.to_str().is_some_and(|key| key.starts_with("ASSISTD_"));
            if is_assistd || key == "RUST_LOG" || key == "DATABASE_URL" {
                command.env_remove(&key);
            }
        }
        command.envs(self.env.iter().map(|(key, value)| (*key, value)));
        command
    }

    /// Runs `assistd admin ARGS` and returns the last line it printed on stdout.
    async fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command()
            .arg("admin")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} admin {}", self.bin.display(), args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "`assistd admin {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout)
            .context("admin output is not UTF-8")?
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("`assistd admin {}` printed nothing", args.join(" ")))
    }
}

/// A port that was free a moment ago. Another process could take it before the server binds
/// it, but the server cannot report the port it picked for port 0 to a parent process.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener.local_addr()?.port())
}

async fn connect(address: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(address.to_owned())?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .with_context(|| format!("connecting to {address} over HTTP/2"))
}

async fn wait_until_serving(address: &str, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_problem = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("checking the server process")? {
            bail!("the server exited during start-up with {status}");
        }
        match connect(address).await {
            Ok(channel) => {
                match HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                {
                    Ok(response) if response.get_ref().status() == ServingStatus::Serving => {
                        return Ok(());
                    }
                    Ok(response) => {
                        last_problem = format!("health is {:?}", response.get_ref().status());
                    }
                    Err(status) => last_problem = status.to_string(),
                }
            }
            Err(err) => last_problem = format!("{err:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server did not report SERVING within {STARTUP_TIMEOUT:?}: {last_problem}")
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
                    .get_preferences(authed(GetPreferencesRequest {}, token))
                    .await
                    .map(drop),
                (Caller::GrpcWeb { preferences, .. }, Rpc::GetPreferences) => preferences
                    .get_preferences(authed(GetPreferencesRequest {}, token))
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

fn authed<T>(message: T, token: &AsciiMetadataValue) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

struct ScenarioResult {
    transport: Transport,
    rpc: Rpc,
    concurrency: usize,
    /// Latencies of the successful measured calls, sorted.
    latencies: Vec<Duration>,
    errors: u64,
    measured: Duration,
}

impl ScenarioResult {
    fn calls_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.measured.as_secs_f64()
    }
}

#[derive(Default)]
struct WorkerOutcome {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

async fn run_scenario(
    cli: &Cli,
    address: &str,
    token: &AsciiMetadataValue,
    transport: Transport,
    rpc: Rpc,
    concurrency: usize,
) -> anyhow::Result<ScenarioResult> {
    let callers: Vec<Caller> = match transport {
        Transport::Grpc => {
            let mut channels = Vec::new();
            for _ in 0..concurrency.min(MAX_CHANNELS) {
                channels.push(connect(address).await?);
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
            let origin: http::Uri = address.parse().context("parsing the server address")?;
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
    };

    let measure_from = Instant::now() + cli.warmup;
    let until = measure_from + cli.duration;
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
    latencies.sort_unstable();
    Ok(ScenarioResult {
        transport,
        rpc,
        concurrency,
        latencies,
        errors,
        measured: cli.duration,
    })
}

/// Sorted delays from just before each UpdatePreferences is sent until a WatchPreferences
/// stream on another connection yields the new theme.
async fn measure_watch(
    address: &str,
    token: &AsciiMetadataValue,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    // Separate connections, so the event really crosses the server instead of riding back
    // on the connection that made the change.
    let mut watcher = PreferencesServiceClient::new(connect(address).await?);
    let mut updater = PreferencesServiceClient::new(connect(address).await?);
    let mut stream = watcher
        .watch_preferences(authed(WatchPreferencesRequest {}, token))
        .await
        .context("opening WatchPreferences")?
        .into_inner();
    let first = tokio::time::timeout(WATCH_SAMPLE_TIMEOUT, stream.message())
        .await
        .context("WatchPreferences sent no initial state")?
        .context("reading the initial WatchPreferences event")?
        .context("WatchPreferences ended before its initial state")?;
    let mut theme = first.preferences.map_or(Theme::Unspecified, |p| p.theme());

    let mut delays = Vec::with_capacity(samples);
    for sample in 0..samples {
        // Always a real change, so every update produces an event.
        let target = if theme == Theme::Light {
            Theme::Dark
        } else {
            Theme::Light
        };
        let request = authed(
            UpdatePreferencesRequest {
                preferences: Some(Preferences {
                    theme: target.into(),
                    ..Preferences::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["theme".to_owned()],
                }),
                etag: String::new(),
            },
            token,
        );
        let started = Instant::now();
        let update = updater.update_preferences(request);
        // Read the stream while the update is in flight: the event may arrive before the
        // update's own response does.
        let seen = async {
            loop {
                let event = stream
                    .message()
                    .await
                    .context("reading WatchPreferences")?
                    .context("WatchPreferences ended")?;
                if event.preferences.is_some_and(|p| p.theme() == target) {
                    return anyhow::Ok(Instant::now());
                }
            }
        };
        let (updated, seen) =
            tokio::time::timeout(WATCH_SAMPLE_TIMEOUT, async { tokio::join!(update, seen) })
                .await
                .with_context(|| {
                    format!(
                        "sample {sample}: the change did not arrive within {WATCH_SAMPLE_TIMEOUT:?}"
                    )
                })?;
        updated.with_context(|| format!("sample {sample}: UpdatePreferences"))?;
        delays.push(seen?.duration_since(started));
        theme = target;
    }
    delays.sort_unstable();
    Ok(delays)
}

/// Nearest-rank percentile of sorted values; `None` when there are none.
fn percentile(sorted: &[Duration], quantile: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn format_latency(latency: Option<Duration>) -> String {
    let Some(latency) = latency else {
        return "-".to_owned();
    };
    let micros = latency.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}
