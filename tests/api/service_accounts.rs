//! Service accounts: another backend calls assistd as itself, with tokens it signs with its
//! own Ed25519 key, for users it names. An allowed RPC works, others are PERMISSION_DENIED;
//! it sees only the data of the users it may act for; a revoked account is refused on its next
//! call; every call is in the user's audit trail with the account's id. The accounts are made
//! through the real `assistd admin service-account` commands where the command is the point.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use assistd::proto::apikey::v1 as keys_pb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::chat::v1 as chat_pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use assistd::proto::preferences::v1 as prefs_pb;
use assistd_core::{ON_BEHALF_OF_METADATA, ServiceAccounts};
use assistd_domain::service_account::{NewServiceAccount, UserScope};
use assistd_domain::{ServiceAccountId, SystemClock, UserId};
use assistd_identity::{SigningKey, sign_service_token};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::admin::run;
use crate::helpers::{TestApp, authed, reason, spawn_app};

const GET_PREFERENCES: &str = "/assistd.preferences.v1.PreferencesService/GetPreferences";
const LIST_SESSIONS: &str = "/assistd.chat.v1.ChatService/ListSessions";
const LIST_API_KEYS: &str = "/assistd.apikey.v1.UserApiKeyService/ListApiKeys";

/// The server's service accounts, as the admin command would reach them.
fn accounts(app: &TestApp) -> ServiceAccounts {
    ServiceAccounts::new(
        app.store.clone(),
        app.audit.clone(),
        Arc::new(SystemClock),
        app.config.auth.audience.clone(),
    )
}

/// A service: its account id and private key.
struct Service {
    id: ServiceAccountId,
    key: SigningKey,
    audience: String,
}

impl Service {
    async fn create(app: &TestApp, name: &str, methods: &[&str], users: UserScope) -> Self {
        let known = assistd::bearer::authenticated_methods();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let methods: Vec<String> = methods.iter().map(|&m| m.to_owned()).collect();
        let new = NewServiceAccount::new(name, &methods, users, &known).unwrap();
        let created = accounts(app).create(&new).await.unwrap();
        Self {
            id: created.account.id,
            key: created.private_key,
            audience: app.config.auth.audience.clone(),
        }
    }

    fn token(&self) -> String {
        sign_service_token(
            &self.key,
            self.id,
            &self.audience,
            Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .unwrap()
    }

    /// `message` signed by the service, for `user`.
    fn request<T>(&self, message: T, user: UserId) -> tonic::Request<T> {
        let mut request = authed(message, &self.token());
        request
            .metadata_mut()
            .insert(ON_BEHALF_OF_METADATA, user.to_string().parse().unwrap());
        request
    }
}

async fn get_preferences(
    app: &TestApp,
    request: tonic::Request<prefs_pb::GetPreferencesRequest>,
) -> Result<prefs_pb::GetPreferencesResponse, tonic::Status> {
    app.preferences()
        .await
        .get_preferences(request)
        .await
        .map(tonic::Response::into_inner)
}

/// The user's own audit trail, read with their own token.
async fn trail(app: &TestApp, user: UserId) -> Vec<keys_pb::AuditEvent> {
    UserApiKeyServiceClient::new(app.channel().await)
        .list_audit_events(authed(
            keys_pb::ListAuditEventsRequest::default(),
            &app.token_for(user),
        ))
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test]
async fn an_allowed_rpc_works_for_an_allowed_user_and_nothing_else_does() {
    let app = spawn_app().await;
    let alice = app.create_user().await;
    let bob = app.create_user().await;
    let service = Service::create(
        &app,
        "digest",
        &[GET_PREFERENCES, LIST_SESSIONS],
        UserScope::Listed(vec![alice]),
    )
    .await;

    let id = crate::call_log::request_id();
    let mut request = service.request(prefs_pb::GetPreferencesRequest::default(), alice);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    get_preferences(&app, request)
        .await
        .expect("an allowed RPC for an allowed user");
    // The call log names the service and the user, never the token.
    let line = crate::call_log::logged(&id).await;
    assert_eq!(
        line["caller"],
        format!("service:{} for user:{alice}", service.id)
    );

    // An RPC not on the list.
    let refused = UserApiKeyServiceClient::new(app.channel().await)
        .list_api_keys(service.request(keys_pb::ListApiKeysRequest::default(), alice))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused), "RPC_NOT_ALLOWED");
    assert!(refused.message().contains(LIST_API_KEYS), "{refused:?}");

    // A user not on the list.
    let refused = get_preferences(
        &app,
        service.request(prefs_pb::GetPreferencesRequest::default(), bob),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused), "USER_NOT_ALLOWED");

    // No user named at all, or not a user id.
    let refused = get_preferences(
        &app,
        authed(prefs_pb::GetPreferencesRequest::default(), &service.token()),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let violations = refused.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, ON_BEHALF_OF_METADATA);
    let mut request = authed(prefs_pb::GetPreferencesRequest::default(), &service.token());
    request
        .metadata_mut()
        .insert(ON_BEHALF_OF_METADATA, "alice".parse().unwrap());
    let refused = get_preferences(&app, request).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // Alice's trail holds the allowed call and the refused one, each naming the account and
    // the RPC; Bob's holds nothing of the service.
    let events = trail(&app, alice).await;
    let service_calls: Vec<_> = events
        .iter()
        .filter(|e| e.action() == keys_pb::AuditAction::ServiceCall)
        .collect();
    assert_eq!(service_calls.len(), 2, "{events:?}");
    assert_eq!(service_calls[0].outcome(), keys_pb::AuditOutcome::Failure);
    assert_eq!(
        service_calls[0].metadata.get("method").map(String::as_str),
        Some(LIST_API_KEYS)
    );
    assert_eq!(service_calls[1].outcome(), keys_pb::AuditOutcome::Success);
    assert_eq!(
        service_calls[1].metadata.get("method").map(String::as_str),
        Some(GET_PREFERENCES)
    );
    for event in &service_calls {
        assert_eq!(event.target, format!("service_account/{}", service.id));
        assert_eq!(
            event.metadata.get("service_account_id"),
            Some(&service.id.to_string())
        );
        assert_eq!(event.ip_address, "127.0.0.1");
    }
    assert!(
        trail(&app, bob)
            .await
            .iter()
            .all(|e| e.action() != keys_pb::AuditAction::ServiceCall)
    );
    assert_eq!(app.audit.verify().await.unwrap().first_break, None);
}

#[tokio::test]
async fn a_service_sees_only_the_users_it_may_act_for() {
    let app = spawn_app().await;
    let alice = app.create_user().await;
    let carol = app.create_user().await;
    let mallory = app.create_user().await;
    let mut chat = ChatServiceClient::new(app.channel().await);
    for (user, title) in [(alice, "alice's plans"), (mallory, "mallory's secrets")] {
        chat.create_session(authed(
            chat_pb::CreateSessionRequest {
                title: title.to_owned(),
                ..Default::default()
            },
            &app.token_for(user),
        ))
        .await
        .unwrap();
    }
    let service = Service::create(
        &app,
        "assistant-sync",
        &[LIST_SESSIONS],
        UserScope::Listed(vec![alice, carol]),
    )
    .await;

    let titles = |response: chat_pb::ListSessionsResponse| -> Vec<String> {
        response.sessions.into_iter().map(|s| s.title).collect()
    };
    let for_alice = chat
        .list_sessions(service.request(chat_pb::ListSessionsRequest::default(), alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(for_alice), ["alice's plans"]);
    let for_carol = chat
        .list_sessions(service.request(chat_pb::ListSessionsRequest::default(), carol))
        .await
        .unwrap()
        .into_inner();
    assert!(titles(for_carol).is_empty());
    let refused = chat
        .list_sessions(service.request(chat_pb::ListSessionsRequest::default(), mallory))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(!refused.message().contains("secrets"), "{refused:?}");

    // An account that may act for anyone still needs the user to exist.
    let any = Service::create(&app, "ops", &[LIST_SESSIONS], UserScope::Any).await;
    let nobody = UserId::new();
    let refused = chat
        .list_sessions(any.request(chat_pb::ListSessionsRequest::default(), nobody))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let for_mallory = chat
        .list_sessions(any.request(chat_pb::ListSessionsRequest::default(), mallory))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(for_mallory), ["mallory's secrets"]);
}

#[tokio::test]
async fn tokens_that_are_not_the_accounts_own_are_refused() {
    let app = spawn_app().await;
    let alice = app.create_user().await;
    let service = Service::create(
        &app,
        "digest",
        &[GET_PREFERENCES],
        UserScope::Listed(vec![alice]),
    )
    .await;
    let with_token = |token: &str| {
        let mut request = authed(prefs_pb::GetPreferencesRequest::default(), token);
        request
            .metadata_mut()
            .insert(ON_BEHALF_OF_METADATA, alice.to_string().parse().unwrap());
        request
    };
    let now = chrono::Utc::now();
    let audience = app.config.auth.audience.clone();
    let cases = [
        (
            "signed with another key",
            sign_service_token(
                &SigningKey::generate(),
                service.id,
                &audience,
                Duration::from_secs(60),
                now,
            )
            .unwrap(),
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "an account that does not exist",
            sign_service_token(
                &service.key,
                ServiceAccountId::new(),
                &audience,
                Duration::from_secs(60),
                now,
            )
            .unwrap(),
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "another audience",
            sign_service_token(
                &service.key,
                service.id,
                "some-other-api",
                Duration::from_secs(60),
                now,
            )
            .unwrap(),
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "expired",
            sign_service_token(
                &service.key,
                service.id,
                &audience,
                Duration::from_secs(60),
                now - chrono::Duration::minutes(5),
            )
            .unwrap(),
            "ACCESS_TOKEN_EXPIRED",
        ),
    ];
    for (what, token, expected) in cases {
        let refused = get_preferences(&app, with_token(&token)).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        assert_eq!(reason(&refused), expected, "{what}");
        assert!(!refused.message().contains(&token), "{what}");
    }
    // Only the genuine token works, and the refusals left no trace in Alice's trail.
    get_preferences(&app, with_token(&service.token()))
        .await
        .unwrap();
    let calls = trail(&app, alice)
        .await
        .into_iter()
        .filter(|e| e.action() == keys_pb::AuditAction::ServiceCall)
        .count();
    assert_eq!(calls, 1);
}

/// The binary against the app's data directory and database.
fn assistd(app: &TestApp) -> std::process::Command {
    crate::admin::assistd(&app.config)
}

/// Standard output of a command that must have succeeded.
fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn the_admin_commands_create_sign_list_and_revoke_at_once() {
    let app = spawn_app().await;
    let replica = app.replica().await;
    let alice = app.create_user().await;
    let key_file = app.data_dir.join("digest-service.pem");

    let mut create = assistd(&app);
    create.args([
        "admin",
        "service-account",
        "create",
        "--name",
        "digest",
        "--allow-rpc",
        GET_PREFERENCES,
        "--user",
        &alice.to_string(),
        "--key-out",
    ]);
    create.arg(&key_file);
    let created = run(create).await;
    let id: ServiceAccountId = stdout(&created).trim().parse().unwrap();
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    let pem = std::fs::read_to_string(&key_file).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The private key is nowhere in the database.
    let key = SigningKey::load(&key_file).unwrap();
    let stored = app.store.service_accounts().get(id).await.unwrap().unwrap();
    assert_eq!(stored.public_key, key.public_key());

    // A bad request names what is wrong and creates nothing.
    let mut bad = assistd(&app);
    bad.args([
        "admin",
        "service-account",
        "create",
        "--name",
        "digest",
        "--allow-rpc",
        "/assistd.auth.v1.AuthService/Refresh",
        "--any-user",
    ]);
    let refused = run(bad).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("allowed_methods[0]") && stderr.contains("Refresh"),
        "{stderr}"
    );

    let mut sign = assistd(&app);
    sign.args(["admin", "service-account", "sign-token", "--id"])
        .arg(id.to_string())
        .arg("--key-file")
        .arg(&key_file);
    let token = stdout(&run(sign).await).trim().to_owned();
    let call = || {
        let mut request = authed(prefs_pb::GetPreferencesRequest::default(), &token);
        request
            .metadata_mut()
            .insert(ON_BEHALF_OF_METADATA, alice.to_string().parse().unwrap());
        request
    };
    get_preferences(&app, call()).await.unwrap();
    get_preferences(&replica, call()).await.unwrap();

    let mut list = assistd(&app);
    list.args(["admin", "service-account", "list"]);
    let listed = stdout(&run(list).await);
    assert!(
        listed.contains(&id.to_string())
            && listed.contains("digest")
            && listed.contains("active")
            && listed.contains(GET_PREFERENCES)
            && listed.contains(&alice.to_string()),
        "{listed}"
    );

    let mut revoke = assistd(&app);
    revoke
        .args(["admin", "service-account", "revoke", "--id"])
        .arg(id.to_string());
    stdout(&run(revoke).await);
    // Refused at once, on both replicas, with the same still-valid token.
    for server in [&app, &replica] {
        let refused = get_preferences(server, call()).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert_eq!(reason(&refused), "SERVICE_ACCOUNT_REVOKED");
    }
    let mut list = assistd(&app);
    list.args(["admin", "service-account", "list"]);
    assert!(stdout(&run(list).await).contains("revoked"));
    assert_eq!(app.audit.verify().await.unwrap().first_break, None);
}
