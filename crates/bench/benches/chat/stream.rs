//! Scenario 3, StreamMessage per-delta delay: for every text delta, the client's receive
//! instant minus the instant the peer finished writing the SSE event that carried it; and the
//! same delay for the peer read directly, without assistd.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use assistd::proto::chat::v1::stream_message_response::Event;
use assistd_bench::format::{format_latency, format_signed};
use assistd_bench::stats::Percentiles;
use assistd_testkit::gemini::ScriptedReply;

use crate::setup::{Bench, CALL_TIMEOUT, GEMINI_KEY, MODEL, SENDS_PER_SESSION, stream_request};
use crate::{Cli, verdict};

/// Target of the per-delta p99, printed beside it (nothing is asserted).
const DELTA_P99_TARGET: Duration = Duration::from_millis(1);

/// What the scenario measured.
pub(crate) struct DeltaResult {
    /// Delays (client receive minus peer write-complete), in nanoseconds; negative when the
    /// client had the delta before the peer recorded its write as complete.
    delays: Vec<i64>,
    /// The same delays split by the delta's place in its stream: first, middle, last.
    by_place: [Vec<i64>; 3],
    /// Delays of the same events read straight from the peer, without assistd.
    peer_direct: Vec<i64>,
    streams: usize,
    /// Streams whose deltas could not be paired with the peer's writes.
    unpaired: usize,
    first_unpaired: Option<String>,
}

/// Streams one reply of `--chunks` pieces at a time and pairs deltas with peer writes.
///
/// Pairing: the peer sends one SSE event per text chunk and records, per stream, the instant
/// each event was completely written
/// ([`GeminiServer::stream_write_times`](assistd_testkit::gemini::GeminiServer::stream_write_times)).
/// With one stream in flight at a time, the stream log appended during a call is that call's
/// upstream stream, and the k-th `text_delta` the client receives carries the k-th event's
/// chunk (the server relays one delta per event, in order). A stream whose delta count differs
/// from its event count, or during which not exactly one upstream stream was logged (e.g. a
/// retry), is counted as unpaired and left out. Both instants come from the same monotonic
/// clock of the same process.
pub(crate) async fn measure(cli: &Cli, bench: &Bench) -> anyhow::Result<DeltaResult> {
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
/// assistd: delays from the peer's write-complete instant of each SSE event until the client
/// holds the event's last byte. What the peer and loopback TCP alone contribute to the
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
    Ok(result)
}

/// `later - earlier` in nanoseconds, negative when `later` is in fact earlier.
fn signed_nanos(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(gap) => i64::try_from(gap.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(earlier.duration_since(later).as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Prints the delays by place and the peer read directly; adds the p99 to `summary`.
pub(crate) fn print(deltas: &DeltaResult, cli: &Cli, label: &str, summary: &mut Vec<String>) {
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
        let percentiles = Percentiles::of_nanos(delays);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            delays.len(),
            format_signed(percentiles.nanos_at(0.50)),
            format_signed(percentiles.nanos_at(0.99)),
            format_signed(percentiles.max_nanos()),
            format_signed(percentiles.min_nanos()),
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
    let all = Percentiles::of_nanos(&deltas.delays);
    let line = match all.nanos_at(0.99) {
        Some(p99) => format!(
            "{label}: StreamMessage per-delta delay p99 {} (p50 {}, max {}; the peer read \
             directly: p99 {}); target < {} — {}",
            format_signed(Some(p99)),
            format_signed(all.nanos_at(0.50)),
            format_signed(all.max_nanos()),
            format_signed(Percentiles::of_nanos(&deltas.peer_direct).nanos_at(0.99)),
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
