//! moto's KMS server: the one named by `ASSISTD_TEST_KMS_ENDPOINT`, or one started here.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::ENDPOINT_ENV;

/// How long `moto_server` may take to accept connections (it imports a lot of Python).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The process-wide moto, started by the first test that asks for it.
static MOTO: OnceLock<MotoKms> = OnceLock::new();

/// moto's KMS server, shared by every test of a test binary: each test makes its own keys
/// ([`MotoKms::create_key`]), so they do not see each other's.
pub struct MotoKms {
    endpoint: String,
    /// The wrapper shell of a `moto_server` started here (`None` for one named by
    /// `ASSISTD_TEST_KMS_ENDPOINT`). Holding it keeps the child's stdin open: when the test
    /// binary exits the pipe closes and the wrapper stops moto, so no server outlives the
    /// tests.
    server: Option<Child>,
}

impl std::fmt::Debug for MotoKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoKms")
            .field("endpoint", &self.endpoint)
            .field("started_here", &self.server.is_some())
            .finish()
    }
}

impl MotoKms {
    /// The moto server of this test binary: the one at `ASSISTD_TEST_KMS_ENDPOINT` when that
    /// is set, else a `moto_server -H 127.0.0.1 -p <free port>` started from PATH on first
    /// use and stopped when the binary exits. Waits (off the async workers) until it accepts
    /// connections.
    ///
    /// # Panics
    /// Neither `ASSISTD_TEST_KMS_ENDPOINT` nor `moto_server` on PATH is there (the message
    /// says how to install it: `pip install 'moto[server]'`), or moto does not accept
    /// connections within 60 s: tests that need KMS never pass without one. Called outside a
    /// Tokio runtime.
    pub async fn shared() -> &'static Self {
        if let Some(moto) = MOTO.get() {
            return moto;
        }
        // Starting moto blocks for seconds; concurrent first callers wait for the same one.
        tokio::task::spawn_blocking(|| MOTO.get_or_init(start))
            .await
            .unwrap_or_else(|err| match err.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(err) => panic!("starting moto was cancelled: {err}"),
            })
    }

    /// Its endpoint URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this binary started the server (rather than finding `ASSISTD_TEST_KMS_ENDPOINT`).
    #[must_use]
    pub fn started_here(&self) -> bool {
        self.server.is_some()
    }

    /// AWS configuration for it, see [`super::sdk_config`].
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        super::sdk_config(&self.endpoint).await
    }

    /// A KMS client for it, see [`super::client`].
    pub async fn client(&self) -> aws_sdk_kms::Client {
        super::client(&self.endpoint).await
    }

    /// Creates a fresh symmetric key in it and returns its id, see [`super::create_key`].
    ///
    /// # Panics
    /// CreateKey fails.
    pub async fn create_key(&self) -> String {
        super::create_key(&self.endpoint).await
    }

    /// The environment a spawned server needs to use it, see [`super::server_env`].
    #[must_use]
    pub fn server_env(&self) -> [(&'static str, String); 5] {
        super::server_env(&self.endpoint)
    }
}

fn start() -> MotoKms {
    if let Ok(url) = std::env::var(ENDPOINT_ENV)
        && !url.trim().is_empty()
    {
        return MotoKms {
            endpoint: url.trim().trim_end_matches('/').to_owned(),
            server: None,
        };
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("moto_server").is_file())
    });
    assert!(
        on_path,
        "the KMS tests need moto's KMS server: run `pip install 'moto[server]'` so that \
         `moto_server` is on PATH (the tests start it), or start one yourself \
         (`moto_server -H 127.0.0.1 -p 5055`) and set {ENDPOINT_ENV}=http://127.0.0.1:5055"
    );
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port();
    // The shell stops moto once its stdin (our end of the pipe) closes, i.e. when this
    // process exits, however it exits.
    let server = Command::new("sh")
        .args([
            "-c",
            "moto_server -H 127.0.0.1 -p \"$1\" >/dev/null 2>&1 & moto=$!; cat >/dev/null; kill $moto",
            "sh",
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting moto_server");
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            Ok(_) => break,
            Err(err) if Instant::now() < deadline && err.kind() != ErrorKind::PermissionDenied => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!(
                "moto_server did not accept connections on port {port} within {}s: {err}",
                STARTUP_TIMEOUT.as_secs()
            ),
        }
    }
    MotoKms {
        endpoint: format!("http://{address}"),
        server: Some(server),
    }
}
