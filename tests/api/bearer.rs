//! The bearer-token layer: every way a token can be wrong is UNAUTHENTICATED, and a rejected
//! call changes nothing.

use assistd::proto::preferences::v1::{self as pb, Theme};
use assistd_domain::UserId;
use assistd_identity::SigningKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, authed, spawn_app};

/// Signs `claims` with the server's own key, under `header`.
fn sign_with_server_key(app: &TestApp, header: &Header, claims: &serde_json::Value) -> String {
    let key = SigningKey::load(&app.data_dir.join("keys/access-token.pem")).unwrap();
    let encoding = EncodingKey::from_ed_pem(key.expose_pkcs8_pem().as_bytes()).unwrap();
    jsonwebtoken::encode(header, claims, &encoding).unwrap()
}

fn server_header(app: &TestApp) -> Header {
    let key = SigningKey::load(&app.data_dir.join("keys/access-token.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    header
}

fn claims(user: UserId, overrides: serde_json::Value) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": "assistd",
        "aud": "assistd",
        "sub": user.to_string(),
        "iat": now,
        "exp": now + 600,
        "jti": "test",
        "typ": "access",
    });
    for (key, value) in overrides.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

/// Each hostile token, named.
fn hostile_tokens(app: &TestApp, user: UserId) -> Vec<(&'static str, Option<String>)> {
    let valid = app.token_for(user);
    let (signed_part, signature) = valid.rsplit_once('.').unwrap();
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[0] ^= 0x01;
    let tampered_signature = format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(flipped));

    // The payload changed to another user, the original signature kept.
    let (header_part, _) = signed_part.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD.encode(claims(UserId::new(), json!({})).to_string());
    let tampered_payload = format!("{header_part}.{other_payload}.{signature}");

    let kid = server_header(app).kid.unwrap();
    let none_header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    let none_payload = URL_SAFE_NO_PAD.encode(claims(user, json!({})).to_string());
    let alg_none = format!("{none_header}.{none_payload}.");

    // HS256 keyed with the server's public key: the classic algorithm-confusion forgery.
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid);
    let key = SigningKey::load(&app.data_dir.join("keys/access-token.pem")).unwrap();
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims(user, json!({})),
        &EncodingKey::from_secret(key.public_key()),
    )
    .unwrap();

    let expired = app
        .tokens
        .issue_at(user, chrono::Utc::now() - chrono::Duration::hours(1))
        .token;
    let foreign_key = {
        let stranger = SigningKey::generate();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(stranger.kid().to_owned());
        jsonwebtoken::encode(
            &header,
            &claims(user, json!({})),
            &EncodingKey::from_ed_pem(stranger.expose_pkcs8_pem().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let header = server_header(app);
    vec![
        ("no token", None),
        ("empty bearer", Some(String::new())),
        ("not a JWT", Some("garbage".into())),
        ("expired", Some(expired)),
        ("tampered signature", Some(tampered_signature)),
        ("tampered payload", Some(tampered_payload)),
        ("alg none", Some(alg_none)),
        ("HS256 with the public key id", Some(hs256)),
        ("unknown signing key", Some(foreign_key)),
        (
            "wrong audience",
            Some(sign_with_server_key(
                app,
                &header,
                &claims(user, json!({"aud": "another-api"})),
            )),
        ),
        (
            "wrong issuer",
            Some(sign_with_server_key(
                app,
                &header,
                &claims(user, json!({"iss": "https://evil.example"})),
            )),
        ),
        (
            "wrong token type",
            Some(sign_with_server_key(
                app,
                &header,
                &claims(user, json!({"typ": "refresh"})),
            )),
        ),
        (
            "missing type",
            Some(sign_with_server_key(
                app,
                &header,
                &claims(user, json!({"typ": null})),
            )),
        ),
        (
            "lifetime too long",
            Some(sign_with_server_key(
                app,
                &header,
                &claims(
                    user,
                    json!({"exp": chrono::Utc::now().timestamp() + 86_400}),
                ),
            )),
        ),
        (
            "no key id",
            Some(sign_with_server_key(
                app,
                &Header::new(Algorithm::EdDSA),
                &claims(user, json!({})),
            )),
        ),
    ]
}

#[tokio::test]
async fn every_bad_token_is_unauthenticated_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let mut client = app.preferences().await;
    for (name, token) in hostile_tokens(&app, user) {
        let request = pb::UpdatePreferencesRequest {
            preferences: Some(pb::Preferences {
                theme: Theme::Dark.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["theme".into()],
            }),
            etag: String::new(),
        };
        let request = match &token {
            Some(token) => authed(request, token),
            None => tonic::Request::new(request),
        };
        let status = client.update_preferences(request).await.expect_err(name);
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        let reason = status
            .get_error_details()
            .error_info()
            .unwrap()
            .reason
            .clone();
        let expected = match name {
            "no token" => "ACCESS_TOKEN_MISSING",
            "expired" => "ACCESS_TOKEN_EXPIRED",
            _ => "ACCESS_TOKEN_INVALID",
        };
        assert_eq!(reason, expected, "{name}");
        if let Some(token) = token.filter(|t| t.len() > 8) {
            assert!(
                !status.message().contains(&token),
                "{name}: the token was echoed"
            );
        }
    }
    let stored = app.store.preferences().get(user).await.unwrap();
    assert_eq!(stored.version, 0, "a rejected call wrote to the database");
    assert_eq!(stored.theme, assistd_domain::preferences::Theme::System);

    // The control: the same call with a valid token goes through.
    let ok = client
        .update_preferences(authed(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::Preferences {
                    theme: Theme::Dark.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["theme".into()],
                }),
                etag: String::new(),
            },
            &app.token_for(user),
        ))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn bad_tokens_are_refused_over_grpc_web_too() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let expired = app
        .tokens
        .issue_at(user, chrono::Utc::now() - chrono::Duration::hours(1))
        .token;
    let status = app
        .preferences_web()
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &expired))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "ACCESS_TOKEN_EXPIRED"
    );
}

#[tokio::test]
async fn a_token_of_a_deleted_account_is_unauthenticated() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    app.store.users().delete(user).await.unwrap();
    let mut client = app.preferences().await;
    let status = client
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "ACCOUNT_NOT_FOUND"
    );
    let status = client
        .update_preferences(authed(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::Preferences {
                    theme: Theme::Dark.into(),
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
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tokens_of_a_previous_signing_key_still_verify() {
    let old_dir = tempfile::tempdir().unwrap();
    let old_key_file = old_dir.path().join("old.pem");
    let old_key = SigningKey::load_or_generate(&old_key_file).unwrap();
    let app = spawn_app_with_previous_key(&old_key_file).await;
    let user = app.create_user().await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(old_key.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &claims(user, json!({})),
        &EncodingKey::from_ed_pem(old_key.expose_pkcs8_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let ok = app
        .preferences()
        .await
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

async fn spawn_app_with_previous_key(path: &std::path::Path) -> TestApp {
    let path = path.to_owned();
    crate::helpers::spawn_app_with(move |config| {
        config.auth.previous_signing_key_files = vec![path];
    })
    .await
}

/// One grpc-web request whose body arrives `delay` after its headers, as a client that writes
/// the headers first sends it.
fn slow_body_request(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    delay: std::time::Duration,
) -> http::Request<http_body_util::StreamBody<BodyFrames>> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&0u32.to_be_bytes());
    let body: BodyFrames = Box::pin(futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(frame)))
    }));
    let mut request = http::Request::post(format!("{}{path}", app.address))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("content-length", "5");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(http_body_util::StreamBody::new(body)).unwrap()
}

type BodyFrames = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
            > + Send,
    >,
>;

/// The grpc-status of a grpc-web response: in the headers, or in the trailer frame.
async fn grpc_web_status(response: http::Response<hyper::body::Incoming>) -> String {
    use http_body_util::BodyExt as _;
    let header = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    header.unwrap_or_else(|| {
        String::from_utf8_lossy(&body)
            .split("grpc-status:")
            .nth(1)
            .map(|rest| {
                rest.trim()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect()
            })
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn a_refused_call_leaves_its_http1_connection_usable() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let path = "/assistd.preferences.v1.PreferencesService/GetPreferences";
    let delay = std::time::Duration::from_millis(200);

    // Refused for its token while its body is still on the way (as with clients that send
    // the headers first): the server reads the body before it answers ...
    let refused = sender
        .send_request(slow_body_request(&app, path, None, delay))
        .await
        .unwrap();
    assert_eq!(grpc_web_status(refused).await, "16");

    // ... so the same connection carries the next call, instead of being closed under a
    // client that is still writing (EPIPE) or about to reuse it (socket hang up).
    sender.ready().await.expect("the connection is still open");
    let served = sender
        .send_request(slow_body_request(&app, path, Some(&token), delay))
        .await
        .expect("the second call goes out on the same connection");
    assert_eq!(grpc_web_status(served).await, "0");
    drop(sender);
    connection.await.unwrap().unwrap();
}

/// The UNAUTHENTICATED reason of `result`, which must have failed.
fn refusal<T: std::fmt::Debug>(name: &str, result: Result<T, tonic::Status>) -> String {
    let status = result.expect_err(name);
    assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// A token issued outside any session (as `assistd admin issue-token` issues them) stops
/// working everywhere as soon as its account is deleted, not only in the handlers that read
/// the account.
#[tokio::test]
async fn a_sessionless_token_of_a_deleted_account_is_refused_by_every_rpc() {
    use apikey::user_api_key_service_client::UserApiKeyServiceClient;
    use assistd::proto::apikey::v1 as apikey;
    use assistd::proto::auth::v1 as auth;
    use assistd::proto::chat::v1 as chat;
    use auth::auth_service_client::AuthServiceClient;
    use chat::chat_service_client::ChatServiceClient;

    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let channel = app.channel().await;
    let mut keys = UserApiKeyServiceClient::new(channel.clone());
    let mut accounts = AuthServiceClient::new(channel.clone());
    let mut chats = ChatServiceClient::new(channel.clone());
    let mut preferences = app.preferences().await;
    // A trail to read: a refused attempt to store a key is audited.
    let status = keys
        .set_api_key(authed(
            apikey::SetApiKeyRequest {
                provider: apikey::Provider::Gemini.into(),
                api_key: "short".into(),
                allow_unverified: false,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    macro_rules! calls {
        () => {
            vec![
                (
                    "ListAuditEvents",
                    keys.list_audit_events(authed(
                        apikey::ListAuditEventsRequest::default(),
                        &token,
                    ))
                    .await
                    .map(|r| r.into_inner().events.len()),
                ),
                (
                    "ListApiKeys",
                    keys.list_api_keys(authed(apikey::ListApiKeysRequest::default(), &token))
                        .await
                        .map(|r| r.into_inner().api_keys.len()),
                ),
                (
                    "GetUsage",
                    keys.get_usage(authed(apikey::GetUsageRequest::default(), &token))
                        .await
                        .map(|_| 0),
                ),
                (
                    "GetTokenBudget",
                    keys.get_token_budget(authed(apikey::GetTokenBudgetRequest::default(), &token))
                        .await
                        .map(|_| 0),
                ),
                (
                    "auth ListSessions",
                    accounts
                        .list_sessions(authed(auth::ListSessionsRequest::default(), &token))
                        .await
                        .map(|r| r.into_inner().sessions.len()),
                ),
                (
                    "SignOut",
                    accounts
                        .sign_out(authed(auth::SignOutRequest::default(), &token))
                        .await
                        .map(|_| 0),
                ),
                (
                    "chat ListSessions",
                    chats
                        .list_sessions(authed(chat::ListSessionsRequest::default(), &token))
                        .await
                        .map(|r| r.into_inner().sessions.len()),
                ),
                (
                    "GetPreferences",
                    preferences
                        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
                        .await
                        .map(|_| 0),
                ),
            ]
        };
    }
    // Every call works while the account exists (and its answer is remembered).
    for (name, result) in calls!() {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    accounts
        .delete_account(authed(
            auth::DeleteAccountRequest {
                confirm_email: user.to_string(),
            },
            &token,
        ))
        .await
        .unwrap();
    // At once, on the replica that deleted it, and on one that never saw the token.
    for (name, result) in calls!() {
        assert_eq!(refusal(name, result), "ACCOUNT_NOT_FOUND", "{name}");
    }
    let replica = app.replica().await;
    let status = replica
        .preferences()
        .await
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await;
    assert_eq!(refusal("replica", status), "ACCOUNT_NOT_FOUND");
}

/// A session of `user` opened directly in the store, and an access token naming it.
async fn session_of(app: &TestApp, user: UserId) -> assistd_domain::AuthSessionId {
    let now = chrono::Utc::now();
    app.store
        .auth()
        .create_session(
            app.store.connection(),
            &assistd_store::NewAuthSession {
                user,
                device_name: "laptop".into(),
                user_agent: String::new(),
                ip_address: String::new(),
                method: assistd_domain::auth::SignInMethod::GoogleIdToken,
                now,
                expires_at: now + chrono::Duration::days(1),
            },
        )
        .await
        .unwrap()
        .id
}

/// A token whose `sub` names one account and whose `sid` names another account's session is
/// refused whether or not the owner's session is remembered, and refusing it changes nothing
/// for the owner.
#[tokio::test]
async fn a_token_whose_subject_and_session_disagree_is_refused_and_the_owner_is_not() {
    let app = spawn_app().await;
    let (owner, other) = (app.create_user().await, app.create_user().await);
    let mut client = app.preferences().await;
    let get = |token: &str| authed(pb::GetPreferencesRequest::default(), token);

    // The owner's session is remembered as active first; the mismatched token comes after.
    let session = session_of(&app, owner).await;
    let owners = app.tokens.issue_for_session(owner, session).token;
    let mismatched = app.tokens.issue_for_session(other, session).token;
    client.get_preferences(get(&owners)).await.unwrap();
    let result = client.get_preferences(get(&mismatched)).await;
    assert_eq!(refusal("after the owner", result), "SESSION_REVOKED");
    client.get_preferences(get(&owners)).await.unwrap();

    // The mismatched token comes first: its refusal does not lock the owner out.
    let session = session_of(&app, owner).await;
    let owners = app.tokens.issue_for_session(owner, session).token;
    let mismatched = app.tokens.issue_for_session(other, session).token;
    let result = client.get_preferences(get(&mismatched)).await;
    assert_eq!(refusal("before the owner", result), "SESSION_REVOKED");
    client.get_preferences(get(&owners)).await.unwrap();
    let result = client.get_preferences(get(&mismatched)).await;
    assert_eq!(refusal("again", result), "SESSION_REVOKED");
}
