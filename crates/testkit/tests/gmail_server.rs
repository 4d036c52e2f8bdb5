//! The Gmail test server speaks Gmail's shapes over real HTTP and checks the OIDC provider's
//! tokens; the provider revokes grants and accumulates scopes.

use std::time::Duration;

use assistd_testkit::GmailServer;
use assistd_testkit::gmail::{
    ErrorBody, Fault, FaultRule, GMAIL_READONLY, NewMessage, Operation, RateLimitAnswer, bodies,
};
use assistd_testkit::oidc::{OidcProvider, TestUser};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const MAIL: &str = "From: Bob <bob@example.com>\r\nTo: Ada <ada@example.com>\r\nSubject: Q3 numbers\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nCan you confirm the numbers before Friday?\r\n--b\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<div>Can you confirm the numbers before Friday?</div>\r\n--b--\r\n";

struct Env {
    oidc: OidcProvider,
    gmail: GmailServer,
    user: TestUser,
    token: String,
}

async fn env() -> Env {
    let oidc = OidcProvider::start().await;
    let gmail = GmailServer::start(&oidc).await;
    let user = TestUser::default();
    let token = oidc
        .grant(&user, &["openid", "email", GMAIL_READONLY])
        .access_token;
    Env {
        oidc,
        gmail,
        user,
        token,
    }
}

impl Env {
    async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        self.get_with(&self.token, path_and_query).await
    }

    async fn get_with(&self, token: &str, path_and_query: &str) -> (StatusCode, Value) {
        let response = http()
            .get(format!("{}{path_and_query}", self.gmail.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

fn body(error: ErrorBody) -> Value {
    serde_json::from_str(error.body()).unwrap()
}

#[tokio::test]
async fn tokens_are_checked_against_the_provider() {
    let env = env().await;
    let response = http()
        .get(format!("{}users/me/profile", env.gmail.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        serde_json::from_str::<Value>(bodies::ERROR_401_INVALID_CREDENTIALS).unwrap()
    );
    let (status, _) = env.get_with("ya29.unknown", "users/me/profile").await;
    assert_eq!(status, 401);

    let (status, profile) = env.get("users/me/profile").await;
    assert_eq!(status, 200);
    assert_eq!(
        profile,
        json!({"emailAddress": env.user.email, "messagesTotal": 0, "threadsTotal": 0, "historyId": "1000"})
    );
    let (status, _) = env.get(&format!("users/{}/profile", env.user.email)).await;
    assert_eq!(status, 200);

    let no_gmail = env
        .oidc
        .grant(&TestUser::new("sub-2", "bo@example.com"), &["openid"]);
    let (status, answer) = env
        .get_with(&no_gmail.access_token, "users/me/messages")
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::FORBIDDEN, body(ErrorBody::InsufficientScope))
    );

    env.oidc.expire_access_tokens();
    let (status, answer) = env.get("users/me/profile").await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNAUTHORIZED, body(ErrorBody::Unauthorized))
    );
    // Calls are counted per user and operation whatever the answer.
    assert_eq!(env.gmail.calls(&env.user.sub, Operation::GetProfile), 3);
}

#[tokio::test]
async fn messages_list_and_get_in_every_format() {
    let env = env().await;
    let sub = &env.user.sub;
    let (_, empty) = env.get("users/me/messages").await;
    assert_eq!(
        empty,
        json!({"resultSizeEstimate": 0}),
        "messages omitted when empty"
    );

    let id = env.gmail.add_message(
        sub,
        NewMessage::new(MAIL)
            .labels(&["INBOX", "UNREAD"])
            .internal_date_ms(1_704_101_400_000),
    );
    env.gmail
        .add_message(sub, NewMessage::text("junk", "buy now").labels(&["SPAM"]));
    let (_, list) = env.get("users/me/messages?maxResults=10").await;
    assert_eq!(
        list,
        json!({"messages": [{"id": id, "threadId": id}], "resultSizeEstimate": 1})
    );
    let (_, all) = env.get("users/me/messages?includeSpamTrash=true").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);

    let (_, raw) = env.get(&format!("users/me/messages/{id}?format=raw")).await;
    assert_eq!(
        URL_SAFE.decode(raw["raw"].as_str().unwrap()).unwrap(),
        MAIL.as_bytes()
    );
    assert_eq!(raw["internalDate"], "1704101400000");
    assert_eq!(raw["labelIds"], json!(["INBOX", "UNREAD"]));
    assert_eq!(raw["snippet"], "Can you confirm the numbers before Friday?");
    assert_eq!(raw["sizeEstimate"], MAIL.len());
    assert!(raw["historyId"].is_string());

    let (_, minimal) = env
        .get(&format!("users/me/messages/{id}?format=minimal"))
        .await;
    assert!(minimal.get("payload").is_none() && minimal.get("raw").is_none());

    let (_, metadata) = env
        .get(&format!(
            "users/me/messages/{id}?format=metadata&metadataHeaders=Subject&metadataHeaders=From"
        ))
        .await;
    assert_eq!(
        metadata["payload"]["headers"],
        json!([{"name": "From", "value": "Bob <bob@example.com>"}, {"name": "Subject", "value": "Q3 numbers"}])
    );
    assert!(metadata["payload"].get("parts").is_none());

    let (_, full) = env.get(&format!("users/me/messages/{id}")).await;
    let payload = &full["payload"];
    assert_eq!(payload["mimeType"], "multipart/alternative");
    assert_eq!(payload["parts"][0]["partId"], "0");
    assert_eq!(payload["parts"][1]["mimeType"], "text/html");
    let text = URL_SAFE
        .decode(payload["parts"][0]["body"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(text, b"Can you confirm the numbers before Friday?");

    let (status, answer) = env.get("users/me/messages/ffff").await;
    assert_eq!(
        (status, answer),
        (StatusCode::NOT_FOUND, body(ErrorBody::NotFound))
    );
    let (status, _) = env.get("users/me/messages?pageToken=garbage").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn threads_and_history_follow_mailbox_changes() {
    let env = env().await;
    let sub = &env.user.sub;
    let first = env.gmail.add_message(sub, NewMessage::text("hi", "one"));
    let start = env.gmail.history_id(sub);
    let reply = env
        .gmail
        .add_message(sub, NewMessage::text("re: hi", "two").thread(&first));
    assert!(
        env.gmail
            .modify_labels(sub, &first, &["STARRED"], &["INBOX"])
    );
    assert!(env.gmail.delete_message(sub, &reply));
    assert!(!env.gmail.delete_message(sub, &reply));
    assert_eq!(env.gmail.history_id(sub), start + 4);

    let (_, thread) = env
        .get(&format!("users/me/threads/{first}?format=minimal"))
        .await;
    assert_eq!(thread["messages"].as_array().unwrap().len(), 1);
    assert_eq!(thread["messages"][0]["labelIds"], json!(["STARRED"]));

    let (_, history) = env
        .get(&format!("users/me/history?startHistoryId={start}"))
        .await;
    let records = history["history"].as_array().unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(
        records[0]["messagesAdded"][0]["message"]["id"],
        reply.as_str()
    );
    assert_eq!(records[1]["labelsAdded"][0]["labelIds"], json!(["STARRED"]));
    assert_eq!(records[2]["labelsRemoved"][0]["labelIds"], json!(["INBOX"]));
    assert_eq!(
        records[3]["messagesDeleted"][0]["message"],
        json!({"id": reply, "threadId": first})
    );
    assert_eq!(history["historyId"], (start + 4).to_string());

    let (_, only_deleted) = env
        .get(&format!(
            "users/me/history?startHistoryId={start}&historyTypes=messageDeleted"
        ))
        .await;
    assert_eq!(only_deleted["history"].as_array().unwrap().len(), 1);
    let (_, paged) = env
        .get(&format!(
            "users/me/history?startHistoryId={start}&maxResults=3"
        ))
        .await;
    assert_eq!(paged["history"].as_array().unwrap().len(), 3);
    let token = paged["nextPageToken"].as_str().unwrap();
    let (_, rest) = env
        .get(&format!(
            "users/me/history?startHistoryId={start}&maxResults=3&pageToken={token}"
        ))
        .await;
    assert_eq!(rest["history"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextPageToken").is_none());

    let now = env.gmail.history_id(sub);
    let (_, none) = env
        .get(&format!("users/me/history?startHistoryId={now}"))
        .await;
    assert_eq!(
        none,
        json!({"historyId": now.to_string()}),
        "history omitted when nothing changed"
    );

    env.gmail.expire_history(sub);
    let (status, answer) = env
        .get(&format!("users/me/history?startHistoryId={start}"))
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::NOT_FOUND, body(ErrorBody::NotFound))
    );
}

#[tokio::test]
async fn quota_is_accounted_per_user_in_units() {
    let env = env().await;
    let sub = &env.user.sub;
    env.gmail.set_quota(12);
    env.gmail.set_rate_limit_retry_after(Some("1".to_owned()));
    // 5 + 5 fit, the third list (15 > 12) does not.
    for _ in 0..2 {
        assert_eq!(env.get("users/me/messages").await.0, 200);
    }
    let response = http()
        .get(format!("{}users/me/messages", env.gmail.base_url()))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        body(ErrorBody::TooManyRequests)
    );
    env.gmail
        .set_rate_limit_answer(RateLimitAnswer::UserRateLimit403);
    let (status, answer) = env.get("users/me/messages").await;
    assert_eq!(
        (status, answer),
        (StatusCode::FORBIDDEN, body(ErrorBody::UserRateLimit))
    );
    assert_eq!(env.gmail.rate_limited_answers(sub), 2);
    assert_eq!(
        env.gmail.max_units_in_one_second(sub),
        20,
        "refused calls count as asked for"
    );
    // Another user has their own quota.
    let other = TestUser::new("sub-2", "bo@example.com");
    let token = env
        .oidc
        .grant(&other, &["openid", GMAIL_READONLY])
        .access_token;
    assert_eq!(env.get_with(&token, "users/me/messages").await.0, 200);
}

#[tokio::test]
async fn faults_apply_per_operation_and_concurrency_is_recorded() {
    let env = env().await;
    let sub = &env.user.sub;
    env.gmail.inject(
        FaultRule::next(
            1,
            Fault::error_with_retry_after(ErrorBody::BackendError, "3"),
        )
        .for_operation(Operation::ListHistory),
    );
    assert_eq!(env.get("users/me/profile").await.0, 200);
    assert_eq!(env.get("users/me/history?startHistoryId=1000").await.0, 500);
    assert_eq!(env.get("users/me/history?startHistoryId=1000").await.0, 200);

    env.gmail.fail_next(1, Fault::DropConnection);
    let dropped = http()
        .get(format!("{}users/me/profile", env.gmail.base_url()))
        .bearer_auth(&env.token)
        .send()
        .await;
    assert!(dropped.is_err());

    env.gmail
        .inject(FaultRule::always(Fault::Stall(Duration::from_millis(500))));
    let calls = (0..3).map(|_| env.get("users/me/profile"));
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    assert_eq!(env.gmail.max_concurrent_requests(sub), 3);
}

#[tokio::test]
async fn revocation_revokes_the_whole_grant() {
    let env = env().await;
    let discovery: Value = http()
        .get(format!(
            "{}/.well-known/openid-configuration",
            env.oidc.issuer()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["revocation_endpoint"],
        env.oidc.revocation_endpoint()
    );

    let granted = env.oidc.grant(&env.user, &["openid", GMAIL_READONLY]);
    let revoke = |token: String| {
        let url = env.oidc.revocation_endpoint();
        async move {
            let response = http()
                .post(url)
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        revoke(granted.refresh_token.clone()).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        revoke(granted.refresh_token.clone()).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_token", "error_description": "Token expired or revoked"})
        )
    );
    // Every access token of the grant is dead, the earlier one too.
    assert_eq!(env.get("users/me/profile").await.0, 401);
    assert_eq!(
        env.get_with(&granted.access_token, "users/me/profile")
            .await
            .0,
        401
    );
    assert!(
        env.oidc
            .access_token_info(&granted.access_token)
            .unwrap()
            .revoked
    );
    assert!(env.oidc.granted_scopes(&env.user.sub).is_empty());
    let refreshed = http()
        .post(format!("{}/token", env.oidc.issuer()))
        .basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", granted.refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 400);
    assert_eq!(
        refreshed.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(env.oidc.revocation_requests().len(), 2);

    // An access token revokes its grant too.
    let again = env.oidc.grant(&env.user, &["openid", GMAIL_READONLY]);
    assert_eq!(revoke(again.access_token.clone()).await.0, StatusCode::OK);
    assert!(
        env.oidc
            .access_token_info(&again.access_token)
            .unwrap()
            .revoked
    );
}

/// Authorizes with `scope` (and `extra`), exchanges the code, returns the token response.
async fn consent(oidc: &OidcProvider, scope: &str, extra: &[(&str, &str)]) -> Value {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", OidcProvider::CLIENT_ID),
        ("redirect_uri", OidcProvider::REDIRECT_URI),
        ("scope", scope),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("access_type", "offline"),
    ];
    params.extend_from_slice(extra);
    let response = http()
        .get(format!("{}/authorize", oidc.issuer()))
        .query(&params)
        .send()
        .await
        .unwrap();
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .unwrap()
        .1
        .into_owned();
    http()
        .post(format!("{}/token", oidc.issuer()))
        .basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", OidcProvider::REDIRECT_URI),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn include_granted_scopes_accumulates_consents() {
    let oidc = OidcProvider::start().await;
    let gmail = GmailServer::start(&oidc).await;
    let sub = TestUser::default().sub;
    let signin = consent(&oidc, "openid email", &[]).await;
    assert_eq!(signin["scope"], "openid email");

    let incremental = consent(
        &oidc,
        &format!("openid {GMAIL_READONLY}"),
        &[("include_granted_scopes", "true")],
    )
    .await;
    assert_eq!(
        incremental["scope"],
        format!("openid email {GMAIL_READONLY}")
    );
    assert_eq!(
        oidc.granted_scopes(&sub),
        ["openid", "email", GMAIL_READONLY]
    );
    let token = incremental["access_token"].as_str().unwrap();
    let info = oidc.access_token_info(token).unwrap();
    assert!(info.is_active() && info.has_scope(GMAIL_READONLY) && info.has_scope("email"));
    let profile = http()
        .get(format!("{}users/me/profile", gmail.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);

    // The refreshed token carries the same scopes.
    let refreshed: Value = http()
        .post(format!("{}/token", oidc.issuer()))
        .basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                incremental["refresh_token"].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed["scope"], incremental["scope"]);

    // Without include_granted_scopes the tokens carry only what was asked for.
    let narrow = consent(&oidc, "openid", &[]).await;
    assert_eq!(narrow["scope"], "openid");
}
