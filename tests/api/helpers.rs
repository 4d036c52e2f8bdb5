//! The test harness: a real server on 127.0.0.1:0 with a fresh database per test — an SQLite
//! file in a temporary directory by default, or a new PostgreSQL database when
//! `ASSISTD_TEST_DATABASE_URL` points at a server. Logs are printed only when `TEST_LOG` is
//! set.

use std::path::PathBuf;
use std::sync::LazyLock;

use assistd::config::Config;
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd::server::Application;
use assistd_domain::UserId;
use assistd_identity::AccessTokens;
use assistd_store::{NewUser, Store};
use assistd_testkit::GeminiServer;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sea_orm::ConnectionTrait;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_web::{GrpcWebClientLayer, GrpcWebClientService};

/// The call log's lines are always captured (see `call_log`); everything else is printed at
/// debug level when `TEST_LOG` is set.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let print = std::env::var_os("TEST_LOG").is_some().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::new("debug"))
    });
    let _ = tracing_subscriber::registry()
        .with(crate::call_log::CapturedCalls::layer())
        .with(print)
        .try_init();
});

/// The `ErrorInfo.reason` a status carries in its google.rpc details, or `""` without one.
pub(crate) fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// A grpc-web client transport: HTTP/1.1 through tonic-web's client layer.
pub(crate) type GrpcWebTransport =
    GrpcWebClientService<HyperClient<HttpConnector, tonic_web::GrpcWebCall<tonic::body::Body>>>;

/// A running server and what a test needs to talk to it.
pub(crate) struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub(crate) address: String,
    /// The server's store, for inspecting rows directly.
    pub(crate) store: Store,
    /// The server's token issuer.
    pub(crate) tokens: AccessTokens,
    /// The configuration the server was built from (reused by [`TestApp::restart`]).
    pub(crate) config: Config,
    /// Keeps the data directory alive for the test's duration.
    pub(crate) data_dir: PathBuf,
    /// The Gemini API peer this server talks to.
    pub(crate) gemini: std::sync::Arc<GeminiServer>,
    /// The server's API key vault.
    pub(crate) vault: assistd_core::ApiKeyVault,
    /// The server's secret sealer.
    pub(crate) sealer: assistd_core::SecretSealer,
    /// The server's audit log.
    pub(crate) audit: assistd_store::audit::AuditLog,
    /// The server's sign-in service.
    pub(crate) auth: assistd_core::auth::AuthService,
    /// `http://ADDRESS/metrics` when the server was started with a metrics listener.
    pub(crate) metrics_url: Option<String>,
    _data_dir_guard: std::sync::Arc<TempDir>,
    shutdown: tokio_util::sync::CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A fresh database URL: a new PostgreSQL database when `ASSISTD_TEST_DATABASE_URL` is set,
/// else empty (SQLite in the data directory).
pub(crate) async fn fresh_database_url() -> String {
    let Ok(admin_url) = std::env::var("ASSISTD_TEST_DATABASE_URL") else {
        return String::new();
    };
    let name = format!("assistd_test_{}", uuid::Uuid::now_v7().simple());
    let admin = sea_orm::Database::connect(&admin_url)
        .await
        .expect("connect to ASSISTD_TEST_DATABASE_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (base, _db) = admin_url
        .rsplit_once('/')
        .expect("ASSISTD_TEST_DATABASE_URL must end with /DATABASE");
    format!("{base}/{name}")
}

/// With `ASSISTD_TEST_KEK=kms` every test server wraps data keys with a fresh key in moto's
/// KMS (started once per test binary, or `ASSISTD_TEST_KMS_ENDPOINT`). The server finds its
/// credentials through the standard AWS chain, so the `AWS_*` variables must be set (as
/// `.ci/run` does).
pub(crate) async fn kms_kek() -> assistd::config::KekConfig {
    assert!(
        std::env::var_os("AWS_ACCESS_KEY_ID").is_some(),
        "ASSISTD_TEST_KEK=kms needs AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true"
    );
    let moto = assistd_testkit::kms::MotoKms::shared().await;
    assistd::config::KekConfig {
        provider: assistd::config::KekProvider::Kms,
        kms_key_id: moto.create_key().await,
        kms_region: assistd_testkit::kms::REGION.to_owned(),
        kms_endpoint: moto.endpoint().to_owned(),
        ..assistd::config::KekConfig::default()
    }
}

/// Starts a server with the default test configuration.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `adjust` has changed the test configuration.
pub(crate) async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    LazyLock::force(&TRACING);
    let dir = TempDir::new().expect("temporary data directory");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database.url = fresh_database_url().await;
    config.server.shutdown_grace = std::time::Duration::from_secs(5);
    if std::env::var("ASSISTD_TEST_KEK").as_deref() == Ok("kms") {
        config.keys.kek = kms_kek().await;
    }
    let gemini = std::sync::Arc::new(GeminiServer::start().await);
    config.gemini.base_url = gemini.base_url();
    config.gemini.request_timeout = std::time::Duration::from_secs(2);
    // Titles are generated in the background with a model call of their own, which would
    // take replies scripted for the next send; the title test turns it on.
    config.chat.generate_titles = false;
    config.chat.retry_backoff = std::time::Duration::from_millis(10);
    adjust(&mut config);
    start(config, std::sync::Arc::new(dir), gemini).await
}

async fn start(
    config: Config,
    dir: std::sync::Arc<TempDir>,
    gemini: std::sync::Arc<GeminiServer>,
) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .expect("the server starts");
    let address = format!("http://{}", app.local_addr());
    let store = app.store().clone();
    let tokens = app.tokens().clone();
    let vault = app.vault().clone();
    let sealer = app.sealer().clone();
    let audit = app.audit().clone();
    let auth = app.auth().clone();
    let metrics_url = app
        .metrics_addr()
        .map(|address| format!("http://{address}/metrics"));
    let shutdown = app.shutdown();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        store,
        tokens,
        data_dir: config.data_dir.clone(),
        gemini,
        vault,
        sealer,
        audit,
        auth,
        metrics_url,
        config,
        _data_dir_guard: dir,
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    /// Creates a user account directly in the store.
    pub(crate) async fn create_user(&self) -> UserId {
        self.store
            .users()
            .create(NewUser {
                display_name: Some("Test User".into()),
                email: None,
            })
            .await
            .expect("create user")
            .id
    }

    /// A valid access token for `user`.
    pub(crate) fn token_for(&self, user: UserId) -> String {
        self.tokens.issue(user).token
    }

    /// A new native gRPC (HTTP/2) connection.
    pub(crate) async fn channel(&self) -> Channel {
        connect(&self.address).await
    }

    /// A PreferencesService client over its own native gRPC connection.
    pub(crate) async fn preferences(&self) -> PreferencesServiceClient<Channel> {
        PreferencesServiceClient::new(self.channel().await)
    }

    /// A grpc-web (HTTP/1.1) transport to the server.
    pub(crate) fn grpc_web(&self) -> GrpcWebTransport {
        let client = HyperClient::builder(TokioExecutor::new()).build_http();
        tower::ServiceBuilder::new()
            .layer(GrpcWebClientLayer::new())
            .service(client)
    }

    /// A PreferencesService client speaking grpc-web.
    pub(crate) fn preferences_web(&self) -> PreferencesServiceClient<GrpcWebTransport> {
        PreferencesServiceClient::with_origin(self.grpc_web(), self.address.parse().unwrap())
    }

    /// Another server sharing this one's database and keys, as a second replica would.
    pub(crate) async fn replica(&self) -> TestApp {
        let mut config = self.config.clone();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        start(config, self._data_dir_guard.clone(), self.gemini.clone()).await
    }

    /// Stops the server gracefully and waits for it.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Stops the server and starts a new one on the same data directory and database.
    pub(crate) async fn restart(mut self) -> TestApp {
        self.stop().await.expect("graceful stop");
        let mut config = self.config.clone();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        start(config, self._data_dir_guard.clone(), self.gemini.clone()).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A new native gRPC (HTTP/2) connection to the server at `address` (`http://HOST:PORT`).
pub(crate) async fn connect(address: &str) -> Channel {
    Channel::from_shared(address.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("connect over HTTP/2")
}

/// `message` with `authorization: Bearer <token>` metadata.
pub(crate) fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII token"),
    );
    request
}

/// A server signing in against the in-tree OpenID provider, with Gmail pointed at the
/// testkit's Gmail API peer (which accepts that provider's access tokens) and the
/// provider's revocation endpoint in its discovery document.
pub(crate) struct GmailTestApp {
    /// The server.
    pub(crate) app: TestApp,
    /// The OpenID provider (Google's sign-in).
    pub(crate) provider: std::sync::Arc<assistd_testkit::oidc::OidcProvider>,
    /// The Gmail API peer.
    pub(crate) gmail: std::sync::Arc<assistd_testkit::GmailServer>,
}

/// A user signed in with Gmail access.
#[derive(Clone, Debug)]
pub(crate) struct GmailUser {
    /// The account.
    pub(crate) id: UserId,
    /// An access token of the session.
    pub(crate) token: String,
    /// The Google `sub`, which names the user's mailbox at the Gmail peer.
    pub(crate) sub: String,
    /// The Google account's address.
    pub(crate) email: String,
}

/// Starts a server for Gmail tests: background sync off (tests sync with SyncMailbox) unless
/// `adjust` turns it on, a short lease, fast retries.
pub(crate) async fn spawn_gmail_app_with(
    adjust: impl FnOnce(&mut Config) + Send + 'static,
) -> GmailTestApp {
    spawn_google_app_with(move |config| {
        config.gmail.request_timeout = std::time::Duration::from_secs(5);
        config.gmail.max_retries = 1;
        config.gmail.max_rate_limit_wait = std::time::Duration::from_secs(2);
        config.gmail.sync_lease = std::time::Duration::from_secs(6);
        adjust(config);
    })
    .await
}

/// Starts the OpenID provider, the Gmail API peer that accepts its tokens, and a server that
/// signs in against the one and reads mail from the other, with background sync off and
/// sign-in rate limits out of the way, after `adjust`.
pub(crate) async fn spawn_google_app_with(adjust: impl FnOnce(&mut Config)) -> GmailTestApp {
    use assistd_testkit::oidc::OidcProvider;
    let provider = std::sync::Arc::new(OidcProvider::start().await);
    let gmail = std::sync::Arc::new(assistd_testkit::GmailServer::start(&provider).await);
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
        adjust(config);
    })
    .await;
    GmailTestApp {
        app,
        provider,
        gmail,
    }
}

/// [`spawn_gmail_app_with`] without changes.
pub(crate) async fn spawn_gmail_app() -> GmailTestApp {
    spawn_gmail_app_with(|_| {}).await
}

impl GmailTestApp {
    /// A GmailService client over its own native gRPC connection.
    pub(crate) async fn gmail_client(
        &self,
    ) -> assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient<Channel> {
        assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient::new(
            self.app.channel().await,
        )
    }

    /// Signs `sub` in through the redirect flow (as a browser would), asking for Gmail access
    /// when `gmail_access` is set, and returns the user and a session access token. The
    /// mailbox at the peer is named by `sub`.
    pub(crate) async fn sign_in(&self, sub: &str, gmail_access: bool) -> GmailUser {
        let email = format!("{sub}@example.com");
        let signed = sign_in_through_google(
            self.app.channel().await,
            &self.provider,
            assistd_testkit::oidc::TestUser::new(sub, email.clone()),
            "",
            gmail_access,
            "laptop",
        )
        .await;
        assert_eq!(signed.gmail_access_granted, gmail_access);
        GmailUser {
            id: signed.user.expect("user").id.parse().expect("user id"),
            token: signed.tokens.expect("tokens").access_token,
            sub: sub.to_owned(),
            email,
        }
    }

    /// Signs `sub` in with Gmail access.
    pub(crate) async fn sign_in_with_gmail(&self, sub: &str) -> GmailUser {
        self.sign_in(sub, true).await
    }
}

/// Signs `user` in at the server behind `channel` through BeginLogin (with `login_hint`, and
/// asking for Gmail access when `gmail_access` is set), the provider's authorization endpoint
/// and CompleteLogin as `device_name`, as a browser would.
pub(crate) async fn sign_in_through_google(
    channel: Channel,
    provider: &assistd_testkit::oidc::OidcProvider,
    user: assistd_testkit::oidc::TestUser,
    login_hint: &str,
    gmail_access: bool,
    device_name: &str,
) -> assistd::proto::auth::v1::CompleteLoginResponse {
    use assistd::proto::auth::v1 as auth;
    provider.set_user(user);
    let mut client = auth::auth_service_client::AuthServiceClient::new(channel);
    let begun = client
        .begin_login(auth::BeginLoginRequest {
            redirect_uri: assistd_testkit::oidc::OidcProvider::REDIRECT_URI.into(),
            request_gmail_access: gmail_access,
            request_gmail_compose: false,
            login_hint: login_hint.to_owned(),
        })
        .await
        .expect("BeginLogin")
        .into_inner();
    let (state, code) = crate::signin::authorize(&begun.authorization_url).await;
    client
        .complete_login(auth::CompleteLoginRequest {
            state,
            code,
            device_name: device_name.to_owned(),
        })
        .await
        .expect("CompleteLogin")
        .into_inner()
}
