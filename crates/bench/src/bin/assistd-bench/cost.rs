//! What a server option costs: GetPreferences throughput of two servers that differ in one
//! option (metrics off and on, plaintext and TLS), measured in alternating rounds so that drift
//! of the machine (other load, thermal state) falls on both alike.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use assistd_bench::format::format_latency;
use assistd_bench::stats::Percentiles;

use crate::calls::{Rpc, Transport, run_scenario};
use crate::server::{Server, ServerOptions};

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

/// The two servers compared: the baseline first, then the one with the option on.
struct Pair {
    /// What the comparison measures, for the heading (e.g. "Metrics cost").
    title: &'static str,
    /// How each server is named in the table (e.g. "metrics off", "metrics on").
    names: [&'static str; 2],
    servers: [Server; 2],
}

impl Pair {
    /// Starts the baseline on `databases.0` with `options[0]` and the other server on
    /// `databases.1` with `options[1]` (SQLite in their own data directories when `None`).
    async fn start(
        bin: &Path,
        label: &str,
        databases: (Option<&str>, Option<&str>),
        title: &'static str,
        names: [&'static str; 2],
        options: [ServerOptions; 2],
    ) -> anyhow::Result<Self> {
        eprintln!(
            "{label}: starting two servers, {} and {}",
            names[0], names[1]
        );
        let mut base = Server::start_with(bin, databases.0, options[0])
            .await
            .with_context(|| format!("starting the server with {}", names[0]))?;
        let other = match Server::start_with(bin, databases.1, options[1]).await {
            Ok(other) => other,
            Err(err) => {
                base.stop().await?;
                return Err(err.context(format!("starting the server with {}", names[1])));
            }
        };
        Ok(Self {
            title,
            names,
            servers: [base, other],
        })
    }

    /// Stops both servers, reporting the first failure.
    async fn stop(&mut self) -> anyhow::Result<()> {
        let [base, other] = &mut self.servers;
        let stopped_base = base.stop().await;
        let stopped_other = other.stop().await;
        stopped_base?;
        stopped_other
    }

    /// Measures both servers in alternating rounds at every level.
    async fn measure(
        &self,
        label: &str,
        rounds: &Rounds<'_>,
    ) -> anyhow::Result<Vec<(usize, [Totals; 2])>> {
        let mut results = Vec::new();
        for &concurrency in rounds.concurrency {
            let mut totals = [Totals::default(), Totals::default()];
            for round in 0..rounds.rounds {
                // Alternate which server goes first, so neither always runs on a warmer machine.
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for index in order {
                    let server = &self.servers[index];
                    eprintln!(
                        "{label}: c={concurrency} round {} {}",
                        round + 1,
                        self.names[index]
                    );
                    let token = server.fresh_token().await?;
                    let result = run_scenario(
                        server,
                        &token,
                        Transport::Grpc,
                        Rpc::GetPreferences,
                        concurrency,
                        rounds.warmup,
                        rounds.duration,
                    )
                    .await?;
                    let totals = &mut totals[index];
                    totals.calls += result.latencies.len();
                    totals.errors += result.errors;
                    totals.seconds += result.measured_seconds();
                    totals.latencies.extend_from_slice(&result.latencies);
                }
            }
            results.push((concurrency, totals));
        }
        Ok(results)
    }

    /// Prints the comparison as a table: calls/s of each, the ratio, latencies and errors.
    fn print(&self, label: &str, rounds: &Rounds<'_>, results: &[(usize, [Totals; 2])]) {
        let [base, other] = self.names;
        println!();
        println!(
            "## {}, {label}: native gRPC GetPreferences, {} rounds of {:?} per server and level, alternating",
            self.title, rounds.rounds, rounds.duration
        );
        println!();
        println!(
            "| concurrency | {base} calls/s | {other} calls/s | {other} / {base} | change | p50 {base} | p50 {other} | p99 {base} | p99 {other} | errors {base}/{other} |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (concurrency, [base, other]) in results {
            let (base_p, other_p) = (
                Percentiles::of_durations(&base.latencies),
                Percentiles::of_durations(&other.latencies),
            );
            let (ratio, change) = if base.rate() > 0.0 {
                let ratio = other.rate() / base.rate();
                (
                    format!("{ratio:.3}"),
                    format!("{:+.1}%", 100.0 * (ratio - 1.0)),
                )
            } else {
                ("n/a".to_owned(), "n/a".to_owned())
            };
            println!(
                "| {concurrency} | {:.0} | {:.0} | {ratio} | {change} | {} | {} | {} | {} | {}/{} |",
                base.rate(),
                other.rate(),
                format_latency(base_p.at(0.50)),
                format_latency(other_p.at(0.50)),
                format_latency(base_p.at(0.99)),
                format_latency(other_p.at(0.99)),
                base.errors,
                other.errors,
            );
        }
    }
}

/// Starts a server with metrics off (on `databases.0`) and one with metrics on (on
/// `databases.1`; SQLite in their own data directories when `None`), measures both and prints
/// the comparison.
pub(crate) async fn metrics(
    bin: &Path,
    label: &str,
    databases: (Option<&str>, Option<&str>),
    rounds: &Rounds<'_>,
) -> anyhow::Result<()> {
    let mut pair = Pair::start(
        bin,
        label,
        databases,
        "Metrics cost",
        ["metrics off", "metrics on"],
        [
            ServerOptions::default(),
            ServerOptions {
                metrics: true,
                ..ServerOptions::default()
            },
        ],
    )
    .await?;
    let measured = pair.measure(label, rounds).await;
    let scraped = match pair.servers[1].metrics_url() {
        Some(url) => scrape_count(url).await,
        None => Ok(None),
    };
    let stopped = pair.stop().await;
    let results = measured?;
    stopped?;

    pair.print(label, rounds, &results);
    match scraped? {
        Some(count) => println!(
            "\nthe metrics-on server counted {count} successful GetPreferences calls (assistd_rpc_calls_total)"
        ),
        None => println!("\nthe metrics-on server's exposition had no GetPreferences count"),
    }
    Ok(())
}

/// Starts a plaintext server (on `databases.0`) and one serving TLS with a self-signed
/// certificate (on `databases.1`), measures both over native gRPC (HTTP/2, ALPN h2 over TLS)
/// and prints the comparison. Each calling task reuses its connection, so the figures are the
/// cost of encrypting calls, not of handshakes.
pub(crate) async fn tls(
    bin: &Path,
    label: &str,
    databases: (Option<&str>, Option<&str>),
    rounds: &Rounds<'_>,
) -> anyhow::Result<()> {
    let mut pair = Pair::start(
        bin,
        label,
        databases,
        "TLS cost",
        ["plaintext", "TLS"],
        [
            ServerOptions::default(),
            ServerOptions {
                tls: true,
                ..ServerOptions::default()
            },
        ],
    )
    .await?;
    let measured = pair.measure(label, rounds).await;
    let stopped = pair.stop().await;
    let results = measured?;
    stopped?;
    pair.print(label, rounds, &results);
    Ok(())
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
