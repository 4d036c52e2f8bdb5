//! The server as a whole: reflection, health, every method served, grpc-web text mode, CORS,
//! limits, files on disk, graceful shutdown.

use std::time::Duration;

use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd::proto::preferences::v1 as pb;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{authed, spawn_app, spawn_app_with};

const OUR_SERVICES: [&str; 5] = [
    "assistd.apikey.v1.UserApiKeyService",
    "assistd.auth.v1.AuthService",
    "assistd.chat.v1.ChatService",
    "assistd.gmail.v1.GmailService",
    "assistd.preferences.v1.PreferencesService",
];

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = spawn_app().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in OUR_SERVICES.iter().chain(&[
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "assistd.preferences.v1.PreferencesService".into(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("no file descriptor");
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    assert_eq!(file.package(), "assistd.preferences.v1");
    let comments = file
        .source_code_info
        .expect("comments are kept for describe");
    assert!(
        comments
            .location
            .iter()
            .any(|l| l.leading_comments().contains("Watch")),
        "service comments are served"
    );
}

#[tokio::test]
async fn health_reports_a_status_per_service() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);
    let status = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    // The probe sets the statuses right after start; give it a moment.
    let mut overall = ServingStatus::Unknown;
    for _ in 0..50 {
        if let Ok(response) = health.check(status("")).await {
            overall = response.into_inner().status();
            if overall == ServingStatus::Serving {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(overall, ServingStatus::Serving);
    let preferences = health
        .check(status("assistd.preferences.v1.PreferencesService"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preferences.status(), ServingStatus::Serving);
    let chat = health
        .check(status("assistd.chat.v1.ChatService"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chat.status(), ServingStatus::Serving);
    let gmail = health
        .check(status("assistd.gmail.v1.GmailService"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gmail.status(), ServingStatus::Serving);
    let unknown = health.check(status("nope.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn every_gmail_method_is_served_and_needs_a_token() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut gmail = GmailServiceClient::new(app.channel().await);
    // A user without synced mail has no such thread (before any Gemini key is looked at).
    let status = gmail
        .summarize_thread(authed(
            assistd::proto::gmail::v1::SummarizeThreadRequest {
                thread_id: "18f3c2a1b4d5e6f7".into(),
                refresh: false,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // The shipped methods of the same service answer.
    gmail
        .get_connection(authed(Default::default(), &token))
        .await
        .unwrap();

    // Without a token, the bearer layer answers first, on served services too.
    let status = gmail
        .get_connection(tonic::Request::new(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut chat = ChatServiceClient::new(app.channel().await);
    let status = chat
        .list_sessions(tonic::Request::new(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// A gRPC frame: flag byte, big-endian length, message.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a grpc-web body into (message frames, trailer text).
fn split_frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 == 0 {
            messages.push(payload.to_vec());
        } else {
            trailers.push_str(std::str::from_utf8(payload).unwrap());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

#[tokio::test]
async fn grpc_web_text_and_binary_over_plain_http1() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let url = format!(
        "{}/assistd.preferences.v1.PreferencesService/GetPreferences",
        app.address
    );
    let request_frame = frame(0, &pb::GetPreferencesRequest::default().encode_to_vec());

    let text = http
        .post(&url)
        .header("content-type", "application/grpc-web-text")
        .header("accept", "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(STANDARD.encode(&request_frame))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    assert_eq!(text.version(), reqwest::Version::HTTP_11);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web-text")
    );
    let body = text.text().await.unwrap();
    // Text mode may concatenate several base64 chunks, each padded on its own.
    let decoded: Vec<u8> = body
        .split_inclusive('=')
        .flat_map(|chunk| {
            let chunk = chunk.trim_start_matches('=');
            if chunk.is_empty() {
                Vec::new()
            } else {
                STANDARD.decode(chunk).unwrap()
            }
        })
        .collect();
    let (messages, trailers) = split_frames(&decoded);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let response = pb::GetPreferencesResponse::decode(messages[0].as_slice()).unwrap();
    assert_eq!(response.preferences.unwrap().timezone, "UTC");

    let binary = http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(request_frame)
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 200);
    let headers = binary.headers().clone();
    let body = binary.bytes().await.unwrap();
    let (_, trailers) = split_frames(&body);
    let status = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .or_else(|| {
            trailers
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_owned()))
        })
        .unwrap();
    assert_eq!(
        status, "16",
        "no token over grpc-web binary is UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let allowed = "https://app.example";
    let app = spawn_app_with(|config| {
        config.server.cors_allowed_origins = vec![allowed.into()];
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/assistd.preferences.v1.PreferencesService/GetPreferences",
        app.address
    );
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            )
            .send()
    };
    let ok = preflight(allowed).await.unwrap();
    let headers = ok.headers();
    assert_eq!(headers["access-control-allow-origin"], allowed);
    let allow_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("x-grpc-web"));
    assert!(headers.get("access-control-allow-credentials").is_none());

    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // The actual call exposes the gRPC status headers to the allowed page.
    let token = app.token_for(app.create_user().await);
    let call = http
        .post(&url)
        .header("origin", allowed)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(frame(0, &[]))
        .send()
        .await
        .unwrap();
    let expose = call.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(expose.contains(header), "{header} not exposed: {expose}");
    }
    assert_eq!(call.headers()["access-control-allow-origin"], allowed);

    // Without configured origins there are no CORS headers at all.
    let closed = spawn_app().await;
    let response = http
        .request(
            reqwest::Method::OPTIONS,
            format!(
                "{}/assistd.preferences.v1.PreferencesService/GetPreferences",
                closed.address
            ),
        )
        .header("origin", allowed)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let app = spawn_app_with(|config| config.server.max_decoding_message_size = 64 * 1024).await;
    let token = app.token_for(app.create_user().await);
    let status = app
        .preferences()
        .await
        .update_preferences(authed(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::Preferences {
                    default_model: "x".repeat(100 * 1024),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["default_model".into()],
                }),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

#[tokio::test]
async fn request_ids_are_returned_and_kept() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut client = app.preferences().await;
    let mut request = authed(pb::GetPreferencesRequest::default(), &token);
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-123".parse().unwrap());
    let response = client.get_preferences(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "trace-me-123"
    );
    let response = client
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap();
    let generated = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}

#[cfg(unix)]
#[tokio::test]
async fn generated_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&app.data_dir), 0o700);
    assert_eq!(mode(&app.data_dir.join("keys/access-token.pem")), 0o600);
    if app.config.database.url.is_empty() {
        assert_eq!(mode(&app.data_dir.join("assistd.db")), 0o600);
        let wal = app.data_dir.join("assistd.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
    }
}

#[tokio::test]
async fn shutdown_ends_watches_and_finishes() {
    let mut app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut watch = app
        .preferences()
        .await
        .watch_preferences(authed(pb::WatchPreferencesRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "graceful stop: {stopped:?}");
    let end = watch.next().await;
    match end {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        other => panic!("the watch should end with UNAVAILABLE, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
    use assistd::proto::apikey::v1::{Provider, SetApiKeyRequest};

    let mut app = spawn_app().await;
    let key = "AIzaSyD-inflight-0123456789abcdefghijk";
    app.gemini.allow_key(key);
    let token = app.token_for(app.create_user().await);
    // Gemini answers the validation after 800 ms; shutdown starts while the call waits.
    app.gemini.set_latency(Duration::from_millis(800));
    let mut client = UserApiKeyServiceClient::new(app.channel().await);
    let call = tokio::spawn(async move {
        client
            .set_api_key(authed(
                SetApiKeyRequest {
                    provider: Provider::Gemini.into(),
                    api_key: key.into(),
                    allow_unverified: false,
                },
                &token,
            ))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "graceful stop: {stopped:?}");
    let answer = call.await.unwrap();
    assert!(answer.is_ok(), "the in-flight call finished: {answer:?}");
}
