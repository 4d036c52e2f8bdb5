//! `assistd serve` as a child process of the test, on the database, data directory and Gemini
//! peer of an in-process [`TestApp`]: what the deploy, crash and replica tests stop with
//! signals.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::helpers::{TestApp, connect};

/// The grace an `assistd serve` process gives in-flight calls when it is stopped.
pub(crate) const GRACE: &str = "1s";

/// Whether `TEST_LOG` is set: tests then print what they measured, and processes started
/// without a log file log to the test's stderr.
pub(crate) fn test_log() -> bool {
    std::env::var_os("TEST_LOG").is_some()
}

/// A running `assistd serve` process.
pub(crate) struct ServeProcess {
    pub(crate) child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`
    pub(crate) address: String,
    /// Longest wait for it to listen or to exit before the test gives up (not a speed check:
    /// it keeps a broken server from hanging the suite).
    patience: Duration,
}

impl ServeProcess {
    /// Starts `assistd serve` through the admin tests' runner on a free port, on `app`'s
    /// database, data directory, keys and Gemini peer, with [`GRACE`] and `envs` added to its
    /// configuration and its stderr written to `stderr` (or, without one, to the test's
    /// stderr when `TEST_LOG` is set, else dropped). Waits up to `patience` until it listens.
    pub(crate) async fn start(
        app: &TestApp,
        envs: &[(&str, &str)],
        stderr: Option<&Path>,
        patience: Duration,
    ) -> Self {
        let config = &app.config;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = crate::admin::assistd(config);
        command
            .arg("serve")
            .env("ASSISTD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("ASSISTD_SERVER__SHUTDOWN_GRACE", GRACE)
            .env("ASSISTD_GEMINI__BASE_URL", app.gemini.base_url())
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
            patience,
        };
        let deadline = Instant::now() + patience;
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

    /// A connection of its own to the process.
    pub(crate) async fn channel(&self) -> Channel {
        connect(&self.address).await
    }

    /// Sends the process `signal` (`TERM`, `KILL`) and returns when it was sent.
    pub(crate) fn signal(&self, signal: &str) -> Instant {
        let pid = self.child.id().expect("the server is running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        Instant::now()
    }

    /// Waits for the process to exit.
    pub(crate) async fn exited(&mut self) -> ExitStatus {
        tokio::time::timeout(self.patience, self.child.wait())
            .await
            .expect("the server exits")
            .unwrap()
    }

    /// Sends the process `signal` and waits for it to exit.
    pub(crate) async fn stop(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        self.exited().await
    }
}
