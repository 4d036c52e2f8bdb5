//! The OIDC test provider speaks the authorization code flow with PKCE over real HTTP.

use std::collections::HashMap;

use assistd_testkit::oidc::{ClientAuth, Hostile, OidcProvider, TestUser};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// How the tests authenticate at the token endpoint.
#[derive(Clone, Copy)]
enum Auth {
    Basic,
    Post,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The parameters of a valid authorization request for the default client, with `extra`
/// replacing or adding some (an empty value removes one).
fn authorize_params(challenge: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", OidcProvider::CLIENT_ID),
        ("redirect_uri", OidcProvider::REDIRECT_URI),
        ("scope", "openid email profile"),
        ("state", "csrf-state"),
        ("nonce", "nonce-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|&(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    for &(name, value) in extra {
        params.retain(|(known, _)| known != name);
        if !value.is_empty() {
            params.push((name.to_owned(), value.to_owned()));
        }
    }
    params
}

async fn authorize(
    provider: &OidcProvider,
    challenge: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    http()
        .get(format!("{}/authorize", provider.issuer()))
        .query(&authorize_params(challenge, extra))
        .send()
        .await
        .unwrap()
}

/// The query of a redirect's `Location`.
fn location_query(response: &reqwest::Response) -> (String, HashMap<String, String>) {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let url = Url::parse(&location).unwrap();
    let query = url.query_pairs().into_owned().collect();
    (location, query)
}

/// Authorizes with `extra` and returns the code and the verifier.
async fn sign_in(provider: &OidcProvider, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce();
    let response = authorize(provider, &challenge, extra).await;
    let (_, query) = location_query(&response);
    (query["code"].clone(), verifier)
}

async fn token_request(
    provider: &OidcProvider,
    auth: Auth,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let request = http().post(format!("{}/token", provider.issuer()));
    let request = match auth {
        Auth::Basic => {
            request.basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
        }
        Auth::Post => {
            form.push(("client_id", OidcProvider::CLIENT_ID));
            form.push(("client_secret", OidcProvider::CLIENT_SECRET));
            request
        }
    };
    request.form(&form).send().await.unwrap()
}

async fn exchange(
    provider: &OidcProvider,
    auth: Auth,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    token_request(
        provider,
        auth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", OidcProvider::REDIRECT_URI),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn jwks(provider: &OidcProvider) -> Value {
    http()
        .get(provider.jwks_uri())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verifies an RS256 token against the JWKS as a relying party would: the key its kid names,
/// or any published key when it has none. `Err` says why it was rejected.
fn verify(jwks: &Value, token: &str, audience: &str, issuer: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|error| error.to_string())?;
    let candidates: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|jwk| header.kid.as_deref().is_none_or(|kid| jwk["kid"] == kid))
        .collect();
    if candidates.is_empty() {
        return Err(format!("no published key has kid {:?}", header.kid));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    let mut errors = Vec::new();
    for jwk in candidates {
        let key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        match jsonwebtoken::decode::<Value>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(error) => errors.push(error.to_string()),
        }
    }
    Err(errors.join("; "))
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_document_describes_the_provider() {
    let provider = OidcProvider::start().await;
    let issuer = provider.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:") && !issuer.ends_with('/'));

    let response = http()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();

    assert_eq!(document["issuer"], issuer);
    assert_eq!(
        document["authorization_endpoint"],
        format!("{issuer}/authorize")
    );
    assert_eq!(document["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(document["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(document["jwks_uri"], provider.jwks_uri());
    assert_eq!(document["response_types_supported"], json!(["code"]));
    assert_eq!(document["subject_types_supported"], json!(["public"]));
    assert_eq!(
        document["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(
        document["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        document["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert!(
        document["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("openid"))
    );
    assert!(
        document["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("email"))
    );
}

#[tokio::test]
async fn jwks_publishes_one_rs256_key_with_cache_control() {
    let provider = OidcProvider::start().await;
    let response = http().get(provider.jwks_uri()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["kid"], provider.current_kid());
    assert_eq!(key["e"], "AQAB");
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256, "a 2048-bit modulus without a leading zero");

    provider.set_jwks_max_age(60);
    let response = http().get(provider.jwks_uri()).send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    assert_eq!(provider.jwks_requests(), 2);
}

#[tokio::test]
async fn authorize_redirects_with_a_code_and_the_state_verbatim() {
    let provider = OidcProvider::start().await;
    let (_, challenge) = pkce();
    let state = "a b&c=d/é+%";
    let response = authorize(
        &provider,
        &challenge,
        &[
            ("state", state),
            ("access_type", "offline"),
            ("login_hint", "ada@example.com"),
        ],
    )
    .await;

    let (location, query) = location_query(&response);
    assert!(location.starts_with(&format!("{}?code=", OidcProvider::REDIRECT_URI)));
    assert!(!query["code"].is_empty());
    assert_eq!(query["state"], state);
    assert_eq!(query.len(), 2);

    let recorded = provider.authorize_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["state"], state);
    assert_eq!(recorded[0]["login_hint"], "ada@example.com");
    assert_eq!(recorded[0]["code_challenge"], challenge);
}

#[tokio::test]
async fn code_exchange_with_basic_auth_gives_a_verifiable_id_token() {
    let provider = OidcProvider::start().await;
    let (code, verifier) = sign_in(&provider, &[]).await;

    let response = exchange(&provider, Auth::Basic, &code, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["scope"], "openid email profile");
    assert!(
        body.get("refresh_token").is_none(),
        "no access_type=offline"
    );
    assert_eq!(
        provider.issued_access_tokens(),
        vec![body["access_token"].as_str().unwrap()]
    );

    let id_token = body["id_token"].as_str().unwrap();
    let header = header_of(id_token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], provider.current_kid());
    let claims = verify(
        &jwks(&provider).await,
        id_token,
        OidcProvider::CLIENT_ID,
        &provider.issuer(),
    )
    .unwrap();
    let ada = TestUser::default();
    assert_eq!(claims["nonce"], "nonce-123");
    assert_eq!(claims["aud"], OidcProvider::CLIENT_ID);
    assert_eq!(claims["azp"], OidcProvider::CLIENT_ID);
    assert_eq!(claims["sub"], ada.sub);
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["picture"], "https://example.com/ada.png");
    assert!(claims.get("hd").is_none());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    let digest = Sha256::digest(body["access_token"].as_str().unwrap().as_bytes());
    assert_eq!(claims["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));

    let requests = provider.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].auth, ClientAuth::Basic);
    assert_eq!(requests[0].grant_type, "authorization_code");
    assert_eq!(
        requests[0].client_id.as_deref(),
        Some(OidcProvider::CLIENT_ID)
    );
    assert_eq!(requests[0].fields["code_verifier"], verifier);

    let userinfo: Value = http()
        .get(format!("{}/userinfo", provider.issuer()))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], ada.sub);
}

#[tokio::test]
async fn code_exchange_with_post_auth_works_and_is_recorded() {
    let provider = OidcProvider::start().await;
    provider.set_user(TestUser {
        hd: Some("example.org".to_owned()),
        ..TestUser::new("42", "grace@example.org")
    });
    let (code, verifier) = sign_in(&provider, &[]).await;

    let response = exchange(&provider, Auth::Post, &code, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let claims = verify(
        &jwks(&provider).await,
        body["id_token"].as_str().unwrap(),
        OidcProvider::CLIENT_ID,
        &provider.issuer(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "42");
    assert_eq!(claims["email"], "grace@example.org");
    assert_eq!(claims["hd"], "example.org");
    assert_eq!(provider.token_requests()[0].auth, ClientAuth::Post);
}

#[tokio::test]
async fn basic_auth_form_urlencodes_id_and_secret() {
    let provider = OidcProvider::start().await;
    let (id, secret) = ("odd:client id", "s3cret with %&+ and é");
    let redirect = "http://127.0.0.1/odd?x=1";
    provider.register_client(id, secret, &[redirect]);
    let (verifier, challenge) = pkce();
    let response = authorize(
        &provider,
        &challenge,
        &[("client_id", id), ("redirect_uri", redirect)],
    )
    .await;
    let (location, query) = location_query(&response);
    assert!(location.starts_with("http://127.0.0.1/odd?x=1&code="));

    let encode =
        |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    let response = http()
        .post(format!("{}/token", provider.issuer()))
        .basic_auth(encode(id), Some(encode(secret)))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &query["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(provider.token_requests()[0].client_id.as_deref(), Some(id));
}

#[tokio::test]
async fn wrong_client_secret_or_none_is_invalid_client() {
    let provider = OidcProvider::start().await;
    let (code, verifier) = sign_in(&provider, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OidcProvider::REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
    ];

    let response = http()
        .post(format!("{}/token", provider.issuer()))
        .basic_auth(OidcProvider::CLIENT_ID, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let mut public = form.to_vec();
    public.push(("client_id", OidcProvider::CLIENT_ID));
    let response = http()
        .post(format!("{}/token", provider.issuer()))
        .form(&public)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(provider.token_requests()[1].auth, ClientAuth::None);

    // The failed attempts did not consume the code.
    let response = exchange(&provider, Auth::Basic, &code, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant() {
    let provider = OidcProvider::start().await;
    let (code, _) = sign_in(&provider, &[]).await;
    let (other_verifier, _) = pkce();
    let response = exchange(&provider, Auth::Basic, &code, &other_verifier).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].is_string());
}

#[tokio::test]
async fn a_reused_code_is_invalid_grant() {
    let provider = OidcProvider::start().await;
    let (code, verifier) = sign_in(&provider, &[("access_type", "offline")]).await;
    let first = exchange(&provider, Auth::Basic, &code, &verifier).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();

    for _ in 0..2 {
        let again = exchange(&provider, Auth::Basic, &code, &verifier).await;
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);
        let body: Value = again.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant");
    }

    // The replay revoked the refresh token the code gave.
    let refresh = token_request(
        &provider,
        Auth::Basic,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refresh.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_a_400_without_redirect() {
    let provider = OidcProvider::start().await;
    let (_, challenge) = pkce();
    let response = authorize(
        &provider,
        &challenge,
        &[("redirect_uri", "http://127.0.0.1/elsewhere")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());

    let response = authorize(&provider, &challenge, &[("client_id", "nobody")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn authorization_errors_redirect_with_the_error_and_state() {
    let provider = OidcProvider::start().await;
    let (_, challenge) = pkce();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("code_challenge", "")], "invalid_request"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("scope", "email profile")], "invalid_scope"),
        (&[("response_type", "token")], "unsupported_response_type"),
    ];
    for (extra, error) in cases {
        let response = authorize(&provider, &challenge, extra).await;
        let (location, query) = location_query(&response);
        assert!(location.starts_with(OidcProvider::REDIRECT_URI));
        assert_eq!(query["error"], error, "{extra:?}");
        assert_eq!(query["state"], "csrf-state");
        assert!(!query.contains_key("code"));
    }
}

#[tokio::test]
async fn offline_access_gives_a_refresh_token_that_works_until_revoked() {
    let provider = OidcProvider::start().await;
    let (code, verifier) = sign_in(
        &provider,
        &[("access_type", "offline"), ("prompt", "consent")],
    )
    .await;
    let body: Value = exchange(&provider, Auth::Post, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        provider.issued_refresh_tokens(),
        vec![refresh_token.clone()]
    );

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let refresh = || token_request(&provider, Auth::Basic, &form);
    let mut access_tokens = vec![body["access_token"].as_str().unwrap().to_owned()];
    for _ in 0..2 {
        let response = refresh().await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["scope"], "openid email profile");
        assert!(body.get("refresh_token").is_none());
        let access_token = body["access_token"].as_str().unwrap().to_owned();
        assert!(!access_tokens.contains(&access_token));
        access_tokens.push(access_token);
    }
    assert_eq!(provider.issued_access_tokens(), access_tokens);
    assert_eq!(provider.token_requests()[1].grant_type, "refresh_token");

    provider.revoke_refresh_token(&refresh_token);
    let response = refresh().await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );

    // Omitted on demand, as when the user had already consented.
    provider.set_omit_refresh_token(true);
    let (code, verifier) = sign_in(&provider, &[("access_type", "offline")]).await;
    let body: Value = exchange(&provider, Auth::Basic, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("refresh_token").is_none());
}

#[tokio::test]
async fn id_token_claims_can_be_overridden_and_removed() {
    let provider = OidcProvider::start().await;
    provider.set_id_token_claims(
        json!({ "email_verified": false, "picture": null, "hd": "corp.example" }),
    );
    let (code, verifier) = sign_in(&provider, &[]).await;
    let body: Value = exchange(&provider, Auth::Basic, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let claims = verify(
        &jwks(&provider).await,
        body["id_token"].as_str().unwrap(),
        OidcProvider::CLIENT_ID,
        &provider.issuer(),
    )
    .unwrap();
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["hd"], "corp.example");
    assert!(claims.get("picture").is_none());

    provider.clear_id_token_claims();
    let (code, verifier) = sign_in(&provider, &[]).await;
    let body: Value = exchange(&provider, Auth::Basic, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(
                body["id_token"]
                    .as_str()
                    .unwrap()
                    .split('.')
                    .nth(1)
                    .unwrap(),
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["email_verified"], true);
}

#[tokio::test]
async fn a_simulated_outage_fails_every_token_request() {
    let provider = OidcProvider::start().await;
    provider.set_token_endpoint_failure(Some(503));
    let (code, verifier) = sign_in(&provider, &[]).await;
    let response = exchange(&provider, Auth::Basic, &code, &verifier).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
    assert_eq!(provider.token_requests().len(), 1);

    provider.set_token_endpoint_failure(None);
    let response = exchange(&provider, Auth::Basic, &code, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn minted_tokens_verify_and_hostile_ones_do_not() {
    let provider = OidcProvider::start().await;
    let jwks = jwks(&provider).await;
    let issuer = provider.issuer();
    let claims = provider.default_claims("some-audience", Some("n-1"));
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["azp"], "some-audience");

    let honest = provider.mint(&claims);
    assert_eq!(
        verify(&jwks, &honest, "some-audience", &issuer).unwrap(),
        claims
    );

    for kind in [
        Hostile::AlgNone,
        Hostile::Hs256WithPublicKey,
        Hostile::UnknownKid,
        Hostile::ForeignKeySameKid,
        Hostile::BadSignature,
        Hostile::NoKid,
    ] {
        let token = provider.mint_hostile(&claims, kind);
        let rejected = verify(&jwks, &token, "some-audience", &issuer);
        assert!(rejected.is_err(), "{kind:?} was accepted");
        let header = header_of(&token);
        match kind {
            Hostile::AlgNone => {
                assert_eq!(header["alg"], "none");
                assert!(token.ends_with('.'));
            }
            Hostile::Hs256WithPublicKey => {
                assert_eq!(header["alg"], "HS256");
                assert_eq!(header["kid"], provider.current_kid());
            }
            Hostile::UnknownKid => assert_ne!(header["kid"], provider.current_kid()),
            Hostile::ForeignKeySameKid | Hostile::BadSignature => {
                assert_eq!(header["alg"], "RS256");
                assert_eq!(header["kid"], provider.current_kid());
            }
            Hostile::NoKid => assert!(header.get("kid").is_none()),
            Hostile::UnknownCritical => unreachable!("not in this list"),
        }
    }

    // Validly signed by a published key: only a verifier that honours `crit` refuses it.
    let critical = provider.mint_hostile(&claims, Hostile::UnknownCritical);
    let header = header_of(&critical);
    assert_eq!(header["crit"], json!(["exp"]));
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], provider.current_kid());
    assert_eq!(
        verify(&jwks, &critical, "some-audience", &issuer).unwrap(),
        claims
    );
}

#[tokio::test]
async fn rotating_the_signing_key_changes_the_kid() {
    let provider = OidcProvider::start().await;
    let claims = provider.default_claims("aud", None);
    let old_kid = provider.current_kid();
    let old_token = provider.mint(&claims);

    provider.rotate_signing_key(true);
    let new_kid = provider.current_kid();
    assert_ne!(new_kid, old_kid);
    let both = jwks(&provider).await;
    let kids: Vec<&Value> = both["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| &key["kid"])
        .collect();
    assert_eq!(kids, vec![&json!(new_kid), &json!(old_kid)]);
    let new_token = provider.mint(&claims);
    assert_eq!(header_of(&new_token)["kid"], new_kid);
    assert!(verify(&both, &old_token, "aud", &provider.issuer()).is_ok());
    assert!(verify(&both, &new_token, "aud", &provider.issuer()).is_ok());

    provider.rotate_signing_key(false);
    let newest = jwks(&provider).await;
    let keys = newest["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], provider.current_kid());
    assert!(![&old_kid, &new_kid].contains(&&provider.current_kid()));
    assert!(verify(&newest, &new_token, "aud", &provider.issuer()).is_err());
    assert!(verify(&newest, &provider.mint(&claims), "aud", &provider.issuer()).is_ok());
}

/// A discovered `openidconnect` client for the default client, authenticating as `auth`.
async fn openidconnect_client(
    provider: &OidcProvider,
    auth: openidconnect::AuthType,
) -> openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
> {
    use openidconnect::core::{CoreClient, CoreProviderMetadata};
    use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};

    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(provider.issuer()).unwrap(), &http())
            .await
            .unwrap();
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(OidcProvider::CLIENT_ID.to_owned()),
        Some(ClientSecret::new(OidcProvider::CLIENT_SECRET.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(OidcProvider::REDIRECT_URI.to_owned()).unwrap())
    .set_auth_type(auth)
}

#[tokio::test]
async fn the_openidconnect_crate_signs_in_and_refreshes() {
    use openidconnect::core::CoreAuthenticationFlow;
    use openidconnect::{
        AuthType, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
        Scope, TokenResponse as _,
    };

    let provider = OidcProvider::start().await;
    let http = http();
    for (auth, recorded) in [
        (AuthType::BasicAuth, ClientAuth::Basic),
        (AuthType::RequestBody, ClientAuth::Post),
    ] {
        let client = openidconnect_client(&provider, auth).await;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .add_extra_param("access_type", "offline")
            .set_pkce_challenge(challenge)
            .url();
        let (_, query) = location_query(&http.get(url).send().await.unwrap());
        assert_eq!(&query["state"], csrf.secret());

        let tokens = client
            .exchange_code(AuthorizationCode::new(query["code"].clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        let id_token = tokens.id_token().unwrap();
        let claims = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .unwrap();
        assert_eq!(claims.subject().as_str(), TestUser::default().sub);
        assert_eq!(
            claims.email().map(|email| email.as_str()),
            Some("ada@example.com")
        );
        assert_eq!(claims.email_verified(), Some(true));
        assert_eq!(provider.token_requests().last().unwrap().auth, recorded);

        let refreshed = client
            .exchange_refresh_token(tokens.refresh_token().unwrap())
            .unwrap()
            .request_async(&http)
            .await
            .unwrap();
        assert_ne!(
            refreshed.access_token().secret(),
            tokens.access_token().secret()
        );
        assert!(refreshed.id_token().is_none());
    }
}

#[tokio::test]
async fn the_openidconnect_crate_rejects_every_hostile_token() {
    use std::str::FromStr as _;

    use openidconnect::core::CoreIdToken;
    use openidconnect::{AuthType, Nonce};

    let provider = OidcProvider::start().await;
    let client = openidconnect_client(&provider, AuthType::BasicAuth).await;
    let nonce = Nonce::new("n-1".to_owned());
    let claims = provider.default_claims(OidcProvider::CLIENT_ID, Some(nonce.secret()));

    let honest = CoreIdToken::from_str(&provider.mint(&claims)).unwrap();
    assert!(honest.claims(&client.id_token_verifier(), &nonce).is_ok());

    for kind in [
        Hostile::AlgNone,
        Hostile::Hs256WithPublicKey,
        Hostile::UnknownKid,
        Hostile::ForeignKeySameKid,
        Hostile::BadSignature,
        Hostile::NoKid,
    ] {
        let token = provider.mint_hostile(&claims, kind);
        let accepted = CoreIdToken::from_str(&token)
            .is_ok_and(|token| token.claims(&client.id_token_verifier(), &nonce).is_ok());
        assert!(!accepted, "openidconnect accepted {kind:?}");
    }
}
