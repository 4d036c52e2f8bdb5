//! Scenario 4, RSS with idle streams: the server process's resident memory when idle, with
//! `--idle-streams` StreamMessage calls open whose upstream stalls, and after they are
//! cancelled; and the TCP connections the server holds to its Gemini peer, idle and with the
//! calls open (its sockets connected to the peer's port, from `/proc/<pid>/net/tcp{,6}`
//! matched against the socket inodes of `/proc/<pid>/fd`). The client and the peer live in
//! the bench process and are not counted.
//!
//! The idle figure is taken on a warmed server: exchanges completed one at a time over every
//! gRPC connection, then as many at once as the opening runs, so that the database pool has
//! grown to the size the opening needs (see `warm_database_pool`).
//!
//! It runs once per upstream the server is started with: over HTTP/1.1 each stalled call
//! holds a connection of its own; over HTTP/2 they are all streams of one connection (the
//! peer advertises no stream limit).

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::chat::v1::stream_message_response::Event;
use assistd_bench::cli::authed;
use assistd_bench::format::{format_bytes, format_latency, thousands};
use assistd_testkit::gemini::{Fault, ScriptedReply, StreamEnd};
use futures::StreamExt as _;

use crate::idle::IDLE_TARGET_BYTES as RSS_TARGET_BYTES;
use crate::setup::{Bench, CALL_TIMEOUT, RSS_SETTLE, Upstream, drain, stream_request};
use crate::verdict;

/// Most StreamMessage calls being opened at once, so the database is not asked for a thousand
/// USER-message commits in the same instant.
const OPENING_CONCURRENCY: usize = 32;
/// Idle streams per gRPC connection.
const STREAMS_PER_CHANNEL: usize = 125;
/// How long the bench waits for the server to let go of the stalled upstream calls after the
/// idle streams are cancelled.
const WIND_DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the scenario measured.
pub(crate) struct RssResult {
    /// The HTTP version the server spoke to the peer.
    upstream: Upstream,
    streams: usize,
    channels: usize,
    idle: u64,
    /// With the first fifth of the streams open.
    first_open: u64,
    first_count: usize,
    open: u64,
    after_cancel: u64,
    opening: Duration,
    /// Upstream calls the peer saw the server abandon after the cancel, and how long it took.
    released: usize,
    release_time: Option<Duration>,
    /// The server process measured.
    server_pid: u32,
    /// The server's TCP connections to the peer when idle (warmed) and with the calls open.
    idle_connections: usize,
    open_connections: usize,
}

/// Opens `count` streams whose upstream stalls and reads the server's RSS before, during and
/// after.
pub(crate) async fn measure(bench: &Bench, count: usize) -> anyhow::Result<RssResult> {
    let channel_count = count.div_ceil(STREAMS_PER_CHANNEL);
    let mut channels = Vec::with_capacity(channel_count);
    for _ in 0..channel_count {
        channels.push(bench.connect().await?);
    }

    // Warm up: complete exchanges over every connection, so pools, connections to the peer and
    // caches exist before the idle figure is taken.
    bench
        .gemini
        .respond_with(|_| ScriptedReply::chunks(["Warming ", "up."]));
    let warm_session = bench.session(&mut bench.chat()).await?;
    for channel in channels.iter().cycle().take(channel_count.max(20)) {
        warm_up_stream(bench, channel, &warm_session).await?;
    }
    // One session per stream: a session runs one exchange at a time. Created before the idle
    // figure, as they are rows in the database rather than state of open streams.
    let mut sessions = Vec::with_capacity(count);
    let mut chat = bench.chat();
    for _ in 0..count {
        sessions.push(bench.session(&mut chat).await?);
    }
    warm_database_pool(bench, &channels).await?;
    bench.gemini.clear_requests();
    tokio::time::sleep(RSS_SETTLE).await;
    let idle = vm_rss(bench.server_pid())?;
    let peer_port = bench.gemini.addr().port();
    let idle_connections = connections_to(bench.server_pid(), peer_port)?;

    let disconnects_before = bench.gemini.stream_disconnects();
    let logs_before = bench.gemini.streams().len();
    // Upstream answers with headers and then nothing: no delta ever arrives.
    bench.gemini.fail_always(Fault::StallAfter(0));
    // In two steps: the first fifth, then the rest. The RSS between them gives the cost of
    // one more stream alone, free of whatever the first streams of a run pay once.
    let first_count = (count / 5).max(1).min(count);
    let started = Instant::now();
    let mut streams = open_streams(bench, &channels, &sessions[..first_count], 0).await;
    let mut opening = started.elapsed();
    if streams.is_ok() {
        wait_upstream_open(bench, logs_before, first_count).await;
    }
    tokio::time::sleep(RSS_SETTLE).await;
    let first_open = vm_rss(bench.server_pid())?;
    if let Ok(first) = streams.as_mut() {
        let started = Instant::now();
        let rest = open_streams(bench, &channels, &sessions[first_count..], first_count).await;
        opening += started.elapsed();
        match rest {
            Ok(rest) => first.extend(rest),
            Err(err) => streams = Err(err),
        }
    }
    let streams = match streams {
        Ok(streams) => streams,
        Err(err) => {
            bench.gemini.clear_faults();
            return Err(err);
        }
    };
    wait_upstream_open(bench, logs_before, count).await;
    tokio::time::sleep(RSS_SETTLE).await;
    let open = vm_rss(bench.server_pid())?;
    let open_connections = connections_to(bench.server_pid(), peer_port)?;

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
    let after_cancel = vm_rss(bench.server_pid())?;
    // Each cancelled exchange commits its (empty) end; the next scenario starts once they have.
    let settled = Instant::now();
    let deadline = settled + WIND_DOWN_TIMEOUT;
    while running_exchanges(bench).await? > 0 {
        if Instant::now() >= deadline {
            eprintln!("  warning: exchanges still running {WIND_DOWN_TIMEOUT:?} after the cancel");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "  the cancelled exchanges were committed {:.1?} after the RSS reading",
        settled.elapsed()
    );
    Ok(RssResult {
        upstream: bench.upstream,
        streams: count,
        channels: channel_count,
        idle,
        first_open,
        first_count,
        open,
        after_cancel,
        opening,
        released,
        release_time: released_at.map(|at| at.saturating_duration_since(cancelled)),
        server_pid: bench.server_pid(),
        idle_connections,
        open_connections,
    })
}

/// Opens a StreamMessage call on each of `sessions` (`OPENING_CONCURRENCY` at a time, the
/// `n`th over channel `n % channels`, counting from `first_index`) and waits for each one's
/// first event, the committed USER message.
async fn open_streams(
    bench: &Bench,
    channels: &[tonic::transport::Channel],
    sessions: &[String],
    first_index: usize,
) -> anyhow::Result<Vec<tonic::Streaming<pb::StreamMessageResponse>>> {
    let opened: Vec<anyhow::Result<tonic::Streaming<pb::StreamMessageResponse>>> =
        futures::stream::iter(sessions.iter().enumerate())
            .map(|(index, session)| {
                let channel = channels[(first_index + index) % channels.len()].clone();
                let mut chat = ChatServiceClient::new(channel);
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
    opened.into_iter().collect()
}

/// Waits (up to 10 s) until `expected` upstream calls logged after `logs_before` are open at
/// the peer: every exchange is then waiting on its stalled call.
async fn wait_upstream_open(bench: &Bench, logs_before: usize, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open_upstream = bench.gemini.streams()[logs_before..]
            .iter()
            .filter(|log| log.end == StreamEnd::Open)
            .count();
        if open_upstream >= expected {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "  warning: only {open_upstream} of {expected} upstream calls are open at the peer"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Completes `OPENING_CONCURRENCY` exchanges at once, as the streams will be opened, so the
/// server's database pool grows to the size the opening needs before the idle figure: on
/// SQLite each pooled connection holds its own schema, page cache and prepared statements
/// (about 300 KiB), a cost of the pool's size (`database.max_connections`), not of the number
/// of streams. The peer answers these with `Connection: close`, so none of their upstream
/// connections stays pooled for a stream to reuse: each stream still opens its own.
async fn warm_database_pool(
    bench: &Bench,
    channels: &[tonic::transport::Channel],
) -> anyhow::Result<()> {
    let mut chat = bench.chat();
    let mut sessions = Vec::with_capacity(OPENING_CONCURRENCY);
    for _ in 0..OPENING_CONCURRENCY {
        sessions.push(bench.session(&mut chat).await?);
    }
    bench.gemini.close_connections(true);
    let completed =
        futures::future::join_all(sessions.iter().enumerate().map(|(index, session)| {
            warm_up_stream(bench, &channels[index % channels.len()], session)
        }))
        .await;
    bench.gemini.close_connections(false);
    completed.into_iter().collect()
}

/// Completes one StreamMessage call on `session` over `channel`.
async fn warm_up_stream(
    bench: &Bench,
    channel: &tonic::transport::Channel,
    session: &str,
) -> anyhow::Result<()> {
    let mut chat = ChatServiceClient::new(channel.clone());
    let mut stream = chat
        .stream_message(bench.request(stream_request(session, "Hello.")))
        .await
        .context("a warm-up StreamMessage")?
        .into_inner();
    ensure!(
        drain(&mut stream).await?,
        "a warm-up stream did not complete"
    );
    Ok(())
}

/// Exchanges of the bench's database still running.
async fn running_exchanges(bench: &Bench) -> anyhow::Result<i64> {
    use assistd_store::ConnectionTrait as _;
    let db = bench.store.connection();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS running FROM chat_messages WHERE exchange_state = 'running'",
        ))
        .await
        .context("counting running exchanges")?
        .context("COUNT returned no row")?;
    Ok(row.try_get("", "running")?)
}

/// The resident set size of process `pid` in bytes, from `/proc/<pid>/status`.
pub(crate) fn vm_rss(pid: u32) -> anyhow::Result<u64> {
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

/// Established TCP connections of process `pid` to port `port` on 127.0.0.1 (or `::1`, or
/// `::ffff:127.0.0.1`): the rows of `/proc/<pid>/net/tcp` and `tcp6` (every socket of the
/// process's network namespace) whose remote end is that port, counted when their inode is
/// one of the process's open file descriptors. Exact at the instant read; sockets of other
/// processes (the peer's own ends, with the port as their local end) are not counted.
fn connections_to(pid: u32, port: u16) -> anyhow::Result<usize> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // No IPv6 in the kernel: no tcp6 table.
            Err(err) if table == "tcp6" && err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {path} (Linux only)")),
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
            // timeout inode …
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            // 01: ESTABLISHED.
            if *state != "01" {
                continue;
            }
            let Some((address, remote_port)) = remote.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(remote_port, 16).ok() != Some(port) {
                continue;
            }
            // 127.0.0.1 in /proc's byte order, ::1, and ::ffff:127.0.0.1.
            if matches!(
                address,
                "0100007F"
                    | "00000000000000000000000001000000"
                    | "0000000000000000FFFF00000100007F"
            ) {
                inodes.insert((*inode).to_owned());
            }
        }
    }
    let fds = format!("/proc/{pid}/fd");
    let mut count = 0;
    for entry in std::fs::read_dir(&fds).with_context(|| format!("listing {fds}"))? {
        // A descriptor closed since the listing has no link left: not a connection now.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            && inodes.contains(inode)
        {
            count += 1;
        }
    }
    Ok(count)
}

/// Prints the three figures, the connections to the peer and the wind-down; adds the growth
/// to `summary`.
pub(crate) fn print(rss: &RssResult, label: &str, summary: &mut Vec<String>) {
    println!();
    println!(
        "### RSS with {} open idle StreamMessage calls, upstream {} (gRPC connections: {}; \
         upstream stalled after its headers)",
        thousands(rss.streams),
        rss.upstream.label(),
        rss.channels
    );
    println!();
    println!("| state | VmRSS |");
    println!("|---|---:|");
    println!(
        "| idle (warmed, database pool grown, sessions created) | {} |",
        format_bytes(rss.idle)
    );
    println!(
        "| first {} streams open | {} |",
        thousands(rss.first_count),
        format_bytes(rss.first_open)
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
    let later = rss.streams.saturating_sub(rss.first_count);
    if later > 0 {
        let marginal = rss.open.saturating_sub(rss.first_open);
        println!(
            "the last {} streams alone: {} ({} per stream; at that rate {} for {}).",
            thousands(later),
            format_bytes(marginal),
            format_bytes(marginal / later as u64),
            format_bytes(marginal * rss.streams as u64 / later as u64),
            thousands(rss.streams),
        );
    }
    println!(
        "VmRSS of the server process alone (pid {}): the client's streams and the peer's \
         connections live in the bench process and are not counted.",
        rss.server_pid
    );
    println!(
        "TCP connections of the server to the Gemini peer ({}): {} when idle (warmed), {} \
         with the {} calls open.",
        rss.upstream.label(),
        thousands(rss.idle_connections),
        thousands(rss.open_connections),
        thousands(rss.streams)
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
        "{label}: RSS growth with {} idle StreamMessage calls, upstream {}, {} (idle {}, open \
         {}; the last {} alone {} per stream; TCP connections to the peer: {}); target ≤ {} — \
         {} (server process only)",
        thousands(rss.streams),
        rss.upstream.label(),
        format_bytes(growth),
        format_bytes(rss.idle),
        format_bytes(rss.open),
        thousands(rss.streams.saturating_sub(rss.first_count)),
        format_bytes(
            rss.open.saturating_sub(rss.first_open)
                / rss.streams.saturating_sub(rss.first_count).max(1) as u64
        ),
        thousands(rss.open_connections),
        format_bytes(RSS_TARGET_BYTES),
        verdict(growth <= RSS_TARGET_BYTES),
    ));
}
