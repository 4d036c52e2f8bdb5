//! Assembling and running the server: one TCP port for native gRPC (HTTP/2), grpc-web
//! (HTTP/1.1, binary and text), server reflection (v1 and v1alpha) and grpc.health.v1.
//!
//! Layers, outermost first: CORS (only for configured origins, with `Timing-Allow-Origin`) → grpc-web translation →
//! request id → call log (and metrics) → authentication → the caller, for the call log →
//! routes. Metrics, when configured, have a listener of their own.
//!
//! This file wires the services; what the server opens first (database, keys) is in `keys`,
//! the browser layers in `cors`, the health probe in `health` and stopping in `shutdown`.

mod cors;
mod health;
mod keys;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use assistd_core::auth::AuthService;
use assistd_core::chat::{ChatService, MailTools, ToolRegistry};
use assistd_core::gmail::{GmailService, MailAssistant};
use assistd_core::{ApiKeyVault, PreferencesService, SecretSealer};
use assistd_domain::SystemClock;
use assistd_identity::{AccessTokens, DerivedSecrets};
use assistd_store::Store;
use assistd_store::audit::AuditLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use self::cors::{cors_layer, timing_allow_origin};
use self::health::start_health_probe;
pub use self::keys::{access_tokens, audit_log, keyring, open_store, secret_sealer};
use self::keys::{access_tokens_with, secret_sealer_with, signing_keys};
use crate::bearer::BearerLayer;
use crate::config::Config;
use crate::metrics::Metrics;
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
use crate::services::preferences::PreferencesApi;
use crate::telemetry::{CallLogLayer, CallerLayer};

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
        let mail_assistant = MailAssistant::new(
            gmail.clone(),
            vault.clone(),
            preferences.clone(),
            gemini.clone(),
            &config.chat,
        );
        // The chat offers the mail tools while a user's Gmail is connected.
        let chat = ChatService::new(
            &store,
            vault.clone(),
            preferences.clone(),
            gemini,
            audit.clone(),
            config.chat.clone(),
            ToolRegistry::standard()
                .with_provider(MailTools::new(gmail.clone(), mail_assistant.clone())),
            Arc::new(SystemClock),
        );
        // With gmail.auto_triage, each background sync's new INBOX mail is triaged too.
        let background_sync = config.gmail.background_sync.then(|| {
            gmail.start_background_sync(
                shutdown.child_token(),
                config.gmail.auto_triage.then(|| mail_assistant.clone()),
            )
        });

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

        let gmail_server = GmailServiceServer::new(GmailApi::new(
            gmail.clone(),
            mail_assistant,
            addresses.clone(),
        ))
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
}
