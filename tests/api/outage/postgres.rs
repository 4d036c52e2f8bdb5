//! A PostgreSQL server of the test's own: `initdb` in a temporary directory, a free port,
//! started and stopped (fast, or immediately as in a crash) with `pg_ctl`. As root, the tools
//! run as the `postgres` user.

use std::ffi::OsString;
use std::path::PathBuf;

/// A PostgreSQL server in a temporary directory, stopped (immediately) when dropped.
pub(super) struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The tools run as `postgres` (through runuser) when the test runs as root.
    as_root: bool,
}

impl OwnPostgres {
    /// Initialises a cluster on a free port and starts it.
    pub(super) async fn start_new() -> Self {
        let bin = postgres_bin().expect("PostgreSQL binaries under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let as_root = is_root();
        if as_root {
            let chowned = tokio::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .await
                .unwrap();
            assert!(chowned.success(), "chown the cluster directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            dir,
            bin,
            port,
            as_root,
        };
        let data = server.data();
        server
            .tool(
                "initdb",
                &[
                    "-D".into(),
                    data,
                    "-A".into(),
                    "trust".into(),
                    "-U".into(),
                    "postgres".into(),
                    "-E".into(),
                    "UTF8".into(),
                    "--no-sync".into(),
                ],
            )
            .await;
        server.start().await;
        server
    }

    fn data(&self) -> OsString {
        self.dir.path().join("data").into_os_string()
    }

    /// `postgres://…` for the cluster's `postgres` database.
    pub(super) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections (after crash recovery).
    pub(super) async fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").into_os_string();
        self.tool(
            "pg_ctl",
            &[
                "-D".into(),
                self.data(),
                "-l".into(),
                log,
                "-w".into(),
                "-o".into(),
                options.into(),
                "start".into(),
            ],
        )
        .await;
    }

    /// Stops the server in `mode` (`fast`: sessions are terminated; `immediate`: a crash).
    pub(super) async fn stop(&self, mode: &str) {
        self.tool(
            "pg_ctl",
            &[
                "-D".into(),
                self.data(),
                "-m".into(),
                mode.into(),
                "-w".into(),
                "stop".into(),
            ],
        )
        .await;
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        if self.as_root {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        }
    }

    async fn tool(&self, tool: &str, args: &[OsString]) {
        let mut command = tokio::process::Command::from(self.command(tool));
        let output = command.args(args).output().await.unwrap();
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The `bin` directory of the newest PostgreSQL installed.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}
