//! The stand-ins over HTTP, as a relying party and a Gemini client see them: the provider's
//! login form, code exchange with PKCE and development ID tokens; the model's key check,
//! errors and streamed events.

use std::time::Duration;

use assistd_devkit::{DevProvider, DevProviderConfig, LocalModel, LocalModelConfig};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const REDIRECT: &str = "http://localhost:5173/auth/callback";
const VERIFIER: &str = "a-code-verifier-that-is-long-enough-for-pkce-0123456789";

async fn provider() -> DevProvider {
    DevProvider::start(DevProviderConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        client_id: "web".into(),
        client_secret: "secret".into(),
        redirect_uris: vec![REDIRECT.into()],
        key_file: None,
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn authorization(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email profile"),
        ("state", "st-1"),
        ("nonce", "no-1"),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    params.push(("code_challenge".into(), challenge));
    params.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    params
}

/// Posts the login form; the code from the redirect.
async fn code_for(provider: &DevProvider, email: &str) -> String {
    let response = client()
        .post(format!("{}/authorize", provider.issuer()))
        .form(&authorization(&[
            ("email", email),
            ("name", "Grace Hopper"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("state".into(), "st-1".into())));
    pairs
        .into_iter()
        .find(|(name, _)| name == "code")
        .expect("a code")
        .1
}

async fn exchange(provider: &DevProvider, code: &str, verifier: &str) -> (u16, Value) {
    let response = client()
        .post(format!("{}/token", provider.issuer()))
        .basic_auth("web", Some("secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_code_flow_needs_the_right_verifier_and_a_code_works_once() {
    let provider = provider().await;
    let discovery = json_of(
        client()
            .get(format!(
                "{}/.well-known/openid-configuration",
                provider.issuer()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(discovery["issuer"], provider.issuer());

    let code = code_for(&provider, "grace@example.com").await;
    let (status, body) = exchange(
        &provider,
        &code,
        "another-verifier-that-is-long-enough-for-pkce-0123456",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // The failed redemption consumed the code.
    let (status, _) = exchange(&provider, &code, VERIFIER).await;
    assert_eq!(status, 400);

    let code = code_for(&provider, "grace@example.com").await;
    let (status, body) = exchange(&provider, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["aud"], "web");
    assert_eq!(claims["nonce"], "no-1");
    assert_eq!(claims["email"], "grace@example.com");
    assert_eq!(claims["name"], "Grace Hopper");

    let userinfo = json_of(
        client()
            .get(format!("{}/userinfo", provider.issuer()))
            .bearer_auth(body["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(userinfo["sub"], claims["sub"]);
}

#[tokio::test]
async fn bad_requests_are_refused_with_reasons() {
    let provider = provider().await;
    let get = |params: Vec<(String, String)>| {
        client()
            .get(format!("{}/authorize", provider.issuer()))
            .query(&params)
            .send()
    };
    let page = get(authorization(&[])).await.unwrap();
    assert_eq!(page.status(), 200);

    let mut foreign = authorization(&[]);
    foreign.retain(|(name, _)| name != "redirect_uri");
    foreign.push(("redirect_uri".into(), "https://evil.example/cb".into()));
    let refused = get(foreign).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("redirect_uri_mismatch")
    );

    let mut no_pkce = authorization(&[]);
    no_pkce.retain(|(name, _)| !name.starts_with("code_challenge"));
    let redirected = get(no_pkce).await.unwrap();
    assert_eq!(redirected.status(), 302);
    assert!(
        redirected.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );

    let no_email = client()
        .post(format!("{}/dev/id-token", provider.issuer()))
        .form(&[("name", "Nobody")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_email.status(), 400);
    let minted = json_of(
        client()
            .post(format!("{}/dev/id-token", provider.issuer()))
            .form(&[("email", "ada@example.com"), ("audience", "android")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        claims_of(minted["id_token"].as_str().unwrap())["aud"],
        "android"
    );
}

async fn model() -> LocalModel {
    LocalModel::start(LocalModelConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        key_prefix: "dev-".into(),
        word_delay: Duration::from_millis(1),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_model_checks_keys_and_streams_word_by_word() {
    let model = model().await;
    let models = |key: Option<&str>| {
        let request = client().get(format!("{}/v1beta/models", model.base_url()));
        match key {
            Some(key) => request.header("x-goog-api-key", key),
            None => request,
        }
        .send()
    };
    assert_eq!(models(Some("dev-anything")).await.unwrap().status(), 200);
    assert_eq!(models(Some("AIza-real")).await.unwrap().status(), 400);
    assert_eq!(models(None).await.unwrap().status(), 403);

    let unknown = client()
        .post(format!(
            "{}/v1beta/models/gemini-0-nope:generateContent",
            model.base_url()
        ))
        .header("x-goog-api-key", "dev-x")
        .body(json!({"contents": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let streamed = client()
        .post(format!(
            "{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            model.base_url()
        ))
        .header("x-goog-api-key", "dev-x")
        .body(json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.headers()["content-type"], "text/event-stream");
    let body = streamed.text().await.unwrap();
    let events: Vec<Value> = body
        .split("\r\n\r\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(events.len() > 5, "{body}");
    let text: String = events
        .iter()
        .map(|event| {
            event["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(text.starts_with("You said: \"Hello\"."), "{text}");
    assert_eq!(
        events.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    assert!(events[0]["candidates"][0].get("finishReason").is_none());
}

/// `POST /dev/id-token` for ada, sent to `base` with `host` in the `Host` header.
async fn id_token_with_host(base: &str, host: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/dev/id-token"))
        .header("host", host)
        .form(&[("email", "ada@example.com")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rebound_host_name_gets_no_id_token() {
    let provider = provider().await;
    let port = provider.addr().port();
    for host in [
        format!("rebound.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let refused = id_token_with_host(provider.issuer(), &host).await;
        assert_eq!(refused.status(), 421, "Host: {host}");
        let text = refused.text().await.unwrap();
        assert!(!text.contains("id_token"), "{text}");
        assert!(text.contains(&format!("localhost:{port}")), "{text}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
    ] {
        let minted = id_token_with_host(provider.issuer(), &host).await;
        assert_eq!(minted.status(), 200, "Host: {host}");
        assert!(json_of(minted).await["id_token"].is_string());
    }
}

#[tokio::test]
async fn the_model_answers_to_its_own_host_names_only() {
    let model = model().await;
    let port = model.addr().port();
    let models = |host: String| {
        client()
            .get(format!("{}/v1beta/models", model.base_url()))
            .header("host", host)
            .header("x-goog-api-key", "dev-anything")
            .send()
    };
    let refused = models(format!("rebound.example:{port}")).await.unwrap();
    assert_eq!(refused.status(), 421);
    let served = models(format!("localhost:{port}")).await.unwrap();
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_unread() {
    let provider = provider().await;
    let padding = "x".repeat(64 * 1024);
    for path in ["/token", "/dev/id-token", "/authorize"] {
        let refused = client()
            .post(format!("{}{path}", provider.issuer()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("email=ada%40example.com&name={padding}"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 413, "{path}");
        assert_eq!(json_of(refused).await["error"], "invalid_request");
    }
    // Just under the limit is read (and answered on its merits).
    let name = "x".repeat(60 * 1024);
    let minted = client()
        .post(format!("{}/dev/id-token", provider.issuer()))
        .form(&[("email", "ada@example.com"), ("name", name.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 200);
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_64_kib() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let provider = provider().await;
    let mut stream = tokio::net::TcpStream::connect(provider.addr())
        .await
        .unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
        provider.addr()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // No Content-Length: the limit is found while reading, after 64 KiB and a little more.
    let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
    for _ in 0..5 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
