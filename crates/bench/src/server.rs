//! The server under test: the `assistd` executable, started as a child process on a port of
//! its own, so the bench (client) and the server are separate processes as in production.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::connect_endpoint;

/// The help of the `--server-bin` flag both benches take.
pub const SERVER_BIN_HELP: &str = "The `assistd` executable to start as the server. Default: \
    `assistd` in the target profile directory this bench was built into (build it first with \
    `cargo build --release --bin assistd`)";

/// The server executable: `flag` when given, else `assistd` in the profile directory of the
/// running bench (`target/release` for `target/release/assistd-bench` and for
/// `target/release/deps/chat-…` alike).
///
/// # Errors
/// The executable does not exist; the message says how to build it.
pub fn server_bin(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match flag {
        Some(path) => path.to_owned(),
        None => {
            let exe = std::env::current_exe().context("locating the bench executable")?;
            let mut dir = exe
                .parent()
                .context("the bench executable has no parent directory")?;
            // Bench and test targets are built into `deps/` below the profile directory.
            if dir.file_name().is_some_and(|name| name == "deps") {
                dir = dir.parent().unwrap_or(dir);
            }
            dir.join(format!("assistd{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !bin.is_file() {
        bail!(
            "server executable {} not found: build it first with `cargo build --release --bin \
             assistd` (`cargo build --bin assistd` for a bench built in debug), or pass \
             --server-bin PATH",
            bin.display()
        );
    }
    report_build(&bin);
    Ok(bin)
}

/// Says which server build is measured, and warns when it is older than the bench itself:
/// `cargo bench` rebuilds the bench but not the server, so an edited server must be rebuilt
/// by hand or the figures belong to the previous build.
fn report_build(bin: &Path) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let server = modified(bin);
    let bench = std::env::current_exe().ok().as_deref().and_then(modified);
    let age = server.and_then(|at| at.elapsed().ok()).map_or_else(
        || "unknown age".to_owned(),
        |age| format!("built {}s ago", age.as_secs()),
    );
    eprintln!("server under test: {} ({age})", bin.display());
    if let (Some(server), Some(bench)) = (server, bench)
        && server < bench
    {
        eprintln!(
            "warning: the server executable is older than this bench; run `cargo build \
             --release --bin assistd` if the server changed since"
        );
    }
}

/// A command running `bin` without the caller's own assistd settings: a config file,
/// `ASSISTD_*`, `RUST_LOG` or `DATABASE_URL` of the shell must not leak into the benchmarked
/// server, or the SQLite run could end up on PostgreSQL.
#[must_use]
pub fn server_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        let is_assistd = key.to_str().is_some_and(|key| key.starts_with("ASSISTD_"));
        if is_assistd || key == "RUST_LOG" || key == "DATABASE_URL" {
            command.env_remove(&key);
        }
    }
    command
}

/// A port that was free a moment ago. Another process could take it before the server binds
/// it, but the server cannot report the port it picked for port 0 to a parent process.
///
/// # Errors
/// No port could be bound on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener.local_addr()?.port())
}

/// A running `assistd serve`, killed if dropped before [`ServerProcess::stop`].
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pid: u32,
}

/// How [`ServerProcess::stop`] ended the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited on SIGTERM with this status.
    Exited(ExitStatus),
    /// It outlived the timeout and was killed.
    Killed,
}

impl ServerProcess {
    /// Spawns `command` (an `assistd serve` from [`server_command`] with its environment and
    /// standard streams set) and waits until the server at `address` (`http://HOST:PORT`)
    /// answers its health check with SERVING.
    ///
    /// # Errors
    /// The process cannot be spawned, exits during start-up, or is not serving within
    /// `startup_timeout`.
    pub async fn spawn(
        command: Command,
        address: &str,
        startup_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .with_context(|| format!("{address} is not a URI"))?;
        Self::spawn_at(command, endpoint, startup_timeout).await
    }

    /// [`ServerProcess::spawn`] for a server reached through `endpoint`, e.g. over TLS.
    ///
    /// # Errors
    /// As [`ServerProcess::spawn`].
    pub async fn spawn_at(
        mut command: Command,
        endpoint: Endpoint,
        startup_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut child = command
            .kill_on_drop(true)
            .spawn()
            .context("spawning assistd serve")?;
        let pid = child.id().context("the server exited at once")?;
        wait_until_serving(&endpoint, &mut child, startup_timeout).await?;
        Ok(Self { child, pid })
    }

    /// The server's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGTERM, so the server shuts down as in production and closes its database
    /// connections, then SIGKILL if it is still running after `timeout`.
    ///
    /// # Errors
    /// `kill` cannot be run, or waiting for the process failed.
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<Stopped> {
        // `kill` rather than a signal call: the workspace forbids unsafe code.
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !status.success() {
            eprintln!("warning: kill -TERM {} failed: {status}", self.pid);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(Stopped::Exited(
                status.context("waiting for the server to exit")?,
            )),
            Err(_) => {
                eprintln!("warning: the server ignored SIGTERM for {timeout:?}; killing it");
                self.child
                    .kill()
                    .await
                    .context("killing the server process")?;
                Ok(Stopped::Killed)
            }
        }
    }
}

async fn wait_until_serving(
    endpoint: &Endpoint,
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_problem = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("checking the server process")? {
            bail!("the server exited during start-up with {status}");
        }
        match connect_endpoint(endpoint.clone(), Duration::from_secs(1)).await {
            Ok(channel) => {
                match HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                {
                    Ok(response) if response.get_ref().status() == ServingStatus::Serving => {
                        return Ok(());
                    }
                    Ok(response) => {
                        last_problem = format!("health is {:?}", response.get_ref().status());
                    }
                    Err(status) => last_problem = status.to_string(),
                }
            }
            Err(err) => last_problem = format!("{err:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server did not report SERVING within {timeout:?}: {last_problem}")
}
