//! Scenario "idle", the memory of idle watch streams: the server process's RSS with
//! `--idle-streams` WatchPreferences streams, then as many WatchChat streams, each of a user of
//! its own (the most a server holds per stream: every user gets a fan-out channel of its own).
//! Each kind runs on a fresh server of its own (same database), so the memory one kind freed
//! cannot hide the growth of the next.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::chat::v1::watch_chat_response::Event as WatchEvent;
use assistd::proto::preferences::v1 as prefpb;
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd_bench::cli::authed;
use assistd_bench::format::{format_bytes, format_latency, thousands};
use assistd_store::NewUser;
use futures::StreamExt as _;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use crate::rss::vm_rss;
use crate::setup::{Bench, CALL_TIMEOUT, RSS_SETTLE};
use crate::verdict;

/// Idle streams per gRPC connection.
const STREAMS_PER_CHANNEL: usize = 125;
/// Streams being opened at once.
const OPENING_CONCURRENCY: usize = 32;
/// Target of the growth, printed beside it (nothing is asserted).
pub(crate) const IDLE_TARGET_BYTES: u64 = 40 * 1024 * 1024;

/// A kind of idle stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    WatchPreferences,
    WatchChat,
}

impl Kind {
    pub(crate) const ALL: [Self; 2] = [Self::WatchPreferences, Self::WatchChat];

    fn name(self) -> &'static str {
        match self {
            Self::WatchPreferences => "WatchPreferences",
            Self::WatchChat => "WatchChat",
        }
    }
}

/// An open stream of either kind, kept only to be dropped.
enum Open {
    Preferences(
        #[expect(dead_code, reason = "held open, then dropped")]
        tonic::Streaming<prefpb::WatchPreferencesResponse>,
    ),
    Chat(
        #[expect(dead_code, reason = "held open, then dropped")]
        tonic::Streaming<pb::WatchChatResponse>,
    ),
}

/// What one kind measured.
pub(crate) struct IdleResult {
    kind: Kind,
    streams: usize,
    idle: u64,
    open: u64,
    after_cancel: u64,
    opening: Duration,
}

/// Opens `count` idle streams of `kind`, each of a user of its own, and reads the server's
/// RSS before, with them open, and after they are cancelled.
pub(crate) async fn measure(bench: &Bench, kind: Kind, count: usize) -> anyhow::Result<IdleResult> {
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let user = bench
            .store
            .users()
            .create(NewUser {
                display_name: Some("assistd idle-stream bench".into()),
                email: None,
            })
            .await
            .context("creating a watching user")?
            .id;
        tokens.push(bench.tokens.token_for(user));
    }
    let mut channels = Vec::new();
    for _ in 0..count.div_ceil(STREAMS_PER_CHANNEL) {
        channels.push(bench.connect().await?);
    }
    // Warm: a stream on every connection, opened and closed.
    for channel in &channels {
        drop(open(kind, channel.clone(), &tokens[0]).await?);
    }
    tokio::time::sleep(RSS_SETTLE).await;
    let pid = bench.server_pid();
    let idle = vm_rss(pid)?;
    let started = std::time::Instant::now();
    let streams: Vec<Open> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(index, token)| open(kind, channels[index / STREAMS_PER_CHANNEL].clone(), token))
        .buffer_unordered(OPENING_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let opening = started.elapsed();
    ensure!(streams.len() == count, "not every stream opened");
    tokio::time::sleep(RSS_SETTLE).await;
    let open_rss = vm_rss(pid)?;
    drop(streams);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_cancel = vm_rss(pid)?;
    Ok(IdleResult {
        kind,
        streams: count,
        idle,
        open: open_rss,
        after_cancel,
        opening,
    })
}

/// Opens a stream of `kind` and reads its first event (the current preferences, or
/// `started`), so the server holds it as an idle watcher.
async fn open(kind: Kind, channel: Channel, token: &AsciiMetadataValue) -> anyhow::Result<Open> {
    let opened = async {
        match kind {
            Kind::WatchPreferences => {
                let mut stream = PreferencesServiceClient::new(channel)
                    .watch_preferences(authed(prefpb::WatchPreferencesRequest {}, token))
                    .await
                    .context("WatchPreferences")?
                    .into_inner();
                stream
                    .message()
                    .await?
                    .context("the preferences watch ended at once")?;
                Ok(Open::Preferences(stream))
            }
            Kind::WatchChat => {
                let mut stream = ChatServiceClient::new(channel)
                    .watch_chat(authed(pb::WatchChatRequest::default(), token))
                    .await
                    .context("WatchChat")?
                    .into_inner();
                loop {
                    let response = stream
                        .message()
                        .await?
                        .context("the chat watch ended at once")?;
                    if matches!(response.event, Some(WatchEvent::Started(_))) {
                        return Ok(Open::Chat(stream));
                    }
                }
            }
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, opened)
        .await
        .context("opening a watch timed out")?
}

/// Prints the kinds' figures; adds each growth to `summary`.
pub(crate) fn print(results: &[IdleResult], label: &str, summary: &mut Vec<String>) {
    println!();
    println!(
        "### RSS with idle watch streams (each of a user of its own; a fresh server per kind)"
    );
    println!();
    println!(
        "| kind | streams | idle | open | above idle | per stream | 1 s after cancel | opening took |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for result in results {
        let growth = result.open.saturating_sub(result.idle);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            result.kind.name(),
            thousands(result.streams),
            format_bytes(result.idle),
            format_bytes(result.open),
            format_bytes(growth),
            format_bytes(growth / result.streams.max(1) as u64),
            format_bytes(result.after_cancel),
            format_latency(Some(result.opening)),
        );
        summary.push(format!(
            "{label}: RSS growth with {} idle {} streams {}; target ≤ {} — {}",
            thousands(result.streams),
            result.kind.name(),
            format_bytes(growth),
            format_bytes(IDLE_TARGET_BYTES),
            verdict(growth <= IDLE_TARGET_BYTES),
        ));
    }
}
