//! Scenario "sessions", ListSessions against the ceiling: `--rate-concurrency` tasks call the
//! health check (no authentication, no database: the most the server answers), then
//! ListSessions with a page of 20 of the bench user's sessions, each for `--rate-duration`
//! after a warm-up of a fifth of it; the ratio of their rates shows what reading the rows
//! costs.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd_bench::cli::authed;
use assistd_bench::format::{format_latency, thousands};
use assistd_bench::stats::Percentiles;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::setup::{Bench, CALL_TIMEOUT};
use crate::{Cli, verdict};

/// Sessions per ListSessions page measured.
pub(crate) const PAGE: usize = 20;
/// Connections the calling tasks share round-robin.
const CHANNELS: usize = 4;
/// Targets of ListSessions / health, printed beside the ratio (nothing is asserted).
const TARGET_SQLITE: f64 = 0.20;
const TARGET_POSTGRES: f64 = 0.15;

/// The RPC a rate was measured for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Health,
    ListSessions,
}

/// One RPC's rate.
pub(crate) struct Rate {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    measured: Duration,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.measured.as_secs_f64()
    }
}

/// What the scenario measured.
pub(crate) struct SessionsResult {
    concurrency: usize,
    health: Rate,
    list: Rate,
}

/// Makes sure the bench user has a page of sessions, then measures both rates.
pub(crate) async fn measure(cli: &Cli, bench: &Bench) -> anyhow::Result<SessionsResult> {
    let mut chat = bench.chat();
    let existing = chat
        .list_sessions(bench.request(pb::ListSessionsRequest {
            page_size: i32::try_from(PAGE)?,
            ..Default::default()
        }))
        .await
        .context("ListSessions")?
        .into_inner()
        .sessions
        .len();
    for _ in existing..PAGE {
        bench.session(&mut chat).await?;
    }
    let mut channels = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        channels.push(bench.connect().await?);
    }
    let concurrency = cli.rate_concurrency;
    let health = run(
        bench,
        &channels,
        Rpc::Health,
        concurrency,
        cli.rate_duration,
    )
    .await?;
    let list = run(
        bench,
        &channels,
        Rpc::ListSessions,
        concurrency,
        cli.rate_duration,
    )
    .await?;
    Ok(SessionsResult {
        concurrency,
        health,
        list,
    })
}

/// `concurrency` tasks call `rpc` for a fifth of `duration` unmeasured, then for `duration`.
async fn run(
    bench: &Bench,
    channels: &[Channel],
    rpc: Rpc,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let measure_from = Instant::now() + duration / 5;
    let until = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let channel = channels[task % channels.len()].clone();
        let tokens = bench.tokens.clone();
        tasks.push(tokio::spawn(async move {
            let mut health = HealthClient::new(channel.clone());
            let mut chat = ChatServiceClient::new(channel);
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                let result = match rpc {
                    Rpc::Health => {
                        let mut request = tonic::Request::new(HealthCheckRequest::default());
                        request.set_timeout(CALL_TIMEOUT);
                        health
                            .check(request)
                            .await
                            .map_err(|s| s.to_string())
                            .and_then(|response| {
                                (response.get_ref().status() == ServingStatus::Serving)
                                    .then_some(())
                                    .ok_or_else(|| "not SERVING".to_owned())
                            })
                    }
                    Rpc::ListSessions => {
                        let mut request = authed(
                            pb::ListSessionsRequest {
                                page_size: PAGE as i32,
                                ..Default::default()
                            },
                            &tokens.get(),
                        );
                        request.set_timeout(CALL_TIMEOUT);
                        chat.list_sessions(request)
                            .await
                            .map_err(|s| s.to_string())
                            .and_then(|response| {
                                let count = response.get_ref().sessions.len();
                                (count == PAGE)
                                    .then_some(())
                                    .ok_or_else(|| format!("{count} sessions, not {PAGE}"))
                            })
                    }
                };
                let latency = started.elapsed();
                if started < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => latencies.push(latency),
                    Err(err) => {
                        errors += 1;
                        first_error.get_or_insert(err);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut rate = Rate {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        measured: duration,
    };
    for task in tasks {
        let (latencies, errors, first_error) = task.await.context("a calling task panicked")?;
        rate.latencies.extend(latencies);
        rate.errors += errors;
        if rate.first_error.is_none() {
            rate.first_error = first_error;
        }
    }
    ensure!(!rate.latencies.is_empty(), "no call succeeded");
    Ok(rate)
}

/// Prints both rates and their ratio; adds the ratio to `summary`.
pub(crate) fn print(
    result: &SessionsResult,
    cli: &Cli,
    label: &str,
    postgres: bool,
    summary: &mut Vec<String>,
) {
    println!();
    println!(
        "### ListSessions ({PAGE} rows) against the health check, c={}, {} connections, {:.1} s \
         each after {:.1} s of warm-up",
        result.concurrency,
        CHANNELS,
        cli.rate_duration.as_secs_f64(),
        cli.rate_duration.as_secs_f64() / 5.0
    );
    println!();
    println!("| RPC | calls/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (name, rate) in [("health", &result.health), ("ListSessions", &result.list)] {
        let percentiles = Percentiles::of_durations(&rate.latencies);
        println!(
            "| {name} | {} | {} | {} | {} |",
            thousands(rate.per_second().round() as usize),
            format_latency(percentiles.at(0.50)),
            format_latency(percentiles.at(0.99)),
            rate.errors
        );
        if let Some(error) = &rate.first_error {
            println!("  first error of {name}: {error}");
        }
    }
    let ratio = result.list.per_second() / result.health.per_second();
    let target = if postgres {
        TARGET_POSTGRES
    } else {
        TARGET_SQLITE
    };
    println!();
    println!(
        "ListSessions / health: {:.1}% (target ≥ {:.0}%)",
        ratio * 100.0,
        target * 100.0
    );
    summary.push(format!(
        "{label}: ListSessions ({PAGE} rows) {:.0} calls/s = {:.1}% of health's {:.0} at c={}; \
         target ≥ {:.0}% — {}",
        result.list.per_second(),
        ratio * 100.0,
        result.health.per_second(),
        result.concurrency,
        target * 100.0,
        verdict(ratio >= target),
    ));
}
