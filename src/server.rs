//! Assembling and running the server: one TCP port for native gRPC (HTTP/2), grpc-web
//! (HTTP/1.1, binary and text), server reflection (v1 and v1alpha) and grpc.health.v1.
//!
//! Layers, outermost first: CORS (only for configured origins, with `Timing-Allow-Origin`) → grpc-web translation →
//! request id → call log (and metrics) → authentication → the caller, for the call log →
//! planned-service answers → routes. Metrics, when configured, have a listener of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use assistd_core::auth::AuthService;
use assistd_core::chat::{ChatService, MailTools, ToolRegistry};
use assistd_core::gmail::GmailService;
use assistd_core::{ApiKeyVault, PreferencesService, SecretSealer};
use assistd_crypto::{
    CachePolicy, DataKeyCache, KeyEncryptionKey, Keyring, KmsKek, KmsSettings, LocalKek,
};
use assistd_domain::SystemClock;
use assistd_identity::{AccessTokenSettings, AccessTokens, DerivedSecrets, SigningKey};
use assistd_store::Store;
use assistd_store::audit::{AuditChainKey, AuditLog};
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::bearer::BearerLayer;
use crate::config::{Config, KekConfig, KekProvider};
use crate::metrics::{MeteredKek, Metrics, UpstreamMetrics};
use crate::proto::apikey::v1::user_api_key_service_server::UserApiKeyServiceServer;
use crate::proto::auth::v1::auth_service_server::AuthServiceServer;
use crate::proto::chat::v1::chat_service_server::ChatServiceServer;
use crate::proto::gmail::v1::gmail_service_server::GmailServiceServer;
use crate::proto::preferences::v1::preferences_service_server::PreferencesServiceServer;
use crate::request_context::ClientAddressPolicy;
use crate::services::apikey::ApiKeyApi;
use crate::services::auth::AuthApi;
use crate::services::chat::ChatApi;
use crate::services::gmail::GmailApi;
use crate::services::planned::PlannedLayer;
use crate::services::preferences::PreferencesApi;
use crate::telemetry::{CallLogLayer, CallerLayer};

/// Services that are implemented; their health follows the database.
const SERVED_SERVICES: [&str; 5] = [
    "assistd.preferences.v1.PreferencesService",
    "assistd.apikey.v1.UserApiKeyService",
    "assistd.chat.v1.ChatService",
    "assistd.auth.v1.AuthService",
    "assistd.gmail.v1.GmailService",
];

/// How often the health service re-checks the database.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a stopping server waits, after the grace, for the exchanges it stopped to store
/// their partial replies and for their calls to be answered, before it closes the store.
const STOP_EXCHANGES_WITHIN: Duration = Duration::from_secs(5);

/// A server bound to its port, ready to run.
pub struct Application {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    grace: Duration,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    store: Store,
    tokens: AccessTokens,
    vault: ApiKeyVault,
    sealer: SecretSealer,
    audit: AuditLog,
    auth: AuthService,
    chat: ChatService,
    gmail: GmailService,
    background_sync: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Creates the data directory with mode 0700 if it is missing.
fn create_data_dir(config: &Config) -> anyhow::Result<()> {
    assistd_domain::secret_file::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))
}

/// Opens the database configured in `config` (creating the data directory first).
///
/// # Errors
/// The data directory cannot be created or the database cannot be reached.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    create_data_dir(config)?;
    Store::connect(&config.database_settings())
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                assistd_store::redact_url_password(&config.database_url())
            )
        })
}

/// The access-token signing keys: the current one (generated on first start) and the
/// previous ones that still verify.
fn signing_keys(config: &Config) -> anyhow::Result<(SigningKey, Vec<SigningKey>)> {
    create_data_dir(config)?;
    let current = SigningKey::load_or_generate(&config.signing_key_file())?;
    let previous = config
        .auth
        .previous_signing_key_files
        .iter()
        .map(|path| SigningKey::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((current, previous))
}

/// Loads (or on first start generates) the access-token keys configured in `config`.
///
/// # Errors
/// A key file is unreadable or malformed.
pub fn access_tokens(config: &Config) -> anyhow::Result<AccessTokens> {
    let (current, previous) = signing_keys(config)?;
    Ok(access_tokens_with(config, current, previous))
}

fn access_tokens_with(
    config: &Config,
    current: SigningKey,
    previous: Vec<SigningKey>,
) -> AccessTokens {
    AccessTokens::new(
        AccessTokenSettings {
            issuer: config.auth.issuer.clone(),
            audience: config.auth.audience.clone(),
            ttl: config.auth.access_token_ttl,
        },
        current,
        previous,
        Arc::new(SystemClock),
    )
}

/// The key-encryption key `kek` describes; a KMS key's calls are counted in `upstream`.
async fn key_encryption_key(
    config: &Config,
    kek: &KekConfig,
    upstream: Option<&Arc<UpstreamMetrics>>,
) -> anyhow::Result<Arc<dyn KeyEncryptionKey>> {
    Ok(match kek.provider {
        KekProvider::Local if !kek.master_key.is_empty() => {
            Arc::new(LocalKek::from_base64(&kek.master_key).context("keys: master_key")?)
        }
        KekProvider::Local => {
            let path = config.master_key_file(kek);
            Arc::new(
                LocalKek::load_or_generate(&path)
                    .with_context(|| format!("keys: master key file {}", path.display()))?,
            )
        }
        KekProvider::Kms => {
            let mut settings = KmsSettings::new(kek.kms_key_id.clone());
            settings.region = Some(kek.kms_region.clone()).filter(|r| !r.is_empty());
            settings.endpoint_url = Some(kek.kms_endpoint.clone()).filter(|e| !e.is_empty());
            let kms: Arc<dyn KeyEncryptionKey> = Arc::new(KmsKek::connect(settings).await);
            match upstream {
                Some(upstream) => Arc::new(MeteredKek::new(kms, Arc::clone(upstream), "kms")),
                None => kms,
            }
        }
    })
}

/// The keyring configured in `config`: the current KEK and every previous one.
///
/// # Errors
/// A key file is unreadable or a key malformed.
pub async fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    keyring_with(config, None).await
}

async fn keyring_with(
    config: &Config,
    upstream: Option<&Arc<UpstreamMetrics>>,
) -> anyhow::Result<Keyring> {
    create_data_dir(config)?;
    let mut keyring = Keyring::new(key_encryption_key(config, &config.keys.kek, upstream).await?);
    for previous in &config.keys.previous {
        keyring = keyring.with_previous(key_encryption_key(config, previous, upstream).await?);
    }
    Ok(keyring)
}

/// The audit log of `store`, keyed with the configured chain key.
///
/// # Errors
/// The chain key file is unreadable or malformed.
pub fn audit_log(config: &Config, store: &Store) -> anyhow::Result<AuditLog> {
    create_data_dir(config)?;
    let key = AuditChainKey::load_or_generate(&config.audit_chain_key_file())?;
    Ok(AuditLog::new(store, key))
}

/// The secret sealer: keyring, data key cache and store.
///
/// # Errors
/// The keyring cannot be built.
pub async fn secret_sealer(config: &Config, store: &Store) -> anyhow::Result<SecretSealer> {
    secret_sealer_with(config, store, None).await
}

async fn secret_sealer_with(
    config: &Config,
    store: &Store,
    upstream: Option<&Arc<UpstreamMetrics>>,
) -> anyhow::Result<SecretSealer> {
    let keyring = Arc::new(keyring_with(config, upstream).await?);
    let cache = Arc::new(DataKeyCache::new(
        keyring.clone(),
        CachePolicy {
            max_age: config.keys.cache_max_age,
            max_uses: config.keys.cache_max_uses,
        },
    ));
    Ok(SecretSealer::new(store, keyring, cache))
}

fn cors_layer(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).with_context(|| format!("CORS origin {origin:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let header = HeaderName::from_static;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("x-request-id"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("x-request-id"),
        ])
        .max_age(Duration::from_secs(24 * 60 * 60)))
}

/// Lets an allowed origin read the timing details of its calls (`Timing-Allow-Origin`), so a
/// browser's resource timing shows, e.g., the protocol a call went over (`nextHopProtocol`,
/// which Chromium blanks for cross-origin calls otherwise). Runs outside the CORS layer and
/// names exactly the origin that layer allowed, so other origins learn nothing more.
fn timing_allow_origin<B>(mut response: http::Response<B>) -> http::Response<B> {
    if let Some(origin) = response
        .headers()
        .get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .cloned()
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("timing-allow-origin"), origin);
    }
    response
}

impl Application {
    /// Connects to the database, applies migrations (unless disabled), loads keys, binds the
    /// listener and starts serving. The server runs until [`Application::shutdown`] fires.
    ///
    /// # Errors
    /// Any step of the start-up failed; the message names which.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        if config.database.migrate_on_start {
            store
                .migrate()
                .await
                .context("applying database migrations")?;
        }
        let (current_key, previous_keys) = signing_keys(&config)?;
        // Sign-in secrets are derived from the same keys the access tokens are signed with.
        let secrets = DerivedSecrets::new(&current_key, &previous_keys);
        let tokens = access_tokens_with(&config, current_key, previous_keys);
        let shutdown = CancellationToken::new();

        let preferences = PreferencesService::new(&store);
        preferences
            .follow_other_replicas(&store, shutdown.child_token())
            .await
            .context("listening for preferences changes of other replicas")?;

        let mut metrics = match config.server.metrics_listen {
            Some(_) => Some(Metrics::new(&[
                crate::proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ])?),
            None => None,
        };
        let upstream = metrics
            .as_ref()
            .map(|metrics| Arc::clone(&metrics.upstream));
        let sealer = secret_sealer_with(&config, &store, upstream.as_ref()).await?;
        let audit = audit_log(&config, &store)?;
        let mut gemini =
            assistd_gemini::GeminiClient::new(&config.gemini).context("gemini settings")?;
        if let Some(upstream) = upstream {
            gemini = gemini.with_observer(Arc::new(move |operation, outcome, elapsed| {
                upstream.record("gemini", operation, outcome, elapsed);
            }));
        }
        if let Some(metrics) = metrics.as_mut() {
            metrics.read_at_scrape(store.clone(), Arc::clone(sealer.cache()), audit.clone());
        }
        let metrics = metrics.map(Arc::new);
        let vault = ApiKeyVault::new(
            &store,
            sealer.clone(),
            audit.clone(),
            gemini.clone(),
            Arc::new(SystemClock),
        );
        let addresses = ClientAddressPolicy::new(config.server.trusted_proxies.clone());
        let auth = AuthService::new(
            store.clone(),
            audit.clone(),
            sealer.clone(),
            tokens.clone(),
            secrets,
            Arc::new(SystemClock),
            config.sign_in.clone(),
        )
        .map_err(|message| anyhow::anyhow!("sign_in: {message}"))?;
        if let Some(metrics) = &metrics {
            let upstream = Arc::clone(&metrics.upstream);
            auth.observe_provider_calls(Arc::new(move |operation, outcome, elapsed| {
                upstream.record("google", operation, outcome, elapsed);
            }));
        }

        let gmail = GmailService::new(
            store.clone(),
            sealer.clone(),
            auth.clone(),
            config.gmail.clone(),
            Arc::new(SystemClock),
            shutdown.child_token(),
        )
        .map_err(|message| anyhow::anyhow!("gmail: {message}"))?;
        // The chat offers the mail tools while a user's Gmail is connected.
        let chat = ChatService::new(
            &store,
            vault.clone(),
            preferences.clone(),
            gemini,
            audit.clone(),
            config.chat.clone(),
            ToolRegistry::standard().with_provider(MailTools::new(gmail.clone())),
            Arc::new(SystemClock),
        );
        let background_sync = config
            .gmail
            .background_sync
            .then(|| gmail.start_background_sync(shutdown.child_token()));

        let (health, health_service) = tonic_health::server::health_reporter();
        start_health_probe(health, store.clone(), shutdown.child_token()).await;

        // Each reflection version also describes the other, so both list the same services.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let server_config = &config.server;
        let preferences_server =
            PreferencesServiceServer::new(PreferencesApi::new(preferences, shutdown.child_token()))
                .max_decoding_message_size(server_config.max_decoding_message_size)
                .max_encoding_message_size(server_config.max_encoding_message_size);

        let chat_feed = assistd_store::chat_feed::ChatFeed::start(
            &store,
            shutdown.child_token().cancelled_owned(),
        )
        .await
        .context("starting the chat feed")?;
        let chat_server = ChatServiceServer::new(
            ChatApi::new(chat.clone(), addresses.clone())
                .with_watch(chat_feed, shutdown.child_token()),
        )
        .max_decoding_message_size(server_config.max_decoding_message_size)
        .max_encoding_message_size(server_config.max_encoding_message_size);

        let auth_server = AuthServiceServer::new(
            AuthApi::new(auth.clone(), addresses.clone())
                .with_metrics(metrics.as_ref().map(|metrics| Arc::clone(&metrics.sign_in))),
        )
        .max_decoding_message_size(server_config.max_decoding_message_size)
        .max_encoding_message_size(server_config.max_encoding_message_size);

        let api_key_server = UserApiKeyServiceServer::new(ApiKeyApi::new(
            vault.clone(),
            chat.clone(),
            assistd_core::AuditTrail::new(audit.clone()),
            addresses.clone(),
        ))
        .max_decoding_message_size(server_config.max_decoding_message_size)
        .max_encoding_message_size(server_config.max_encoding_message_size);

        let gmail_server = GmailServiceServer::new(GmailApi::new(gmail.clone(), addresses.clone()))
            .max_decoding_message_size(server_config.max_decoding_message_size)
            .max_encoding_message_size(server_config.max_encoding_message_size);

        let layers = tower::ServiceBuilder::new()
            .map_response(timing_allow_origin)
            .layer(cors_layer(&server_config.cors_allowed_origins)?)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(CallLogLayer::new(
                metrics.as_ref().map(|metrics| Arc::clone(&metrics.rpc)),
            ))
            .layer(BearerLayer::new(
                tokens.clone(),
                auth.session_gate(),
                assistd_core::ServiceAccounts::new(
                    store.clone(),
                    audit.clone(),
                    Arc::new(SystemClock),
                    config.auth.audience.clone(),
                ),
                addresses.clone(),
            ))
            .layer(CallerLayer)
            .layer(PlannedLayer)
            .into_inner();

        let router = Server::builder()
            .accept_http1(true)
            .timeout(server_config.request_timeout)
            .max_concurrent_streams(server_config.max_concurrent_streams)
            .http2_keepalive_interval(Some(server_config.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(server_config.http2_keepalive_timeout))
            .tcp_nodelay(true)
            .layer(layers)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(preferences_server)
            .add_service(api_key_server)
            .add_service(chat_server)
            .add_service(gmail_server)
            .add_service(auth_server);

        let tls = match server_config.tls.files() {
            Some((cert_file, key_file)) => Some(Arc::new(
                crate::tls::TlsCertificates::load(cert_file, key_file)
                    .context("loading the TLS certificate")?,
            )),
            None => None,
        };
        let listener = TcpListener::bind(server_config.listen)
            .await
            .with_context(|| format!("binding {}", server_config.listen))?;
        let local_addr = listener.local_addr()?;
        let metrics_addr = match (server_config.metrics_listen, metrics) {
            (Some(address), Some(metrics)) => {
                let listener = crate::metrics::bind(address).await?;
                let metrics_addr = listener.local_addr()?;
                crate::metrics::serve(listener, metrics, shutdown.child_token());
                tracing::info!(%metrics_addr, "serving metrics at /metrics");
                Some(metrics_addr)
            }
            _ => None,
        };
        let stop = shutdown.clone();
        let server = match &tls {
            Some(certificates) => {
                let acceptor = certificates.acceptor()?;
                crate::tls::reload_on_sighup(Arc::clone(certificates), shutdown.child_token())?;
                let incoming = crate::tls::incoming(listener, acceptor, shutdown.child_token());
                tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                })
            }
            None => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                })
            }
        };
        tracing::info!(%local_addr, tls = tls.is_some(), database = ?store.backend(), "assistd is serving gRPC and grpc-web");
        Ok(Self {
            local_addr,
            metrics_addr,
            shutdown,
            grace: server_config.shutdown_grace,
            server,
            store,
            tokens,
            vault,
            sealer,
            audit,
            auth,
            chat,
            gmail,
            background_sync,
        })
    }

    /// The Gmail service.
    #[must_use]
    pub fn gmail(&self) -> &GmailService {
        &self.gmail
    }

    /// The address the server listens on (with the real port when port 0 was configured).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics listener, when `server.metrics_listen` is set (with the
    /// real port when port 0 was configured).
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The token that stops the server when cancelled.
    #[must_use]
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The store the server uses (tests inspect rows through it).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The API key vault (tests reveal keys through it, as chat will).
    #[must_use]
    pub fn vault(&self) -> &ApiKeyVault {
        &self.vault
    }

    /// The secret sealer (tests inspect its data key cache).
    #[must_use]
    pub fn sealer(&self) -> &SecretSealer {
        &self.sealer
    }

    /// The audit log.
    #[must_use]
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The sign-in service (the Gmail work gets Google access tokens through it).
    #[must_use]
    pub fn auth(&self) -> &AuthService {
        &self.auth
    }

    /// The access-token issuer the server verifies against.
    #[must_use]
    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    /// Runs until shutdown is requested, then stops gracefully: no new connection or call is
    /// accepted, and in-flight calls get up to the configured grace period to finish. Chat
    /// sends still running after it are stopped: each stores what was written of its reply
    /// (CANCELLED), releases its lease, and its client gets what was streamed so far and then
    /// UNAVAILABLE `SERVER_SHUTTING_DOWN` with a RetryInfo. The server waits up to
    /// five seconds for that, then closes the store.
    ///
    /// # Errors
    /// The server failed, or calls were still running five seconds after their exchanges
    /// were stopped (e.g. the database hung while their replies were stored).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            shutdown,
            grace,
            mut server,
            store,
            chat,
            background_sync,
            ..
        } = self;
        let result = tokio::select! {
            joined = &mut server => Some(joined),
            () = shutdown.cancelled() => None,
        };
        // When the exchanges stopped after the grace must have stored their ends.
        let mut stop_by = None;
        let joined = match result {
            Some(joined) => joined,
            None => {
                tracing::info!(grace = ?grace, "shutting down: finishing in-flight calls");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(
                            grace = ?grace,
                            running_exchanges = chat.running_exchanges(),
                            "calls outlived the grace period: stopping the running chat \
                             exchanges (their partial replies are stored, their clients told \
                             to resend)"
                        );
                        chat.stop_exchanges();
                        let deadline = tokio::time::Instant::now() + STOP_EXCHANGES_WITHIN;
                        stop_by = Some(deadline);
                        if let Ok(joined) = tokio::time::timeout_at(deadline, &mut server).await {
                            joined
                        } else {
                            server.abort();
                            let running = chat.running_exchanges();
                            store.close().await;
                            anyhow::bail!(
                                "calls were still running {STOP_EXCHANGES_WITHIN:?} after the \
                                 grace period of {grace:?} ({running} chat exchanges not \
                                 finished); stopped anyway"
                            );
                        }
                    }
                }
            }
        };
        shutdown.cancel();
        // Every call is answered, but an exchange whose client went away may still be storing
        // its CANCELLED reply: let it finish before the store closes.
        chat.stop_exchanges();
        let stop_by =
            stop_by.unwrap_or_else(|| tokio::time::Instant::now() + STOP_EXCHANGES_WITHIN);
        if tokio::time::timeout_at(stop_by, chat.exchanges_finished())
            .await
            .is_err()
        {
            tracing::warn!(
                running_exchanges = chat.running_exchanges(),
                "chat exchanges did not finish storing within {STOP_EXCHANGES_WITHIN:?}; \
                 closing the store anyway (their sends are resumable once their leases lapse)"
            );
        }
        // The background sync stops its syncs between two messages; their leases are
        // released, or lapse, before another server takes the mailboxes over.
        if let Some(background_sync) = background_sync
            && tokio::time::timeout_at(stop_by, background_sync)
                .await
                .is_err()
        {
            tracing::warn!(
                "the background Gmail sync did not stop in time; closing the store anyway"
            );
        }
        store.close().await;
        joined
            .context("server task panicked")?
            .context("server failed")?;
        tracing::info!("assistd stopped");
        Ok(())
    }
}

/// The status the database's answer implies.
async fn probe(store: &Store) -> ServingStatus {
    match store.ping().await {
        Ok(()) => ServingStatus::Serving,
        Err(err) => {
            tracing::warn!(error = %err, "database health probe failed");
            ServingStatus::NotServing
        }
    }
}

/// Sets the implemented services' statuses, then the overall one: a client that sees ""
/// SERVING can rely on every service's status being set.
async fn report(health: &HealthReporter, status: ServingStatus) {
    for service in SERVED_SERVICES {
        health.set_service_status(service, status).await;
    }
    health.set_service_status("", status).await;
}

/// Sets every status before the server accepts its first call, then keeps them current: the
/// overall status ("") and the implemented services follow the database.
async fn start_health_probe(health: HealthReporter, store: Store, shutdown: CancellationToken) {
    let mut last = probe(&store).await;
    report(&health, last).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(HEALTH_PROBE_INTERVAL) => {}
            }
            let status = probe(&store).await;
            if status != last {
                report(&health, status).await;
                last = status;
            }
        }
    });
}
