//! moto's KMS server: the one named by `ASSISTD_TEST_KMS_ENDPOINT`, or one started here.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Moto {
    endpoint: String,
    /// Keeps the child's stdin open: when this test binary exits the pipe closes and the
    /// wrapper shell stops moto, so no server outlives the tests.
    _child: Option<Mutex<Child>>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The endpoint URL of a running moto server (e.g. `http://127.0.0.1:5000`).
///
/// # Panics
/// Neither `ASSISTD_TEST_KMS_ENDPOINT` nor `moto_server` on PATH is available, or moto does
/// not come up: these tests never pass without a KMS to talk to.
pub(crate) fn endpoint() -> &'static str {
    &MOTO.get_or_init(start).endpoint
}

fn start() -> Moto {
    if let Ok(url) = std::env::var("ASSISTD_TEST_KMS_ENDPOINT")
        && !url.trim().is_empty()
    {
        return Moto {
            endpoint: url.trim().trim_end_matches('/').to_owned(),
            _child: None,
        };
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("moto_server").is_file())
    });
    assert!(
        on_path,
        "the KMS tests need moto's KMS server: run `pip install 'moto[server]'` so that \
         `moto_server` is on PATH (the tests start it), or start one yourself \
         (`moto_server -H 127.0.0.1 -p 5055`) and set ASSISTD_TEST_KMS_ENDPOINT=http://127.0.0.1:5055"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port();
    let child = Command::new("sh")
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
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            Ok(_) => break,
            Err(err) if Instant::now() < deadline && err.kind() != ErrorKind::PermissionDenied => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("moto_server did not start on port {port} within 60 s: {err}"),
        }
    }
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: Some(Mutex::new(child)),
    }
}
