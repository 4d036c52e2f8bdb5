//! `chat` bench: the chat API of assistd as a client sees it, with the server in a process of
//! its own.
//!
//! For each database (an SQLite file in a temporary directory, or a fresh PostgreSQL database
//! created and dropped through `psql`), the bench starts the real server (`assistd serve`, the
//! release binary built with the bench) on a free loopback port, points it at a Gemini peer in
//! the bench process
//! ([`GeminiServer`] from assistd-testkit), signs a user in, stores the user's Gemini key
//! through the real `SetApiKey` RPC, and measures over native gRPC:
//!
//! 1. **ListMessages** pages of 50 — BACKWARD from the newest message and FORWARD from the
//!    middle — in a session of 100 messages and one of 100,000 (seeded directly through the
//!    store), sequentially after a warm-up; the ratio of the p99s shows whether a page costs
//!    the same however long the session is.
//! 2. **SendMessage** latency with a peer that answers at once, sequentially and at c=16: the
//!    server's own overhead of an exchange (plus the peer's work, measured separately).
//! 3. **StreamMessage** per-delta delay: for every text delta, the client's receive instant
//!    minus the instant the peer finished writing the SSE event that carried it.
//! 4. **RSS** of the server process (from `/proc/<pid>/status`) with 1,000 open StreamMessage
//!    calls whose upstream stalls; the client and the peer live in the bench process and are
//!    not counted.
//!
//! `both` runs each database in a child process of its own (this executable again); each
//! starts its own server process.
//!
//! It only measures and prints; it asserts nothing about speed. Run it with:
//!
//! ```text
//! cargo bench --bench chat -- --database sqlite|postgres|both
//! ```

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use assistd::config::Config;
use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::chat::v1::stream_message_response::Event;
use assistd_domain::UserId;
use assistd_domain::chat::{MessageContent, MessageRole, NewMessage, SessionId};
use assistd_identity::AccessTokens;
use assistd_store::{NewUser, Store};
use assistd_testkit::gemini::{Fault, GeminiServer, ScriptedReply, StreamEnd};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use tempfile::TempDir;
use tokio::process::Command;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

/// The Gemini key the bench user stores; the peer is told to accept it first.
const GEMINI_KEY: &str = "AIzaSyD-bench-0123456789abcdefghijklmno";
/// Model the peer serves (its catalogue's first model).
const MODEL: &str = "gemini-2.5-flash";
/// A single call (or opening a stream) slower than this fails the bench, so a hung server
/// cannot hang it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages per `append_messages` call when seeding.
const SEED_BATCH: usize = 1_000;
/// ListMessages page size measured.
const PAGE_SIZE: usize = 50;
/// Sends in one session before a sender moves to a fresh one, so the history each exchange
/// loads and sends to the model stays small and the same throughout.
const SENDS_PER_SESSION: usize = 10;
/// Most StreamMessage calls being opened at once in the RSS scenario, so the database is not
/// asked for a thousand USER-message commits in the same instant.
const OPENING_CONCURRENCY: usize = 32;
/// Idle streams per gRPC connection in the RSS scenario.
const STREAMS_PER_CHANNEL: usize = 125;
/// How long the bench waits for the server to let go of the stalled upstream calls after the
/// idle streams are cancelled.
const WIND_DOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Age at which the bench replaces its access token.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);
/// Targets printed beside the figures (nothing is asserted).
const LIST_RATIO_TARGET: f64 = 1.5;
const DELTA_P99_TARGET: Duration = Duration::from_millis(1);
const RSS_TARGET_BYTES: u64 = 64 * 1024 * 1024;

/// Measures the chat API of an in-process assistd: ListMessages on short and very long
/// sessions, SendMessage overhead, StreamMessage per-delta delay, and the memory of idle
/// streams.
#[derive(Debug, Parser)]
#[command(
    args_override_self = true,
    after_help = "Run: cargo bench --bench chat -- --database both"
)]
struct Cli {
    /// Which database backs the server; `both` runs SQLite, then PostgreSQL, each in a child
    /// process of its own.
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

    /// Comma-separated scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rss,list,send,stream"
    )]
    scenarios: Vec<Scenario>,

    /// Messages in the short session of the ListMessages scenario.
    #[arg(long, value_name = "N", default_value_t = 100)]
    small_session: usize,

    /// Messages in the long session of the ListMessages scenario.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    large_session: usize,

    /// Measured ListMessages calls per case (session and direction), after as many unmeasured
    /// warm-up calls as a tenth of this.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    list_calls: usize,

    /// Measured SendMessage calls per concurrency level, after a tenth as many warm-up sends.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    sends: usize,

    /// Comma-separated numbers of concurrent senders.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "1,16"
    )]
    send_concurrency: Vec<usize>,

    /// Measured StreamMessage calls, one at a time, in the per-delta scenario.
    #[arg(long, value_name = "N", default_value_t = 100)]
    streams: usize,

    /// Text chunks (SSE events, hence text deltas) per streamed reply.
    #[arg(long, value_name = "N", default_value_t = 50)]
    chunks: usize,

    /// Pause of the peer between two SSE events: seconds (`0.002`, `1s`) or milliseconds
    /// (`2ms`).
    #[arg(long, value_name = "TIME", default_value = "2ms", value_parser = parse_duration)]
    chunk_interval: Duration,

    /// StreamMessage calls held open (upstream stalled) in the RSS scenario.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    idle_streams: usize,

    /// Most measured time of one ListMessages case or SendMessage level (its warm-up gets a
    /// tenth of it); a case that reaches it stops early with fewer calls, so a slow database
    /// keeps the run short. Same format as --chunk-interval.
    #[arg(long, value_name = "TIME", default_value = "45s", value_parser = parse_duration)]
    time_limit: Duration,

    /// Passed by `cargo bench`; ignored.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// RSS with --idle-streams open StreamMessage calls (runs first, on a fresh server).
    Rss,
    /// ListMessages in a short and a long session.
    List,
    /// SendMessage latency with an instant peer.
    Send,
    /// StreamMessage per-delta delay.
    Stream,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Rss => "rss",
            Self::List => "list",
            Self::Send => "send",
            Self::Stream => "stream",
        }
    }
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
        .map_err(|_| format!("{text:?} is not a time like 0.002, 2ms or 1s"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|err| format!("{text:?}: {err}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.small_session >= 2 && cli.large_session >= 2,
        "--small-session and --large-session must be at least 2"
    );
    ensure!(
        cli.list_calls > 0 && cli.sends > 0 && cli.streams > 0 && cli.chunks > 0,
        "--list-calls, --sends, --streams and --chunks must be at least 1"
    );
    ensure!(
        !cli.send_concurrency.is_empty() && !cli.send_concurrency.contains(&0),
        "--send-concurrency must list numbers of at least 1"
    );
    ensure!(cli.idle_streams > 0, "--idle-streams must be at least 1");
    if std::env::var_os("RUST_LOG").is_some() {
        assistd::telemetry::init(&assistd::config::LogConfig {
            filter: "warn".into(),
            format: assistd::config::LogFormat::Text,
        });
    }

    if cli.database == DatabaseChoice::Both {
        // One child per database: RSS is a property of the process, and the first database's
        // freed heap would otherwise be reused by the second and understate its growth.
        let exe = std::env::current_exe().context("locating the bench executable")?;
        for database in ["sqlite", "postgres"] {
            let status = std::process::Command::new(&exe)
                .args(std::env::args_os().skip(1))
                .args(["--database", database])
                .status()
                .with_context(|| format!("running {} for {database}", exe.display()))?;
            ensure!(status.success(), "the {database} run failed ({status})");
        }
        return Ok(());
    }

    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let profile = if cfg!(debug_assertions) {
        "debug (figures are not representative; use `cargo bench`, which builds in release)"
    } else {
        "release"
    };
    println!(
        "machine: nproc = {cpus}; build: {profile}; the server runs in a process of its own, \
         the client and the Gemini peer share the bench process (one tokio runtime, {cpus} \
         workers); all of them share the {cpus} cores"
    );
    println!("reproduce: {}", reproduce_command(&cli));

    match cli.database {
        DatabaseChoice::Sqlite => bench_database(&cli, "SQLite", None).await,
        DatabaseChoice::Postgres => {
            let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
            let result = bench_database(&cli, "PostgreSQL", Some(&database.url)).await;
            // Drop the database even when the run failed, but report the run's error first.
            let dropped = database.drop_database().await;
            result?;
            dropped
        }
        DatabaseChoice::Both => unreachable!("handled above by running one child per database"),
    }
}

/// The command line that repeats this run with every setting spelled out.
fn reproduce_command(cli: &Cli) -> String {
    let database = match cli.database {
        DatabaseChoice::Sqlite => "sqlite",
        DatabaseChoice::Postgres => "postgres",
        DatabaseChoice::Both => "both",
    };
    let scenarios: Vec<&str> = cli.scenarios.iter().map(|s| s.name()).collect();
    let concurrency: Vec<String> = cli.send_concurrency.iter().map(usize::to_string).collect();
    format!(
        "cargo bench --bench chat -- --database {database} --scenarios {} --small-session {} \
         --large-session {} --list-calls {} --sends {} --send-concurrency {} --streams {} \
         --chunks {} --chunk-interval {}ms --idle-streams {} --time-limit {}s{}",
        scenarios.join(","),
        cli.small_session,
        cli.large_session,
        cli.list_calls,
        cli.sends,
        concurrency.join(","),
        cli.streams,
        cli.chunks,
        cli.chunk_interval.as_secs_f64() * 1e3,
        cli.idle_streams,
        cli.time_limit.as_secs_f64(),
        if cli.database == DatabaseChoice::Sqlite {
            String::new()
        } else {
            format!(" --postgres-admin-url {}", cli.postgres_admin_url)
        },
    )
}

/// Starts a server on `database_url` (SQLite when `None`), runs the chosen scenarios against
/// it and prints their results.
async fn bench_database(cli: &Cli, label: &str, database_url: Option<&str>) -> anyhow::Result<()> {
    eprintln!("{label}: starting the server");
    let bench = Bench::start(cli, database_url)
        .await
        .with_context(|| format!("starting the server on {label}"))?;
    let mut report = Report::default();
    let measured = measure_all(cli, &bench, label, &mut report).await;
    // Stop the server whatever happened.
    let stopped = bench.stop().await;
    report.print(cli, label);
    measured?;
    stopped
}

async fn measure_all(
    cli: &Cli,
    bench: &Bench,
    label: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    // The RSS scenario runs first, on a server that has not yet held the long session or
    // thousands of exchanges, so "idle" is as close to a fresh server as a warmed one gets.
    if cli.scenarios.contains(&Scenario::Rss) {
        eprintln!("{label}: {} idle streams", cli.idle_streams);
        report.rss = Some(
            measure_idle_streams(cli, bench)
                .await
                .context("measuring RSS with idle streams")?,
        );
    }
    if cli.scenarios.contains(&Scenario::List) {
        eprintln!("{label}: ListMessages");
        report.list = Some(
            measure_list(cli, bench)
                .await
                .context("measuring ListMessages")?,
        );
    }
    if cli.scenarios.contains(&Scenario::Send) {
        for &concurrency in &cli.send_concurrency {
            eprintln!("{label}: SendMessage c={concurrency}");
            let result = measure_sends(cli, bench, concurrency)
                .await
                .with_context(|| format!("measuring SendMessage at c={concurrency}"))?;
            report.sends.push(result);
        }
        eprintln!("{label}: the peer alone");
        report.peer = Some(
            measure_peer_alone(bench, cli.sends.min(1_000))
                .await
                .context("measuring the peer alone")?,
        );
    }
    if cli.scenarios.contains(&Scenario::Stream) {
        eprintln!("{label}: StreamMessage deltas");
        report.deltas = Some(
            measure_deltas(cli, bench)
                .await
                .context("measuring StreamMessage deltas")?,
        );
    }
    Ok(())
}

/// The server, its Gemini peer and a signed-in user with a stored key.
struct Bench {
    address: String,
    store: Store,
    user: UserId,
    tokens: TokenSource,
    gemini: Arc<GeminiServer>,
    /// One connection for sequential calls.
    channel: Channel,
    /// The `assistd serve` process.
    server: tokio::process::Child,
    server_pid: u32,
    _data_dir: TempDir,
}

impl Bench {
    async fn start(cli: &Cli, database_url: Option<&str>) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("assistd-chat-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let gemini = Arc::new(GeminiServer::start().await);
        gemini.allow_key(GEMINI_KEY);

        let mut config = Config {
            data_dir: data_dir.path().join("data"),
            ..Config::default()
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        config.server.listen = format!("127.0.0.1:{port}").parse()?;
        config.database.url = database_url.unwrap_or_default().to_owned();
        // Room for every idle stream on its connection, whatever the channel count.
        let max_streams = u32::try_from(cli.idle_streams + 64)
            .context("--idle-streams is too large")?
            .max(config.server.max_concurrent_streams);
        // The signing key is made here, before the server starts and loads it, so the bench
        // can mint the user's access tokens itself.
        let tokens = assistd::server::access_tokens(&config)?;
        let address = format!("http://{}", config.server.listen);
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        let server = Command::new(env!("CARGO_BIN_EXE_assistd"))
            .arg("serve")
            .env("ASSISTD_DATA_DIR", &config.data_dir)
            .env("ASSISTD_SERVER__LISTEN", config.server.listen.to_string())
            .env("ASSISTD_SERVER__SHUTDOWN_GRACE", "10s")
            .env(
                "ASSISTD_SERVER__MAX_CONCURRENT_STREAMS",
                max_streams.to_string(),
            )
            .env("ASSISTD_DATABASE__URL", &config.database.url)
            .env("ASSISTD_GEMINI__BASE_URL", gemini.base_url())
            // The idle streams stall upstream for as long as the RSS scenario takes; the
            // client's whole-call timeout must not end them first.
            .env("ASSISTD_GEMINI__REQUEST_TIMEOUT", "10m")
            // Titles would be generated with a model call of their own, taking replies meant
            // for the measured sends.
            .env("ASSISTD_CHAT__GENERATE_TITLES", "false")
            .env("ASSISTD_LOG__FILTER", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting assistd serve")?;
        let server_pid = server.id().context("the server exited at once")?;
        let started = Instant::now();
        let channel = loop {
            match connect(&address).await {
                Ok(channel) => break channel,
                Err(err) if started.elapsed() > Duration::from_secs(60) => {
                    return Err(err.context("the server did not start within 60 s"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        // The server migrated the database before listening; the bench reads and seeds it
        // through a pool of its own.
        let store = Store::connect(&config.database_settings())
            .await
            .context("opening the database beside the server")?;
        let user = store
            .users()
            .create(NewUser {
                display_name: Some("assistd chat bench".into()),
                email: None,
            })
            .await
            .context("creating the bench user")?
            .id;
        let tokens = TokenSource::new(tokens, user);
        UserApiKeyServiceClient::new(channel.clone())
            .set_api_key(authed(
                keypb::SetApiKeyRequest {
                    provider: keypb::Provider::Gemini.into(),
                    api_key: GEMINI_KEY.into(),
                    allow_unverified: false,
                },
                &tokens.get(),
            ))
            .await
            .context("storing the Gemini key through SetApiKey")?;
        Ok(Self {
            address,
            store,
            user,
            tokens,
            gemini,
            channel,
            server,
            server_pid,
            _data_dir: data_dir,
        })
    }

    fn chat(&self) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.channel.clone())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = authed(message, &self.tokens.get());
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// A new session through CreateSession.
    async fn session(&self, chat: &mut ChatServiceClient<Channel>) -> anyhow::Result<String> {
        let session = chat
            .create_session(self.request(pb::CreateSessionRequest {
                title: "bench".into(),
                ..Default::default()
            }))
            .await
            .context("CreateSession")?
            .into_inner()
            .session
            .context("CreateSession returned no session")?;
        Ok(session.id)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.store.close().await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.server_pid.to_string()])
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -TERM failed");
        let exit = tokio::time::timeout(Duration::from_secs(20), self.server.wait())
            .await
            .context("the server did not stop within 20 s")??;
        ensure!(exit.success(), "the server exited with {exit}");
        Ok(())
    }
}

async fn connect(address: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(address.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {address} over HTTP/2"))
}

/// Access tokens for the bench user, reissued once the current one is [`TOKEN_REFRESH`] old, so
/// no scenario outlives its token (they live 10 minutes by default; a slow database can make a
/// run longer than that).
#[derive(Clone)]
struct TokenSource {
    tokens: AccessTokens,
    user: UserId,
    current: Arc<Mutex<(Instant, AsciiMetadataValue)>>,
}

impl TokenSource {
    fn new(tokens: AccessTokens, user: UserId) -> Self {
        let current = Self::issue(&tokens, user);
        Self {
            tokens,
            user,
            current: Arc::new(Mutex::new((Instant::now(), current))),
        }
    }

    fn issue(tokens: &AccessTokens, user: UserId) -> AsciiMetadataValue {
        format!("Bearer {}", tokens.issue(user).token)
            .parse()
            .expect("an access token is ASCII")
    }

    /// The `authorization` value to send now.
    fn get(&self) -> AsciiMetadataValue {
        let mut current = self.current.lock().expect("token lock poisoned");
        if current.0.elapsed() >= TOKEN_REFRESH {
            *current = (Instant::now(), Self::issue(&self.tokens, self.user));
        }
        current.1.clone()
    }
}

fn authed<T>(message: T, token: &AsciiMetadataValue) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

fn stream_request(session: &str, text: &str) -> pb::StreamMessageRequest {
    pb::StreamMessageRequest {
        session_id: session.to_owned(),
        client_message_id: uuid::Uuid::now_v7().simple().to_string(),
        text: text.to_owned(),
    }
}

/// Reads a stream to its end; `Ok(false)` when it ended without a `completed` event.
async fn drain(stream: &mut tonic::Streaming<pb::StreamMessageResponse>) -> anyhow::Result<bool> {
    let mut completed = false;
    while let Some(response) = tokio::time::timeout(CALL_TIMEOUT, stream.message())
        .await
        .context("a stream stalled")??
    {
        completed |= matches!(response.event, Some(Event::Completed(_)));
    }
    Ok(completed)
}

// ---------------------------------------------------------------------------------------------
// 1. ListMessages

struct ListCase {
    messages: usize,
    forward: bool,
    start_sequence: i64,
    /// Sorted latencies of the measured calls that returned a full page.
    latencies: Vec<Duration>,
    /// Calls that failed or returned fewer than a page.
    errors: usize,
    first_error: Option<String>,
    /// Whether --time-limit ended the case before --list-calls calls.
    stopped_early: bool,
}

struct ListResult {
    /// (messages, seeding time) per session.
    seeding: Vec<(usize, Duration)>,
    cases: Vec<ListCase>,
    warmup: usize,
}

async fn measure_list(cli: &Cli, bench: &Bench) -> anyhow::Result<ListResult> {
    let mut chat = bench.chat();
    let mut seeding = Vec::new();
    let mut sessions = Vec::new();
    for messages in [cli.small_session, cli.large_session] {
        let session = bench.session(&mut chat).await?;
        let started = Instant::now();
        seed(bench, &session, messages).await?;
        let took = started.elapsed();
        eprintln!("  seeded {messages} messages in {took:.1?}");
        seeding.push((messages, took));
        sessions.push((messages, session));
    }
    let warmup = (cli.list_calls / 10).max(1);
    let mut cases = Vec::new();
    for (messages, session) in &sessions {
        for forward in [false, true] {
            // BACKWARD from the newest message (the page a client opens a session with);
            // FORWARD from the middle (a jump to a search hit, then reading on).
            let start_sequence = if forward {
                i64::try_from(messages / 2)?
            } else {
                0
            };
            let request = pb::ListMessagesRequest {
                session_id: session.clone(),
                page_size: i32::try_from(PAGE_SIZE)?,
                direction: if forward {
                    pb::ListMessagesDirection::Forward
                } else {
                    pb::ListMessagesDirection::Backward
                }
                .into(),
                start_sequence,
                ..Default::default()
            };
            let expected = PAGE_SIZE.min(if forward {
                messages - messages / 2 + 1
            } else {
                *messages
            });
            let mut case = ListCase {
                messages: *messages,
                forward,
                start_sequence,
                latencies: Vec::with_capacity(cli.list_calls),
                errors: 0,
                first_error: None,
                stopped_early: false,
            };
            let warmup_until = Instant::now() + cli.time_limit / 10;
            let mut measure_until = None;
            for call in 0..warmup + cli.list_calls {
                if call < warmup {
                    if Instant::now() >= warmup_until {
                        continue;
                    }
                } else {
                    let until =
                        *measure_until.get_or_insert_with(|| Instant::now() + cli.time_limit);
                    if Instant::now() >= until {
                        case.stopped_early = true;
                        break;
                    }
                }
                let started = Instant::now();
                let result = chat.list_messages(bench.request(request.clone())).await;
                let latency = started.elapsed();
                if call < warmup {
                    continue;
                }
                match result {
                    Ok(response) if response.get_ref().messages.len() == expected => {
                        case.latencies.push(latency);
                    }
                    Ok(response) => {
                        case.errors += 1;
                        case.first_error.get_or_insert_with(|| {
                            format!(
                                "{} messages instead of {expected}",
                                response.get_ref().messages.len()
                            )
                        });
                    }
                    Err(status) => {
                        case.errors += 1;
                        case.first_error.get_or_insert_with(|| status.to_string());
                    }
                }
            }
            case.latencies.sort_unstable();
            cases.push(case);
        }
    }
    Ok(ListResult {
        seeding,
        cases,
        warmup,
    })
}

/// Appends `count` messages, USER and MODEL in turn, of about 200 characters each, directly
/// through the store in batches.
async fn seed(bench: &Bench, session: &str, count: usize) -> anyhow::Result<()> {
    let session: SessionId = session.parse().context("CreateSession returned a bad id")?;
    const FILLER: &str = "The quarterly figures were reviewed on Thursday; Bob will send the \
                          revised forecast, the hiring plan and the budget notes to everyone \
                          before the Friday meeting in room four.";
    let mut index = 0;
    while index < count {
        let batch: Vec<NewMessage> = (index..count.min(index + SEED_BATCH))
            .map(|i| NewMessage {
                role: if i % 2 == 0 {
                    MessageRole::User
                } else {
                    MessageRole::Model
                },
                content: MessageContent::Text(format!("#{i:06} {FILLER}")),
                exchange_id: None,
                parts: None,
                metadata: None,
            })
            .collect();
        index += batch.len();
        bench
            .store
            .chat()
            .append_messages(bench.user, session, batch, None, chrono::Utc::now())
            .await
            .with_context(|| format!("appending messages up to {index}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. SendMessage

struct SendResult {
    concurrency: usize,
    /// Sorted latencies of the measured sends that succeeded.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Whether --time-limit ended the level before --sends sends.
    stopped_early: bool,
}

async fn measure_sends(cli: &Cli, bench: &Bench, concurrency: usize) -> anyhow::Result<SendResult> {
    bench
        .gemini
        .respond_with(|_| ScriptedReply::text("Noted: I will remind you on Friday."));
    // A few connections, callers sharing them round-robin.
    let mut channels = Vec::new();
    for _ in 0..concurrency.clamp(1, 4) {
        channels.push(connect(&bench.address).await?);
    }
    let warmup = (cli.sends / 10).max(concurrency);
    run_senders(bench, &channels, concurrency, warmup, cli.time_limit / 10).await?;
    let started = Instant::now();
    let (mut latencies, errors, first_error) =
        run_senders(bench, &channels, concurrency, cli.sends, cli.time_limit).await?;
    let elapsed = started.elapsed();
    let stopped_early = latencies.len() + errors < cli.sends;
    latencies.sort_unstable();
    bench.gemini.clear_requests();
    Ok(SendResult {
        concurrency,
        latencies,
        errors,
        first_error,
        elapsed,
        stopped_early,
    })
}

/// `total` sends by `concurrency` tasks, each in sessions of its own, until `limit` has passed;
/// session creation is not timed.
async fn run_senders(
    bench: &Bench,
    channels: &[Channel],
    concurrency: usize,
    total: usize,
    limit: Duration,
) -> anyhow::Result<(Vec<Duration>, usize, Option<String>)> {
    let mut tasks = Vec::new();
    let until = Instant::now() + limit;
    for task in 0..concurrency {
        let sends = total / concurrency + usize::from(task < total % concurrency);
        let mut chat = ChatServiceClient::new(channels[task % channels.len()].clone());
        let tokens = bench.tokens.clone();
        let first_session = bench.session(&mut chat).await?;
        tasks.push(tokio::spawn(async move {
            let mut session = first_session;
            let mut latencies = Vec::with_capacity(sends);
            let mut errors = 0;
            let mut first_error = None;
            for send in 0..sends {
                if Instant::now() >= until {
                    break;
                }
                if send > 0 && send % SENDS_PER_SESSION == 0 {
                    let mut request = authed(
                        pb::CreateSessionRequest {
                            title: "bench".into(),
                            ..Default::default()
                        },
                        &tokens.get(),
                    );
                    request.set_timeout(CALL_TIMEOUT);
                    match chat.create_session(request).await {
                        Ok(response) => {
                            if let Some(created) = response.into_inner().session {
                                session = created.id;
                            }
                        }
                        Err(status) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("CreateSession: {status}"));
                        }
                    }
                }
                let mut request = authed(
                    pb::SendMessageRequest {
                        session_id: session.clone(),
                        client_message_id: uuid::Uuid::now_v7().simple().to_string(),
                        text: format!("Please remind me about the forecast ({send})."),
                    },
                    &tokens.get(),
                );
                request.set_timeout(CALL_TIMEOUT);
                let started = Instant::now();
                let result = chat.send_message(request).await;
                let latency = started.elapsed();
                match result {
                    Ok(response) if response.get_ref().reply.is_some() => latencies.push(latency),
                    Ok(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| "a response without a reply".into());
                    }
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| status.to_string());
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (task_latencies, task_errors, task_error) =
            task.await.context("a sending task panicked")?;
        latencies.extend(task_latencies);
        errors += task_errors;
        if first_error.is_none() {
            first_error = task_error;
        }
    }
    Ok((latencies, errors, first_error))
}

/// Sorted latencies of `calls` generateContent calls made straight to the peer over HTTP/1.1,
/// one at a time: roughly the peer's share of a SendMessage (the server makes one such call
/// per send, with a longer body).
async fn measure_peer_alone(bench: &Bench, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let client = reqwest::Client::new();
    let url = format!(
        "{}/v1beta/models/{MODEL}:generateContent",
        bench.gemini.base_url()
    );
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"Please remind me about the forecast."}]}]}"#;
    let mut latencies = Vec::with_capacity(calls);
    for call in 0..calls + calls / 10 {
        let started = Instant::now();
        let response = client
            .post(&url)
            .header("x-goog-api-key", GEMINI_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("calling the peer")?;
        ensure!(
            response.status().is_success(),
            "the peer answered {}",
            response.status()
        );
        response
            .bytes()
            .await
            .context("reading the peer's answer")?;
        if call >= calls / 10 {
            latencies.push(started.elapsed());
        }
    }
    latencies.sort_unstable();
    bench.gemini.clear_requests();
    Ok(latencies)
}

// ---------------------------------------------------------------------------------------------
// 3. StreamMessage per-delta delay

struct DeltaResult {
    /// Sorted delays (client receive minus peer write-complete), in nanoseconds; negative
    /// when the client had the delta before the peer recorded its write as complete.
    delays: Vec<i64>,
    /// The same delays split by the delta's place in its stream: first, middle, last (sorted).
    by_place: [Vec<i64>; 3],
    /// Sorted delays of the same events read straight from the peer, without assistd.
    peer_direct: Vec<i64>,
    streams: usize,
    /// Streams whose deltas could not be paired with the peer's writes.
    unpaired: usize,
    first_unpaired: Option<String>,
}

/// Streams one reply of `--chunks` pieces at a time and pairs deltas with peer writes.
///
/// Pairing: the peer sends one SSE event per text chunk and records, per stream, the instant
/// each event was completely written ([`GeminiServer::stream_write_times`]). With one stream
/// in flight at a time, the stream log appended during a call is that call's upstream stream,
/// and the k-th `text_delta` the client receives carries the k-th event's chunk (the server
/// relays one delta per event, in order). A stream whose delta count differs from its event
/// count, or during which not exactly one upstream stream was logged (e.g. a retry), is
/// counted as unpaired and left out. Both instants come from the same monotonic clock of the
/// same process.
async fn measure_deltas(cli: &Cli, bench: &Bench) -> anyhow::Result<DeltaResult> {
    let chunks: Vec<String> = (0..cli.chunks)
        .map(|i| format!("piece {i:03} of the answer; "))
        .collect();
    let reply = ScriptedReply::chunks(chunks);
    bench.gemini.respond_with(move |_| reply.clone());
    bench.gemini.set_chunk_interval(cli.chunk_interval);
    let result = match stream_and_pair(cli, bench).await {
        Ok(mut result) => stream_from_peer_directly(cli, bench).await.map(|direct| {
            result.peer_direct = direct;
            result
        }),
        Err(err) => Err(err),
    };
    bench.gemini.set_chunk_interval(Duration::ZERO);
    bench.gemini.clear_requests();
    result
}

/// The same replies read straight from the peer by an HTTP/1.1 client in this process, without
/// assistd: sorted delays from the peer's write-complete instant of each SSE event until the
/// client holds the event's last byte. What the peer and loopback TCP alone contribute to the
/// per-delta delay.
async fn stream_from_peer_directly(cli: &Cli, bench: &Bench) -> anyhow::Result<Vec<i64>> {
    let client = reqwest::Client::new();
    let url = format!(
        "{}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        bench.gemini.base_url()
    );
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"Tell me the plan."}]}]}"#;
    let streams = cli.streams.min(50);
    let mut delays = Vec::with_capacity(streams * cli.chunks);
    for number in 0..streams + 2 {
        let logs_before = bench.gemini.streams().len();
        let mut response = client
            .post(&url)
            .header("x-goog-api-key", GEMINI_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("streaming from the peer")?;
        ensure!(
            response.status().is_success(),
            "the peer answered {}",
            response.status()
        );
        // An event is complete with its blank line; count them as the bytes arrive.
        let mut received = Vec::with_capacity(cli.chunks);
        let mut tail = Vec::new();
        while let Some(chunk) = tokio::time::timeout(CALL_TIMEOUT, response.chunk())
            .await
            .context("the peer's stream stalled")??
        {
            let at = Instant::now();
            tail.extend_from_slice(&chunk);
            while let Some(end) = tail.windows(4).position(|w| w == b"\r\n\r\n") {
                received.push(at);
                tail.drain(..end + 4);
            }
        }
        if number < 2 {
            continue;
        }
        let logs = bench.gemini.stream_write_times();
        if let [written] = &logs[logs_before.min(logs.len())..]
            && written.len() == received.len()
        {
            delays.extend(
                received
                    .iter()
                    .zip(written)
                    .map(|(received, written)| signed_nanos(*received, *written)),
            );
        }
    }
    delays.sort_unstable();
    Ok(delays)
}

async fn stream_and_pair(cli: &Cli, bench: &Bench) -> anyhow::Result<DeltaResult> {
    let mut chat = bench.chat();
    let warmup = (cli.streams / 20).max(2);
    let mut result = DeltaResult {
        delays: Vec::with_capacity(cli.streams * cli.chunks),
        by_place: Default::default(),
        peer_direct: Vec::new(),
        streams: cli.streams,
        unpaired: 0,
        first_unpaired: None,
    };
    let mut session = String::new();
    for number in 0..warmup + cli.streams {
        if number % SENDS_PER_SESSION == 0 {
            session = bench.session(&mut chat).await?;
        }
        let logs_before = bench.gemini.streams().len();
        let mut stream = chat
            .stream_message(bench.request(stream_request(&session, "Tell me the plan.")))
            .await
            .context("StreamMessage")?
            .into_inner();
        let mut received = Vec::with_capacity(cli.chunks);
        let mut completed = false;
        while let Some(response) = tokio::time::timeout(CALL_TIMEOUT, stream.message())
            .await
            .context("a stream stalled")??
        {
            // Taken first, before anything else is done with the event.
            let at = Instant::now();
            match response.event {
                Some(Event::TextDelta(_)) => received.push(at),
                Some(Event::Completed(_)) => completed = true,
                _ => {}
            }
        }
        ensure!(completed, "a stream ended without its completed event");
        if number < warmup {
            continue;
        }
        let logs = bench.gemini.stream_write_times();
        let new_logs = &logs[logs_before.min(logs.len())..];
        let problem = match new_logs {
            [written] if written.len() == received.len() => None,
            [written] => Some(format!(
                "{} deltas received, {} events written",
                received.len(),
                written.len()
            )),
            _ => Some(format!("{} upstream streams for one call", new_logs.len())),
        };
        if let Some(problem) = problem {
            result.unpaired += 1;
            result.first_unpaired.get_or_insert(problem);
            continue;
        }
        let last = received.len() - 1;
        for (index, (received, written)) in received.iter().zip(&new_logs[0]).enumerate() {
            let delay = signed_nanos(*received, *written);
            result.delays.push(delay);
            let place = match index {
                0 => 0,
                index if index == last => 2,
                _ => 1,
            };
            result.by_place[place].push(delay);
        }
    }
    result.delays.sort_unstable();
    for delays in &mut result.by_place {
        delays.sort_unstable();
    }
    Ok(result)
}

/// `later - earlier` in nanoseconds, negative when `later` is in fact earlier.
fn signed_nanos(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(gap) => i64::try_from(gap.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(earlier.duration_since(later).as_nanos()).unwrap_or(i64::MAX),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. RSS with idle streams

struct RssResult {
    streams: usize,
    channels: usize,
    idle: u64,
    open: u64,
    after_cancel: u64,
    opening: Duration,
    /// Upstream calls the peer saw the server abandon after the cancel, and how long it took.
    released: usize,
    release_time: Option<Duration>,
    /// The server process measured.
    server_pid: u32,
}

async fn measure_idle_streams(cli: &Cli, bench: &Bench) -> anyhow::Result<RssResult> {
    let count = cli.idle_streams;
    let channel_count = count.div_ceil(STREAMS_PER_CHANNEL);
    let mut channels = Vec::with_capacity(channel_count);
    for _ in 0..channel_count {
        channels.push(connect(&bench.address).await?);
    }

    // Warm up: complete exchanges over every connection, so pools, connections to the peer and
    // caches exist before the idle figure is taken.
    bench
        .gemini
        .respond_with(|_| ScriptedReply::chunks(["Warming ", "up."]));
    let warm_session = bench.session(&mut bench.chat()).await?;
    for channel in channels.iter().cycle().take(channel_count.max(20)) {
        let mut chat = ChatServiceClient::new(channel.clone());
        let mut stream = chat
            .stream_message(bench.request(stream_request(&warm_session, "Hello.")))
            .await
            .context("a warm-up StreamMessage")?
            .into_inner();
        ensure!(
            drain(&mut stream).await?,
            "a warm-up stream did not complete"
        );
    }
    // One session per stream: a session runs one exchange at a time. Created before the idle
    // figure, as they are rows in the database rather than state of open streams.
    let mut sessions = Vec::with_capacity(count);
    let mut chat = bench.chat();
    for _ in 0..count {
        sessions.push(bench.session(&mut chat).await?);
    }
    bench.gemini.clear_requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = vm_rss(bench.server_pid)?;

    let disconnects_before = bench.gemini.stream_disconnects();
    let logs_before = bench.gemini.streams().len();
    // Upstream answers with headers and then nothing: no delta ever arrives.
    bench.gemini.fail_always(Fault::StallAfter(0));
    let started = Instant::now();
    let opened: Vec<anyhow::Result<tonic::Streaming<pb::StreamMessageResponse>>> =
        futures::stream::iter(sessions.iter().enumerate())
            .map(|(index, session)| {
                let mut chat = ChatServiceClient::new(channels[index % channel_count].clone());
                let request = authed(stream_request(session, "Wait for it."), &bench.tokens.get());
                async move {
                    let mut stream =
                        tokio::time::timeout(CALL_TIMEOUT, chat.stream_message(request))
                            .await
                            .context("opening a stream timed out")?
                            .context("StreamMessage")?
                            .into_inner();
                    // Open means the USER message is committed and announced.
                    let first = tokio::time::timeout(CALL_TIMEOUT, stream.message())
                        .await
                        .context("no first event")??
                        .context("the stream ended at once")?;
                    ensure!(
                        matches!(first.event, Some(Event::UserMessage(_))),
                        "the first event is not the user message"
                    );
                    Ok::<_, anyhow::Error>(stream)
                }
            })
            .buffer_unordered(OPENING_CONCURRENCY)
            .collect()
            .await;
    let opening = started.elapsed();
    let streams = match opened.into_iter().collect::<anyhow::Result<Vec<_>>>() {
        Ok(streams) => streams,
        Err(err) => {
            bench.gemini.clear_faults();
            return Err(err);
        }
    };
    // Every exchange should now be waiting on its stalled upstream call.
    let upstream_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open_upstream = bench.gemini.streams()[logs_before..]
            .iter()
            .filter(|log| log.end == StreamEnd::Open)
            .count();
        if open_upstream >= count {
            break;
        }
        if Instant::now() >= upstream_deadline {
            eprintln!(
                "  warning: only {open_upstream} of {count} upstream calls are open at the peer"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = vm_rss(bench.server_pid)?;

    // Cancel: dropping a stream resets its HTTP/2 stream; the server must let go of the
    // exchange and of its upstream call.
    let cancelled = Instant::now();
    drop(streams);
    let released_at = bench
        .gemini
        .wait_for_stream_disconnects(disconnects_before + count, WIND_DOWN_TIMEOUT)
        .await;
    let released = bench.gemini.stream_disconnects() - disconnects_before;
    bench.gemini.clear_faults();
    bench.gemini.clear_requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_cancel = vm_rss(bench.server_pid)?;
    Ok(RssResult {
        streams: count,
        channels: channel_count,
        idle,
        open,
        after_cancel,
        opening,
        released,
        release_time: released_at.map(|at| at.saturating_duration_since(cancelled)),
        server_pid: bench.server_pid,
    })
}

/// The resident set size of process `pid` in bytes, from `/proc/<pid>/status`.
fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/<pid>/status (Linux only)")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("/proc/self/status has no VmRSS line")?;
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .context("VmRSS is not a number of kB")?;
    Ok(kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// Output

#[derive(Default)]
struct Report {
    list: Option<ListResult>,
    sends: Vec<SendResult>,
    peer: Option<Vec<Duration>>,
    deltas: Option<DeltaResult>,
    rss: Option<RssResult>,
}

impl Report {
    fn print(&self, cli: &Cli, label: &str) {
        println!();
        println!("## {label}");
        let mut summary = Vec::new();
        if let Some(list) = &self.list {
            print_list(list, cli, label, &mut summary);
        }
        if !self.sends.is_empty() {
            print_sends(
                &self.sends,
                self.peer.as_deref(),
                &mut summary,
                label,
                cli.time_limit,
            );
        }
        if let Some(deltas) = &self.deltas {
            print_deltas(deltas, cli, label, &mut summary);
        }
        if let Some(rss) = &self.rss {
            print_rss(rss, label, &mut summary);
        }
        if !summary.is_empty() {
            println!();
            println!("### Summary ({label})");
            println!();
            for line in summary {
                println!("- {line}");
            }
        }
    }
}

fn print_list(list: &ListResult, cli: &Cli, label: &str, summary: &mut Vec<String>) {
    println!();
    println!(
        "### ListMessages, page of {PAGE_SIZE}, c=1 (up to {} measured calls per case, at most \
         {:?}, after up to {} warm-up calls)",
        cli.list_calls, cli.time_limit, list.warmup
    );
    println!();
    println!(
        "| session | direction | start_sequence | calls | errors | calls/s | p50 | p99 | max |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in &list.cases {
        let total: Duration = case.latencies.iter().sum();
        let rate = if total.is_zero() {
            0.0
        } else {
            case.latencies.len() as f64 / total.as_secs_f64()
        };
        println!(
            "| {} messages | {} | {} | {} | {} | {rate:.0} | {} | {} | {} |",
            thousands(case.messages),
            direction_name(case.forward),
            if case.forward {
                case.start_sequence.to_string()
            } else {
                "newest".to_owned()
            },
            case.latencies.len(),
            case.errors,
            format_latency(percentile(&case.latencies, 0.50)),
            format_latency(percentile(&case.latencies, 0.99)),
            format_latency(case.latencies.last().copied()),
        );
        if let Some(error) = &case.first_error {
            println!(
                "  first error ({} messages, {}): {error}",
                case.messages,
                direction_name(case.forward)
            );
        }
        if case.stopped_early {
            println!(
                "  ({} messages, {}: stopped at --time-limit {:?})",
                thousands(case.messages),
                direction_name(case.forward),
                cli.time_limit
            );
        }
    }
    println!();
    let seeding: Vec<String> = list
        .seeding
        .iter()
        .map(|(messages, took)| {
            let rate = *messages as f64 / took.as_secs_f64().max(1e-9);
            format!(
                "{} messages in {} ({rate:.0} messages/s)",
                thousands(*messages),
                format_latency(Some(*took))
            )
        })
        .collect();
    println!(
        "seeding through the store (append_messages, {SEED_BATCH} per call, ~200 characters \
         each, USER and MODEL in turn): {}",
        seeding.join("; ")
    );
    for forward in [false, true] {
        let p99 = |messages: usize| {
            list.cases
                .iter()
                .find(|c| c.forward == forward && c.messages == messages)
                .and_then(|c| percentile(&c.latencies, 0.99))
        };
        let line = match (p99(cli.large_session), p99(cli.small_session)) {
            (Some(large), Some(small)) if !small.is_zero() => {
                let ratio = large.as_secs_f64() / small.as_secs_f64();
                format!(
                    "{label}: ListMessages {} p99 ratio {} / {} messages = {ratio:.2} \
                     ({} vs {}); target ≤ {LIST_RATIO_TARGET} — {}",
                    direction_name(forward),
                    thousands(cli.large_session),
                    thousands(cli.small_session),
                    format_latency(Some(large)),
                    format_latency(Some(small)),
                    verdict(ratio <= LIST_RATIO_TARGET),
                )
            }
            _ => format!(
                "{label}: ListMessages {} p99 ratio: not measured (no successful calls); \
                 target ≤ {LIST_RATIO_TARGET}",
                direction_name(forward)
            ),
        };
        summary.push(line);
    }
}

fn print_sends(
    sends: &[SendResult],
    peer: Option<&[Duration]>,
    summary: &mut Vec<String>,
    label: &str,
    time_limit: Duration,
) {
    println!();
    println!(
        "### SendMessage, peer answering at once with a one-line text (fresh session every \
         {SENDS_PER_SESSION} sends per sender)"
    );
    println!();
    println!("| concurrency | sends | errors | sends/s | p50 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for result in sends {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            result.concurrency,
            result.latencies.len(),
            result.errors,
            result.latencies.len() as f64 / result.elapsed.as_secs_f64().max(1e-9),
            format_latency(percentile(&result.latencies, 0.50)),
            format_latency(percentile(&result.latencies, 0.99)),
            format_latency(result.latencies.last().copied()),
        );
        if let Some(error) = &result.first_error {
            println!("  first error at c={}: {error}", result.concurrency);
        }
        if result.stopped_early {
            println!(
                "  (c={}: stopped at --time-limit {time_limit:?})",
                result.concurrency
            );
        }
    }
    println!();
    println!(
        "These latencies include the in-process Gemini peer's work (HTTP/1.1 server, JSON) and \
         share the 2 cores with it and with the client."
    );
    if let Some(peer) = peer {
        println!(
            "The peer alone (generateContent straight from this process over HTTP/1.1, c=1, {} \
             calls): p50 {}, p99 {}.",
            peer.len(),
            format_latency(percentile(peer, 0.50)),
            format_latency(percentile(peer, 0.99)),
        );
    }
    for result in sends {
        summary.push(format!(
            "{label}: SendMessage at c={}: p50 {}, p99 {} (no target; includes the peer)",
            result.concurrency,
            format_latency(percentile(&result.latencies, 0.50)),
            format_latency(percentile(&result.latencies, 0.99)),
        ));
    }
}

fn print_deltas(deltas: &DeltaResult, cli: &Cli, label: &str, summary: &mut Vec<String>) {
    println!();
    println!(
        "### StreamMessage per-delta delay ({} streams one at a time, {} chunks per reply, \
         {:?} between chunks)",
        deltas.streams, cli.chunks, cli.chunk_interval
    );
    println!();
    println!(
        "delay = client's receive instant of a text_delta − the peer's write-complete instant of \
         the SSE event it came from (both in the bench process, one monotonic clock; the server \
         between them runs in its own process)."
    );
    println!();
    println!("| deltas | count | p50 | p99 | max | min | negative |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rows = [
        ("all", &deltas.delays),
        ("first of each stream", &deltas.by_place[0]),
        ("middle", &deltas.by_place[1]),
        ("last of each stream", &deltas.by_place[2]),
        (
            "peer → this process directly, no assistd (SSE events)",
            &deltas.peer_direct,
        ),
    ];
    for (name, delays) in rows {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            delays.len(),
            format_signed(percentile(delays, 0.50)),
            format_signed(percentile(delays, 0.99)),
            format_signed(delays.last().copied()),
            format_signed(delays.first().copied()),
            delays.iter().filter(|d| **d < 0).count(),
        );
    }
    let negative = deltas.delays.iter().filter(|d| **d < 0).count();
    println!();
    println!(
        "streams whose deltas could not be paired with the peer's writes: {}",
        deltas.unpaired
    );
    if let Some(problem) = &deltas.first_unpaired {
        println!("  first unpaired stream: {problem}");
    }
    if negative > 0 {
        println!(
            "  (negative: the client had the delta before the peer's writer task resumed to \
             record the write as complete)"
        );
    }
    println!(
        "The last row reads the same kind of reply straight from the peer, without assistd: a \
         tail that shows there too (e.g. ~40 ms, Nagle's algorithm on the peer's socket meeting \
         delayed ACKs) comes from the peer and loopback TCP, not from the server."
    );
    let line = match percentile(&deltas.delays, 0.99) {
        Some(p99) => format!(
            "{label}: StreamMessage per-delta delay p99 {} (p50 {}, max {}; the peer read \
             directly: p99 {}); target < {} — {}",
            format_signed(Some(p99)),
            format_signed(percentile(&deltas.delays, 0.50)),
            format_signed(deltas.delays.last().copied()),
            format_signed(percentile(&deltas.peer_direct, 0.99)),
            format_latency(Some(DELTA_P99_TARGET)),
            verdict(p99 < i64::try_from(DELTA_P99_TARGET.as_nanos()).unwrap_or(i64::MAX)),
        ),
        None => format!(
            "{label}: StreamMessage per-delta delay: not measured (no paired deltas); target < {}",
            format_latency(Some(DELTA_P99_TARGET))
        ),
    };
    summary.push(line);
}

fn print_rss(rss: &RssResult, label: &str, summary: &mut Vec<String>) {
    println!();
    println!(
        "### RSS with {} open idle StreamMessage calls (gRPC connections: {}; upstream \
         stalled after its headers)",
        thousands(rss.streams),
        rss.channels
    );
    println!();
    println!("| state | VmRSS |");
    println!("|---|---:|");
    println!(
        "| idle (warmed, sessions created) | {} |",
        format_bytes(rss.idle)
    );
    println!(
        "| {} streams open (each has its user_message) | {} |",
        thousands(rss.streams),
        format_bytes(rss.open)
    );
    println!(
        "| 1 s after cancelling them | {} |",
        format_bytes(rss.after_cancel)
    );
    println!();
    let growth = rss.open.saturating_sub(rss.idle);
    println!(
        "difference: {} ({} per stream); opening took {}.",
        format_bytes(growth),
        format_bytes(growth / rss.streams.max(1) as u64),
        format_latency(Some(rss.opening)),
    );
    println!(
        "VmRSS of the server process alone (pid {}): the client's streams and the peer's \
         connections live in the bench process and are not counted.",
        rss.server_pid
    );
    match rss.release_time {
        Some(took) => println!(
            "wind-down: the server abandoned all {} upstream calls within {} of the cancel.",
            thousands(rss.released),
            format_latency(Some(took))
        ),
        None => println!(
            "wind-down: only {} of {} upstream calls were abandoned within {WIND_DOWN_TIMEOUT:?} \
             of the cancel.",
            thousands(rss.released),
            thousands(rss.streams)
        ),
    }
    summary.push(format!(
        "{label}: RSS growth with {} idle streams {} (idle {}, open {}); target < {} — {} \
         (server process only)",
        thousands(rss.streams),
        format_bytes(growth),
        format_bytes(rss.idle),
        format_bytes(rss.open),
        format_bytes(RSS_TARGET_BYTES),
        verdict(growth < RSS_TARGET_BYTES),
    ));
}

fn direction_name(forward: bool) -> &'static str {
    if forward { "FORWARD" } else { "BACKWARD" }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Nearest-rank percentile of sorted values; `None` when there are none.
fn percentile<T: Copy>(sorted: &[T], quantile: f64) -> Option<T> {
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

fn format_signed(nanos: Option<i64>) -> String {
    match nanos {
        None => "-".to_owned(),
        Some(nanos) if nanos < 0 => format!(
            "−{}",
            format_latency(Some(Duration::from_nanos(nanos.unsigned_abs())))
        ),
        Some(nanos) => format_latency(Some(Duration::from_nanos(nanos.unsigned_abs()))),
    }
}

fn format_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// `100000` → `100,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A fresh PostgreSQL database for one run. `psql` does the administration, so the bench needs
/// no database driver of its own.
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
        // FORCE ends connections the server may have left behind.
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
