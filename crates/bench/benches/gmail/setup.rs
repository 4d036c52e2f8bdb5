//! What the scenarios run against: an `assistd serve` process wired to the testkit's OpenID
//! provider, Gmail peer and Gemini peer (all in the bench process), users signed in with Gmail
//! access through the real redirect flow, and the Gmail client calls the scenarios time.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::auth::v1 as authpb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd::proto::gmail::v1 as pb;
use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd_bench::cli::{authed, connect};
use assistd_bench::server::{ServerProcess, Stopped, free_port, server_command};
use assistd_testkit::GeminiServer;
use assistd_testkit::gmail::{GmailServer, NewMessage};
use assistd_testkit::oidc::{OidcProvider, TestUser};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// The Gemini key the bench's users store; the Gemini peer accepts it.
const GEMINI_KEY: &str = "AIzaSyD-bench-gmail-0123456789abcdefghij";

/// A sync or a list slower than this fails the bench, so a hung server cannot hang it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(1_800);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server migrates the database before it serves.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The peers, shared by every server process of one database.
pub(crate) struct Peers {
    pub(crate) oidc: OidcProvider,
    pub(crate) gmail: GmailServer,
    /// Answers the AI scenario's model calls; accepts [`GEMINI_KEY`].
    pub(crate) gemini: GeminiServer,
}

impl Peers {
    pub(crate) async fn start() -> Self {
        let oidc = OidcProvider::start().await;
        let gmail = GmailServer::start(&oidc).await;
        let gemini = GeminiServer::start().await;
        gemini.allow_key(GEMINI_KEY);
        Self {
            oidc,
            gmail,
            gemini,
        }
    }
}

/// A signed-in user with Gmail access.
pub(crate) struct MailUser {
    /// The Google subject: the peer's mailbox key.
    pub(crate) sub: String,
    token: AsciiMetadataValue,
}

/// One `assistd serve` process.
pub(crate) struct Server {
    channel: Channel,
    process: ServerProcess,
}

impl Server {
    /// Starts `bin serve` on `data_dir` and `database_url` (SQLite in `data_dir` when empty),
    /// talking to `peers`, with the Gmail quota `quota` units per second and
    /// `gmail.triage_batch_size` `triage_batch_size`.
    pub(crate) async fn start(
        bin: &Path,
        data_dir: &Path,
        database_url: &str,
        peers: &Peers,
        quota: u32,
        triage_batch_size: usize,
    ) -> anyhow::Result<Self> {
        let address = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))?;
        let mut command = server_command(bin);
        command
            .arg("serve")
            .env("ASSISTD_DATA_DIR", data_dir.join("data"))
            .env("ASSISTD_SERVER__LISTEN", &address)
            .env("ASSISTD_DATABASE__URL", database_url)
            .env("ASSISTD_SIGN_IN__ISSUER", peers.oidc.issuer())
            .env("ASSISTD_SIGN_IN__CLIENT_ID", OidcProvider::CLIENT_ID)
            .env(
                "ASSISTD_SIGN_IN__CLIENT_SECRET",
                OidcProvider::CLIENT_SECRET,
            )
            .env(
                "ASSISTD_SIGN_IN__ALLOWED_REDIRECT_URIS",
                format!("[\"{}\"]", OidcProvider::REDIRECT_URI),
            )
            .env("ASSISTD_GMAIL__API_BASE_URL", peers.gmail.base_url())
            .env("ASSISTD_GMAIL__BACKGROUND_SYNC", "false")
            .env("ASSISTD_GMAIL__MAX_FULL_SYNC_MESSAGES", "100000")
            .env("ASSISTD_GMAIL__QUOTA_UNITS_PER_SECOND", quota.to_string())
            .env(
                "ASSISTD_GMAIL__TRIAGE_BATCH_SIZE",
                triage_batch_size.to_string(),
            )
            .env(
                "ASSISTD_GMAIL__SUMMARY_CONTEXT_TOKENS",
                crate::ai::SUMMARY_CONTEXT_TOKENS.to_string(),
            )
            .env("ASSISTD_GEMINI__BASE_URL", peers.gemini.base_url())
            .env("ASSISTD_LOG__FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let http = format!("http://{address}");
        let process = ServerProcess::spawn(command, &http, STARTUP_TIMEOUT)
            .await
            .with_context(|| format!("running {} serve", bin.display()))?;
        let channel = connect(&http, CONNECT_TIMEOUT).await?;
        Ok(Self { channel, process })
    }

    /// The server's process id, whose memory the RSS figure reads.
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Signs `name` in with Gmail access: BeginLogin, the provider's authorization endpoint
    /// (followed as a browser would), CompleteLogin.
    pub(crate) async fn sign_in(&self, peers: &Peers, name: &str) -> anyhow::Result<MailUser> {
        let sub = format!("bench-{name}");
        let email = format!("{name}@example.com");
        peers
            .oidc
            .set_user(TestUser::new(sub.clone(), email.clone()));
        let mut auth = AuthServiceClient::new(self.channel.clone());
        let begun = auth
            .begin_login(authpb::BeginLoginRequest {
                redirect_uri: OidcProvider::REDIRECT_URI.into(),
                request_gmail_access: true,
                request_gmail_compose: false,
                login_hint: email,
            })
            .await
            .context("BeginLogin")?
            .into_inner();
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = browser.get(&begun.authorization_url).send().await?;
        let location = response
            .headers()
            .get("location")
            .context("the provider did not redirect")?
            .to_str()?
            .to_owned();
        let redirect = reqwest::Url::parse(&location)?;
        let field = |name: &str| {
            redirect
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .with_context(|| format!("no {name} in the redirect"))
        };
        let signed = auth
            .complete_login(authpb::CompleteLoginRequest {
                state: field("state")?,
                code: field("code")?,
                device_name: "gmail bench".into(),
            })
            .await
            .context("CompleteLogin")?
            .into_inner();
        ensure!(signed.gmail_access_granted, "Gmail access was not granted");
        let token = signed.tokens.context("no session tokens")?.access_token;
        Ok(MailUser {
            sub,
            token: format!("Bearer {token}").parse()?,
        })
    }

    /// Stores the Gemini key the peer accepts for `user` (SetApiKey, validated at the peer).
    pub(crate) async fn set_gemini_key(&self, user: &MailUser) -> anyhow::Result<()> {
        UserApiKeyServiceClient::new(self.channel.clone())
            .set_api_key(Self::request(
                user,
                keypb::SetApiKeyRequest {
                    provider: keypb::Provider::Gemini.into(),
                    api_key: GEMINI_KEY.into(),
                    allow_unverified: false,
                },
            ))
            .await
            .context("storing the Gemini key through SetApiKey")?;
        Ok(())
    }

    fn gmail(&self) -> GmailServiceClient<Channel> {
        GmailServiceClient::new(self.channel.clone())
    }

    fn request<T>(user: &MailUser, message: T) -> tonic::Request<T> {
        let mut request = authed(message, &user.token);
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// SyncMailbox as `user`, with its wall time.
    pub(crate) async fn sync(
        &self,
        user: &MailUser,
    ) -> anyhow::Result<(pb::SyncMailboxResponse, Duration)> {
        let started = Instant::now();
        let response = self
            .gmail()
            .sync_mailbox(Self::request(user, pb::SyncMailboxRequest::default()))
            .await
            .context("SyncMailbox")?
            .into_inner();
        Ok((response, started.elapsed()))
    }

    /// One ListMessages page for `query`, with its latency and the number of messages.
    pub(crate) async fn search(
        &self,
        user: &MailUser,
        query: &str,
    ) -> anyhow::Result<(Duration, usize)> {
        let started = Instant::now();
        let page = self
            .gmail()
            .list_messages(Self::request(
                user,
                pb::ListMessagesRequest {
                    query: query.into(),
                    page_size: 25,
                    ..Default::default()
                },
            ))
            .await
            .context("ListMessages")?
            .into_inner();
        Ok((started.elapsed(), page.messages.len()))
    }

    /// TriageInbox as `user` over at most `max_messages` of the newest INBOX messages of the
    /// last 7 days (unread ones only with `unread_only`), with its wall time.
    pub(crate) async fn triage(
        &self,
        user: &MailUser,
        max_messages: i32,
        unread_only: bool,
    ) -> anyhow::Result<(pb::TriageInboxResponse, Duration)> {
        let started = Instant::now();
        let response = self
            .gmail()
            .triage_inbox(Self::request(
                user,
                pb::TriageInboxRequest {
                    max_messages,
                    start_time: None,
                    unread_only,
                    refresh: false,
                },
            ))
            .await
            .context("TriageInbox")?
            .into_inner();
        Ok((response, started.elapsed()))
    }

    /// SummarizeThread as `user`, with its latency.
    pub(crate) async fn summarize_thread(
        &self,
        user: &MailUser,
        thread_id: &str,
        refresh: bool,
    ) -> anyhow::Result<(pb::SummarizeThreadResponse, Duration)> {
        let started = Instant::now();
        let response = self
            .gmail()
            .summarize_thread(Self::request(
                user,
                pb::SummarizeThreadRequest {
                    thread_id: thread_id.into(),
                    refresh,
                },
            ))
            .await
            .context("SummarizeThread")?
            .into_inner();
        Ok((response, started.elapsed()))
    }

    /// Stops the server (SIGTERM); it must exit cleanly.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        match self.process.stop(SHUTDOWN_TIMEOUT).await? {
            Stopped::Exited(status) => {
                ensure!(status.success(), "the server exited with {status}");
                Ok(())
            }
            Stopped::Killed => bail!("the server did not stop within {SHUTDOWN_TIMEOUT:?}"),
        }
    }
}

/// Adds generated messages `first..first + count` to `user`'s mailbox at the peer; their ids.
pub(crate) fn add_messages(
    peers: &Peers,
    user: &MailUser,
    first: usize,
    count: usize,
) -> Vec<String> {
    (first..first + count)
        .map(|index| {
            peers
                .gmail
                .add_message(&user.sub, NewMessage::new(crate::mail::generated(index)))
        })
        .collect()
}

/// The resident set size of process `pid`, from `/proc/<pid>/status`.
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("a malformed VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}
