//! The server this bench measures: `assistd serve` on a temporary data directory, with a bench
//! user created and its access tokens issued through `assistd admin`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use assistd_bench::server::{ServerProcess, Stopped, free_port, server_command};
use tempfile::TempDir;
use tokio::process::Command;
use tonic::metadata::AsciiMetadataValue;

/// How long the server may take to answer the health check with SERVING after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The server's grace period on SIGTERM; the bench waits a little longer before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Tokens are issued with the longest lifetime the server accepts (15 minutes).
const TOKEN_TTL: &str = "15m";

/// A running `assistd serve` child process on its own data directory.
pub(crate) struct Server {
    process: ServerProcess,
    /// `http://127.0.0.1:PORT`
    address: String,
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
        let metrics_url = if metrics {
            let metrics_port = free_port()?;
            env.push((
                "ASSISTD_SERVER__METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}").into(),
            ));
            Some(format!("http://127.0.0.1:{metrics_port}/metrics"))
        } else {
            None
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
        let address = format!("http://127.0.0.1:{port}");
        let process = ServerProcess::spawn(command, &address, STARTUP_TIMEOUT)
            .await
            .with_context(|| format!("running {} serve", bin.display()))?;
        Ok(Self {
            process,
            address,
            launcher,
            user_id,
            metrics_url,
            _data_dir: data_dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn address(&self) -> &str {
        &self.address
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
