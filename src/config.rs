//! Configuration: defaults in code, then an optional TOML file (`--config`), then
//! `DATABASE_URL`, then `ASSISTD_*` environment variables (nested keys joined by `__`, e.g.
//! `ASSISTD_SERVER__LISTEN=0.0.0.0:50051`). `assistd.example.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `assistd` can be configured with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the SQLite database and generated keys; created with mode 0700.
    pub data_dir: PathBuf,
    /// The network listener and its limits.
    pub server: ServerConfig,
    /// Where data is stored.
    pub database: DatabaseConfig,
    /// Our own access tokens.
    pub auth: AuthConfig,
    /// Log output.
    pub log: LogConfig,
    /// Key-encryption keys and the data key cache.
    pub keys: KeysConfig,
    /// The audit log.
    pub audit: AuditConfig,
    /// The Gemini API.
    pub gemini: assistd_gemini::GeminiConfig,
    /// Chat: default model, context budget, tool loop, retries.
    pub chat: assistd_core::chat::ChatConfig,
    /// Signing in with Google (OpenID Connect) and device sessions.
    pub sign_in: assistd_core::auth::SignInConfig,
    /// Gmail: the API, the background sync, quotas and limits.
    pub gmail: assistd_core::gmail::GmailSettings,
}

/// Envelope encryption: which key-encryption key (KEK) wraps users' data keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// The KEK that wraps new data keys (and re-wraps old ones in `admin rotate-kek`).
    pub kek: KekConfig,
    /// Earlier KEKs, still needed to unwrap data keys they wrapped until `admin rotate-kek`
    /// has moved every key to `kek`.
    pub previous: Vec<KekConfig>,
    /// Longest time an unwrapped data key stays in memory.
    #[serde(with = "humantime_serde")]
    pub cache_max_age: Duration,
    /// Most uses of one unwrapped data key before the KEK is asked again.
    pub cache_max_uses: u64,
}

/// Which kind of key-encryption key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KekProvider {
    /// A 256-bit master key in a local file or the environment.
    Local,
    /// A symmetric AWS KMS key.
    Kms,
}

/// One key-encryption key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KekConfig {
    /// `local` or `kms`.
    pub provider: KekProvider,
    /// Local: base64 of a 256-bit master key. Wins over `master_key_file`. A secret: prefer
    /// the environment (`ASSISTD_KEYS__KEK__MASTER_KEY`) to a file in version control.
    pub master_key: String,
    /// Local: file holding the master key; "" means `<data_dir>/keys/master.key`, generated
    /// on first start.
    pub master_key_file: PathBuf,
    /// KMS: key id, ARN or alias.
    pub kms_key_id: String,
    /// KMS: region; "" uses the AWS default chain (`AWS_REGION`, profile).
    pub kms_region: String,
    /// KMS: endpoint URL override (e.g. a VPC endpoint); "" uses the default.
    pub kms_endpoint: String,
}

impl std::fmt::Debug for KekConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KekConfig")
            .field("provider", &self.provider)
            .field(
                "master_key",
                &if self.master_key.is_empty() {
                    ""
                } else {
                    "[redacted]"
                },
            )
            .field("master_key_file", &self.master_key_file)
            .field("kms_key_id", &self.kms_key_id)
            .field("kms_region", &self.kms_region)
            .field("kms_endpoint", &self.kms_endpoint)
            .finish()
    }
}

impl Default for KekConfig {
    fn default() -> Self {
        Self {
            provider: KekProvider::Local,
            master_key: String::new(),
            master_key_file: PathBuf::new(),
            kms_key_id: String::new(),
            kms_region: String::new(),
            kms_endpoint: String::new(),
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            kek: KekConfig::default(),
            previous: Vec::new(),
            cache_max_age: Duration::from_secs(5 * 60),
            cache_max_uses: 10_000,
        }
    }
}

/// The audit log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// File with the base64 key that MACs the audit chain; "" means
    /// `<data_dir>/keys/audit-chain.key`, generated on first start. Every replica needs the
    /// same key, and `admin verify-audit` needs it too.
    pub chain_key_file: PathBuf,
}

/// The gRPC / grpc-web listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest accepted request message, in bytes, after decompression.
    pub max_decoding_message_size: usize,
    /// Largest response message, in bytes.
    pub max_encoding_message_size: usize,
    /// Most concurrent HTTP/2 streams (calls) on one connection.
    pub max_concurrent_streams: u32,
    /// Longest a unary call (or the start of a stream) may take before DEADLINE_EXCEEDED;
    /// a shorter `grpc-timeout` from the client wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Interval of HTTP/2 keepalive pings to idle clients.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    /// How long to wait for a keepalive ping's answer before closing the connection.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish before the server
    /// exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Browser origins allowed to call through grpc-web (CORS), e.g. `https://app.example`.
    /// Empty (the default) sends no CORS headers, so browsers on other origins are refused.
    /// `*` is not accepted.
    pub cors_allowed_origins: Vec<String>,
    /// Addresses or networks (CIDR) of reverse proxies whose `x-forwarded-for` is believed
    /// when recording the client address in the audit log. Empty: the peer address is used.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Address of the metrics listener (`GET /metrics`, Prometheus/OpenMetrics text). None
    /// (the default) serves no metrics. Keep it on loopback or a private network: the figures
    /// say how busy the server is and which methods fail.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on the API port; plaintext unless both files are set.
    pub tls: TlsConfig,
}

/// The API port's certificate. Both files are PEM; SIGHUP reloads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on.
    #[must_use]
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// The database.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://PATH`. Empty means `sqlite://<data_dir>/assistd.db`.
    /// `DATABASE_URL` sets it too.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a call waits for a pooled connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// SQLite: how long a writer waits for another writer.
    #[serde(with = "humantime_serde")]
    pub sqlite_busy_timeout: Duration,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &assistd_store::redact_url_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

/// Our access tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` claim of our tokens.
    pub issuer: String,
    /// The `aud` claim of our tokens.
    pub audience: String,
    /// Access token lifetime, at most 15 minutes.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// PKCS#8 PEM Ed25519 key that signs access tokens. Empty means
    /// `<data_dir>/keys/access-token.pem`, generated on first start.
    pub signing_key_file: PathBuf,
    /// Earlier signing keys whose tokens are still accepted until they expire.
    pub previous_signing_key_files: Vec<PathBuf>,
}

/// Log output. `RUST_LOG`, when set, overrides `filter`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directives, e.g. `info,assistd=debug`.
    pub filter: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            keys: KeysConfig::default(),
            audit: AuditConfig::default(),
            gemini: assistd_gemini::GeminiConfig::default(),
            chat: assistd_core::chat::ChatConfig::default(),
            sign_in: assistd_core::auth::SignInConfig::default(),
            gmail: assistd_core::gmail::GmailSettings::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_decoding_message_size: 4 * 1024 * 1024,
            max_encoding_message_size: 16 * 1024 * 1024,
            max_concurrent_streams: 200,
            request_timeout: Duration::from_secs(5 * 60),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            cors_allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            tls: TlsConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            migrate_on_start: true,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "assistd".into(),
            audience: "assistd".into(),
            access_token_ttl: Duration::from_secs(10 * 60),
            signing_key_file: PathBuf::new(),
            previous_signing_key_files: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// The configuration of `assistd dev`: the defaults, and `DATABASE_URL` to try PostgreSQL.
    /// No configuration file and no `ASSISTD_*` variable is read, so the keys, database and
    /// signing key of a production setup in the same shell never reach a server on which
    /// anyone can sign in as anyone.
    #[must_use]
    pub fn for_development() -> Self {
        let mut config = Self::default();
        if let Ok(url) = std::env::var("DATABASE_URL") {
            config.database.url = url;
        }
        config
    }

    /// Loads the configuration from the defaults, `file` (if given), `DATABASE_URL` and
    /// `ASSISTD_*` variables, and validates it.
    ///
    /// # Errors
    /// The file is unreadable or malformed, a key is unknown, or a value is out of range.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(
                Env::prefixed("ASSISTD_")
                    .filter(|key| {
                        let key = key.as_str().to_ascii_lowercase();
                        !key.starts_with("test_") && key != "config"
                    })
                    .split("__"),
            )
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text on top of the defaults (no environment), and validates it.
    ///
    /// # Errors
    /// The text is malformed or a value is out of range.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone do not constrain.
    ///
    /// # Errors
    /// The first value out of range, named by its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let ttl = self.auth.access_token_ttl;
        if ttl.is_zero() || ttl > assistd_identity::MAX_ACCESS_TOKEN_TTL {
            bail!("auth.access_token_ttl must be between 1s and 15m, got {ttl:?}");
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            bail!("auth.issuer and auth.audience must not be empty");
        }
        let lease = self.chat.exchange_lease;
        if lease < std::time::Duration::from_secs(1) {
            bail!(
                "chat.exchange_lease must be at least 1s (it is renewed every third of itself), got {lease:?}"
            );
        }
        for origin in &self.server.cors_allowed_origins {
            if origin == "*" {
                bail!("server.cors_allowed_origins must list origins; \"*\" is not accepted");
            }
            let parsed = http::HeaderValue::from_str(origin).ok().filter(|_| {
                (origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/')
            });
            if parsed.is_none() {
                bail!(
                    "server.cors_allowed_origins: {origin:?} is not an origin like https://app.example"
                );
            }
        }
        if self.server.max_decoding_message_size < 1024 {
            bail!("server.max_decoding_message_size must be at least 1024 bytes");
        }
        if self.server.max_concurrent_streams == 0 {
            bail!("server.max_concurrent_streams must be at least 1");
        }
        if self.server.tls.cert_file.is_some() != self.server.tls.key_file.is_some() {
            bail!("server.tls needs both cert_file and key_file, or neither");
        }
        self.sign_in
            .validate()
            .map_err(|message| anyhow::anyhow!(message))?;
        self.gmail
            .validate()
            .map_err(|message| anyhow::anyhow!(message))?;
        if self.database.max_connections == 0 {
            bail!("database.max_connections must be at least 1");
        }
        for (index, kek) in std::iter::once(&self.keys.kek)
            .chain(&self.keys.previous)
            .enumerate()
        {
            let name = if index == 0 {
                "keys.kek".to_owned()
            } else {
                format!("keys.previous[{}]", index - 1)
            };
            if kek.provider == KekProvider::Kms && kek.kms_key_id.is_empty() {
                bail!("{name}.kms_key_id is required when provider = \"kms\"");
            }
            if index > 0
                && kek.provider == KekProvider::Local
                && kek.master_key.is_empty()
                && kek.master_key_file.as_os_str().is_empty()
            {
                bail!("{name} needs master_key or master_key_file");
            }
        }
        if self.server.request_timeout.is_zero() {
            bail!("server.request_timeout must be positive");
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or the SQLite file in the data dir.
    #[must_use]
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("assistd.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The signing key file in effect.
    #[must_use]
    pub fn signing_key_file(&self) -> PathBuf {
        if self.auth.signing_key_file.as_os_str().is_empty() {
            self.data_dir.join("keys").join("access-token.pem")
        } else {
            self.auth.signing_key_file.clone()
        }
    }

    /// The audit chain key file in effect.
    #[must_use]
    pub fn audit_chain_key_file(&self) -> PathBuf {
        if self.audit.chain_key_file.as_os_str().is_empty() {
            self.data_dir.join("keys").join("audit-chain.key")
        } else {
            self.audit.chain_key_file.clone()
        }
    }

    /// The local master key file of `kek` in effect.
    #[must_use]
    pub fn master_key_file(&self, kek: &KekConfig) -> PathBuf {
        if kek.master_key_file.as_os_str().is_empty() {
            self.data_dir.join("keys").join("master.key")
        } else {
            kek.master_key_file.clone()
        }
    }

    /// Database settings for the store.
    #[must_use]
    pub fn database_settings(&self) -> assistd_store::DatabaseSettings {
        assistd_store::DatabaseSettings {
            url: self.database_url(),
            max_connections: self.database.max_connections,
            acquire_timeout: self.database.acquire_timeout,
            sqlite_busy_timeout: self.database.sqlite_busy_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_and_keep_data_local() {
        let config = Config::default();
        config.validate().unwrap();
        assert!(config.server.listen.ip().is_loopback());
        assert_eq!(config.database_url(), "sqlite://./data/assistd.db");
        assert!(config.server.cors_allowed_origins.is_empty());
    }

    #[test]
    fn the_annotated_example_parses_and_matches_the_defaults_it_documents() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assistd.example.toml"))
                .unwrap();
        let example = Config::from_toml(&text).unwrap();
        let defaults = Config::default();
        assert_eq!(example.server.listen, defaults.server.listen);
        assert_eq!(example.server.metrics_listen, None);
        assert_eq!(example.server.tls, defaults.server.tls);
        assert_eq!(
            example.server.request_timeout,
            defaults.server.request_timeout
        );
        assert_eq!(
            example.auth.access_token_ttl,
            defaults.auth.access_token_ttl
        );
        assert_eq!(
            example.database.max_connections,
            defaults.database.max_connections
        );
        assert_eq!(example.chat, defaults.chat);
        assert_eq!(example.gmail, defaults.gmail);
        assert_eq!(example.gemini, defaults.gemini);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml("[auth]\naccess_token_ttl = \"1h\"").unwrap_err();
        assert!(format!("{err:#}").contains("access_token_ttl"), "{err:#}");
        let err = Config::from_toml("[server]\ncors_allowed_origins = [\"*\"]").unwrap_err();
        assert!(
            format!("{err:#}").contains("cors_allowed_origins"),
            "{err:#}"
        );
        let err = Config::from_toml("[server.tls]\ncert_file = \"cert.pem\"").unwrap_err();
        assert!(format!("{err:#}").contains("key_file"), "{err:#}");
        let err = Config::from_toml("[server]\nlisten_port = 1").unwrap_err();
        assert!(format!("{err:#}").contains("listen_port"), "{err:#}");
        let err = Config::from_toml("[chat]\nexchange_lease = \"100ms\"").unwrap_err();
        assert!(format!("{err:#}").contains("exchange_lease"), "{err:#}");
        let err = Config::from_toml("[gemini]\nhttp_version = \"h2\"").unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("gemini.http_version") && message.contains("`http2`"),
            "{message}"
        );
        let config = Config::from_toml("[gemini]\nhttp_version = \"http2\"").unwrap();
        assert_eq!(
            config.gemini.http_version,
            assistd_gemini::HttpVersion::Http2
        );
    }

    #[test]
    fn kek_settings_are_checked_and_the_master_key_masked() {
        let err = Config::from_toml("[keys.kek]\nprovider = \"kms\"").unwrap_err();
        assert!(format!("{err:#}").contains("kms_key_id"), "{err:#}");
        let config =
            Config::from_toml("[keys.kek]\nmaster_key = \"c2VjcmV0LW1hc3Rlci1rZXk=\"").unwrap();
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn credentials_in_the_database_url_are_not_printed() {
        let config = Config::from_toml("[database]\nurl = \"postgres://u:hunter2@db/x\"").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
