//! `--watch-latency`: how long a reply's text delta takes from the sender's StreamMessage to
//! a WatchChat stream of the same user on another connection — one server, or (on
//! PostgreSQL) from one replica to another sharing the database — and the server's RSS above
//! idle with many idle watchers.
//!
//! The servers are `assistd serve` child processes with a local Gemini stand-in that writes
//! each reply in chunks a fixed interval apart. Each delta's delay is the time the watcher read
//! it minus the time the sender read it, both in this process on one clock.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use assistd::config::Config;
use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::chat::v1::stream_message_response::Event as SendEvent;
use assistd::proto::chat::v1::watch_chat_response::Event as WatchEvent;
use assistd_bench::cli::{authed, connect};
use assistd_bench::format::{format_bytes, format_signed, thousands};
use assistd_bench::server::{ServerProcess, free_port, server_command};
use assistd_bench::stats::Percentiles;
use assistd_identity::AccessTokens;
use assistd_store::{NewUser, Store};
use assistd_testkit::gemini::{GeminiServer, ScriptedReply};
use futures::StreamExt as _;
use tempfile::TempDir;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// The Gemini key the bench users store.
const GEMINI_KEY: &str = "AIzaSyD-watch-0123456789abcdefghijklmno";
/// Longest wait for any one event or call.
const PATIENCE: Duration = Duration::from_secs(30);
/// Watch streams per HTTP/2 connection in the RSS measurement.
const WATCHERS_PER_CHANNEL: usize = 100;

/// What to measure.
pub(crate) struct WatchLatency {
    /// Sends whose deltas are timed.
    pub(crate) sends: usize,
    /// Chunks (deltas) per reply.
    pub(crate) chunks: usize,
    /// Time between chunks of a reply.
    pub(crate) interval: Duration,
    /// Idle watchers whose memory is measured.
    pub(crate) watchers: usize,
}

/// One or two `assistd serve` processes on one database and data directory.
struct Servers {
    addresses: Vec<String>,
    processes: Vec<ServerProcess>,
    store: Store,
    tokens: AccessTokens,
    gemini: GeminiServer,
    _data_dir: TempDir,
}

impl Servers {
    async fn start(
        bin: &Path,
        database_url: Option<&str>,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("assistd-watch-bench-")
            .tempdir()?;
        let gemini = GeminiServer::start().await;
        gemini.allow_key(GEMINI_KEY);
        let mut config = Config {
            data_dir: data_dir.path().join("data"),
            ..Config::default()
        };
        config.database.url = database_url.unwrap_or_default().to_owned();
        // Made before the servers start, so the bench can mint its users' tokens; the replicas
        // share the data directory and therefore the keys.
        let tokens = assistd::server::access_tokens(&config)?;
        let max_streams = (WATCHERS_PER_CHANNEL + 64).to_string();
        let mut addresses = Vec::new();
        let mut processes = Vec::new();
        for replica in 0..replicas {
            let listen = format!("127.0.0.1:{}", free_port()?);
            let address = format!("http://{listen}");
            let log = std::fs::File::create(data_dir.path().join(format!("server-{replica}.log")))?;
            let mut command = server_command(bin);
            command
                .arg("serve")
                .env("ASSISTD_DATA_DIR", &config.data_dir)
                .env("ASSISTD_SERVER__LISTEN", &listen)
                .env("ASSISTD_SERVER__MAX_CONCURRENT_STREAMS", &max_streams)
                .env("ASSISTD_DATABASE__URL", &config.database.url)
                .env("ASSISTD_GEMINI__BASE_URL", gemini.base_url())
                .env("ASSISTD_CHAT__GENERATE_TITLES", "false")
                .env("ASSISTD_LOG__FILTER", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            // One at a time: the first creates the keys and migrates, the next reuses them.
            processes.push(
                ServerProcess::spawn(command, &address, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("running {} serve", bin.display()))?,
            );
            addresses.push(address);
        }
        let store = Store::connect(&config.database_settings()).await?;
        Ok(Self {
            addresses,
            processes,
            store,
            tokens,
            gemini,
            _data_dir: data_dir,
        })
    }

    /// A new user with a stored Gemini key; returns its `authorization` value.
    async fn user(&self, with_key: bool) -> anyhow::Result<AsciiMetadataValue> {
        let user = self.store.users().create(NewUser::default()).await?.id;
        let token: AsciiMetadataValue =
            format!("Bearer {}", self.tokens.issue(user).token).parse()?;
        if with_key {
            UserApiKeyServiceClient::new(connect(&self.addresses[0], PATIENCE).await?)
                .set_api_key(authed(
                    keypb::SetApiKeyRequest {
                        provider: keypb::Provider::Gemini.into(),
                        api_key: GEMINI_KEY.into(),
                        allow_unverified: false,
                    },
                    &token,
                ))
                .await
                .context("SetApiKey")?;
        }
        Ok(token)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.store.close().await;
        for process in &mut self.processes {
            process.stop(Duration::from_secs(20)).await?;
        }
        Ok(())
    }
}

/// Opens a watch and waits for `started`.
async fn open_watch(
    channel: Channel,
    token: &AsciiMetadataValue,
) -> anyhow::Result<tonic::Streaming<pb::WatchChatResponse>> {
    let mut stream = ChatServiceClient::new(channel)
        .watch_chat(authed(pb::WatchChatRequest::default(), token))
        .await
        .context("WatchChat")?
        .into_inner();
    loop {
        let response = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .context("no started event")??
            .context("the watch ended")?;
        if matches!(response.event, Some(WatchEvent::Started(_))) {
            return Ok(stream);
        }
    }
}

/// Delays in nanoseconds from the sender's delta to the watcher's (watcher on
/// `addresses[watch_on]`); negative when the watcher read it first.
async fn measure_delays(
    servers: &Servers,
    watch_on: usize,
    settings: &WatchLatency,
) -> anyhow::Result<Vec<i64>> {
    let token = servers.user(true).await?;
    let mut sender = ChatServiceClient::new(connect(&servers.addresses[0], PATIENCE).await?);
    let watch_channel = connect(&servers.addresses[watch_on], PATIENCE).await?;
    let mut watch = open_watch(watch_channel, &token).await?;
    let session = sender
        .create_session(authed(pb::CreateSessionRequest::default(), &token))
        .await?
        .into_inner()
        .session
        .context("no session")?
        .id;
    servers.gemini.set_chunk_interval(settings.interval);
    let chunks: Vec<String> = (0..settings.chunks)
        .map(|i| format!("piece {i} "))
        .collect();
    let mut delays = Vec::new();
    for send in 0..settings.sends {
        let reply = chunks.clone();
        servers
            .gemini
            .respond_with(move |_| ScriptedReply::chunks(reply.clone()));
        let mut stream = sender
            .stream_message(authed(
                pb::StreamMessageRequest {
                    session_id: session.clone(),
                    client_message_id: format!("bench-{send}-{}", uuid::Uuid::now_v7().simple()),
                    text: "Write in pieces.".into(),
                },
                &token,
            ))
            .await
            .context("StreamMessage")?
            .into_inner();
        let sending = async {
            let mut seen = Vec::new();
            while let Some(response) = stream.message().await? {
                if let Some(SendEvent::TextDelta(_)) = response.event {
                    seen.push(Instant::now());
                }
            }
            anyhow::Ok(seen)
        };
        let watching = async {
            let mut seen = Vec::new();
            while seen.len() < settings.chunks {
                let response = watch.message().await?.context("the watch ended")?;
                if let Some(WatchEvent::ReplyDelta(delta)) = response.event {
                    seen.push((delta.index, Instant::now()));
                }
            }
            anyhow::Ok(seen)
        };
        let (sent, watched) =
            tokio::time::timeout(PATIENCE * 4, async { tokio::join!(sending, watching) })
                .await
                .context("a send or its watch stalled")?;
        let (sent, watched) = (sent?, watched?);
        ensure!(
            sent.len() == settings.chunks,
            "the sender got {} deltas",
            sent.len()
        );
        for (index, at) in watched {
            let sent_at = sent[usize::try_from(index)?];
            let delay = if at >= sent_at {
                i64::try_from(at.duration_since(sent_at).as_nanos())?
            } else {
                -i64::try_from(sent_at.duration_since(at).as_nanos())?
            };
            delays.push(delay);
        }
    }
    servers.gemini.clear_responder();
    Ok(delays)
}

/// RSS of the first server before and with `count` idle watchers of distinct users.
async fn measure_rss(servers: &Servers, count: usize) -> anyhow::Result<(u64, u64)> {
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        tokens.push(servers.user(false).await?);
    }
    let mut channels = Vec::new();
    for _ in 0..count.div_ceil(WATCHERS_PER_CHANNEL) {
        channels.push(connect(&servers.addresses[0], PATIENCE).await?);
    }
    // Warm: a watch on every connection, opened and closed.
    for channel in &channels {
        drop(open_watch(channel.clone(), &tokens[0]).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = servers.processes[0].pid();
    let idle = vm_rss(pid)?;
    let watches: Vec<_> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| open_watch(channels[i / WATCHERS_PER_CHANNEL].clone(), token))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = vm_rss(pid)?;
    drop(watches);
    Ok((idle, open))
}

/// The resident set size of process `pid` in bytes, from `/proc/<pid>/status`.
fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/<pid>/status (Linux only)")?;
    let Some(line) = status.lines().find_map(|line| line.strip_prefix("VmRSS:")) else {
        bail!("no VmRSS line in /proc/{pid}/status");
    };
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

fn print_delays(title: &str, delays: &[i64]) {
    let percentiles = Percentiles::of_nanos(delays);
    println!(
        "{title} ({} deltas; negative: the watcher read it before the sender): p50 {}, p99 {}, max {}",
        thousands(delays.len()),
        format_signed(percentiles.nanos_at(0.50)),
        format_signed(percentiles.nanos_at(0.99)),
        format_signed(percentiles.max_nanos()),
    );
}

/// Runs the measurements on one database: one server (delays and RSS), and on PostgreSQL two
/// replicas (delays from the first to a watcher on the second).
pub(crate) async fn run(
    bin: &Path,
    label: &str,
    database_url: Option<&str>,
    settings: &WatchLatency,
) -> anyhow::Result<()> {
    println!();
    println!("## WatchChat on {label}");
    println!();
    println!(
        "{} sends × {} deltas, {:?} apart",
        settings.sends, settings.chunks, settings.interval
    );
    let replicas = if database_url.is_some() { 2 } else { 1 };
    eprintln!("{label}: starting {replicas} server(s)");
    let servers = Servers::start(bin, database_url, replicas).await?;
    let measured = async {
        let one = measure_delays(&servers, 0, settings).await?;
        print_delays("delta delay, sender and watcher on one server", &one);
        if replicas > 1 {
            let across = measure_delays(&servers, 1, settings).await?;
            print_delays("delta delay, sender on replica A, watcher on replica B", &across);
        }
        if settings.watchers > 0 {
            eprintln!("{label}: opening {} watchers", settings.watchers);
            let (idle, open) = measure_rss(&servers, settings.watchers).await?;
            println!(
                "RSS of one server: idle {}, with {} idle watchers (distinct users) {}, above idle {}",
                format_bytes(idle),
                thousands(settings.watchers),
                format_bytes(open),
                format_bytes(open.saturating_sub(idle)),
            );
        }
        anyhow::Ok(())
    }
    .await;
    let stopped = servers.stop().await;
    measured?;
    stopped
}
