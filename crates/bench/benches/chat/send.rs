//! Scenario 2, SendMessage: latency of whole exchanges with a peer that answers at once,
//! sequentially and concurrently — the server's own overhead of an exchange plus the peer's
//! work, which is also measured alone.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd_bench::cli::authed;
use assistd_bench::format::format_latency;
use assistd_bench::stats::Percentiles;
use assistd_testkit::gemini::ScriptedReply;
use tonic::transport::Channel;

use crate::Cli;
use crate::setup::{Bench, CALL_TIMEOUT, GEMINI_KEY, MODEL, SENDS_PER_SESSION};

/// Target of the server's overhead of a sequential send at p50, printed beside it (nothing is
/// asserted).
const OVERHEAD_TARGET: Duration = Duration::from_millis(5);

/// What one concurrency level measured.
pub(crate) struct SendResult {
    concurrency: usize,
    /// Latencies of the measured sends that succeeded.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Whether --time-limit ended the level before --sends sends.
    stopped_early: bool,
}

/// Times `--sends` SendMessage calls by `concurrency` senders, after a warm-up.
pub(crate) async fn measure(
    cli: &Cli,
    bench: &Bench,
    concurrency: usize,
) -> anyhow::Result<SendResult> {
    bench
        .gemini
        .respond_with(|_| ScriptedReply::text("Noted: I will remind you on Friday."));
    // A few connections, callers sharing them round-robin.
    let mut channels = Vec::new();
    for _ in 0..concurrency.clamp(1, 4) {
        channels.push(bench.connect().await?);
    }
    let warmup = (cli.sends / 10).max(concurrency);
    run_senders(bench, &channels, concurrency, warmup, cli.time_limit / 10).await?;
    let started = Instant::now();
    let (latencies, errors, first_error) =
        run_senders(bench, &channels, concurrency, cli.sends, cli.time_limit).await?;
    let elapsed = started.elapsed();
    let stopped_early = latencies.len() + errors < cli.sends;
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

/// Latencies of `calls` generateContent calls made straight to the peer over HTTP/1.1, one at
/// a time: roughly the peer's share of a SendMessage (the server makes one such call per send,
/// with a longer body).
pub(crate) async fn measure_peer_alone(
    bench: &Bench,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
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
    bench.gemini.clear_requests();
    Ok(latencies)
}

/// Prints the table of levels and the peer alone; adds each level's figures to `summary`.
pub(crate) fn print(
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
        let latencies = Percentiles::of_durations(&result.latencies);
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            result.concurrency,
            result.latencies.len(),
            result.errors,
            result.latencies.len() as f64 / result.elapsed.as_secs_f64().max(1e-9),
            format_latency(latencies.at(0.50)),
            format_latency(latencies.at(0.99)),
            format_latency(latencies.max()),
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
        let latencies = Percentiles::of_durations(peer);
        println!(
            "The peer alone (generateContent straight from this process over HTTP/1.1, c=1, {} \
             calls): p50 {}, p99 {}.",
            peer.len(),
            format_latency(latencies.at(0.50)),
            format_latency(latencies.at(0.99)),
        );
    }
    let peer_p50 = peer.and_then(|peer| Percentiles::of_durations(peer).at(0.50));
    for result in sends {
        let latencies = Percentiles::of_durations(&result.latencies);
        let mut line = format!(
            "{label}: SendMessage at c={}: p50 {}, p99 {} (includes the peer)",
            result.concurrency,
            format_latency(latencies.at(0.50)),
            format_latency(latencies.at(0.99)),
        );
        // The server's own part of a sequential send: its p50 less the peer's.
        if result.concurrency == 1
            && let (Some(send), Some(peer)) = (latencies.at(0.50), peer_p50)
        {
            let overhead = send.saturating_sub(peer);
            line.push_str(&format!(
                "; server overhead p50 {} (less the peer's p50 {}); target ≤ {} — {}",
                format_latency(Some(overhead)),
                format_latency(Some(peer)),
                format_latency(Some(OVERHEAD_TARGET)),
                crate::verdict(overhead <= OVERHEAD_TARGET),
            ));
        }
        summary.push(line);
    }
}
