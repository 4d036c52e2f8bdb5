//! Sign-in secrets at rest and in logs: a real `assistd serve` at TRACE, one full sign-in,
//! refreshes and an ID-token sign-in; afterwards no raw refresh token, Google token, PKCE
//! verifier, client secret or ID token is in the database files (or a `pg_dump`), the server
//! log, the audit rows or a response that should not carry it.

use assistd::proto::apikey::v1 as apikey_pb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::auth::v1 as pb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd_testkit::oidc::OidcProvider;

use crate::helpers::authed;
use crate::secrets::{TraceServer, count};
use crate::signin::authorize;

#[tokio::test]
async fn no_sign_in_secret_appears_in_the_clear() {
    let provider = OidcProvider::start().await;
    let redirect = OidcProvider::REDIRECT_URI;
    let mut server = TraceServer::new(vec![
        ("ASSISTD_SIGN_IN__ISSUER", provider.issuer()),
        (
            "ASSISTD_SIGN_IN__CLIENT_ID",
            OidcProvider::CLIENT_ID.to_owned(),
        ),
        (
            "ASSISTD_SIGN_IN__CLIENT_SECRET",
            OidcProvider::CLIENT_SECRET.to_owned(),
        ),
        (
            "ASSISTD_SIGN_IN__ALLOWED_REDIRECT_URIS",
            format!("[\"{redirect}\"]"),
        ),
    ])
    .await;
    let channel = server.serve().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut responses = Vec::new();

    let begun = auth
        .begin_login(pb::BeginLoginRequest {
            redirect_uri: redirect.into(),
            request_gmail_access: true,
            request_gmail_compose: false,
            login_hint: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{begun:?}"));
    let (state, code) = authorize(&begun.authorization_url).await;
    let signed = auth
        .complete_login(pb::CompleteLoginRequest {
            state,
            code,
            device_name: "laptop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{:?}", signed.user));
    let tokens = signed.tokens.unwrap();
    let first = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    // The lost-response retry.
    let retried = auth
        .refresh(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(retried.refresh_token, first.refresh_token);
    let mut claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    claims["jti"] = "canary-id-token".into();
    let id_token = provider.mint(&claims);
    let by_id_token = auth
        .sign_in_with_id_token(pb::SignInWithIdTokenRequest {
            id_token: id_token.clone(),
            nonce: String::new(),
            device_name: "phone".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let phone = by_id_token.tokens.unwrap();
    let sessions = auth
        .list_sessions(authed(
            pb::ListSessionsRequest::default(),
            &first.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{sessions:?}"));
    let me = auth
        .get_current_user(authed(pb::GetCurrentUserRequest {}, &phone.access_token))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{me:?}"));
    let audit = UserApiKeyServiceClient::new(channel)
        .list_audit_events(authed(
            apikey_pb::ListAuditEventsRequest::default(),
            &first.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit.events.len() >= 3,
        "sign-ins and the refresh are audited"
    );
    responses.push(format!("{audit:?}"));

    let verifier = provider
        .token_requests()
        .into_iter()
        .find_map(|r| r.fields.get("code_verifier").cloned())
        .expect("the code exchange carried the PKCE verifier");
    let google_tokens: Vec<String> = provider
        .issued_access_tokens()
        .into_iter()
        .chain(provider.issued_refresh_tokens())
        .collect();
    assert!(
        google_tokens.len() >= 2,
        "Google issued an access and a refresh token"
    );
    let ours = [
        tokens.refresh_token.clone(),
        first.refresh_token.clone(),
        phone.refresh_token.clone(),
    ];
    let mut never_anywhere: Vec<(&str, String)> = vec![
        ("PKCE verifier", verifier),
        ("client secret", OidcProvider::CLIENT_SECRET.to_owned()),
    ];
    never_anywhere.extend(google_tokens.iter().map(|t| ("Google token", t.clone())));
    for response in &responses {
        for (what, secret) in &never_anywhere {
            assert_eq!(
                count(response.as_bytes(), secret),
                0,
                "{what} in a response"
            );
        }
        for token in &ours {
            assert_eq!(
                count(response.as_bytes(), token),
                0,
                "refresh token in {response}"
            );
        }
    }

    let (log, at_rest) = server.stop().await;
    assert!(count(&log, "TRACE") > 0, "the server logged at TRACE");
    assert!(
        count(&log, "AuthService/Refresh") > 0,
        "the calls were logged"
    );
    assert!(
        count(&at_rest, "refresh_tokens") > 0,
        "the auth tables are there"
    );
    // What is kept is the hash: it is found, the token is not.
    assert!(
        count(
            &at_rest,
            &assistd_identity::token_hash(&tokens.refresh_token)
        ) > 0
    );
    let mut secrets = never_anywhere.clone();
    secrets.extend(ours.iter().map(|t| ("our refresh token", t.clone())));
    secrets.push(("ID token", id_token.clone()));
    for (what, secret) in &secrets {
        assert_eq!(count(&log, secret), 0, "{what} in the server log");
        assert_eq!(
            count(&at_rest, secret),
            0,
            "{what} in the database in the clear"
        );
    }
}
