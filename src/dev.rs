//! `assistd dev`: the normal server, wired to an embedded OpenID provider and a local model
//! that speaks the Gemini API (both from `assistd-devkit`), so frontend work needs no Google or
//! Gemini account.
//!
//! Only this command starts them: `serve` never reads these options, and its defaults (Google
//! as the issuer, sign-in off until a client id is configured, Google's Gemini API, no CORS
//! origins) stay untouched. Anyone can sign in as anyone here, so every listener is held to
//! loopback unless `--i-know-this-is-not-production` says otherwise.
//!
//! With `--tls-cert`/`--tls-key` the API port speaks TLS (`server.tls`, ALPN h2 and http/1.1),
//! so a browser reaches it over HTTP/2; the provider and the local model stay plain HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use assistd::config::Config;
use assistd::server::Application;
use assistd_devkit::{DevProvider, DevProviderConfig, LocalModel, LocalModelConfig};

/// The OAuth client the embedded provider registers and the server signs in with.
const CLIENT_ID: &str = "assistd-dev-client";
/// Its secret: public, like everything about the development provider.
const CLIENT_SECRET: &str = "assistd-dev-secret";
/// Origins of a Vite dev server, allowed by default.
const DEFAULT_ORIGINS: [&str; 2] = ["http://localhost:5173", "http://127.0.0.1:5173"];
/// Sign-in callbacks of a Vite dev server, allowed by default.
const DEFAULT_REDIRECT_URIS: [&str; 2] = [
    "http://localhost:5173/auth/callback",
    "http://127.0.0.1:5173/auth/callback",
];
/// The flag that lets a listener leave loopback.
const NOT_PRODUCTION_FLAG: &str = "--i-know-this-is-not-production";

/// Options of `assistd dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Directory for the SQLite database, generated keys and the provider's signing key.
    #[arg(long, default_value = "dev-data")]
    data_dir: PathBuf,
    /// Address of the gRPC / grpc-web server. Loopback only, unless
    /// --i-know-this-is-not-production.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Address of the embedded OpenID provider (loopback only, like --listen). Its issuer is
    /// http:// this address, so it must name one interface (0.0.0.0 and :: are refused).
    #[arg(long, default_value = "127.0.0.1:50052")]
    provider_listen: SocketAddr,
    /// Address of the local model (loopback only, like --listen).
    #[arg(long, default_value = "127.0.0.1:50053")]
    model_listen: SocketAddr,
    /// Allow listening on addresses other than loopback. Anyone who reaches the provider can
    /// sign in as anyone: never do this on a network you do not control.
    #[arg(long = "i-know-this-is-not-production")]
    not_production: bool,
    /// A further browser origin allowed to call through grpc-web (repeatable), besides
    /// http://localhost:5173 and http://127.0.0.1:5173.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// A further sign-in redirect URI (repeatable), besides
    /// http://localhost:5173/auth/callback and http://127.0.0.1:5173/auth/callback.
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Talk to this Gemini API instead of the local model (e.g.
    /// https://generativelanguage.googleapis.com, with a real key set through SetApiKey).
    #[arg(long, value_name = "URL")]
    gemini_base_url: Option<String>,
    /// The local model's pause before each streamed word, in milliseconds.
    #[arg(long, default_value_t = 40, value_name = "MS")]
    word_delay_ms: u64,
    /// Prefix of the API keys the local model accepts.
    #[arg(long, default_value = LocalModelConfig::DEFAULT_KEY_PREFIX, value_name = "PREFIX")]
    key_prefix: String,
    /// Lifetime of access tokens (e.g. "10m", "5s"; between 1s and 15m). Short lifetimes let a
    /// frontend exercise its refresh path.
    #[arg(long, value_name = "DURATION", value_parser = humantime_serde::re::humantime::parse_duration)]
    access_token_ttl: Option<Duration>,
    /// Serve the API over TLS with this certificate chain (PEM, leaf first), offering ALPN h2
    /// and http/1.1: browsers then speak HTTP/2 to it, so open streams no longer queue behind
    /// their six HTTP/1.1 connections per host. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Runs `assistd dev` until SIGINT/SIGTERM.
pub(crate) async fn run(mut config: Config, args: DevArgs) -> anyhow::Result<ExitCode> {
    for (flag, addr) in [
        ("--listen", args.listen),
        ("--provider-listen", args.provider_listen),
        ("--model-listen", args.model_listen),
    ] {
        check_loopback(flag, addr, args.not_production)?;
    }
    check_issuer_address(args.provider_listen)?;
    anyhow::ensure!(
        !args.key_prefix.is_empty(),
        "--key-prefix must not be empty: the local model would accept every key"
    );
    config.data_dir.clone_from(&args.data_dir);
    assistd_domain::secret_file::create_private_dir(&config.data_dir.join("keys"))
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;

    let redirect_uris: Vec<String> = DEFAULT_REDIRECT_URIS
        .iter()
        .map(|&uri| uri.to_owned())
        .chain(args.redirect_uris.iter().cloned())
        .collect();
    let provider = DevProvider::start(DevProviderConfig {
        listen: args.provider_listen,
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        redirect_uris: redirect_uris.clone(),
        key_file: Some(provider_key_file(&config.data_dir)),
    })
    .await
    .with_context(|| {
        format!(
            "starting the development OpenID provider on {}",
            args.provider_listen
        )
    })?;
    let (gemini_base_url, model) = match &args.gemini_base_url {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let model = LocalModel::start(LocalModelConfig {
                listen: args.model_listen,
                key_prefix: args.key_prefix.clone(),
                word_delay: Duration::from_millis(args.word_delay_ms),
            })
            .await
            .with_context(|| format!("starting the local model on {}", args.model_listen))?;
            (model.base_url(), Some(model))
        }
    };

    config.server.listen = args.listen;
    for origin in DEFAULT_ORIGINS
        .iter()
        .map(|&origin| origin.to_owned())
        .chain(args.allow_origins.iter().cloned())
    {
        if !config.server.cors_allowed_origins.contains(&origin) {
            config.server.cors_allowed_origins.push(origin);
        }
    }
    config.sign_in.issuer = provider.issuer().to_owned();
    config.sign_in.client_id = CLIENT_ID.to_owned();
    config.sign_in.client_secret = CLIENT_SECRET.to_owned();
    config.sign_in.allowed_redirect_uris = redirect_uris;
    config.gemini.base_url = gemini_base_url;
    if let Some(ttl) = args.access_token_ttl {
        config.auth.access_token_ttl = ttl;
    }
    config.server.tls.cert_file.clone_from(&args.tls_cert);
    config.server.tls.key_file.clone_from(&args.tls_key);
    config.validate()?;

    let app = Application::build(config.clone()).await?;
    println!(
        "{}",
        banner(&config, app.local_addr(), &provider, model.is_some(), &args)
    );
    let shutdown = app.shutdown();
    tokio::spawn(async move {
        crate::wait_for_signal().await;
        shutdown.cancel();
    });
    app.run_until_stopped().await?;
    drop((provider, model));
    Ok(ExitCode::SUCCESS)
}

/// Refuses a non-loopback address unless `allowed`.
fn check_loopback(flag: &str, addr: SocketAddr, allowed: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        allowed || addr.ip().is_loopback(),
        "{flag} {addr} is not a loopback address; `assistd dev` lets anyone sign in as anyone, so it listens on 127.0.0.1 or ::1 only. Pass {NOT_PRODUCTION_FLAG} to listen on {addr} anyway, never for production (use `assistd serve`)"
    );
    Ok(())
}

/// Refuses an unspecified provider address (`0.0.0.0`, `::`): the issuer is `http://` the
/// address listened on, and `http://0.0.0.0:PORT` is no URL a browser can be sent to, nor one
/// the ID tokens' `iss` could match.
fn check_issuer_address(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        !addr.ip().is_unspecified(),
        "--provider-listen {addr} is an unspecified address, but the provider's issuer URL is http:// the address it listens on, and browsers cannot be sent to http://{addr}; give the address of one interface that browsers and the server reach it by (e.g. --provider-listen 192.168.1.20:{port} with {NOT_PRODUCTION_FLAG})",
        port = addr.port()
    );
    Ok(())
}

/// Where the provider keeps its signing key, so browser sessions survive a restart.
fn provider_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("dev-oidc-signing.pem")
}

/// What started and where, for the terminal.
fn banner(
    config: &Config,
    server: SocketAddr,
    provider: &DevProvider,
    local_model: bool,
    args: &DevArgs,
) -> String {
    let issuer = provider.issuer();
    let model = if local_model {
        format!(
            "  local model       {}  (Gemini API; any key starting with {:?}, e.g. {}frontend-key-01)\n",
            config.gemini.base_url, args.key_prefix, args.key_prefix
        )
    } else {
        format!(
            "  Gemini API        {}  (set a real key through SetApiKey)\n",
            config.gemini.base_url
        )
    };
    let scheme = if config.server.tls.files().is_some() {
        "https"
    } else {
        "http"
    };
    format!(
        "\nassistd dev: for development only. Anyone can sign in as anyone; never expose it or use it in production.\n\
         \n  gRPC / grpc-web   {scheme}://{server}\n\
         \x20 OpenID provider   {issuer}  (client id {CLIENT_ID})\n\
         \x20 ID tokens         {issuer}/dev/id-token  (POST email, name, audience, nonce)\n\
         {model}\
         \x20 browser origins   {}\n\
         \x20 redirect URIs     {}\n\
         \x20 database          {}\n",
        config.server.cors_allowed_origins.join(", "),
        config.sign_in.allowed_redirect_uris.join(", "),
        assistd_store::redact_url_password(&config.database_url()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_passes_without_the_flag() {
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let local6: SocketAddr = "[::1]:50051".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert!(check_loopback("--listen", local, false).is_ok());
        assert!(check_loopback("--listen", local6, false).is_ok());
        let err = check_loopback("--listen", any, false).unwrap_err();
        assert!(err.to_string().contains(NOT_PRODUCTION_FLAG), "{err}");
        assert!(check_loopback("--listen", any, true).is_ok());
    }

    #[test]
    fn the_provider_needs_an_address_an_issuer_can_name() {
        for unspecified in ["0.0.0.0:50052", "[::]:50052"] {
            let err = check_issuer_address(unspecified.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("unspecified address"), "{err}");
        }
        for specific in ["127.0.0.1:50052", "[::1]:0", "192.168.1.20:50052"] {
            assert!(check_issuer_address(specific.parse().unwrap()).is_ok());
        }
    }
}
