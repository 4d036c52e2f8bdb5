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
//! `--metrics-cost` and `--tls-cost` instead compare two servers that differ in one option
//! (metrics off/on, plaintext/TLS) on native-gRPC GetPreferences, in alternating rounds.
//!
//! It only measures and prints; it asserts nothing about speed. Run it with:
//!
//! ```text
//! cargo build --release --bin assistd
//! cargo run --release -p assistd-bench -- --database both
//! ```

mod calls;
mod cost;
mod server;
mod watch;
mod watch_chat;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use assistd_bench::cli::{DEFAULT_POSTGRES_ADMIN_URL, DatabaseChoice, parse_duration};
use assistd_bench::format::format_latency;
use assistd_bench::postgres::PostgresDatabase;
use assistd_bench::server::{SERVER_BIN_HELP, server_bin};
use assistd_bench::stats::Percentiles;
use clap::Parser;

use crate::calls::{Rpc, ScenarioResult, Transport, run_scenario};
use crate::server::Server;

/// Tokens are issued with the longest lifetime the server accepts (15 minutes); a fresh one is
/// issued before each scenario, which therefore must finish well within it.
const MAX_SCENARIO_TIME: Duration = Duration::from_secs(14 * 60);

/// Measures throughput and latency of a real `assistd serve` child process over gRPC and
/// grpc-web, and the propagation delay of preference changes to WatchPreferences streams.
#[derive(Debug, Parser)]
#[command(
    after_help = "Build the server first: cargo build --release --bin assistd && cargo run \
                  --release -p assistd-bench -- --database both"
)]
struct Cli {
    #[arg(long, value_name = "PATH", help = SERVER_BIN_HELP)]
    server_bin: Option<PathBuf>,

    /// Which database backs the server; `both` runs SQLite first, then PostgreSQL.
    #[arg(long, value_enum, default_value_t = DatabaseChoice::Sqlite)]
    database: DatabaseChoice,

    /// PostgreSQL URL of a role allowed to create and drop databases. The bench creates a
    /// fresh database `assistd_bench_<uuid>` on that server (via `psql`) and drops it at the end.
    #[arg(long, value_name = "URL", default_value = DEFAULT_POSTGRES_ADMIN_URL)]
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

    /// Instead of the full run: native-gRPC GetPreferences throughput of two servers, one with
    /// metrics off and one with them on (`server.metrics_listen`), measured in alternating
    /// rounds at each --concurrency, and the difference between them.
    #[arg(long, conflicts_with = "tls_cost")]
    metrics_cost: bool,

    /// Instead of the full run: native-gRPC GetPreferences throughput of two servers, one
    /// plaintext and one serving TLS (a self-signed certificate made for the run), measured in
    /// alternating rounds at each --concurrency, and the ratio between them.
    #[arg(long)]
    tls_cost: bool,

    /// With --metrics-cost or --tls-cost: measured rounds per server and concurrency (the
    /// order alternates).
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,

    /// Instead of the full run: WatchChat delays from the sender's reply delta to a watcher's
    /// (one server; on PostgreSQL also across two replicas), and the RSS of idle watchers.
    #[arg(long)]
    watch_latency: bool,

    /// With --watch-latency: streamed sends whose deltas are timed.
    #[arg(long, value_name = "N", default_value_t = 20)]
    watch_sends: usize,

    /// With --watch-latency: deltas per reply.
    #[arg(long, value_name = "N", default_value_t = 50)]
    watch_chunks: usize,

    /// With --watch-latency: time between a reply's deltas. Same format as --duration.
    #[arg(long, value_name = "TIME", default_value = "20ms", value_parser = parse_duration)]
    watch_interval: Duration,

    /// With --watch-latency: idle WatchChat streams (of distinct users) whose memory is
    /// measured; 0 skips it.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    watchers: usize,
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
    let server_bin = server_bin(cli.server_bin.as_deref())?;

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

    if cli.metrics_cost || cli.tls_cost {
        return compare_costs(&cli, &server_bin).await;
    }
    if cli.watch_latency {
        ensure!(
            cli.watch_sends > 0 && cli.watch_chunks > 0,
            "--watch-sends and --watch-chunks must be at least 1"
        );
        let settings = watch_chat::WatchLatency {
            sends: cli.watch_sends,
            chunks: cli.watch_chunks,
            interval: cli.watch_interval,
            watchers: cli.watchers,
        };
        if cli.database.includes_sqlite() {
            watch_chat::run(&server_bin, "SQLite", None, &settings).await?;
        }
        if cli.database.includes_postgres() {
            let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
            let result =
                watch_chat::run(&server_bin, "PostgreSQL", Some(database.url()), &settings).await;
            let dropped = database.drop_database().await;
            result?;
            dropped?;
        }
        return Ok(());
    }
    if cli.database.includes_sqlite() {
        bench_database(&cli, &server_bin, "SQLite", None).await?;
    }
    if cli.database.includes_postgres() {
        let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
        let result = bench_database(&cli, &server_bin, "PostgreSQL", Some(database.url())).await;
        // Drop the database even when the run failed, but report the run's error first.
        let dropped = database.drop_database().await;
        result?;
        dropped?;
    }
    Ok(())
}

/// `--metrics-cost` or `--tls-cost`: two servers differing in that option, on each database
/// chosen.
async fn compare_costs(cli: &Cli, server_bin: &Path) -> anyhow::Result<()> {
    ensure!(cli.rounds > 0, "--rounds must be at least 1");
    let rounds = cost::Rounds {
        concurrency: &cli.concurrency,
        rounds: cli.rounds,
        warmup: cli.warmup,
        duration: cli.duration,
    };
    let compare = async |label: &str, databases: (Option<&str>, Option<&str>)| {
        if cli.tls_cost {
            cost::tls(server_bin, label, databases, &rounds).await
        } else {
            cost::metrics(server_bin, label, databases, &rounds).await
        }
    };
    if cli.database.includes_sqlite() {
        compare("SQLite", (None, None)).await?;
    }
    if cli.database.includes_postgres() {
        let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
        let other = PostgresDatabase::create(&cli.postgres_admin_url).await?;
        let result = compare("PostgreSQL", (Some(database.url()), Some(other.url()))).await;
        let dropped = database.drop_database().await;
        let other_dropped = other.drop_database().await;
        result?;
        dropped?;
        other_dropped?;
    }
    Ok(())
}

/// Runs every scenario and the watch measurement against one server and prints the results.
async fn bench_database(
    cli: &Cli,
    server_bin: &Path,
    label: &str,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    eprintln!("{label}: starting {}", server_bin.display());
    let mut server = Server::start(server_bin, database_url, false)
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
        let latencies = Percentiles::of_durations(&result.latencies);
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            result.transport.name(),
            result.rpc.name(),
            result.concurrency,
            result.latencies.len(),
            result.errors,
            result.calls_per_second(),
            format_latency(latencies.at(0.50)),
            format_latency(latencies.at(0.99)),
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
    let delays = Percentiles::of_durations(&watch);
    println!(
        "watch propagation (UpdatePreferences on one grpc connection until the change arrives on \
         a WatchPreferences stream on another, {} samples): p50 {}, p99 {}, max {}",
        watch.len(),
        format_latency(delays.at(0.50)),
        format_latency(delays.at(0.99)),
        format_latency(delays.max()),
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
                let result = run_scenario(
                    server,
                    &token,
                    transport,
                    rpc,
                    concurrency,
                    cli.warmup,
                    cli.duration,
                )
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
    let watch = watch::measure_watch(server.address(), &token, cli.watch_samples)
        .await
        .context("measuring watch propagation")?;
    Ok((results, watch))
}
