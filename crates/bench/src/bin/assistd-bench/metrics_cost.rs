//! What metrics cost: GetPreferences throughput of a server with metrics off beside one with
//! them on, measured in alternating rounds so that drift of the machine (other load, thermal
//! state) falls on both alike.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use assistd_bench::format::format_latency;
use assistd_bench::stats::Percentiles;

use crate::calls::{Rpc, Transport, run_scenario};
use crate::server::Server;

/// How much to measure.
pub(crate) struct Rounds<'a> {
    /// Concurrency levels, each measured on its own.
    pub(crate) concurrency: &'a [usize],
    /// Measured rounds per server and level.
    pub(crate) rounds: usize,
    /// Unmeasured time before each round.
    pub(crate) warmup: Duration,
    /// Measured time of each round.
    pub(crate) duration: Duration,
}

/// One server's totals at one level.
#[derive(Default)]
struct Totals {
    calls: usize,
    errors: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Totals {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.calls as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Starts a server with metrics off (on `databases.0`) and one with metrics on (on
/// `databases.1`; SQLite in their own data directories when `None`), measures both and prints
/// the comparison.
pub(crate) async fn compare(
    bin: &Path,
    label: &str,
    databases: (Option<&str>, Option<&str>),
    rounds: &Rounds<'_>,
) -> anyhow::Result<()> {
    eprintln!("{label}: starting two servers, metrics off and on");
    let mut off = Server::start(bin, databases.0, false)
        .await
        .context("starting the server with metrics off")?;
    let mut on = match Server::start(bin, databases.1, true).await {
        Ok(on) => on,
        Err(err) => {
            off.stop().await?;
            return Err(err.context("starting the server with metrics on"));
        }
    };
    let measured = measure(&off, &on, label, rounds).await;
    let scraped = match on.metrics_url() {
        Some(url) => scrape_count(url).await,
        None => Ok(None),
    };
    let stopped_off = off.stop().await;
    let stopped_on = on.stop().await;
    let results = measured?;
    stopped_off?;
    stopped_on?;

    println!();
    println!(
        "## Metrics cost, {label}: native gRPC GetPreferences, {} rounds of {:?} per server and level, alternating",
        rounds.rounds, rounds.duration
    );
    println!();
    println!(
        "| concurrency | metrics off calls/s | metrics on calls/s | on vs off | p50 off | p50 on | p99 off | p99 on | errors off/on |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (concurrency, off, on) in &results {
        let (off_p, on_p) = (
            Percentiles::of_durations(&off.latencies),
            Percentiles::of_durations(&on.latencies),
        );
        let change = if off.rate() > 0.0 {
            format!("{:+.1}%", 100.0 * (on.rate() - off.rate()) / off.rate())
        } else {
            "n/a".to_owned()
        };
        println!(
            "| {concurrency} | {:.0} | {:.0} | {change} | {} | {} | {} | {} | {}/{} |",
            off.rate(),
            on.rate(),
            format_latency(off_p.at(0.50)),
            format_latency(on_p.at(0.50)),
            format_latency(off_p.at(0.99)),
            format_latency(on_p.at(0.99)),
            off.errors,
            on.errors,
        );
    }
    match scraped? {
        Some(count) => println!(
            "\nthe metrics-on server counted {count} successful GetPreferences calls (assistd_rpc_calls_total)"
        ),
        None => println!("\nthe metrics-on server's exposition had no GetPreferences count"),
    }
    Ok(())
}

async fn measure(
    off: &Server,
    on: &Server,
    label: &str,
    rounds: &Rounds<'_>,
) -> anyhow::Result<Vec<(usize, Totals, Totals)>> {
    let mut results = Vec::new();
    for &concurrency in rounds.concurrency {
        let (mut off_totals, mut on_totals) = (Totals::default(), Totals::default());
        for round in 0..rounds.rounds {
            // Alternate which server goes first, so neither always runs on a warmer machine.
            let order = if round % 2 == 0 {
                [(off, false), (on, true)]
            } else {
                [(on, true), (off, false)]
            };
            for (server, metrics) in order {
                eprintln!(
                    "{label}: c={concurrency} round {} metrics {}",
                    round + 1,
                    if metrics { "on" } else { "off" }
                );
                let token = server.fresh_token().await?;
                let result = run_scenario(
                    server.address(),
                    &token,
                    Transport::Grpc,
                    Rpc::GetPreferences,
                    concurrency,
                    rounds.warmup,
                    rounds.duration,
                )
                .await?;
                let totals = if metrics {
                    &mut on_totals
                } else {
                    &mut off_totals
                };
                totals.calls += result.latencies.len();
                totals.errors += result.errors;
                totals.seconds += result.measured_seconds();
                totals.latencies.extend_from_slice(&result.latencies);
            }
        }
        results.push((concurrency, off_totals, on_totals));
    }
    Ok(results)
}

/// The `ok` GetPreferences count in the exposition at `url`.
async fn scrape_count(url: &str) -> anyhow::Result<Option<f64>> {
    let text = reqwest::get(url)
        .await
        .context("scraping the metrics")?
        .text()
        .await
        .context("reading the metrics")?;
    let series = "assistd_rpc_calls_total{method=\"/assistd.preferences.v1.PreferencesService/GetPreferences\",code=\"ok\"} ";
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok()))
}
