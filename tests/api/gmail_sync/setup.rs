//! What the Gmail sync tests run on: a server (in the test process, or `assistd serve`
//! processes on its database) wired to the in-tree OpenID provider and the testkit Gmail
//! peer, users signed in with Gmail access through the real redirect flow, and helpers to
//! sync and read the synced copy over gRPC.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assistd::config::Config;
use assistd::proto::auth::v1 as authpb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd::proto::gmail::v1 as pb;
use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd_testkit::gmail::{GmailServer, NewMessage};
use assistd_testkit::oidc::{OidcProvider, TestUser};
use sea_orm::{ConnectionTrait as _, Statement};
use tonic::transport::Channel;

use crate::helpers::{TestApp, authed, spawn_app_with};
use crate::signin::authorize;

/// Longest wait for a server to listen, a sync to finish or a lease to lapse before the test
/// gives up (not a speed check: it keeps a broken server from hanging the suite).
pub(crate) const PATIENCE: Duration = Duration::from_secs(300);

/// Whether `TEST_LOG` is set: tests then print what they measured.
pub(crate) fn test_log() -> bool {
    std::env::var_os("TEST_LOG").is_some()
}

/// Whether the suite runs on PostgreSQL.
pub(crate) fn on_postgres() -> bool {
    std::env::var_os("ASSISTD_TEST_DATABASE_URL").is_some()
}

/// A server with the OpenID provider and the Gmail peer it talks to.
pub(crate) struct GmailWorld {
    pub(crate) app: TestApp,
    pub(crate) provider: Arc<OidcProvider>,
    pub(crate) gmail: Arc<GmailServer>,
}

/// A user signed in with Gmail access.
#[derive(Clone, Debug)]
pub(crate) struct MailUser {
    /// The Google subject: the peer keys the mailbox by it.
    pub(crate) sub: String,
    /// The address the user signed in with.
    pub(crate) email: String,
    /// assistd's user id.
    pub(crate) id: String,
    /// An assistd access token.
    pub(crate) token: String,
}

impl GmailWorld {
    /// A server with background sync off (tests sync through SyncMailbox) after `adjust`.
    pub(crate) async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let provider = Arc::new(OidcProvider::start().await);
        let gmail = Arc::new(GmailServer::start(&provider).await);
        let issuer = provider.issuer();
        let base_url = gmail.base_url();
        let app = spawn_app_with(move |config| {
            config.sign_in.issuer = issuer;
            config.sign_in.client_id = OidcProvider::CLIENT_ID.into();
            config.sign_in.client_secret = OidcProvider::CLIENT_SECRET.into();
            config.sign_in.allowed_redirect_uris = vec![OidcProvider::REDIRECT_URI.into()];
            config.sign_in.sign_in_per_ip_per_minute = 10_000;
            config.sign_in.sign_in_per_user_per_minute = 10_000;
            config.gmail.api_base_url = base_url;
            config.gmail.background_sync = false;
            config.gmail.max_full_sync_messages = 5_000;
            adjust(config);
        })
        .await;
        Self {
            app,
            provider,
            gmail,
        }
    }

    /// Signs `name` in through BeginLogin (with `request_gmail_access`), the provider's
    /// authorization endpoint and CompleteLogin, as a browser would.
    pub(crate) async fn sign_in(&self, name: &str) -> MailUser {
        sign_in(&self.app.address, &self.provider, name).await
    }

    /// A GmailService client over a connection of its own.
    pub(crate) async fn client(&self) -> GmailServiceClient<Channel> {
        GmailServiceClient::new(self.app.channel().await)
    }

    /// Adds `count` generated messages (serials `first..first + count`) to `user`'s mailbox,
    /// returning their Gmail ids.
    pub(crate) fn add_generated(&self, user: &MailUser, first: usize, count: usize) -> Vec<String> {
        (first..first + count)
            .map(|index| {
                let mail = crate::gmail_sync::mail::generated(index);
                let labels: Vec<&str> = mail.labels.iter().map(String::as_str).collect();
                self.gmail
                    .add_message(&user.sub, NewMessage::new(mail.raw).labels(&labels))
            })
            .collect()
    }

    /// The ids of the messages the peer holds for `user` outside SPAM and TRASH, sorted.
    pub(crate) fn peer_ids(&self, user: &MailUser) -> Vec<String> {
        let mut ids: Vec<String> = self
            .gmail
            .message_ids(&user.sub)
            .into_iter()
            .filter(|id| {
                self.gmail.labels(&user.sub, id).is_some_and(|labels| {
                    !labels
                        .iter()
                        .any(|label| label == "SPAM" || label == "TRASH")
                })
            })
            .collect();
        ids.sort();
        ids
    }
}

/// Signs `name` (`name@example.com`, subject `sub-name`) in with Gmail access on the server
/// at `address`.
pub(crate) async fn sign_in(address: &str, provider: &OidcProvider, name: &str) -> MailUser {
    let email = format!("{name}@example.com");
    let sub = format!("sub-{name}");
    provider.set_user(TestUser::new(sub.clone(), email.clone()));
    let channel = Channel::from_shared(address.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("connect to the server");
    let mut auth = AuthServiceClient::new(channel);
    let begun = auth
        .begin_login(authpb::BeginLoginRequest {
            redirect_uri: OidcProvider::REDIRECT_URI.into(),
            request_gmail_access: true,
            request_gmail_compose: false,
            login_hint: email.clone(),
        })
        .await
        .expect("BeginLogin")
        .into_inner();
    let (state, code) = authorize(&begun.authorization_url).await;
    let signed = auth
        .complete_login(authpb::CompleteLoginRequest {
            state,
            code,
            device_name: "gmail sync test".into(),
        })
        .await
        .expect("CompleteLogin")
        .into_inner();
    assert!(signed.gmail_access_granted, "Google granted Gmail access");
    MailUser {
        sub,
        email,
        id: signed.user.expect("the signed-in user").id,
        token: signed.tokens.expect("session tokens").access_token,
    }
}

/// SyncMailbox as `user`.
pub(crate) async fn sync(
    client: &mut GmailServiceClient<Channel>,
    user: &MailUser,
    full: bool,
) -> Result<pb::SyncMailboxResponse, tonic::Status> {
    client
        .sync_mailbox(authed(
            pb::SyncMailboxRequest { full_sync: full },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// GetConnection as `user`.
pub(crate) async fn connection(
    client: &mut GmailServiceClient<Channel>,
    user: &MailUser,
) -> pb::GmailConnection {
    client
        .get_connection(authed(pb::GetConnectionRequest {}, &user.token))
        .await
        .expect("GetConnection")
        .into_inner()
        .connection
        .expect("a connection")
}

/// Every message ListMessages returns for `query`, following `next_page_token` with pages of
/// `page_size`.
pub(crate) async fn list_all(
    client: &mut GmailServiceClient<Channel>,
    user: &MailUser,
    query: &str,
    page_size: i32,
) -> Vec<pb::MailMessage> {
    let mut messages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_messages(authed(
                pb::ListMessagesRequest {
                    query: query.into(),
                    page_size,
                    page_token,
                    ..Default::default()
                },
                &user.token,
            ))
            .await
            .expect("ListMessages")
            .into_inner();
        assert!(
            page.messages.len() <= usize::try_from(page_size).unwrap(),
            "a page holds at most page_size messages"
        );
        messages.extend(page.messages);
        if page.next_page_token.is_empty() {
            return messages;
        }
        page_token = page.next_page_token;
    }
}

/// The ids of `messages`, sorted, after asserting that none appears twice and that they come
/// newest first.
pub(crate) fn unique_ids(messages: &[pb::MailMessage]) -> Vec<String> {
    let mut seen = HashSet::new();
    for message in messages {
        assert!(
            seen.insert(message.id.clone()),
            "message {} listed twice",
            message.id
        );
    }
    let times: Vec<_> = messages
        .iter()
        .map(|m| {
            let time = m.receive_time.expect("receive_time");
            (time.seconds, time.nanos)
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "listed newest first"
    );
    let mut ids: Vec<String> = seen.into_iter().collect();
    ids.sort();
    ids
}

/// One number from `sql` (a `COUNT(*)` or the like, with one `?` for `user`'s id).
pub(crate) async fn count(store: &assistd_store::Store, sql: &str, user: &str) -> i64 {
    let db = store.connection();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => sql.replace('?', "$1"),
        _ => sql.to_owned(),
    };
    let user = uuid::Uuid::parse_str(user).expect("a user id is a UUID");
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [user.into()]))
        .await
        .expect("the count query runs")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// An `assistd serve` process on the database and data directory of `config`, with the
/// provider and the Gmail peer of a [`GmailWorld`].
pub(crate) struct ServeProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) address: String,
}

impl ServeProcess {
    /// Starts `assistd serve` through the admin tests' runner on a free port, with `envs`
    /// added, its stderr written to `stderr` (or dropped), and waits until it listens.
    pub(crate) async fn start(
        world: &GmailWorld,
        envs: &[(&str, &str)],
        stderr: Option<&Path>,
    ) -> Self {
        let config = &world.app.config;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = crate::admin::assistd(config);
        command
            .arg("serve")
            .env("ASSISTD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("ASSISTD_SERVER__SHUTDOWN_GRACE", "1s")
            .env("ASSISTD_GEMINI__BASE_URL", world.app.gemini.base_url())
            .env("ASSISTD_SIGN_IN__ISSUER", world.provider.issuer())
            .env("ASSISTD_SIGN_IN__CLIENT_ID", OidcProvider::CLIENT_ID)
            .env(
                "ASSISTD_SIGN_IN__CLIENT_SECRET",
                OidcProvider::CLIENT_SECRET,
            )
            .env("ASSISTD_GMAIL__API_BASE_URL", world.gmail.base_url())
            .env("ASSISTD_GMAIL__BACKGROUND_SYNC", "false")
            .env("ASSISTD_GMAIL__MAX_FULL_SYNC_MESSAGES", "5000")
            .envs(envs.iter().copied())
            .stdout(Stdio::null());
        // The runner clears every ASSISTD_ variable: a suite run with KMS wrapping the data
        // keys (ASSISTD_TEST_KEK=kms) must hand the process the same key.
        let kek = &config.keys.kek;
        if kek.provider == assistd::config::KekProvider::Kms {
            command
                .env("ASSISTD_KEYS__KEK__PROVIDER", "kms")
                .env("ASSISTD_KEYS__KEK__KMS_KEY_ID", &kek.kms_key_id)
                .env("ASSISTD_KEYS__KEK__KMS_REGION", &kek.kms_region)
                .env("ASSISTD_KEYS__KEK__KMS_ENDPOINT", &kek.kms_endpoint);
        }
        match stderr {
            Some(path) => {
                command.stderr(std::fs::File::create(path).expect("the server's log file"));
            }
            None if test_log() => {
                command.env("RUST_LOG", "info");
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("assistd serve starts");
        let process = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + PATIENCE;
        while Channel::from_shared(process.address.clone())
            .unwrap()
            .connect()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "assistd serve did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    /// A GmailService client over a connection of its own.
    pub(crate) async fn client(&self) -> GmailServiceClient<Channel> {
        let channel = Channel::from_shared(self.address.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect to the server process");
        GmailServiceClient::new(channel)
    }

    /// Sends the process `signal` (`TERM`, `KILL`) and waits for it to exit.
    pub(crate) async fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the server is running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server exits")
            .unwrap()
    }
}

/// The files of the SQLite database under `data_dir` (the database, its -wal and -shm).
pub(crate) fn database_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![data_dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the data directory") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Waits until `condition` holds, checking every 50 ms for at most [`PATIENCE`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
