//! TLS on the API port: native gRPC (ALPN h2) and grpc-web (HTTP/1.1) over TLS with an rcgen
//! certificate, and a certificate renewed on SIGHUP while an open stream keeps its connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use assistd::proto::preferences::v1 as pb;
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_stream::StreamExt as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::helpers::{TestApp, authed, spawn_app_with};

/// A self-signed certificate for `localhost`, as PEM: (certificate, key).
fn certificate() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// Writes `pem` to the certificate and key files.
fn install(files: &(PathBuf, PathBuf), pem: &(String, String)) {
    std::fs::write(&files.0, &pem.0).unwrap();
    std::fs::write(&files.1, &pem.1).unwrap();
}

struct TlsApp {
    app: TestApp,
    port: u16,
    files: (PathBuf, PathBuf),
    _dir: tempfile::TempDir,
}

async fn spawn_tls_app(pem: &(String, String)) -> TlsApp {
    spawn_tls_app_with(pem, |_| {}).await
}

/// [`spawn_tls_app`] with `configure` applied to the configuration as well.
async fn spawn_tls_app_with(
    pem: &(String, String),
    configure: impl FnOnce(&mut assistd::config::Config),
) -> TlsApp {
    let dir = tempfile::TempDir::new().unwrap();
    let files = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    install(&files, pem);
    let (cert_file, key_file) = files.clone();
    let app = spawn_app_with(move |config| {
        config.server.tls.cert_file = Some(cert_file);
        config.server.tls.key_file = Some(key_file);
        configure(config);
    })
    .await;
    let port = app.address.rsplit(':').next().unwrap().parse().unwrap();
    TlsApp {
        app,
        port,
        files,
        _dir: dir,
    }
}

/// A native gRPC connection over TLS that trusts only `trusted` (PEM).
async fn tls_channel(port: u16, trusted: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(trusted))
        .domain_name("localhost");
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// The protocol the server picks over TLS when the client offers only `alpn`.
async fn negotiated(port: u16, trusted: &str, alpn: &[u8]) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(trusted.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn native_grpc_works_over_tls_with_alpn_h2() {
    let pem = certificate();
    let tls = spawn_tls_app(&pem).await;
    let token = tls.app.token_for(tls.app.create_user().await);

    let channel = tls_channel(tls.port, &pem.0)
        .await
        .expect("a TLS connection");
    let preferences = PreferencesServiceClient::new(channel)
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(preferences.preferences.is_some());

    assert_eq!(
        negotiated(tls.port, &pem.0, b"h2").await.as_deref(),
        Some(&b"h2"[..])
    );
    assert_eq!(
        negotiated(tls.port, &pem.0, b"http/1.1").await.as_deref(),
        Some(&b"http/1.1"[..])
    );

    // A plaintext client gets no answer from the TLS port.
    let plaintext = Channel::from_shared(format!("http://127.0.0.1:{}", tls.port))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        PreferencesServiceClient::new(channel)
            .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
            .await
            .unwrap_err();
    }
}

#[tokio::test]
async fn grpc_web_works_over_tls() {
    let pem = certificate();
    let tls = spawn_tls_app(&pem).await;
    let token = tls.app.token_for(tls.app.create_user().await);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.0.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], tls.port).into())
        .http1_only()
        .build()
        .unwrap();
    let response = client
        .post(format!(
            "https://localhost:{}/assistd.preferences.v1.PreferencesService/GetPreferences",
            tls.port
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        // One uncompressed frame holding the empty GetPreferencesRequest.
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let body = response.bytes().await.unwrap();
    assert_eq!(body[0], 0, "a message frame comes first");
    let trailers = String::from_utf8_lossy(&body);
    assert!(
        trailers.contains("grpc-status:0"),
        "the trailer frame says OK: {trailers:?}"
    );
}

#[tokio::test]
async fn allowed_origins_may_read_the_timing_of_their_calls_and_others_may_not() {
    const ALLOWED: &str = "https://app.example";
    let pem = certificate();
    let tls = spawn_tls_app_with(&pem, |config| {
        config.server.cors_allowed_origins = vec![ALLOWED.to_owned()];
    })
    .await;
    let token = tls.app.token_for(tls.app.create_user().await);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.0.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], tls.port).into())
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/assistd.preferences.v1.PreferencesService/GetPreferences",
        tls.port
    );
    let timing_allow_origin = |response: &reqwest::Response| {
        response
            .headers()
            .get("timing-allow-origin")
            .map(|value| value.to_str().unwrap().to_owned())
    };
    for origin in [ALLOWED, "https://evil.example"] {
        let call = client
            .post(&url)
            .header("origin", origin)
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("authorization", format!("Bearer {token}"))
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(call.status(), 200);
        let preflight = client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-grpc-web")
            .send()
            .await
            .unwrap();
        let expected = (origin == ALLOWED).then(|| origin.to_owned());
        assert_eq!(timing_allow_origin(&call), expected, "call from {origin}");
        assert_eq!(
            timing_allow_origin(&preflight),
            expected,
            "preflight from {origin}"
        );
    }
}

fn hang_up_this_process() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_renews_the_certificate_without_dropping_open_connections() {
    let old = certificate();
    let tls = spawn_tls_app(&old).await;
    let token = tls.app.token_for(tls.app.create_user().await);
    let open = tls_channel(tls.port, &old.0).await.unwrap();
    let mut client = PreferencesServiceClient::new(open);
    let mut watch = client
        .watch_preferences(authed(pb::WatchPreferencesRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();

    let new = certificate();
    install(&tls.files, &new);
    hang_up_this_process();
    // The reload happens on the server's signal task; wait until new connections see it.
    let mut renewed = None;
    for _ in 0..200 {
        if let Ok(channel) = tls_channel(tls.port, &new.0).await {
            renewed = Some(channel);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed = renewed.expect("new connections get the new certificate");
    PreferencesServiceClient::new(renewed)
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap();
    assert!(
        tls_channel(tls.port, &old.0).await.is_err(),
        "the old certificate is no longer presented"
    );

    // The connection opened before the renewal still carries calls and its stream.
    client
        .update_preferences(authed(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::Preferences {
                    theme: pb::Theme::Dark.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["theme".into()],
                }),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();
    let changed = watch.next().await.unwrap().unwrap();
    assert_eq!(
        changed.preferences.unwrap().theme(),
        pb::Theme::Dark,
        "the open watch stream saw the change"
    );
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_refused_at_start() {
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    let dir = tempfile::TempDir::new().unwrap();
    let files = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    install(&files, &(cert, other_key));
    let mut config = assistd::config::Config {
        data_dir: dir.path().join("data"),
        ..assistd::config::Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database.url = crate::helpers::fresh_database_url().await;
    config.server.tls.cert_file = Some(files.0.clone());
    config.server.tls.key_file = Some(files.1.clone());
    let err = assistd::server::Application::build(config)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("is not the key of"), "{message}");
    assert!(message.contains(Path::new("key.pem").to_str().unwrap()));
}
