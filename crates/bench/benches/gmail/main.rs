//! `gmail` bench: Gmail sync and search of assistd as a client sees them, with the server in
//! a process of its own and the testkit's OpenID provider and Gmail peer in the bench process.
//!
//! For each database (an SQLite file in a temporary directory, or a fresh PostgreSQL database
//! created and dropped through `psql`) it starts `assistd serve` (the binary built beside the
//! bench, or `--server-bin`), signs users in with Gmail access through the real redirect flow
//! and measures:
//!
//! 1. **Full sync** of `--messages` (1,000) messages through the peer at Gmail's default
//!    quota (250 units per second, on both sides): the wall time of SyncMailbox against the
//!    quota's lower bound (the units the peer counted / 250 per second), and the server's RSS
//!    (`/proc/<pid>/status`, sampled every 20 ms) before and at its peak during the sync.
//! 2. **Incremental sync** of `--changes` (10) changes (new messages, label changes,
//!    deletions, in turn), `--incremental-runs` (20) times: p50 and max of SyncMailbox.
//! 3. **Search** over `--search-messages` (10,000) messages synced for a second user by a
//!    server restarted with a quota high enough not to wait: ListMessages (page of 25) with
//!    one- and two-word queries, `--search-calls` (1,000) times after a tenth as many
//!    warm-up calls: p50 and p99 (target p99 < 50 ms on SQLite). On PostgreSQL the seeding
//!    is followed by `VACUUM ANALYZE`, as autovacuum would follow such a burst of inserts
//!    (`--no-vacuum` skips it).
//!
//! 4. **AI** (`ai.rs`), with the testkit's Gemini peer answering at once: TriageInbox over
//!    `--triage-messages` (200) new INBOX messages, counting the model calls at the peer
//!    (⌈messages / `--triage-batch-size`⌉), then again (no model call); SummarizeThread of a
//!    `--thread-messages` (40) message thread: prompt tokens, messages covered, latency with
//!    the model and of the stored summary over `--summary-runs` (5) refreshes.
//!
//! `--scenario sync` runs 1–3, `--scenario ai` runs 4, `--scenario all` (the default) both.
//! It only measures and prints; it asserts nothing about speed. Run it with:
//!
//! ```text
//! cargo build --release --bin assistd
//! cargo bench -p assistd-bench --bench gmail -- --database sqlite|postgres|both
//! ```

mod ai;
mod mail;
mod setup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use assistd_bench::cli::{DEFAULT_POSTGRES_ADMIN_URL, DatabaseChoice};
use assistd_bench::format::{format_bytes, format_latency, thousands};
use assistd_bench::postgres::PostgresDatabase;
use assistd_bench::server::{SERVER_BIN_HELP, server_bin};
use assistd_bench::stats::Percentiles;
use assistd_testkit::gmail::{DEFAULT_QUOTA_UNITS_PER_SECOND, Operation};
use clap::{Parser, ValueEnum};

use crate::setup::{Peers, Server, add_messages, rss_bytes};

/// Which scenarios a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Full and incremental sync, then search.
    Sync,
    /// Triage and thread summaries with the Gemini peer.
    Ai,
    /// Both, sync first.
    All,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Ai => "ai",
            Self::All => "all",
        }
    }

    fn includes_sync(self) -> bool {
        matches!(self, Self::Sync | Self::All)
    }

    fn includes_ai(self) -> bool {
        matches!(self, Self::Ai | Self::All)
    }
}

/// Measures Gmail sync, search, triage and summaries of a real assistd server process.
#[derive(Debug, Parser)]
#[command(
    args_override_self = true,
    after_help = "Build the server first, then run: cargo build --release --bin assistd && \
                  cargo bench -p assistd-bench --bench gmail -- --database both"
)]
struct Cli {
    #[arg(long, value_name = "PATH", help = SERVER_BIN_HELP)]
    server_bin: Option<PathBuf>,

    /// Which database backs the server; `both` runs SQLite, then PostgreSQL.
    #[arg(long, value_enum, default_value_t = DatabaseChoice::Sqlite)]
    database: DatabaseChoice,

    /// PostgreSQL URL of a role allowed to create and drop databases.
    #[arg(long, value_name = "URL", default_value = DEFAULT_POSTGRES_ADMIN_URL)]
    postgres_admin_url: String,

    /// Messages of the full sync.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    messages: usize,

    /// Changes per incremental sync.
    #[arg(long, value_name = "N", default_value_t = 10)]
    changes: usize,

    /// Measured incremental syncs.
    #[arg(long, value_name = "N", default_value_t = 20)]
    incremental_runs: usize,

    /// Messages of the searched mailbox.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    search_messages: usize,

    /// Measured ListMessages calls of the search scenario.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    search_calls: usize,

    /// Which scenarios to run: sync (full, incremental, search), ai (triage, thread
    /// summary), or all.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,

    /// New INBOX messages the AI scenario triages (at most 200: TriageInbox takes at most
    /// 100 of the newest per call, so the bench makes two calls, the second over unread mail).
    #[arg(long, value_name = "N", default_value_t = 200)]
    triage_messages: usize,

    /// The server's `gmail.triage_batch_size`: messages per model call (1–50).
    #[arg(long, value_name = "N", default_value_t = 10)]
    triage_batch_size: usize,

    /// Messages of the summarised thread.
    #[arg(long, value_name = "N", default_value_t = 40)]
    thread_messages: usize,

    /// SummarizeThread repetitions with `refresh` (each followed by one reusing the result).
    #[arg(long, value_name = "N", default_value_t = 5)]
    summary_runs: usize,

    /// Do not run VACUUM ANALYZE on PostgreSQL after the search scenario's seeding sync
    /// (what autovacuum gives a deployment after a burst of inserts: statistics, and pages
    /// marked all-visible so index-only scans skip the table), to see what searches cost
    /// without it (as on a PostgreSQL with autovacuum off).
    #[arg(long)]
    no_vacuum: bool,

    /// Passed by `cargo bench`; ignored.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.messages > 0 && cli.changes > 0 && cli.incremental_runs > 0,
        "--messages, --changes and --incremental-runs must be at least 1"
    );
    ensure!(
        cli.search_messages > 0 && cli.search_calls > 0,
        "--search-messages and --search-calls must be at least 1"
    );
    ensure!(
        (1..=ai::MAX_TRIAGE_MESSAGES).contains(&cli.triage_messages),
        "--triage-messages must be between 1 and {}",
        ai::MAX_TRIAGE_MESSAGES
    );
    ensure!(
        (1..=50).contains(&cli.triage_batch_size),
        "--triage-batch-size must be between 1 and 50, as the server's setting"
    );
    ensure!(
        cli.thread_messages > 0 && cli.summary_runs > 0,
        "--thread-messages and --summary-runs must be at least 1"
    );
    let bin = server_bin(cli.server_bin.as_deref())?;
    let profile = if cfg!(debug_assertions) {
        "debug (figures are not representative; `cargo bench` builds in release)"
    } else {
        "release"
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "machine: nproc = {cpus}; build: {profile}; the server (`{}`) runs in a process of its \
         own, the client, the OpenID provider, the Gmail peer and the Gemini peer share the \
         bench process",
        bin.display()
    );
    println!(
        "reproduce: cargo bench -p assistd-bench --bench gmail -- --database {} --scenario {} \
         --messages {} --changes {} --incremental-runs {} --search-messages {} --search-calls \
         {}{} --triage-messages {} --triage-batch-size {} --thread-messages {} --summary-runs {}",
        cli.database.name(),
        cli.scenario.name(),
        cli.messages,
        cli.changes,
        cli.incremental_runs,
        cli.search_messages,
        cli.search_calls,
        if cli.no_vacuum { " --no-vacuum" } else { "" },
        cli.triage_messages,
        cli.triage_batch_size,
        cli.thread_messages,
        cli.summary_runs,
    );
    if cli.database.includes_sqlite() {
        bench_database(&cli, &bin, "SQLite", None).await?;
    }
    if cli.database.includes_postgres() {
        let database = PostgresDatabase::create(&cli.postgres_admin_url).await?;
        let result = bench_database(&cli, &bin, "PostgreSQL", Some(database.url())).await;
        let dropped = database.drop_database().await;
        result?;
        dropped?;
    }
    Ok(())
}

/// Runs the chosen scenarios on one database and prints what they measured.
async fn bench_database(
    cli: &Cli,
    bin: &Path,
    label: &str,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("assistd-gmail-bench-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let url = database_url.unwrap_or_default();
    let peers = Peers::start().await;
    println!();
    println!("## {label}");
    let batch = cli.triage_batch_size;

    if cli.scenario.includes_sync() {
        eprintln!("{label}: full sync of {} messages", cli.messages);
        let server = Server::start(
            bin,
            dir.path(),
            url,
            &peers,
            DEFAULT_QUOTA_UNITS_PER_SECOND,
            batch,
        )
        .await?;
        let result = sync_scenarios(cli, &server, &peers).await;
        server.stop().await?;
        result?;

        eprintln!("{label}: search over {} messages", cli.search_messages);
        peers.gmail.set_quota(1_000_000);
        let server = Server::start(bin, dir.path(), url, &peers, 1_000_000, batch).await?;
        let result = search_scenario(cli, &server, &peers, label, database_url).await;
        server.stop().await?;
        result?;
    }

    if cli.scenario.includes_ai() {
        eprintln!(
            "{label}: triage of {} messages, summary of a {}-message thread",
            cli.triage_messages, cli.thread_messages
        );
        // The mail is synced at a quota that does not wait: the scenario measures the AI calls.
        peers.gmail.set_quota(1_000_000);
        let server = Server::start(bin, dir.path(), url, &peers, 1_000_000, batch).await?;
        let result = ai::ai_scenarios(cli, &server, &peers).await;
        server.stop().await?;
        result?;
    }
    Ok(())
}

/// Scenarios 1 and 2: the full sync at the default quota with the server's RSS, then the
/// incremental syncs.
async fn sync_scenarios(cli: &Cli, server: &Server, peers: &Peers) -> anyhow::Result<()> {
    let user = server.sign_in(peers, "ada").await?;
    let mut ids = add_messages(peers, &user, 0, cli.messages);
    let pid = server.pid();
    let idle = rss_bytes(pid)?;
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = tokio::spawn({
        let sampling = Arc::clone(&sampling);
        let peak = Arc::clone(&peak);
        async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let (full, took) = server.sync(&user).await?;
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    let after = rss_bytes(pid)?;
    ensure!(
        full.full_sync && full.messages_added_count == i32::try_from(cli.messages)?,
        "the full sync added {} messages",
        full.messages_added_count
    );
    let units: usize = [
        Operation::GetProfile,
        Operation::ListMessages,
        Operation::GetMessage,
        Operation::ListHistory,
        Operation::GetThread,
    ]
    .into_iter()
    .map(|operation| peers.gmail.calls(&user.sub, operation) * operation.cost() as usize)
    .sum();
    let bound = units as f64 / f64::from(DEFAULT_QUOTA_UNITS_PER_SECOND);
    println!(
        "full sync of {} messages at {} units/s: {} (quota lower bound {bound:.1} s for {} \
         units: {:.2}× the bound); peer's busiest second {} units, {} rate-limited answers",
        thousands(cli.messages),
        DEFAULT_QUOTA_UNITS_PER_SECOND,
        format_latency(Some(took)),
        thousands(units),
        took.as_secs_f64() / bound,
        peers.gmail.max_units_in_one_second(&user.sub),
        peers.gmail.rate_limited_answers(&user.sub),
    );
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "server RSS: {} before the full sync, peak {} during it (+{}), {} after",
        format_bytes(idle),
        format_bytes(peak),
        format_bytes(peak.saturating_sub(idle)),
        format_bytes(after)
    );

    let mut next = cli.messages;
    let mut times = Vec::with_capacity(cli.incremental_runs);
    for run in 0..cli.incremental_runs {
        for change in 0..cli.changes {
            match (run * cli.changes + change) % 3 {
                0 => {
                    ids.extend(add_messages(peers, &user, next, 1));
                    next += 1;
                }
                1 => {
                    let id = &ids[(run * 31 + change * 7) % ids.len()];
                    peers
                        .gmail
                        .modify_labels(&user.sub, id, &["STARRED"], &["UNREAD"]);
                }
                _ => {
                    let id = ids.remove((run * 17 + change * 13) % ids.len());
                    peers.gmail.delete_message(&user.sub, &id);
                }
            }
        }
        let (done, took) = server.sync(&user).await?;
        ensure!(!done.full_sync, "an incremental sync ran as a full one");
        times.push(took);
    }
    let stats = Percentiles::of_durations(&times);
    println!(
        "incremental sync of {} changes, {} runs: p50 {}, max {}",
        cli.changes,
        cli.incremental_runs,
        format_latency(stats.at(0.5)),
        format_latency(stats.max())
    );
    Ok(())
}

/// Scenario 3: ListMessages searches over a large synced mailbox.
async fn search_scenario(
    cli: &Cli,
    server: &Server,
    peers: &Peers,
    label: &str,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let user = server.sign_in(peers, "grace").await?;
    add_messages(peers, &user, 0, cli.search_messages);
    let (seeded, took) = server.sync(&user).await?;
    ensure!(
        seeded.messages_added_count == i32::try_from(cli.search_messages)?,
        "the seeding sync added {} messages",
        seeded.messages_added_count
    );
    eprintln!(
        "{label}: {} messages synced in {}",
        thousands(cli.search_messages),
        format_latency(Some(took))
    );
    if let Some(url) = database_url
        && !cli.no_vacuum
    {
        use sea_orm::ConnectionTrait as _;
        let db = sea_orm::Database::connect(url)
            .await
            .context("connecting to vacuum")?;
        db.execute_unprepared("VACUUM ANALYZE")
            .await
            .context("VACUUM ANALYZE after seeding")?;
        db.close().await.ok();
        eprintln!("{label}: VACUUM ANALYZE after seeding (--no-vacuum to skip)");
    }
    let warmup = (cli.search_calls / 10).max(1);
    for call in 0..warmup {
        server
            .search(&user, mail::QUERIES[call % mail::QUERIES.len()])
            .await?;
    }
    let mut times = Vec::with_capacity(cli.search_calls);
    let mut found = vec![0_usize; mail::QUERIES.len()];
    for call in 0..cli.search_calls {
        let query = call % mail::QUERIES.len();
        let (latency, messages) = server.search(&user, mail::QUERIES[query]).await?;
        found[query] = messages;
        times.push(latency);
    }
    let stats = Percentiles::of_durations(&times);
    let p99 = stats.at(0.99);
    println!(
        "search over {} messages (ListMessages, page of 25, queries {:?} in turn): p50 {}, p99 \
         {} (target p99 < 50 ms: {}), messages on the page per query {found:?}",
        thousands(cli.search_messages),
        mail::QUERIES,
        format_latency(stats.at(0.5)),
        format_latency(p99),
        if p99.is_some_and(|p99| p99 < Duration::from_millis(50)) {
            "met"
        } else {
            "MISSED"
        },
    );
    Ok(())
}
