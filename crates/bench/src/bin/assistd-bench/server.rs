//! The server this bench measures: `assistd serve` on a temporary data directory, with a bench
//! user created and its access tokens issued through `assistd admin`; optionally with metrics
//! on, or serving TLS with a self-signed certificate made for the run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use assistd_bench::server::{ServerProcess, Stopped, free_port, server_command};
use tempfile::TempDir;
use tokio::process::Command;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// How long the server may take to answer the health check with SERVING after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The server's grace period on SIGTERM; the bench waits a little longer before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Tokens are issued with the longest lifetime the server accepts (15 minutes).
const TOKEN_TTL: &str = "15m";

/// How the server is started, beyond its database.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ServerOptions {
    /// Serve metrics on a listener of their own (`server.metrics_listen`).
    pub(crate) metrics: bool,
    /// Serve the API over TLS (`server.tls`) with a self-signed certificate for `localhost`
    /// and 127.0.0.1, which the bench's clients trust.
    pub(crate) tls: bool,
}

/// A running `assistd serve` child process on its own data directory.
pub(crate) struct Server {
    process: ServerProcess,
    /// `http://127.0.0.1:PORT`, or `https://…` over TLS.
    address: String,
    /// How native gRPC clients reach it (with the TLS configuration over TLS).
    endpoint: Endpoint,
    launcher: Launcher,
    user_id: String,
    /// `http://127.0.0.1:PORT/metrics` when started with metrics on.
    metrics_url: Option<String>,
    _data_dir: TempDir,
}

impl Server {
    /// Creates the bench user, then starts the server on `database_url` (SQLite in the data
    /// directory when `None`), with its metrics listener when `metrics` is set, and waits
    /// until it serves.
    pub(crate) async fn start(
        bin: &Path,
        database_url: Option<&str>,
        metrics: bool,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            bin,
            database_url,
            ServerOptions {
                metrics,
                tls: false,
            },
        )
        .await
    }

    /// [`Server::start`] with every option.
    pub(crate) async fn start_with(
        bin: &Path,
        database_url: Option<&str>,
        options: ServerOptions,
    ) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("assistd-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let port = free_port()?;
        let mut env: Vec<(&'static str, OsString)> = vec![
            ("ASSISTD_DATA_DIR", data_dir.path().join("data").into()),
            ("ASSISTD_SERVER__LISTEN", format!("127.0.0.1:{port}").into()),
            ("ASSISTD_LOG__FILTER", "warn".into()),
            ("ASSISTD_AUTH__ACCESS_TOKEN_TTL", TOKEN_TTL.into()),
            (
                "ASSISTD_SERVER__SHUTDOWN_GRACE",
                format!("{}s", SHUTDOWN_GRACE.as_secs()).into(),
            ),
        ];
        if let Some(url) = database_url {
            env.push(("DATABASE_URL", url.into()));
        }
        let metrics_url = if options.metrics {
            let metrics_port = free_port()?;
            env.push((
                "ASSISTD_SERVER__METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}").into(),
            ));
            Some(format!("http://127.0.0.1:{metrics_port}/metrics"))
        } else {
            None
        };
        let (address, endpoint) = if options.tls {
            let trusted = self_signed_certificate(data_dir.path(), &mut env)?;
            let address = format!("https://127.0.0.1:{port}");
            let endpoint = Endpoint::from_shared(address.clone())?
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(trusted))
                        .domain_name("localhost"),
                )
                .context("configuring TLS for the bench's clients")?;
            (address, endpoint)
        } else {
            let address = format!("http://127.0.0.1:{port}");
            let endpoint = Endpoint::from_shared(address.clone())?;
            (address, endpoint)
        };
        let launcher = Launcher {
            bin: bin.to_owned(),
            env,
        };
        let user_id = launcher
            .admin(&["create-user", "--display-name", "assistd-bench"])
            .await
            .context("creating the bench user")?;

        let mut command = launcher.command();
        command
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Warnings and errors of the server stay visible next to the bench's own output.
            .stderr(Stdio::inherit());
        let process = ServerProcess::spawn_at(command, endpoint.clone(), STARTUP_TIMEOUT)
            .await
            .with_context(|| format!("running {} serve", bin.display()))?;
        Ok(Self {
            process,
            address,
            endpoint,
            launcher,
            user_id,
            metrics_url,
            _data_dir: data_dir,
        })
    }

    /// `http://127.0.0.1:PORT` (`https://…` over TLS).
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Where native gRPC clients connect, with the TLS configuration when the server has TLS.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the server speaks TLS.
    pub(crate) fn tls(&self) -> bool {
        self.address.starts_with("https://")
    }

    /// The metrics endpoint, when the server was started with metrics on.
    pub(crate) fn metrics_url(&self) -> Option<&str> {
        self.metrics_url.as_deref()
    }

    /// A new `Bearer` token for the bench user, so no scenario outlives its token.
    pub(crate) async fn fresh_token(&self) -> anyhow::Result<AsciiMetadataValue> {
        let token = self
            .launcher
            .admin(&["issue-token", "--user-id", &self.user_id])
            .await
            .context("issuing an access token")?;
        format!("Bearer {token}")
            .parse()
            .context("the issued token is not valid ASCII metadata")
    }

    /// Stops the server as production would, killing it if it outlives its grace period; an
    /// unclean exit is only reported, since the figures are already measured.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        let stopped = self
            .process
            .stop(SHUTDOWN_GRACE + Duration::from_secs(5))
            .await?;
        if let Stopped::Exited(status) = stopped
            && !status.success()
        {
            eprintln!("warning: the server exited with {status}");
        }
        Ok(())
    }
}

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 and its key into `dir`, points
/// the server's `server.tls` at them through `env`, and returns the certificate (PEM) for the
/// clients to trust.
fn self_signed_certificate(
    dir: &Path,
    env: &mut Vec<(&'static str, OsString)>,
) -> anyhow::Result<String> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .context("generating a TLS certificate")?;
    let (cert_file, key_file) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    let cert = certified.cert.pem();
    std::fs::write(&cert_file, &cert).context("writing the TLS certificate")?;
    std::fs::write(&key_file, certified.signing_key.serialize_pem())
        .context("writing the TLS key")?;
    env.push(("ASSISTD_SERVER__TLS__CERT_FILE", cert_file.into()));
    env.push(("ASSISTD_SERVER__TLS__KEY_FILE", key_file.into()));
    Ok(cert)
}

/// How to run the server executable with the bench's environment.
struct Launcher {
    bin: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Launcher {
    fn command(&self) -> Command {
        let mut command = server_command(&self.bin);
        command.envs(self.env.iter().map(|(key, value)| (*key, value)));
        command
    }

    /// Runs `assistd admin ARGS` and returns the last line it printed on stdout.
    async fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command()
            .arg("admin")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} admin {}", self.bin.display(), args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "`assistd admin {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout)
            .context("admin output is not UTF-8")?
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("`assistd admin {}` printed nothing", args.join(" ")))
    }
}
