//! Sign-in end to end against the in-tree OpenID provider: the redirect flow and ID tokens,
//! rotating refresh tokens with reuse detection, sessions and account deletion.

use std::sync::Arc;

use assistd::proto::auth::v1 as pb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd_testkit::oidc::{Hostile, OidcProvider};
use sea_orm::ConnectionTrait;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, authed, reason, spawn_app_with};

const REDIRECT: &str = OidcProvider::REDIRECT_URI;

async fn client(app: &TestApp) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(app.channel().await)
}

/// Follows the authorization URL like a browser, returning (state, code) from the redirect.
pub(crate) async fn authorize(url: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 302, "authorize answered {response:?}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let mut state = String::new();
    let mut code = String::new();
    for (key, value) in reqwest::Url::parse(&location).unwrap().query_pairs() {
        match key.as_ref() {
            "state" => state = value.into_owned(),
            "code" => code = value.into_owned(),
            _ => {}
        }
    }
    (state, code)
}

async fn sign_in(auth: &mut AuthServiceClient<Channel>, gmail: bool) -> pb::CompleteLoginResponse {
    let begun = auth
        .begin_login(pb::BeginLoginRequest {
            redirect_uri: REDIRECT.into(),
            request_gmail_access: gmail,
            request_gmail_compose: false,
            login_hint: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let (state, code) = authorize(&begun.authorization_url).await;
    assert_eq!(state, begun.state);
    auth.complete_login(pb::CompleteLoginRequest {
        state,
        code,
        device_name: "laptop".into(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            app.store.connection().get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn the_redirect_flow_signs_in_refreshes_and_signs_out() {
    let (app, provider) = app_with(|config| {
        config.sign_in.refresh_grace = std::time::Duration::from_secs(30);
    })
    .await;
    let mut auth = client(&app).await;
    let signed = sign_in(&mut auth, true).await;
    assert!(signed.new_user);
    assert!(signed.gmail_access_granted);
    let user = signed.user.unwrap();
    assert_eq!(user.email, "ada@example.com");
    assert!(user.email_verified);
    assert_eq!(user.display_name, "Ada Lovelace");
    let tokens = signed.tokens.unwrap();
    // The PKCE verifier went to the token endpoint and matched the challenge.
    let exchange = provider
        .token_requests()
        .into_iter()
        .find(|r| r.grant_type == "authorization_code")
        .unwrap();
    assert!(exchange.fields.contains_key("code_verifier"));

    let me = auth
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &tokens.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.id, user.id);

    // Signing in again finds the same account, by subject.
    let again = sign_in(&mut auth, false).await;
    assert!(!again.new_user);
    assert_eq!(again.user.unwrap().id, user.id);

    let refreshed = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_ne!(refreshed.refresh_token, tokens.refresh_token);
    assert_eq!(refreshed.session_id, tokens.session_id);

    let sessions = auth
        .list_sessions(authed(
            pb::ListSessionsRequest::default(),
            &refreshed.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s.current).count(), 1);
    assert_eq!(
        sessions.iter().find(|s| s.current).unwrap().id,
        tokens.session_id
    );

    auth.sign_out(authed(pb::SignOutRequest {}, &refreshed.access_token))
        .await
        .unwrap();
    let status = auth
        .get_current_user(authed(
            pb::GetCurrentUserRequest {},
            &refreshed.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "SESSION_REVOKED");
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: refreshed.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_REVOKED");

    // Google's tokens are stored sealed, never in the clear.
    let google_refresh = provider.issued_refresh_tokens();
    assert!(!google_refresh.is_empty());
    assert_eq!(count(&app, "SELECT count(*) FROM google_links").await, 1);
    // One audit row per event.
    for (action, expected) in [
        ("login_succeeded", 2),
        ("token_refreshed", 1),
        ("signed_out", 1),
        ("login_failed", 0),
    ] {
        assert_eq!(
            count(
                &app,
                &format!("SELECT count(*) FROM audit_events WHERE action = '{action}'")
            )
            .await,
            expected,
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_replayed_refresh_token_revokes_its_session_with_one_audit_row() {
    let (app, _provider) = app_with(|config| {
        config.sign_in.refresh_grace = std::time::Duration::from_secs(0);
    })
    .await;
    let mut auth = client(&app).await;
    let tokens = sign_in(&mut auth, false).await.tokens.unwrap();
    let first = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "REFRESH_TOKEN_REUSED");
    // Both the replayed token and its successor are dead now, and so is the access token.
    for token in [&tokens.refresh_token, &first.refresh_token] {
        let status = auth
            .refresh(pb::RefreshRequest {
                refresh_token: token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = auth
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &first.access_token))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_REVOKED");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_events WHERE action = 'refresh_token_reuse_detected'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn parallel_refreshes_and_a_lost_response_get_one_successor() {
    let (app, _provider) = app_with(|config| {
        config.sign_in.refresh_grace = std::time::Duration::from_secs(30);
    })
    .await;
    let mut auth = client(&app).await;
    let tokens = sign_in(&mut auth, false).await.tokens.unwrap();
    let calls = (0..50).map(|_| {
        let mut auth = auth.clone();
        let token = tokens.refresh_token.clone();
        async move {
            auth.refresh(pb::RefreshRequest {
                refresh_token: token,
            })
            .await
            .map(|r| r.into_inner().tokens.unwrap().refresh_token)
        }
    });
    let results = futures::future::join_all(calls).await;
    let successors: std::collections::HashSet<String> =
        results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(successors.len(), 1, "every caller got the same successor");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL"
        )
        .await,
        1
    );
    // The lost-response retry, inside the grace window, gets it again; the successor works.
    let successor = successors.into_iter().next().unwrap();
    let retried = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(retried.refresh_token, successor);
    auth.refresh(pb::RefreshRequest {
        refresh_token: successor,
    })
    .await
    .unwrap();
}

/// Signs in with the ID token `mint` makes and checks the refusal: status, reason, and that no
/// account and no session exist afterwards.
async fn id_token_is_refused(
    mint: impl FnOnce(&OidcProvider, serde_json::Value) -> (String, String),
    code: Code,
    expected_reason: &str,
) {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let mut claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    claims["jti"] = uuid::Uuid::now_v7().to_string().into();
    let (id_token, nonce) = mint(&provider, claims);
    let status = auth
        .sign_in_with_id_token(pb::SignInWithIdTokenRequest {
            id_token,
            nonce,
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected_reason);
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 0);
}

/// `claims` with the fields of `patch` replaced (a `null` removes one).
fn patched(mut claims: serde_json::Value, patch: serde_json::Value) -> serde_json::Value {
    for (key, value) in patch.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

macro_rules! refused_id_token {
    ($name:ident, $reason:literal, $mint:expr) => {
        #[tokio::test]
        async fn $name() {
            id_token_is_refused($mint, Code::Unauthenticated, $reason).await;
        }
    };
}

refused_id_token!(
    an_id_token_with_a_bad_signature_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (p.mint_hostile(&c, Hostile::BadSignature), String::new())
);
refused_id_token!(
    an_id_token_with_alg_none_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (p.mint_hostile(&c, Hostile::AlgNone), String::new())
);
refused_id_token!(
    an_id_token_signed_hs256_with_the_public_key_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (
        p.mint_hostile(&c, Hostile::Hs256WithPublicKey),
        String::new()
    )
);
refused_id_token!(
    an_id_token_with_an_unknown_kid_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (p.mint_hostile(&c, Hostile::UnknownKid), String::new())
);
refused_id_token!(
    an_id_token_from_another_issuer_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (
        p.mint(&patched(
            c,
            serde_json::json!({"iss": "https://evil.example"})
        )),
        String::new()
    )
);
refused_id_token!(
    an_id_token_for_another_audience_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (
        p.mint(&patched(
            c,
            serde_json::json!({"aud": "someone-else", "azp": "someone-else"})
        )),
        String::new()
    )
);
refused_id_token!(
    an_id_token_with_several_audiences_and_no_azp_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (
        p.mint(&patched(
            c,
            serde_json::json!({"aud": [OidcProvider::CLIENT_ID, "other"], "azp": null})
        )),
        String::new()
    )
);
refused_id_token!(
    an_expired_id_token_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| {
        let now = chrono::Utc::now().timestamp();
        (
            p.mint(&patched(
                c,
                serde_json::json!({"exp": now - 3600, "iat": now - 7200}),
            )),
            String::new(),
        )
    }
);
refused_id_token!(
    an_id_token_issued_in_the_future_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| {
        let now = chrono::Utc::now().timestamp();
        (
            p.mint(&patched(
                c,
                serde_json::json!({"iat": now + 3600, "exp": now + 7200}),
            )),
            String::new(),
        )
    }
);
refused_id_token!(
    an_id_token_with_another_nonce_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| (
        p.mint(&patched(c, serde_json::json!({"nonce": "n1"}))),
        "n2".to_owned()
    )
);
refused_id_token!(
    an_id_token_with_an_unverified_email_is_refused,
    "EMAIL_NOT_VERIFIED",
    |p, c| (
        p.mint(&patched(c, serde_json::json!({"email_verified": false}))),
        String::new()
    )
);

/// RFC 7515 §4.1.11: a validly signed ID token whose header lists an extension as critical
/// (`"crit": ["exp"]`) that the server does not understand is refused, whether a client hands
/// it in or the provider's token endpoint issues it in a redirect sign-in.
#[tokio::test]
async fn an_id_token_with_an_unknown_critical_header_is_refused() {
    id_token_is_refused(
        |p, c| (p.mint_hostile(&c, Hostile::UnknownCritical), String::new()),
        Code::Unauthenticated,
        "ID_TOKEN_INVALID",
    )
    .await;

    let (app, provider) = app_with(|_| {}).await;
    provider.set_id_token_forgery(Some(Hostile::UnknownCritical));
    let mut auth = client(&app).await;
    let begun = begin(&mut auth).await;
    let (state, code) = authorize(&begun.authorization_url).await;
    let status = complete(&mut auth, &state, &code).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "ID_TOKEN_INVALID");
    assert!(status.message().contains("header extensions"), "{status:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 0);

    // The same provider signing honestly again signs the user in: only the header was wrong.
    provider.set_id_token_forgery(None);
    let begun = begin(&mut auth).await;
    let (state, code) = authorize(&begun.authorization_url).await;
    complete(&mut auth, &state, &code).await.unwrap();
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn a_malformed_id_token_is_an_invalid_argument() {
    id_token_is_refused(
        |_, _| ("not-a-jwt".to_owned(), String::new()),
        Code::InvalidArgument,
        "",
    )
    .await;
}

#[tokio::test]
async fn a_replayed_id_token_is_refused_and_opens_no_second_session() {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let token = provider.mint(&provider.default_claims(OidcProvider::CLIENT_ID, None));
    let request = || pb::SignInWithIdTokenRequest {
        id_token: token.clone(),
        nonce: String::new(),
        device_name: String::new(),
    };
    auth.sign_in_with_id_token(request()).await.unwrap();
    let status = auth.sign_in_with_id_token(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "ID_TOKEN_INVALID");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 1);
}

async fn begin(auth: &mut AuthServiceClient<Channel>) -> pb::BeginLoginResponse {
    auth.begin_login(pb::BeginLoginRequest {
        redirect_uri: REDIRECT.into(),
        request_gmail_access: false,
        request_gmail_compose: false,
        login_hint: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn complete(
    auth: &mut AuthServiceClient<Channel>,
    state: &str,
    code: &str,
) -> Result<pb::CompleteLoginResponse, tonic::Status> {
    auth.complete_login(pb::CompleteLoginRequest {
        state: state.into(),
        code: code.into(),
        device_name: String::new(),
    })
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_redirect_uri_outside_the_allowlist_is_refused() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let status = auth
        .begin_login(pb::BeginLoginRequest {
            redirect_uri: "https://evil.example/callback".into(),
            request_gmail_access: false,
            request_gmail_compose: false,
            login_hint: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "REDIRECT_URI_NOT_ALLOWED");
    let details = status.get_error_details();
    assert_eq!(
        details.bad_request().unwrap().field_violations[0].field,
        "redirect_uri"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM login_attempts").await, 0);
}

#[tokio::test]
async fn an_unknown_state_is_refused() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let begun = begin(&mut auth).await;
    let (_state, code) = authorize(&begun.authorization_url).await;
    let status = complete(&mut auth, "unknown-state", &code)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "LOGIN_STATE_INVALID");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 0);
}

#[tokio::test]
async fn a_reused_state_is_refused() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let begun = begin(&mut auth).await;
    let (state, code) = authorize(&begun.authorization_url).await;
    complete(&mut auth, &state, &code).await.unwrap();
    let status = complete(&mut auth, &state, &code).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "LOGIN_STATE_INVALID");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 1);
}

#[tokio::test]
async fn a_reused_code_is_refused() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let first = begin(&mut auth).await;
    let (state, code) = authorize(&first.authorization_url).await;
    complete(&mut auth, &state, &code).await.unwrap();
    let second = begin(&mut auth).await;
    let status = complete(&mut auth, &second.state, &code).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "AUTHORIZATION_CODE_INVALID");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 1);
}

#[tokio::test]
async fn empty_login_fields_are_invalid_arguments() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let status = complete(&mut auth, "", "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["state", "code"]);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 0);
}

#[tokio::test]
async fn deleting_the_account_removes_its_rows_and_shreds_its_key() {
    let (app, _provider) = app_with(|config| {
        config.sign_in.refresh_grace = std::time::Duration::from_secs(30);
    })
    .await;
    let mut auth = client(&app).await;
    let signed = sign_in(&mut auth, true).await;
    let tokens = signed.tokens.unwrap();
    let user = signed.user.unwrap();
    let status = auth
        .delete_account(authed(
            pb::DeleteAccountRequest {
                confirm_email: "someone@else.example".into(),
            },
            &tokens.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "CONFIRMATION_MISMATCH");
    // Rows of other kinds too: a chat session, a memory, Google tokens (sealed).
    let id: assistd_domain::UserId = user.id.parse().unwrap();
    let now = chrono::Utc::now();
    let chat = app.store.chat();
    let session = chat
        .create_session(
            id,
            &assistd_domain::chat::NewSession {
                title: "kept?".into(),
                system_instruction: String::new(),
                model: String::new(),
            },
            now,
        )
        .await
        .unwrap();
    chat.add_memory(id, "likes tea", Some(session.id), now)
        .await
        .unwrap();
    let sealed: Vec<u8> = {
        let row = app
            .store
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                app.store.connection().get_database_backend(),
                "SELECT sealed_refresh_token FROM google_links".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index(0).unwrap()
    };
    let record = user.id.clone();
    assert!(
        app.sealer
            .open(id, "google_refresh_token", &record, &sealed)
            .await
            .is_ok(),
        "the sealed Google token opens before the deletion"
    );
    auth.delete_account(authed(
        pb::DeleteAccountRequest {
            confirm_email: "ADA@example.com".into(),
        },
        &tokens.access_token,
    ))
    .await
    .unwrap();
    for table in [
        "users",
        "auth_sessions",
        "refresh_tokens",
        "google_links",
        "user_data_keys",
        "preferences",
        "chat_sessions",
        "chat_memories",
    ] {
        assert_eq!(
            count(&app, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) FROM audit_events WHERE action = 'account_deleted' AND target = 'user/{}'",
                user.id
            )
        )
        .await,
        1
    );
    // The audit chain is intact: deleting the account touched no audit row.
    let report = app.audit.verify().await.unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(
        report.rows, 3,
        "the sign-in, the Gmail connection it granted, and the deletion"
    );
    // A copy of the sealed token taken before the deletion no longer opens.
    assert!(
        app.sealer
            .open(id, "google_refresh_token", &record, &sealed)
            .await
            .is_err()
    );
    let status = auth
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &tokens.access_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn app_with(
    adjust: impl FnOnce(&mut assistd::config::Config) + Send + 'static,
) -> (TestApp, Arc<OidcProvider>) {
    let provider = Arc::new(OidcProvider::start().await);
    let issuer = provider.issuer();
    let app = spawn_app_with(move |config| {
        config.sign_in.issuer = issuer;
        config.sign_in.client_id = OidcProvider::CLIENT_ID.into();
        config.sign_in.client_secret = OidcProvider::CLIENT_SECRET.into();
        config.sign_in.allowed_redirect_uris = vec![REDIRECT.into()];
        config.sign_in.sign_in_per_ip_per_minute = 10_000;
        config.sign_in.sign_in_per_user_per_minute = 10_000;
        adjust(config);
    })
    .await;
    (app, provider)
}

async fn id_token_sign_in(
    auth: &mut AuthServiceClient<Channel>,
    provider: &OidcProvider,
    device: &str,
) -> pb::SessionTokens {
    id_token_sign_in_result(auth, provider, device)
        .await
        .unwrap()
        .tokens
        .unwrap()
}

#[tokio::test]
async fn an_expired_login_state_is_refused() {
    let (app, _provider) = app_with(|config| {
        config.sign_in.login_attempt_ttl = std::time::Duration::from_secs(1);
    })
    .await;
    let mut auth = client(&app).await;
    let begun = auth
        .begin_login(pb::BeginLoginRequest {
            redirect_uri: REDIRECT.into(),
            request_gmail_access: false,
            request_gmail_compose: false,
            login_hint: "ada@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        begun
            .authorization_url
            .contains("login_hint=ada%40example.com")
    );
    let (state, code) = authorize(&begun.authorization_url).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let status = auth
        .complete_login(pb::CompleteLoginRequest {
            state,
            code,
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "LOGIN_STATE_INVALID");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_events WHERE action = 'login_failed'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn sign_in_calls_are_rate_limited_per_address() {
    let (app, _provider) = app_with(|config| {
        config.sign_in.sign_in_per_ip_per_minute = 3;
    })
    .await;
    let mut auth = client(&app).await;
    let begin = pb::BeginLoginRequest {
        redirect_uri: REDIRECT.into(),
        request_gmail_access: false,
        request_gmail_compose: false,
        login_hint: String::new(),
    };
    for _ in 0..3 {
        auth.begin_login(begin.clone()).await.unwrap();
    }
    let status = auth.begin_login(begin).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "RATE_LIMITED");
    let details = status.get_error_details();
    let retry = details.retry_info().unwrap();
    assert!(retry.retry_delay.unwrap() >= std::time::Duration::from_secs(1));
    // Refresh counts against the same address.
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn hosted_domains_and_idle_sessions_are_enforced() {
    let (app, provider) = app_with(|config| {
        config.sign_in.allowed_hosted_domains = vec!["example.org".into()];
        config.sign_in.session_idle_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut auth = client(&app).await;
    let mut claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    let status = auth
        .sign_in_with_id_token(pb::SignInWithIdTokenRequest {
            id_token: provider.mint(&claims),
            nonce: String::new(),
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "DOMAIN_NOT_ALLOWED");
    claims["hd"] = "Example.org".into();
    let tokens = auth
        .sign_in_with_id_token(pb::SignInWithIdTokenRequest {
            id_token: provider.mint(&claims),
            nonce: String::new(),
            device_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "REFRESH_TOKEN_INVALID");
}

#[tokio::test]
async fn sessions_are_listed_by_page_and_revoked_one_by_one_or_all_but_this() {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let a = id_token_sign_in(&mut auth, &provider, "a").await;
    let b = id_token_sign_in(&mut auth, &provider, "b").await;
    let c = id_token_sign_in(&mut auth, &provider, "c").await;
    let first = auth
        .list_sessions(authed(
            pb::ListSessionsRequest {
                page_size: 2,
                page_token: String::new(),
            },
            &c.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first
            .sessions
            .iter()
            .map(|s| s.device_name.as_str())
            .collect::<Vec<_>>(),
        ["c", "b"]
    );
    assert!(first.sessions[0].current);
    assert_eq!(first.sessions[0].ip_address, "127.0.0.1");
    assert!(first.sessions[0].user_agent.contains("tonic"));
    assert_eq!(
        first.sessions[0].sign_in_method(),
        pb::SignInMethod::GoogleIdToken
    );
    let second = auth
        .list_sessions(authed(
            pb::ListSessionsRequest {
                page_size: 2,
                page_token: first.next_page_token,
            },
            &c.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.sessions.len(), 1);
    assert_eq!(second.sessions[0].device_name, "a");
    assert!(second.next_page_token.is_empty());
    let status = auth
        .list_sessions(authed(
            pb::ListSessionsRequest {
                page_size: -1,
                page_token: String::new(),
            },
            &c.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Another user's session is NOT_FOUND, like a random id, and stays signed in.
    provider.set_user(assistd_testkit::oidc::TestUser::new(
        "other-sub",
        "bob@example.com",
    ));
    let other = id_token_sign_in(&mut auth, &provider, "bob").await;
    for id in [other.session_id.clone(), uuid::Uuid::now_v7().to_string()] {
        let status = auth
            .revoke_session(authed(
                pb::RevokeSessionRequest { session_id: id },
                &c.access_token,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    auth.get_current_user(authed(pb::GetCurrentUserRequest {}, &other.access_token))
        .await
        .unwrap();

    auth.revoke_session(authed(
        pb::RevokeSessionRequest {
            session_id: a.session_id.clone(),
        },
        &c.access_token,
    ))
    .await
    .unwrap();
    let status = auth
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &a.access_token))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_REVOKED");
    let revoked = auth
        .revoke_other_sessions(authed(pb::RevokeOtherSessionsRequest {}, &c.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_count, 1, "only b was left besides c");
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: b.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_REVOKED");
    auth.get_current_user(authed(pb::GetCurrentUserRequest {}, &c.access_token))
        .await
        .unwrap();
    auth.get_current_user(authed(pb::GetCurrentUserRequest {}, &other.access_token))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_profile_name_is_validated_and_kept_across_sign_ins() {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let tokens = id_token_sign_in(&mut auth, &provider, "").await;
    let update = |name: &str, paths: &[&str]| pb::UpdateProfileRequest {
        user: Some(pb::User {
            display_name: name.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    for (name, paths, field) in [
        ("Ada", &[][..], "update_mask"),
        ("Ada", &["email"][..], "update_mask"),
        ("   ", &["display_name"][..], "user.display_name"),
        ("a\u{7}b", &["display_name"][..], "user.display_name"),
    ] {
        let status = auth
            .update_profile(authed(update(name, paths), &tokens.access_token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?} {paths:?}");
        let violations = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .clone();
        assert_eq!(violations[0].field, field);
    }
    let updated = auth
        .update_profile(authed(
            update("  The Countess  ", &["display_name"]),
            &tokens.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.display_name, "The Countess");
    // A later sign-in refreshes email and picture but keeps the name the user chose.
    let again = id_token_sign_in(&mut auth, &provider, "").await;
    let me = auth
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &again.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.display_name, "The Countess");
    assert_eq!(me.picture_url, "https://example.com/ada.png");
}

#[tokio::test]
async fn google_tokens_refresh_and_a_revoked_grant_needs_a_new_consent() {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let signed = sign_in(&mut auth, true).await;
    let user: assistd_domain::UserId = signed.user.unwrap().id.parse().unwrap();
    let first_access = provider.issued_access_tokens().last().unwrap().clone();
    let got = app.auth.google_access_token(user).await.unwrap();
    assert_eq!(got.expose_secret_str().unwrap(), first_access);
    // Once the stored access token has expired, the refresh token gets a new one.
    app.store
        .connection()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            app.store.connection().get_database_backend(),
            "UPDATE google_links SET access_expires_at = $1",
            [chrono::Utc::now()
                .checked_sub_signed(chrono::Duration::hours(1))
                .unwrap()
                .into()],
        ))
        .await
        .unwrap();
    let refreshed = app.auth.google_access_token(user).await.unwrap();
    let newest = provider.issued_access_tokens().last().unwrap().clone();
    assert_ne!(newest, first_access);
    assert_eq!(refreshed.expose_secret_str().unwrap(), newest);
    assert!(
        provider
            .token_requests()
            .iter()
            .any(|r| r.grant_type == "refresh_token")
    );
    // Google revokes the grant: invalid_grant marks the link, and it stays marked.
    for token in provider.issued_refresh_tokens() {
        provider.revoke_refresh_token(&token);
    }
    app.store
        .connection()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            app.store.connection().get_database_backend(),
            "UPDATE google_links SET access_expires_at = $1",
            [chrono::Utc::now()
                .checked_sub_signed(chrono::Duration::hours(1))
                .unwrap()
                .into()],
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        match app.auth.google_access_token(user).await {
            Err(assistd_domain::Error::FailedPrecondition { reason, .. }) => {
                assert_eq!(reason.as_str(), "GOOGLE_REAUTH_REQUIRED");
            }
            other => panic!(
                "expected GOOGLE_REAUTH_REQUIRED, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    let refresh_grants = provider
        .token_requests()
        .iter()
        .filter(|r| r.grant_type == "refresh_token")
        .count();
    assert_eq!(refresh_grants, 2, "the marked link is not tried again");
    // A sign-in that brings no new refresh token does not heal the link.
    provider.set_omit_refresh_token(true);
    let again = sign_in(&mut auth, true).await;
    assert!(!again.gmail_access_granted);
    assert!(matches!(
        app.auth.google_access_token(user).await,
        Err(assistd_domain::Error::FailedPrecondition { .. })
    ));
    // A new consent with a refresh token does.
    provider.set_omit_refresh_token(false);
    let healed = sign_in(&mut auth, true).await;
    assert!(healed.gmail_access_granted);
    app.auth.google_access_token(user).await.unwrap();
}

#[tokio::test]
async fn a_code_from_another_login_or_a_forged_nonce_signs_nobody_in() {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let begin = pb::BeginLoginRequest {
        redirect_uri: REDIRECT.into(),
        request_gmail_access: false,
        request_gmail_compose: false,
        login_hint: String::new(),
    };
    // Code injection: a code obtained for attempt A presented with attempt B's state is sent
    // with B's PKCE verifier, which does not match A's challenge.
    let a = auth.begin_login(begin.clone()).await.unwrap().into_inner();
    let b = auth.begin_login(begin.clone()).await.unwrap().into_inner();
    let (_state_a, code_a) = authorize(&a.authorization_url).await;
    let status = auth
        .complete_login(pb::CompleteLoginRequest {
            state: b.state,
            code: code_a,
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "AUTHORIZATION_CODE_INVALID");
    let exchange = provider
        .token_requests()
        .into_iter()
        .find(|r| r.grant_type == "authorization_code")
        .unwrap();
    assert!(exchange.fields.contains_key("code_verifier"));
    // The provider returns an ID token whose nonce is not the one this login asked for.
    provider.set_id_token_claims(serde_json::json!({"nonce": "replayed-nonce"}));
    let c = auth.begin_login(begin).await.unwrap().into_inner();
    let (state, code) = authorize(&c.authorization_url).await;
    let status = auth
        .complete_login(pb::CompleteLoginRequest {
            state,
            code,
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "ID_TOKEN_INVALID");
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_events WHERE action = 'login_failed'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn per_account_limits_and_a_kept_google_refresh_token() {
    let (app, provider) = app_with(|config| {
        config.sign_in.sign_in_per_user_per_minute = 3;
    })
    .await;
    let mut auth = client(&app).await;
    let first = sign_in(&mut auth, true).await;
    assert!(first.gmail_access_granted);
    // Google leaves the refresh token out of a later consent: the stored one is kept.
    provider.set_omit_refresh_token(true);
    let second = sign_in(&mut auth, true).await;
    assert!(second.gmail_access_granted);
    let user: assistd_domain::UserId = second.user.unwrap().id.parse().unwrap();
    let link = app.store.auth().google_link(user).await.unwrap().unwrap();
    assert!(link.sealed_refresh_token.is_some());
    // The third sign-in of this account within the minute is refused and opens nothing.
    id_token_sign_in_result(&mut auth, &provider, "")
        .await
        .unwrap();
    let status = id_token_sign_in_result(&mut auth, &provider, "")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "RATE_LIMITED");
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 3);
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_refreshes() {
    let (app, provider) = app_with(|config| {
        config.sign_in.session_max_lifetime = std::time::Duration::from_secs(2);
    })
    .await;
    let mut auth = client(&app).await;
    let tokens = id_token_sign_in_result(&mut auth, &provider, "")
        .await
        .unwrap()
        .tokens
        .unwrap();
    let session_end = tokens.refresh_token_expire_time.unwrap().seconds;
    assert!(session_end <= chrono::Utc::now().timestamp() + 3);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let next = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    // The new refresh token does not outlive the session.
    assert_eq!(next.refresh_token_expire_time.unwrap().seconds, session_end);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: next.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "REFRESH_TOKEN_INVALID");
}

async fn id_token_sign_in_result(
    auth: &mut AuthServiceClient<Channel>,
    provider: &OidcProvider,
    device: &str,
) -> Result<pb::SignInWithIdTokenResponse, tonic::Status> {
    let mut claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    // Tokens minted within one second would otherwise be identical, and each is single use.
    claims["jti"] = uuid::Uuid::now_v7().to_string().into();
    auth.sign_in_with_id_token(pb::SignInWithIdTokenRequest {
        id_token: provider.mint(&claims),
        nonce: String::new(),
        device_name: device.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn sign_in_and_refresh_work_over_grpc_web() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut web = AuthServiceClient::with_origin(app.grpc_web(), app.address.parse().unwrap());
    let begun = web
        .begin_login(pb::BeginLoginRequest {
            redirect_uri: REDIRECT.into(),
            request_gmail_access: false,
            request_gmail_compose: false,
            login_hint: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let (state, code) = authorize(&begun.authorization_url).await;
    let tokens = web
        .complete_login(pb::CompleteLoginRequest {
            state,
            code,
            device_name: "browser".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let next = web
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let me = web
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &next.access_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.email, "ada@example.com");
    let status = web
        .complete_login(pb::CompleteLoginRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_login_begun_on_one_replica_finishes_on_another() {
    let (app, _provider) = app_with(|_| {}).await;
    let replica = app.replica().await;
    let begun = client(&app)
        .await
        .begin_login(pb::BeginLoginRequest {
            redirect_uri: REDIRECT.into(),
            request_gmail_access: false,
            request_gmail_compose: false,
            login_hint: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let (state, code) = authorize(&begun.authorization_url).await;
    let mut other = client(&replica).await;
    let tokens = other
        .complete_login(pb::CompleteLoginRequest {
            state,
            code,
            device_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    // And the first replica accepts the refresh token the second one issued.
    client(&app)
        .await
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_id_token_stays_single_use_until_the_verifier_would_refuse_it() {
    let (app, provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let mut claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    let now = chrono::Utc::now().timestamp();
    claims["exp"] = (now + 2).into();
    let token = provider.mint(&claims);
    let request = || pb::SignInWithIdTokenRequest {
        id_token: token.clone(),
        nonce: String::new(),
        device_name: String::new(),
    };
    auth.sign_in_with_id_token(request()).await.unwrap();
    // Past its expiry but inside the tolerated clock skew, after expired records were purged
    // (BeginLogin purges), the token is still refused as used.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    auth.begin_login(pb::BeginLoginRequest {
        redirect_uri: REDIRECT.into(),
        request_gmail_access: false,
        request_gmail_compose: false,
        login_hint: String::new(),
    })
    .await
    .unwrap();
    let status = auth.sign_in_with_id_token(request()).await.unwrap_err();
    assert_eq!(reason(&status), "ID_TOKEN_INVALID");
    // The same signed part with a signature spelled differently (spare base64 bits) is the
    // same token: refused whether the verifier or the single-use record catches it.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut respelled: Vec<u8> = signature.bytes().collect();
    let last = respelled.last_mut().unwrap();
    *last = match *last {
        b'A' => b'B',
        b'Q' => b'R',
        b'g' => b'h',
        b'w' => b'x',
        other => other ^ 1,
    };
    let status = auth
        .sign_in_with_id_token(pb::SignInWithIdTokenRequest {
            id_token: format!("{signed}.{}", String::from_utf8(respelled).unwrap()),
            nonce: String::new(),
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 1);
}

#[tokio::test]
async fn concurrent_first_sign_ins_make_one_account() {
    let (app, provider) = app_with(|_| {}).await;
    let auth = client(&app).await;
    let calls = (0..10).map(|_| {
        let mut auth = auth.clone();
        let provider = Arc::clone(&provider);
        async move { id_token_sign_in_result(&mut auth, &provider, "").await }
    });
    let results = futures::future::join_all(calls).await;
    let users: std::collections::HashSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().user.unwrap().id)
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 10);
}

refused_id_token!(
    an_id_token_not_valid_before_a_future_time_is_refused,
    "ID_TOKEN_INVALID",
    |p, c| {
        let now = chrono::Utc::now().timestamp();
        (
            p.mint(&patched(c, serde_json::json!({"nbf": now + 3600}))),
            String::new(),
        )
    }
);

/// `at_hash` of an OAuth access token (OpenID Connect Core 3.1.3.6, RS256).
fn at_hash(access_token: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    let digest = digest.as_ref();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The ID token the server received in CompleteLogin was used to sign in: presenting it to
/// SignInWithIdToken afterwards is a replay.
#[tokio::test]
async fn the_id_token_of_a_redirect_sign_in_cannot_sign_in_again() {
    let (app, provider) = app_with(|_| {}).await;
    // Fixed times make the provider's ID token reproducible: RS256 signatures are
    // deterministic, so the same claims under the same key give the same token.
    let now = chrono::Utc::now().timestamp();
    let times = serde_json::json!({"iat": now, "exp": now + 3600});
    provider.set_id_token_claims(times.clone());
    let mut auth = client(&app).await;
    sign_in(&mut auth, false).await;
    let nonce = provider.authorize_requests().last().unwrap()["nonce"].clone();
    let access_token = provider.issued_access_tokens().last().unwrap().clone();
    let mut claims = provider.default_claims(OidcProvider::CLIENT_ID, Some(&nonce));
    claims["at_hash"] = at_hash(&access_token).into();
    let received = provider.mint(&patched(claims, times));

    let status = auth
        .sign_in_with_id_token(pb::SignInWithIdTokenRequest {
            id_token: received,
            nonce,
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "ID_TOKEN_INVALID");
    assert!(status.message().contains("already used"), "{status:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM auth_sessions").await, 1);
}

/// A signed-in session's access token answers ACCOUNT_NOT_FOUND once its account is deleted,
/// on every call, though the session went with the account.
#[tokio::test]
async fn a_session_token_of_a_deleted_account_is_account_not_found() {
    let (app, _provider) = app_with(|_| {}).await;
    let mut auth = client(&app).await;
    let signed = sign_in(&mut auth, false).await;
    let access = signed.tokens.unwrap().access_token;
    let user = signed.user.unwrap();
    auth.list_sessions(authed(pb::ListSessionsRequest::default(), &access))
        .await
        .unwrap();
    auth.delete_account(authed(
        pb::DeleteAccountRequest {
            confirm_email: user.email.clone(),
        },
        &access,
    ))
    .await
    .unwrap();
    let statuses = [
        auth.list_sessions(authed(pb::ListSessionsRequest::default(), &access))
            .await
            .unwrap_err(),
        auth.get_current_user(authed(pb::GetCurrentUserRequest {}, &access))
            .await
            .unwrap_err(),
        auth.sign_out(authed(pb::SignOutRequest::default(), &access))
            .await
            .unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(reason(&status), "ACCOUNT_NOT_FOUND", "{status:?}");
    }
}
