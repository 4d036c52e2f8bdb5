//! `chat` bench: the chat API of assistd as a client sees it, with the server in a process of
//! its own.
//!
//! For each database (an SQLite file in a temporary directory, or a fresh PostgreSQL database
//! created and dropped through `psql`), the bench starts the real server (`assistd serve`, the
//! binary built beside the bench, or `--server-bin`) on a free loopback port, points it at a
//! Gemini peer in the bench process ([`GeminiServer`](assistd_testkit::gemini::GeminiServer)
//! from assistd-testkit), signs a user in, stores the user's Gemini key through the real
//! `SetApiKey` RPC, and measures over native gRPC, one scenario per module:
//!
//! 1. [`list`]: **ListMessages** pages of 50 — BACKWARD from the newest message and FORWARD
//!    from the middle — in a session of 100 messages and one of 100,000 (seeded directly
//!    through the store), sequentially after a warm-up; the ratio of the p99s shows whether a
//!    page costs the same however long the session is.
//! 2. [`send`]: **SendMessage** latency with a peer that answers at once, sequentially and at
//!    c=16: the server's own overhead of an exchange (plus the peer's work, measured
//!    separately).
//! 3. [`stream`]: **StreamMessage** per-delta delay: for every text delta, the client's
//!    receive instant minus the instant the peer finished writing the SSE event that carried
//!    it.
//! 4. [`rss`]: **RSS** of the server process (from `/proc/<pid>/status`) with 1,000 open
//!    StreamMessage calls whose upstream stalls, and the TCP connections the server holds to
//!    the peer meanwhile, once per upstream of `--upstreams`: over HTTP/1.1 (each call holds a
//!    connection of its own) it runs first, on the main server, so the scenarios after it
//!    see a server that opened and cancelled them; over HTTP/2 (every call a stream of one
//!    connection) it runs after them, on a fresh server of its own (same database) started
//!    with `gemini.http_version = "http2"`. The client and the peer live in the bench
//!    process and are not counted.
//! 5. [`sessions`]: **ListSessions** (a page of 20) against the **health check** (the
//!    ceiling) at c=64, one after the other.
//! 6. [`idle`]: **RSS** with 1,000 idle WatchPreferences, then 1,000 idle WatchChat streams,
//!    each of a user of its own, each kind on a fresh server of its own (same database), after
//!    the HTTP/2 run of [`rss`].
//!
//! `both` runs each database in a child process of its own (this executable again); each
//! starts its own server process.
//!
//! It only measures and prints; it asserts nothing about speed. Run it with:
//!
//! ```text
//! cargo build --release --bin assistd
//! cargo bench -p assistd-bench --bench chat -- --database sqlite|postgres|both
//! ```

mod idle;
mod list;
mod rss;
mod send;
mod sessions;
mod setup;
mod stream;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use assistd_bench::cli::{DEFAULT_POSTGRES_ADMIN_URL, DatabaseChoice, parse_duration};
use assistd_bench::postgres::PostgresDatabase;
use assistd_bench::server::{SERVER_BIN_HELP, server_bin};
use clap::{Parser, ValueEnum};

use crate::setup::{Bench, Upstream};

/// Measures the chat API of a real assistd server process: ListMessages on short and very long
/// sessions, SendMessage overhead, StreamMessage per-delta delay, and the memory of idle
/// streams.
#[derive(Debug, Parser)]
#[command(
    args_override_self = true,
    after_help = "Build the server first, then run: cargo build --release --bin assistd && \
                  cargo bench -p assistd-bench --bench chat -- --database both"
)]
struct Cli {
    #[arg(long, value_name = "PATH", help = SERVER_BIN_HELP)]
    server_bin: Option<PathBuf>,

    /// Which database backs the server; `both` runs SQLite, then PostgreSQL, each in a child
    /// process of its own.
    #[arg(long, value_enum, default_value_t = DatabaseChoice::Sqlite)]
    database: DatabaseChoice,

    /// PostgreSQL URL of a role allowed to create and drop databases. The bench creates a
    /// fresh database `assistd_bench_<uuid>` on that server (via `psql`) and drops it at the end.
    #[arg(long, value_name = "URL", default_value = DEFAULT_POSTGRES_ADMIN_URL)]
    postgres_admin_url: String,

    /// Comma-separated scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rss,sessions,list,send,stream,idle"
    )]
    scenarios: Vec<Scenario>,

    /// Concurrent callers of the ListSessions-against-health scenario.
    #[arg(long, value_name = "N", default_value_t = 64)]
    rate_concurrency: usize,

    /// Measured time of health and of ListSessions each (after a fifth of it as warm-up).
    /// Same format as --chunk-interval.
    #[arg(long, value_name = "TIME", default_value = "5s", value_parser = parse_duration)]
    rate_duration: Duration,

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

    /// Comma-separated HTTP versions the server speaks to the Gemini peer in the RSS
    /// scenario, each measured once: `http1` on the main server, first; `http2` on a fresh
    /// server of its own, after the other scenarios.
    #[arg(
        long,
        value_enum,
        value_name = "UPSTREAM,...",
        value_delimiter = ',',
        default_value = "http1,http2"
    )]
    upstreams: Vec<Upstream>,

    /// Most measured time of one ListMessages case or SendMessage level (its warm-up gets a
    /// tenth of it); a case that reaches it stops early with fewer calls, so a slow database
    /// keeps the run short. Same format as --chunk-interval.
    #[arg(long, value_name = "TIME", default_value = "45s", value_parser = parse_duration)]
    time_limit: Duration,

    /// Do not run ANALYZE after seeding the ListMessages sessions (what autovacuum gives a
    /// deployment after a burst of inserts), to see what the server's queries cost without
    /// fresh statistics.
    #[arg(long)]
    no_analyze: bool,

    /// Passed by `cargo bench`; ignored.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

/// A scenario `--scenarios` can name, each measured by the module of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// RSS with --idle-streams open StreamMessage calls, per upstream of --upstreams (HTTP/1.1
    /// first, on the main server; HTTP/2 on a fresh server, after the others).
    Rss,
    /// ListSessions (20 rows) against the health check.
    Sessions,
    /// ListMessages in a short and a long session.
    List,
    /// SendMessage latency with an instant peer.
    Send,
    /// StreamMessage per-delta delay.
    Stream,
    /// RSS with --idle-streams idle WatchPreferences and WatchChat streams (each on a fresh
    /// server, after the others).
    Idle,
}

impl Scenario {
    /// Its `--scenarios` value.
    fn name(self) -> &'static str {
        match self {
            Self::Rss => "rss",
            Self::Sessions => "sessions",
            Self::Idle => "idle",
            Self::List => "list",
            Self::Send => "send",
            Self::Stream => "stream",
        }
    }
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
    ensure!(
        !cli.upstreams.is_empty(),
        "--upstreams must name http1, http2 or both"
    );
    ensure!(
        cli.rate_concurrency > 0,
        "--rate-concurrency must be at least 1"
    );
    let server_bin = server_bin(cli.server_bin.as_deref())?;
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
        "machine: nproc = {cpus}; build: {profile}; the server (`{}`) runs in a process of its \
         own, the client and the Gemini peer share the bench process (one tokio runtime, {cpus} \
         workers); all of them share the {cpus} cores",
        server_bin.display()
    );
    println!("reproduce: {}", reproduce_command(&cli));

    match cli.database {
        DatabaseChoice::Sqlite => bench_database(&cli, &server_bin, "SQLite", None).await,
        DatabaseChoice::Postgres => {
            let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
            let result =
                bench_database(&cli, &server_bin, "PostgreSQL", Some(database.url())).await;
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
    let scenarios: Vec<&str> = cli.scenarios.iter().map(|s| s.name()).collect();
    let upstreams: Vec<&str> = cli.upstreams.iter().map(|u| u.name()).collect();
    let concurrency: Vec<String> = cli.send_concurrency.iter().map(usize::to_string).collect();
    let mut command = format!(
        "cargo bench -p assistd-bench --bench chat -- --database {} --scenarios {} \
         --small-session {} --large-session {} --list-calls {} --sends {} --send-concurrency {} \
         --streams {} --chunks {} --chunk-interval {}ms --idle-streams {} --upstreams {} --time-limit {}s \
         --rate-concurrency {} --rate-duration {}s",
        cli.database.name(),
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
        upstreams.join(","),
        cli.time_limit.as_secs_f64(),
        cli.rate_concurrency,
        cli.rate_duration.as_secs_f64(),
    );
    if cli.database != DatabaseChoice::Sqlite {
        command.push_str(&format!(" --postgres-admin-url {}", cli.postgres_admin_url));
    }
    if cli.no_analyze {
        command.push_str(" --no-analyze");
    }
    if let Some(bin) = &cli.server_bin {
        command.push_str(&format!(" --server-bin {}", bin.display()));
    }
    command
}

/// Starts a server on `database_url` (SQLite when `None`), runs the chosen scenarios against
/// it, then those that need a fresh server each, and prints their results.
async fn bench_database(
    cli: &Cli,
    server_bin: &std::path::Path,
    label: &str,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    eprintln!("{label}: starting the server");
    let bench = Bench::start(server_bin, cli.idle_streams, database_url, Upstream::Http1)
        .await
        .with_context(|| format!("starting the server on {label}"))?;
    let mut report = Report::default();
    let measured = measure_all(cli, &bench, label, &mut report).await;
    // Stop the server whatever happened.
    let mut stopped = bench.stop().await;
    let mut fresh_measured = Ok(());
    let fresh = FreshServers {
        server_bin,
        idle_streams: cli.idle_streams,
        database_url,
        label,
    };
    if measured.is_ok()
        && stopped.is_ok()
        && cli.scenarios.contains(&Scenario::Rss)
        && cli.upstreams.contains(&Upstream::Http2)
    {
        eprintln!(
            "{label}: {} idle streams, upstream HTTP/2",
            cli.idle_streams
        );
        let (result, stop) = fresh
            .run(Upstream::Http2, "idle streams over HTTP/2", async |bench| {
                rss::measure(bench, cli.idle_streams).await
            })
            .await;
        stopped = stop;
        match result {
            Ok(result) => report.rss.push(result),
            Err(err) => fresh_measured = Err(err),
        }
    }
    if measured.is_ok()
        && stopped.is_ok()
        && fresh_measured.is_ok()
        && cli.scenarios.contains(&Scenario::Idle)
    {
        for kind in idle::Kind::ALL {
            eprintln!("{label}: {} idle {kind:?} streams", cli.idle_streams);
            let (result, stop) = fresh
                .run(
                    Upstream::Http1,
                    &format!("idle {kind:?} streams"),
                    async |bench| idle::measure(bench, kind, cli.idle_streams).await,
                )
                .await;
            stopped = stop;
            match result {
                Ok(result) => report.idle.push(result),
                Err(err) => {
                    fresh_measured = Err(err);
                    break;
                }
            }
            if stopped.is_err() {
                break;
            }
        }
    }
    report.print(cli, label, database_url.is_some());
    measured?;
    fresh_measured?;
    stopped
}

/// Where the scenarios that need a server of their own start one: the same binary and
/// database as the main server, each with a Gemini peer of its own.
struct FreshServers<'a> {
    server_bin: &'a std::path::Path,
    idle_streams: usize,
    database_url: Option<&'a str>,
    label: &'a str,
}

impl FreshServers<'_> {
    /// Starts a fresh server speaking `upstream` to its peer, runs `measure` against it and
    /// stops it. Returns what `measure` returned (or why the server did not start) and
    /// whether the server then stopped cleanly, apart, so a figure measured before a failed
    /// stop is still printed.
    async fn run<T>(
        &self,
        upstream: Upstream,
        what: &str,
        measure: impl AsyncFnOnce(&Bench) -> anyhow::Result<T>,
    ) -> (anyhow::Result<T>, anyhow::Result<()>) {
        let bench = match Bench::start(
            self.server_bin,
            self.idle_streams,
            self.database_url,
            upstream,
        )
        .await
        {
            Ok(bench) => bench,
            Err(err) => {
                let started =
                    Err(err.context(format!("starting a server for {what} on {}", self.label)));
                return (started, Ok(()));
            }
        };
        let result = measure(&bench)
            .await
            .with_context(|| format!("measuring {what}"));
        (result, bench.stop().await)
    }
}

async fn measure_all(
    cli: &Cli,
    bench: &Bench,
    label: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    // The RSS scenario runs first, on a server that has not yet held the long session or
    // thousands of exchanges, so "idle" is as close to a fresh server as a warmed one gets.
    // This is its HTTP/1.1 run; the HTTP/2 one gets a fresh server after the others.
    if cli.scenarios.contains(&Scenario::Rss) && cli.upstreams.contains(&Upstream::Http1) {
        eprintln!(
            "{label}: {} idle streams, upstream HTTP/1.1",
            cli.idle_streams
        );
        report.rss.push(
            rss::measure(bench, cli.idle_streams)
                .await
                .context("measuring RSS with idle streams over HTTP/1.1")?,
        );
    }
    if cli.scenarios.contains(&Scenario::Sessions) {
        eprintln!("{label}: ListSessions against health");
        report.sessions = Some(
            sessions::measure(cli, bench)
                .await
                .context("measuring ListSessions against health")?,
        );
    }
    if cli.scenarios.contains(&Scenario::List) {
        eprintln!("{label}: ListMessages");
        report.list = Some(
            list::measure(cli, bench)
                .await
                .context("measuring ListMessages")?,
        );
    }
    if cli.scenarios.contains(&Scenario::Send) {
        for &concurrency in &cli.send_concurrency {
            eprintln!("{label}: SendMessage c={concurrency}");
            let result = send::measure(cli, bench, concurrency)
                .await
                .with_context(|| format!("measuring SendMessage at c={concurrency}"))?;
            report.sends.push(result);
        }
        eprintln!("{label}: the peer alone");
        report.peer = Some(
            send::measure_peer_alone(bench, cli.sends.min(1_000))
                .await
                .context("measuring the peer alone")?,
        );
    }
    if cli.scenarios.contains(&Scenario::Stream) {
        eprintln!("{label}: StreamMessage deltas");
        report.deltas = Some(
            stream::measure(cli, bench)
                .await
                .context("measuring StreamMessage deltas")?,
        );
    }
    Ok(())
}

/// What the scenarios of one database measured, printed together at the end.
#[derive(Default)]
struct Report {
    list: Option<list::ListResult>,
    sends: Vec<send::SendResult>,
    peer: Option<Vec<Duration>>,
    deltas: Option<stream::DeltaResult>,
    /// One per upstream, HTTP/1.1 first.
    rss: Vec<rss::RssResult>,
    sessions: Option<sessions::SessionsResult>,
    idle: Vec<idle::IdleResult>,
}

impl Report {
    fn print(&self, cli: &Cli, label: &str, postgres: bool) {
        println!();
        println!("## {label}");
        let mut summary = Vec::new();
        if let Some(result) = &self.sessions {
            sessions::print(result, cli, label, postgres, &mut summary);
        }
        if let Some(list) = &self.list {
            list::print(list, cli, label, &mut summary);
        }
        if !self.sends.is_empty() {
            send::print(
                &self.sends,
                self.peer.as_deref(),
                &mut summary,
                label,
                cli.time_limit,
            );
        }
        if let Some(deltas) = &self.deltas {
            stream::print(deltas, cli, label, &mut summary);
        }
        for rss in &self.rss {
            rss::print(rss, label, &mut summary);
        }
        if !self.idle.is_empty() {
            idle::print(&self.idle, label, &mut summary);
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

/// How a figure compares with its target in the summary.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
