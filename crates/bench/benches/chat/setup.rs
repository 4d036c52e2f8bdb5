//! What every scenario runs against: the server process, its Gemini peer, a signed-in user
//! with a stored key, and the helpers to call the chat API as that user.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use assistd::config::Config;
use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::chat::v1::stream_message_response::Event;
use assistd_bench::cli::{authed, connect};
use assistd_bench::server::{ServerProcess, Stopped, free_port, server_command};
use assistd_domain::UserId;
use assistd_identity::AccessTokens;
use assistd_store::{NewUser, Store};
use assistd_testkit::gemini::GeminiServer;
use clap::ValueEnum;
use tempfile::TempDir;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// The Gemini key the bench user stores; the peer is told to accept it first.
pub(crate) const GEMINI_KEY: &str = "AIzaSyD-bench-0123456789abcdefghijklmno";
/// Model the peer serves (its catalogue's first model).
pub(crate) const MODEL: &str = "gemini-2.5-flash";
/// A single call (or opening a stream) slower than this fails the bench, so a hung server
/// cannot hang it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Sends in one session before a sender moves to a fresh one, so the history each exchange
/// loads and sends to the model stays small and the same throughout.
pub(crate) const SENDS_PER_SESSION: usize = 10;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to serve after it starts (it migrates the database first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to exit on SIGTERM (its grace period is 10 s).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// jemalloc options of the server process (its jemalloc is unprefixed, so it reads
/// `MALLOC_CONF`): background threads return freed pages to the system after a second, so the
/// RSS figures count memory the server holds rather than pages it freed a moment ago and has
/// not yet purged (by default dirty pages linger 10 s, and purging waits for the next
/// allocation).
pub(crate) const MALLOC_CONF: &str = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
/// How long the RSS scenarios wait before reading RSS: past the decay time above.
pub(crate) const RSS_SETTLE: Duration = Duration::from_secs(3);
/// Age at which the bench replaces its access token.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// The HTTP version the server speaks to its Gemini peer (`gemini.http_version`); the peer
/// serves both on one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Upstream {
    /// HTTP/1.1: a connection per call in flight (the server's default).
    Http1,
    /// HTTP/2 with prior knowledge (h2c): every call a stream of one connection.
    Http2,
}

impl Upstream {
    /// Its `--upstreams` value, which is also its `gemini.http_version` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
        }
    }

    /// How the results name it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }
}

/// The server, its Gemini peer and a signed-in user with a stored key.
pub(crate) struct Bench {
    pub(crate) address: String,
    pub(crate) store: Store,
    pub(crate) user: UserId,
    pub(crate) tokens: TokenSource,
    pub(crate) gemini: Arc<GeminiServer>,
    /// The HTTP version the server speaks to `gemini`.
    pub(crate) upstream: Upstream,
    /// One connection for sequential calls.
    channel: Channel,
    /// The `assistd serve` process.
    server: ServerProcess,
    _data_dir: TempDir,
}

impl Bench {
    /// Starts `server_bin serve` on `database_url` (SQLite in a temporary directory when
    /// `None`) with room for `idle_streams` streams, speaking `upstream` to a Gemini peer of
    /// its own, creates the bench user and stores its Gemini key.
    pub(crate) async fn start(
        server_bin: &Path,
        idle_streams: usize,
        database_url: Option<&str>,
        upstream: Upstream,
    ) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("assistd-chat-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let gemini = Arc::new(GeminiServer::start().await);
        gemini.allow_key(GEMINI_KEY);

        let mut config = Config {
            data_dir: data_dir.path().join("data"),
            ..Config::default()
        };
        config.server.listen = format!("127.0.0.1:{}", free_port()?).parse()?;
        config.database.url = database_url.unwrap_or_default().to_owned();
        // Room for every idle stream on its connection, whatever the channel count.
        let max_streams = u32::try_from(idle_streams + 64)
            .context("--idle-streams is too large")?
            .max(config.server.max_concurrent_streams);
        // The signing key is made here, before the server starts and loads it, so the bench
        // can mint the user's access tokens itself.
        let tokens = assistd::server::access_tokens(&config)?;
        let address = format!("http://{}", config.server.listen);
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        let mut command = server_command(server_bin);
        command
            .arg("serve")
            .env("ASSISTD_DATA_DIR", &config.data_dir)
            .env("ASSISTD_SERVER__LISTEN", config.server.listen.to_string())
            .env("ASSISTD_SERVER__SHUTDOWN_GRACE", "10s")
            .env(
                "ASSISTD_SERVER__MAX_CONCURRENT_STREAMS",
                max_streams.to_string(),
            )
            .env("ASSISTD_DATABASE__URL", &config.database.url)
            .env("ASSISTD_GEMINI__BASE_URL", gemini.base_url())
            .env("ASSISTD_GEMINI__HTTP_VERSION", upstream.name())
            // The idle streams stall upstream for as long as the RSS scenario takes; the
            // client's whole-call timeout must not end them first.
            .env("ASSISTD_GEMINI__REQUEST_TIMEOUT", "10m")
            // Titles would be generated with a model call of their own, taking replies meant
            // for the measured sends.
            .env("ASSISTD_CHAT__GENERATE_TITLES", "false")
            .env("ASSISTD_LOG__FILTER", "warn")
            .env("MALLOC_CONF", MALLOC_CONF)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let server = ServerProcess::spawn(command, &address, STARTUP_TIMEOUT)
            .await
            .with_context(|| format!("running {} serve", server_bin.display()))?;
        let channel = connect(&address, CONNECT_TIMEOUT).await?;
        // The server migrated the database before listening; the bench reads and seeds it
        // through a pool of its own.
        let store = Store::connect(&config.database_settings())
            .await
            .context("opening the database beside the server")?;
        let user = store
            .users()
            .create(NewUser {
                display_name: Some("assistd chat bench".into()),
                email: None,
            })
            .await
            .context("creating the bench user")?
            .id;
        let tokens = TokenSource::new(tokens, user);
        UserApiKeyServiceClient::new(channel.clone())
            .set_api_key(authed(
                keypb::SetApiKeyRequest {
                    provider: keypb::Provider::Gemini.into(),
                    api_key: GEMINI_KEY.into(),
                    allow_unverified: false,
                },
                &tokens.get(),
            ))
            .await
            .context("storing the Gemini key through SetApiKey")?;
        Ok(Self {
            address,
            store,
            user,
            tokens,
            gemini,
            upstream,
            channel,
            server,
            _data_dir: data_dir,
        })
    }

    /// A fresh connection to the server, for scenarios that spread calls over several.
    pub(crate) async fn connect(&self) -> anyhow::Result<Channel> {
        connect(&self.address, CONNECT_TIMEOUT).await
    }

    /// The chat client on the shared connection.
    pub(crate) fn chat(&self) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.channel.clone())
    }

    /// The server's process id, whose memory the RSS scenario reads.
    pub(crate) fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    /// `message` as the bench user's request, with the call timeout.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = authed(message, &self.tokens.get());
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// A new session through CreateSession.
    pub(crate) async fn session(
        &self,
        chat: &mut ChatServiceClient<Channel>,
    ) -> anyhow::Result<String> {
        let session = chat
            .create_session(self.request(pb::CreateSessionRequest {
                title: "bench".into(),
                ..Default::default()
            }))
            .await
            .context("CreateSession")?
            .into_inner()
            .session
            .context("CreateSession returned no session")?;
        Ok(session.id)
    }

    /// Closes the bench's pool and stops the server, which must exit cleanly.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.store.close().await;
        match self.server.stop(SHUTDOWN_TIMEOUT).await? {
            Stopped::Exited(status) => {
                ensure!(status.success(), "the server exited with {status}");
                Ok(())
            }
            Stopped::Killed => bail!("the server did not stop within {SHUTDOWN_TIMEOUT:?}"),
        }
    }
}

/// Access tokens for the bench user, reissued once the current one is [`TOKEN_REFRESH`] old, so
/// no scenario outlives its token (they live 10 minutes by default; a slow database can make a
/// run longer than that).
#[derive(Clone)]
pub(crate) struct TokenSource {
    tokens: AccessTokens,
    user: UserId,
    current: Arc<Mutex<(Instant, AsciiMetadataValue)>>,
}

impl TokenSource {
    fn new(tokens: AccessTokens, user: UserId) -> Self {
        let current = Self::issue(&tokens, user);
        Self {
            tokens,
            user,
            current: Arc::new(Mutex::new((Instant::now(), current))),
        }
    }

    fn issue(tokens: &AccessTokens, user: UserId) -> AsciiMetadataValue {
        format!("Bearer {}", tokens.issue(user).token)
            .parse()
            .expect("an access token is ASCII")
    }

    /// An `authorization` value for another user (a fresh token, valid for its lifetime).
    pub(crate) fn token_for(&self, user: UserId) -> AsciiMetadataValue {
        Self::issue(&self.tokens, user)
    }

    /// The `authorization` value to send now.
    pub(crate) fn get(&self) -> AsciiMetadataValue {
        let mut current = self.current.lock().expect("token lock poisoned");
        if current.0.elapsed() >= TOKEN_REFRESH {
            *current = (Instant::now(), Self::issue(&self.tokens, self.user));
        }
        current.1.clone()
    }
}

/// A StreamMessage request with a fresh client message id.
pub(crate) fn stream_request(session: &str, text: &str) -> pb::StreamMessageRequest {
    pb::StreamMessageRequest {
        session_id: session.to_owned(),
        client_message_id: uuid::Uuid::now_v7().simple().to_string(),
        text: text.to_owned(),
    }
}

/// Reads a stream to its end; `Ok(false)` when it ended without a `completed` event.
pub(crate) async fn drain(
    stream: &mut tonic::Streaming<pb::StreamMessageResponse>,
) -> anyhow::Result<bool> {
    let mut completed = false;
    while let Some(response) = tokio::time::timeout(CALL_TIMEOUT, stream.message())
        .await
        .context("a stream stalled")??
    {
        completed |= matches!(response.event, Some(Event::Completed(_)));
    }
    Ok(completed)
}
