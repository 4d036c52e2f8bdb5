//! The OpenID Connect client against the in-tree provider (`assistd_testkit::oidc`): the code
//! flow over real HTTP, and every way an ID token must be refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assistd_domain::Clock;
use assistd_identity::{
    AuthorizationRequest, ClientSecret, GMAIL_READONLY_SCOPE, OidcClient, OidcError, OidcSettings,
};
use assistd_testkit::oidc::{ClientAuth, Hostile, OidcProvider, TestUser};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const ANDROID_CLIENT_ID: &str = "android-client.apps.example";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more";
const NONCE: &str = "n-0S6_WzA2Mj";
const STATE: &str = "af0ifjsldkj";

/// A clock the test moves by hand; starts at the real time, as the provider's tokens do.
#[derive(Debug)]
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

struct Setup {
    provider: OidcProvider,
    client: OidcClient,
    clock: Arc<ManualClock>,
}

async fn setup() -> Setup {
    let provider = OidcProvider::start().await;
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let client = client_for(
        &provider.issuer(),
        OidcProvider::CLIENT_SECRET,
        clock.clone(),
    );
    Setup {
        provider,
        client,
        clock,
    }
}

fn client_for(issuer: &str, secret: &str, clock: Arc<ManualClock>) -> OidcClient {
    let settings = OidcSettings {
        issuer: issuer.to_owned(),
        client_id: OidcProvider::CLIENT_ID.to_owned(),
        client_secret: ClientSecret::new(secret),
        additional_audiences: vec![ANDROID_CLIENT_ID.to_owned()],
        clock_skew: Duration::from_secs(60),
        http_timeout: Duration::from_secs(5),
    };
    OidcClient::new(settings, clock).expect("valid settings")
}

fn request(gmail_access: bool) -> AuthorizationRequest {
    AuthorizationRequest {
        redirect_uri: OidcProvider::REDIRECT_URI.to_owned(),
        state: STATE.to_owned(),
        nonce: NONCE.to_owned(),
        pkce_verifier: VERIFIER.to_owned(),
        gmail_access,
        gmail_compose: false,
        login_hint: Some("ada@example.com".to_owned()),
    }
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Follows the authorization URL like a browser would, up to the redirect back to us, and
/// returns the `code` after checking `state`.
async fn authorize(client: &OidcClient, request: &AuthorizationRequest) -> String {
    let url = client.authorization_url(request).await.unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let location = url::Url::parse(&location).unwrap();
    assert!(location.as_str().starts_with(OidcProvider::REDIRECT_URI));
    let params = query(&location);
    assert_eq!(params.get("state").map(String::as_str), Some(STATE));
    params["code"].clone()
}

async fn exchange(setup: &Setup, code: &str) -> Result<assistd_identity::CodeExchange, OidcError> {
    setup
        .client
        .exchange_code(code, OidcProvider::REDIRECT_URI, VERIFIER, NONCE)
        .await
}

fn assert_rejected(result: Result<assistd_identity::VerifiedIdentity, OidcError>, why: &str) {
    match result {
        Err(OidcError::InvalidIdToken(reason)) => {
            assert!(
                reason.contains(why),
                "rejected for {reason:?}, expected {why:?}"
            );
        }
        other => panic!("expected InvalidIdToken({why:?}), got {other:?}"),
    }
}

#[tokio::test]
async fn code_flow_with_gmail_access() {
    let setup = setup().await;
    let url = setup
        .client
        .authorization_url(&request(true))
        .await
        .unwrap();
    let params = query(&url);
    let challenge = URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes()).as_ref(),
    );
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", OidcProvider::CLIENT_ID),
        ("redirect_uri", OidcProvider::REDIRECT_URI),
        ("state", STATE),
        ("nonce", NONCE),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("include_granted_scopes", "true"),
        ("login_hint", "ada@example.com"),
    ] {
        assert_eq!(params.get(name).map(String::as_str), Some(value), "{name}");
    }
    let scopes: Vec<&str> = params["scope"].split(' ').collect();
    for scope in ["openid", "email", "profile", GMAIL_READONLY_SCOPE] {
        assert!(scopes.contains(&scope), "{scope} missing from {scopes:?}");
    }
    assert!(url.as_str().starts_with(&setup.provider.issuer()));

    let code = authorize(&setup.client, &request(true)).await;
    let exchange = exchange(&setup, &code).await.unwrap();
    let user = TestUser::default();
    let identity = &exchange.identity;
    assert_eq!(identity.issuer, setup.provider.issuer());
    assert_eq!(identity.subject, user.sub);
    assert_eq!(identity.audience, OidcProvider::CLIENT_ID);
    assert_eq!(identity.email.as_deref(), Some(user.email.as_str()));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some(user.name.as_str()));
    assert_eq!(identity.picture, user.picture);
    assert_eq!(identity.hosted_domain, None);
    assert!(!exchange.access_token.is_empty());
    assert!(exchange.refresh_token.is_some());
    assert!(exchange.scopes.iter().any(|s| s == GMAIL_READONLY_SCOPE));
    let expires_in = exchange.access_token_expires_at.unwrap() - setup.clock.now();
    assert_eq!(expires_in.num_seconds(), 3599);
    let printed = format!("{exchange:?}");
    assert!(!printed.contains(&exchange.access_token));

    let token_requests = setup.provider.token_requests();
    let last = token_requests.last().unwrap();
    assert_eq!(last.grant_type, "authorization_code");
    assert_eq!(last.auth, ClientAuth::Basic);
    assert_eq!(
        last.fields.get("code_verifier").map(String::as_str),
        Some(VERIFIER)
    );
}

#[tokio::test]
async fn plain_sign_in_asks_for_no_more() {
    let setup = setup().await;
    let mut plain = request(false);
    plain.login_hint = None;
    let url = setup.client.authorization_url(&plain).await.unwrap();
    let params = query(&url);
    let mut scopes: Vec<&str> = params["scope"].split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["email", "openid", "profile"]);
    for absent in [
        "access_type",
        "prompt",
        "include_granted_scopes",
        "login_hint",
    ] {
        assert!(!params.contains_key(absent), "{absent} present");
    }

    let code = authorize(&setup.client, &plain).await;
    let exchange = exchange(&setup, &code).await.unwrap();
    assert_eq!(exchange.refresh_token, None);
}

#[tokio::test]
async fn wrong_pkce_verifier_is_rejected() {
    let setup = setup().await;
    let code = authorize(&setup.client, &request(false)).await;
    let other_verifier = "x".repeat(64);
    let result = setup
        .client
        .exchange_code(&code, OidcProvider::REDIRECT_URI, &other_verifier, NONCE)
        .await;
    assert!(
        matches!(result, Err(OidcError::CodeRejected(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn reused_code_is_rejected() {
    let setup = setup().await;
    let code = authorize(&setup.client, &request(false)).await;
    exchange(&setup, &code).await.unwrap();
    let again = exchange(&setup, &code).await;
    assert!(
        matches!(again, Err(OidcError::CodeRejected(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn code_exchange_checks_the_nonce_and_audience() {
    let setup = setup().await;
    let code = authorize(&setup.client, &request(false)).await;
    let result = setup
        .client
        .exchange_code(&code, OidcProvider::REDIRECT_URI, VERIFIER, "another-nonce")
        .await;
    assert!(
        matches!(&result, Err(OidcError::InvalidIdToken(r)) if r.contains("nonce")),
        "{result:?}"
    );

    // Additional audiences are for sign-in with an ID token, not for our own code flow.
    setup
        .provider
        .set_id_token_claims(json!({"aud": ANDROID_CLIENT_ID, "azp": ANDROID_CLIENT_ID}));
    let code = authorize(&setup.client, &request(false)).await;
    let result = exchange(&setup, &code).await;
    assert!(
        matches!(&result, Err(OidcError::InvalidIdToken(r)) if r.contains("audience")),
        "{result:?}"
    );
}

#[tokio::test]
async fn code_exchange_accepts_string_email_verified() {
    let setup = setup().await;
    setup
        .provider
        .set_id_token_claims(json!({"email_verified": "true", "hd": "example.com"}));
    let code = authorize(&setup.client, &request(false)).await;
    let identity = exchange(&setup, &code).await.unwrap().identity;
    assert!(identity.email_verified);
    assert_eq!(identity.hosted_domain.as_deref(), Some("example.com"));
}

#[tokio::test]
async fn wrong_client_secret_is_a_misconfiguration() {
    let setup = setup().await;
    let client = client_for(&setup.provider.issuer(), "wrong", setup.clock.clone());
    let code = authorize(&client, &request(false)).await;
    let result = client
        .exchange_code(&code, OidcProvider::REDIRECT_URI, VERIFIER, NONCE)
        .await;
    assert!(
        matches!(result, Err(OidcError::Misconfigured(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn verify_id_token_accepts_a_good_token_and_additional_audiences() {
    let setup = setup().await;
    let token = setup.provider.mint(
        &setup
            .provider
            .default_claims(OidcProvider::CLIENT_ID, Some(NONCE)),
    );
    let identity = setup
        .client
        .verify_id_token(&token, Some(NONCE))
        .await
        .unwrap();
    assert_eq!(identity.subject, TestUser::default().sub);
    assert_eq!(identity.audience, OidcProvider::CLIENT_ID);

    let android = setup
        .provider
        .mint(&setup.provider.default_claims(ANDROID_CLIENT_ID, None));
    let identity = setup.client.verify_id_token(&android, None).await.unwrap();
    assert_eq!(identity.audience, ANDROID_CLIENT_ID);

    // Google's cross-client tokens: our client id as audience, the Android app as azp.
    let mut cross = setup.provider.default_claims(OidcProvider::CLIENT_ID, None);
    cross["azp"] = ANDROID_CLIENT_ID.into();
    let identity = setup
        .client
        .verify_id_token(&setup.provider.mint(&cross), None)
        .await
        .unwrap();
    assert_eq!(identity.audience, OidcProvider::CLIENT_ID);
}

#[tokio::test]
async fn forged_tokens_are_rejected() {
    let setup = setup().await;
    let claims = setup.provider.default_claims(OidcProvider::CLIENT_ID, None);
    for (kind, why) in [
        (Hostile::BadSignature, "signature is invalid"),
        (Hostile::ForeignKeySameKid, "signature is invalid"),
        (Hostile::AlgNone, "algorithm"),
        (Hostile::Hs256WithPublicKey, "algorithm"),
        (Hostile::NoKid, "names no signing key"),
        (Hostile::UnknownKid, "unknown key"),
    ] {
        let token = setup.provider.mint_hostile(&claims, kind);
        let result = setup.client.verify_id_token(&token, None).await;
        assert_rejected(result, why);
    }
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_client_secret_is_rejected() {
    let setup = setup().await;
    let claims = setup.provider.default_claims(OidcProvider::CLIENT_ID, None);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(setup.provider.current_kid());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(OidcProvider::CLIENT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_rejected(
        setup.client.verify_id_token(&token, None).await,
        "algorithm",
    );
}

#[tokio::test]
async fn claims_are_checked() {
    let setup = setup().await;
    let provider = &setup.provider;
    let good = provider.default_claims(OidcProvider::CLIENT_ID, Some(NONCE));
    let with = |overrides: Value| {
        let mut claims = good.clone();
        for (name, value) in overrides.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        provider.mint(&claims)
    };
    // The client's clock, which the provider's real time can only be ahead of.
    let now = setup.clock.now().timestamp();
    let cases = [
        (
            json!({"iss": "https://evil.example"}),
            "issued by someone else",
        ),
        (
            json!({"iss": format!("{}/", provider.issuer())}),
            "issued by someone else",
        ),
        (
            json!({"aud": "someone-else", "azp": "someone-else"}),
            "different audience",
        ),
        (
            json!({"aud": [OidcProvider::CLIENT_ID, ANDROID_CLIENT_ID], "azp": null}),
            "no authorized party",
        ),
        (
            json!({"aud": [OidcProvider::CLIENT_ID, "someone-else"]}),
            "untrusted audience",
        ),
        (json!({"azp": "someone-else"}), "authorized party"),
        (json!({"iat": now - 7200, "exp": now - 3600}), "expired"),
        (json!({"iat": now - 7200, "exp": now - 61}), "expired"),
        (
            json!({"iat": now + 600, "exp": now + 4200}),
            "in the future",
        ),
        (json!({"nonce": "another"}), "nonce"),
        (json!({"nonce": null}), "nonce"),
        (json!({"sub": null}), "malformed"),
    ];
    for (overrides, why) in cases {
        let token = with(overrides.clone());
        let result = setup.client.verify_id_token(&token, Some(NONCE)).await;
        match result {
            Err(OidcError::InvalidIdToken(reason)) => {
                assert!(
                    reason.contains(why),
                    "{overrides}: {reason:?}, expected {why:?}"
                );
                assert!(!reason.contains(&token));
            }
            other => panic!("{overrides}: expected rejection ({why}), got {other:?}"),
        }
    }
    // Within the skew both ways.
    let token = with(json!({"iat": now + 30, "exp": now - 30}));
    assert!(
        setup
            .client
            .verify_id_token(&token, Some(NONCE))
            .await
            .is_ok()
    );
    // No expected nonce: the claim is not checked.
    let token = with(json!({"nonce": "whatever"}));
    assert!(setup.client.verify_id_token(&token, None).await.is_ok());
}

#[tokio::test]
async fn the_injected_clock_decides_expiry() {
    let setup = setup().await;
    let token = setup
        .provider
        .mint(&setup.provider.default_claims(OidcProvider::CLIENT_ID, None));
    assert!(setup.client.verify_id_token(&token, None).await.is_ok());
    setup.clock.advance(Duration::from_secs(3600 + 120));
    assert_rejected(setup.client.verify_id_token(&token, None).await, "expired");
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_a_minute() {
    let setup = setup().await;
    let provider = &setup.provider;
    let claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    setup
        .client
        .verify_id_token(&provider.mint(&claims), None)
        .await
        .unwrap();
    assert_eq!(provider.jwks_requests(), 1);

    for _ in 0..2 {
        let token = provider.mint_hostile(&claims, Hostile::UnknownKid);
        assert_rejected(
            setup.client.verify_id_token(&token, None).await,
            "unknown key",
        );
    }
    assert_eq!(
        provider.jwks_requests(),
        2,
        "one refetch for two unknown kids"
    );

    setup.clock.advance(Duration::from_secs(59));
    let token = provider.mint_hostile(&claims, Hostile::UnknownKid);
    assert_rejected(
        setup.client.verify_id_token(&token, None).await,
        "unknown key",
    );
    assert_eq!(provider.jwks_requests(), 2);

    setup.clock.advance(Duration::from_secs(2));
    assert_rejected(
        setup.client.verify_id_token(&token, None).await,
        "unknown key",
    );
    assert_eq!(
        provider.jwks_requests(),
        3,
        "a minute later one more refetch"
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up() {
    let setup = setup().await;
    let provider = &setup.provider;
    let claims = provider.default_claims(OidcProvider::CLIENT_ID, None);
    let old = provider.mint(&claims);
    setup.client.verify_id_token(&old, None).await.unwrap();

    provider.rotate_signing_key(false);
    let new = provider.mint(&claims);
    setup.client.verify_id_token(&new, None).await.unwrap();
    assert_eq!(provider.jwks_requests(), 2);
    // The old key is gone from the JWKS, and so from our cache.
    assert_rejected(
        setup.client.verify_id_token(&old, None).await,
        "unknown key",
    );
    assert_eq!(provider.jwks_requests(), 2);
}

#[tokio::test]
async fn the_jwks_is_cached_for_its_max_age() {
    let setup = setup().await;
    let provider = &setup.provider;
    provider.set_jwks_max_age(300);
    let token = provider.mint(&provider.default_claims(OidcProvider::CLIENT_ID, None));
    setup.client.verify_id_token(&token, None).await.unwrap();
    setup.clock.advance(Duration::from_secs(299));
    setup.client.verify_id_token(&token, None).await.unwrap();
    assert_eq!(provider.jwks_requests(), 1);
    setup.clock.advance(Duration::from_secs(2));
    setup.client.verify_id_token(&token, None).await.unwrap();
    assert_eq!(provider.jwks_requests(), 2);
}

#[tokio::test]
async fn refresh_then_revoked() {
    let setup = setup().await;
    let code = authorize(&setup.client, &request(true)).await;
    let refresh_token = exchange(&setup, &code)
        .await
        .unwrap()
        .refresh_token
        .unwrap();

    let refreshed = setup
        .client
        .refresh_access_token(&refresh_token)
        .await
        .unwrap();
    assert_eq!(
        setup.provider.issued_access_tokens().last(),
        Some(&refreshed.access_token)
    );
    assert!(refreshed.expires_at.unwrap() > setup.clock.now());
    assert!(!format!("{refreshed:?}").contains(&refreshed.access_token));

    setup.provider.revoke_refresh_token(&refresh_token);
    let result = setup.client.refresh_access_token(&refresh_token).await;
    assert_eq!(result.unwrap_err(), OidcError::InvalidGrant);
}

#[tokio::test]
async fn token_endpoint_outage_is_unavailable() {
    let setup = setup().await;
    let code = authorize(&setup.client, &request(true)).await;
    for status in [500, 503] {
        setup.provider.set_token_endpoint_failure(Some(status));
        let result = exchange(&setup, &code).await;
        assert!(
            matches!(result, Err(OidcError::Unavailable(_))),
            "{result:?}"
        );
        let result = setup.client.refresh_access_token("1//whatever").await;
        assert!(
            matches!(result, Err(OidcError::Unavailable(_))),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn unreachable_provider_is_unavailable() {
    // Bind and drop a listener to get a port nobody answers on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let client = client_for(&format!("http://127.0.0.1:{port}"), "s", clock);
    let result = client.verify_id_token("a.b.c", None).await;
    assert!(
        matches!(result, Err(OidcError::Unavailable(_))),
        "{result:?}"
    );
    let result = client.authorization_url(&request(false)).await;
    assert!(
        matches!(result, Err(OidcError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn discovery_is_lazy_and_shared() {
    let setup = setup().await;
    assert_eq!(setup.provider.jwks_requests(), 0);
    let clone = setup.client.clone();
    let token = setup
        .provider
        .mint(&setup.provider.default_claims(OidcProvider::CLIENT_ID, None));
    setup.client.verify_id_token(&token, None).await.unwrap();
    clone.verify_id_token(&token, None).await.unwrap();
    assert_eq!(setup.provider.jwks_requests(), 1);
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let client = client_for("https://accounts.google.com", "s", clock);
    assert_send(&client.verify_id_token("t", None));
    assert_send(&client.exchange_code("c", "r", "v", "n"));
    assert_send(&client.refresh_access_token("r"));
    let request = request(false);
    assert_send(&client.authorization_url(&request));
}
