//! `assistd dev` end to end: the real binary with its embedded OpenID provider and local model,
//! driven the way a browser would (the login form posted by hand, no browser), on SQLite or
//! on PostgreSQL with `ASSISTD_TEST_DATABASE_URL`; and `assistd serve`, which has none of it.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::auth::v1 as authpb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd::proto::chat::v1 as pb;
use assistd::proto::chat::v1::chat_service_client::ChatServiceClient;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_types::StatusExt as _;

use crate::helpers::{authed, fresh_database_url};

/// The redirect URI a Vite dev server's app uses.
const CALLBACK: &str = "http://localhost:5173/auth/callback";

/// A running `assistd dev` and the URLs its banner printed.
struct DevServer {
    grpc: String,
    provider: String,
    model: String,
    http: reqwest::Client,
    /// The certificate (PEM) a `--tls-cert` server presents, trusted for the name `localhost`.
    trusted: Option<String>,
    _child: Child,
    _data_dir: TempDir,
}

/// `assistd` with a fresh data directory (and database), quiet unless `TEST_LOG` is set.
async fn assistd(args: &[&str]) -> (Command, TempDir) {
    let dir = TempDir::new().expect("temporary data directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_assistd"));
    command
        .args(args)
        .env_remove("ASSISTD_CONFIG")
        .env_remove("DATABASE_URL")
        .env("ASSISTD_DATA_DIR", dir.path().join("data"))
        .env("ASSISTD_LOG__FILTER", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let database_url = fresh_database_url().await;
    if !database_url.is_empty() {
        command.env("DATABASE_URL", database_url);
    }
    if std::env::var_os("TEST_LOG").is_none() {
        command.stderr(Stdio::null());
    }
    (command, dir)
}

impl DevServer {
    /// Starts `assistd dev` on ephemeral ports with a short word delay, plus `extra` options.
    async fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[]).await
    }

    /// [`DevServer::start`] with `env` variables set for the process.
    async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["dev"];
        for flag in ["--listen", "--provider-listen", "--model-listen"] {
            if !extra.contains(&flag) {
                args.extend([flag, "127.0.0.1:0"]);
            }
        }
        args.extend(["--word-delay-ms", "5"]);
        args.extend_from_slice(extra);
        let (mut command, dir) = assistd(&args).await;
        command.arg("--data-dir").arg(dir.path().join("dev-data"));
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("start assistd dev");
        let banner = read_banner(&mut child).await;
        let url = |label: &str| {
            banner
                .get(label)
                .unwrap_or_else(|| panic!("the banner names the {label}: {banner:?}"))
                .clone()
        };
        let expected = if std::env::var_os("ASSISTD_TEST_DATABASE_URL").is_some() {
            "postgres://"
        } else {
            "sqlite://"
        };
        assert!(url("database").starts_with(expected), "{banner:?}");
        Self {
            grpc: url("gRPC / grpc-web"),
            provider: url("OpenID provider"),
            model: url("local model"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            trusted: None,
            _child: child,
            _data_dir: dir,
        }
    }

    async fn channel(&self) -> Channel {
        let mut endpoint = Channel::from_shared(self.grpc.clone()).unwrap();
        if let Some(trusted) = &self.trusted {
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(trusted))
                        .domain_name("localhost"),
                )
                .unwrap();
        }
        endpoint.connect().await.expect("connect to assistd dev")
    }

    async fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel().await)
    }

    /// An ID token from the provider's `/dev/id-token`.
    async fn id_token(&self, email: &str, name: &str, nonce: &str) -> String {
        let response = self
            .http
            .post(format!("{}/dev/id-token", self.provider))
            .header("content-type", "application/json")
            .body(json!({"email": email, "name": name, "nonce": nonce}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        body["id_token"].as_str().expect("an ID token").to_owned()
    }

    /// Signs `email` in through the Google Identity Services path; the access token.
    async fn sign_in(&self, email: &str) -> String {
        let id_token = self.id_token(email, "", "n-1").await;
        self.auth()
            .await
            .sign_in_with_id_token(authpb::SignInWithIdTokenRequest {
                id_token,
                nonce: "n-1".into(),
                device_name: "test".into(),
            })
            .await
            .expect("sign in with a development ID token")
            .into_inner()
            .tokens
            .unwrap()
            .access_token
    }
}

/// Runs `assistd` with `args` and a fresh `--data-dir`, expecting it to refuse to start; its
/// stderr, and the directory the data directory would have been made in.
async fn refused_start(args: &[&str]) -> (String, TempDir) {
    let (mut command, dir) = assistd(args).await;
    command
        .arg("--data-dir")
        .arg(dir.path().join("dev-data"))
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("assistd dev exits at once")
        .unwrap();
    assert!(!status.success());
    (stderr, dir)
}

/// The banner's `label  URL` lines, read until its last line (the database); the rest of
/// stdout is drained in the background.
async fn read_banner(child: &mut Child) -> HashMap<String, String> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = HashMap::new();
    let mut development_only = false;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            development_only |= line.contains("for development only");
            if let Some((label, rest)) = line.trim().split_once("   ") {
                let value = rest.split_whitespace().next().unwrap_or_default();
                banner.insert(label.trim().to_owned(), value.to_owned());
                if label == "database" {
                    return;
                }
            }
        }
        panic!("assistd dev exited before printing its banner");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("assistd dev prints its banner within a minute");
    assert!(
        development_only,
        "the banner says it is for development only"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    banner
}

/// The hidden fields of the login form, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let unescape = |text: &str| {
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|input| {
            let (name, rest) = input.split_once("\" value=\"").expect("a value");
            let (value, _) = rest.split_once('"').expect("a closing quote");
            (unescape(name), unescape(value))
        })
        .collect()
}

async fn begin_login(dev: &DevServer) -> authpb::BeginLoginResponse {
    dev.auth()
        .await
        .begin_login(authpb::BeginLoginRequest {
            redirect_uri: CALLBACK.into(),
            request_gmail_access: false,
            request_gmail_compose: false,
            login_hint: "grace@example.com".into(),
        })
        .await
        .expect("BeginLogin against the development provider")
        .into_inner()
}

#[tokio::test]
async fn the_login_page_renders() {
    let dev = DevServer::start(&[]).await;
    let begun = begin_login(&dev).await;
    assert!(begun.authorization_url.starts_with(&dev.provider));
    let page = dev.http.get(&begun.authorization_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<form method="post" action="/authorize">"#));
    assert!(html.contains(r#"name="email" value="grace@example.com""#));
    assert!(html.contains("For development only"));
    let fields: HashMap<_, _> = hidden_fields(&html).into_iter().collect();
    assert_eq!(fields["state"], begun.state);
    assert_eq!(fields["redirect_uri"], CALLBACK);
    assert_eq!(fields["code_challenge_method"], "S256");

    // A redirect URI the provider does not know is refused on a page, not followed.
    let foreign = begun
        .authorization_url
        .replace("localhost%3A5173", "evil.example");
    let refused = dev.http.get(foreign).send().await.unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_vite_dev_server_and_added_origins_may_call_through_grpc_web() {
    let dev = DevServer::start(&["--allow-origin", "http://localhost:3000"]).await;
    let preflight = |origin: &str| {
        dev.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/assistd.auth.v1.AuthService/BeginLogin", dev.grpc),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-grpc-web")
            .send()
    };
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:5173",
        "http://localhost:3000",
    ] {
        let answer = preflight(origin).await.unwrap();
        assert_eq!(
            answer
                .headers()
                .get("access-control-allow-origin")
                .and_then(|value| value.to_str().ok()),
            Some(origin)
        );
    }
    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_redirect_flow_with_pkce_ends_in_tokens() {
    let dev = DevServer::start(&[]).await;
    let begun = begin_login(&dev).await;
    let html = dev
        .http
        .get(&begun.authorization_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut form = hidden_fields(&html);
    form.push(("email".into(), "Grace@Example.com".into()));
    form.push(("name".into(), "Grace Hopper".into()));
    let posted = dev
        .http
        .post(format!("{}/authorize", dev.provider))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 302);
    let location = reqwest::Url::parse(posted.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK), "{location}");
    let query: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], begun.state);

    let mut auth = dev.auth().await;
    let done = auth
        .complete_login(authpb::CompleteLoginRequest {
            state: query["state"].clone(),
            code: query["code"].clone(),
            device_name: "browser".into(),
        })
        .await
        .expect("CompleteLogin with the development provider's code")
        .into_inner();
    assert!(done.new_user);
    let tokens = done.tokens.unwrap();
    assert!(!tokens.access_token.is_empty() && !tokens.refresh_token.is_empty());
    let user = auth
        .get_current_user(authed(
            authpb::GetCurrentUserRequest::default(),
            &tokens.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "grace@example.com");
    assert_eq!(user.display_name, "Grace Hopper");

    // The code was single-use.
    let replayed = auth
        .complete_login(authpb::CompleteLoginRequest {
            state: query["state"].clone(),
            code: query["code"].clone(),
            device_name: "browser".into(),
        })
        .await
        .unwrap_err();
    assert_ne!(replayed.code(), Code::Ok);
}

#[tokio::test]
async fn a_development_id_token_signs_in() {
    let dev = DevServer::start(&[]).await;
    let id_token = dev
        .id_token("ada@example.com", "Ada Lovelace", "n-42")
        .await;
    let mut auth = dev.auth().await;
    let signed_in = auth
        .sign_in_with_id_token(authpb::SignInWithIdTokenRequest {
            id_token: id_token.clone(),
            nonce: "n-42".into(),
            device_name: "phone".into(),
        })
        .await
        .expect("SignInWithIdToken with a development ID token")
        .into_inner();
    assert!(signed_in.new_user);
    let user = signed_in.user.unwrap();
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.display_name, "Ada Lovelace");

    // The nonce is still checked.
    let wrong_nonce = auth
        .sign_in_with_id_token(authpb::SignInWithIdTokenRequest {
            id_token,
            nonce: "another".into(),
            device_name: "phone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_nonce.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn dev_keys_are_accepted_and_others_refused() {
    let dev = DevServer::start(&[]).await;
    let token = dev.sign_in("ada@example.com").await;
    let mut keys = UserApiKeyServiceClient::new(dev.channel().await);
    let set = |api_key: &str| {
        authed(
            keypb::SetApiKeyRequest {
                provider: keypb::Provider::Gemini.into(),
                api_key: api_key.into(),
                allow_unverified: false,
            },
            &token,
        )
    };
    keys.set_api_key(set("dev-frontend-key"))
        .await
        .expect("a dev- key is valid for the local model");
    let refused = keys
        .set_api_key(set("AIzaSyNotADevelopmentKey0000000000000"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default(),
        "API_KEY_INVALID"
    );

    // The model answers Gemini's own error bodies to anyone else, too.
    let raw = dev
        .http
        .get(format!("{}/v1beta/models", dev.model))
        .header("x-goog-api-key", "not-a-dev-key")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = serde_json::from_str(&raw.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");
}

/// A signed-in user of `dev` with a `dev-` key and a chat client.
async fn chat_user(dev: &DevServer) -> (String, ChatServiceClient<Channel>) {
    let token = dev.sign_in("ada@example.com").await;
    let channel = dev.channel().await;
    UserApiKeyServiceClient::new(channel.clone())
        .set_api_key(authed(
            keypb::SetApiKeyRequest {
                provider: keypb::Provider::Gemini.into(),
                api_key: "dev-frontend-key-01".into(),
                allow_unverified: false,
            },
            &token,
        ))
        .await
        .expect("store a dev- key");
    (token, ChatServiceClient::new(channel))
}

async fn new_session(token: &str, chat: &mut ChatServiceClient<Channel>) -> String {
    chat.create_session(authed(pb::CreateSessionRequest::default(), token))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .id
}

fn text_of(message: Option<&pb::Message>) -> String {
    match message.and_then(|message| message.content.as_ref()) {
        Some(pb::message::Content::Text(text)) => text.clone(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn a_streamed_reply_arrives_in_several_deltas() {
    let dev = DevServer::start(&[]).await;
    let (token, mut chat) = chat_user(&dev).await;
    let session = new_session(&token, &mut chat).await;
    let mut stream = chat
        .stream_message(authed(
            pb::StreamMessageRequest {
                session_id: session,
                client_message_id: "s-1".into(),
                text: "Hello there".into(),
            },
            &token,
        ))
        .await
        .expect("start a stream")
        .into_inner();
    let (mut deltas, mut streamed, mut reply, mut completed) = (0, String::new(), None, false);
    while let Some(event) = stream.next().await {
        match event.expect("a stream event").event.expect("an event") {
            pb::stream_message_response::Event::TextDelta(delta) => {
                deltas += 1;
                streamed.push_str(&delta.text);
            }
            pb::stream_message_response::Event::ModelMessage(message) => reply = Some(message),
            pb::stream_message_response::Event::Completed(_) => completed = true,
            _ => {}
        }
    }
    assert!(completed);
    assert!(deltas >= 5, "{deltas} deltas");
    assert!(
        streamed.starts_with("You said: \"Hello there\"."),
        "{streamed}"
    );
    assert_eq!(text_of(reply.as_ref()), streamed);
}

#[tokio::test]
async fn remember_that_stores_a_memory_through_the_tool_loop() {
    let dev = DevServer::start(&[]).await;
    let (token, mut chat) = chat_user(&dev).await;
    let session = new_session(&token, &mut chat).await;
    let sent = chat
        .send_message(authed(
            pb::SendMessageRequest {
                session_id: session,
                client_message_id: "m-1".into(),
                text: "Please remember that my cat is Tom.".into(),
            },
            &token,
        ))
        .await
        .expect("a send through the local model")
        .into_inner();
    let roles: Vec<pb::MessageRole> = sent.steps.iter().map(pb::Message::role).collect();
    assert_eq!(
        roles,
        [
            pb::MessageRole::FunctionCall,
            pb::MessageRole::FunctionResult
        ]
    );
    assert_eq!(
        text_of(sent.reply.as_ref()),
        "Got it. I will remember: My cat is Tom."
    );
    let memories = chat
        .list_memories(authed(pb::ListMemoriesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .memories;
    assert_eq!(memories.len(), 1);
    assert_eq!(memories[0].content, "My cat is Tom");

    // Another session recalls it through the recall tool.
    let other = new_session(&token, &mut chat).await;
    let recalled = chat
        .send_message(authed(
            pb::SendMessageRequest {
                session_id: other,
                client_message_id: "m-2".into(),
                text: "What do you remember about my cat?".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        text_of(recalled.reply.as_ref()),
        "Here is what I remember: My cat is Tom."
    );
}

#[tokio::test]
async fn dev_refuses_a_non_loopback_listen_address_without_the_flag() {
    let (stderr, dir) = refused_start(&["dev", "--listen", "0.0.0.0:0"]).await;
    assert!(
        stderr.contains("--listen 0.0.0.0:0 is not a loopback address")
            && stderr.contains("--i-know-this-is-not-production"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("dev-data").exists(),
        "nothing was started or written"
    );

    // With the flag it starts.
    let dev = DevServer::start(&["--listen", "0.0.0.0:0", "--i-know-this-is-not-production"]).await;
    assert!(dev.grpc.starts_with("http://0.0.0.0:"), "{}", dev.grpc);
}

#[tokio::test]
async fn a_page_rebinding_its_name_to_the_provider_gets_no_id_token() {
    let dev = DevServer::start(&[]).await;
    let port = reqwest::Url::parse(&dev.provider)
        .unwrap()
        .port()
        .expect("the issuer names its port");
    let mint = |host: String| {
        dev.http
            .post(format!("{}/dev/id-token", dev.provider))
            .header("host", host)
            .form(&[("email", "ada@example.com")])
            .send()
    };
    let refused = mint(format!("attacker.example:{port}")).await.unwrap();
    assert_eq!(refused.status(), 421);
    assert!(!refused.text().await.unwrap().contains("id_token"));
    let minted = mint(format!("localhost:{port}")).await.unwrap();
    assert_eq!(minted.status(), 200);
}

#[tokio::test]
async fn dev_refuses_an_unspecified_provider_address_even_with_the_flag() {
    let (stderr, dir) = refused_start(&[
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--provider-listen",
        "0.0.0.0:0",
        "--model-listen",
        "127.0.0.1:0",
        "--i-know-this-is-not-production",
    ])
    .await;
    assert!(
        stderr.contains("--provider-listen 0.0.0.0:0 is an unspecified address")
            && stderr.contains("give the address of one interface"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("dev-data").exists(),
        "nothing was started or written"
    );
}

#[tokio::test]
async fn a_model_on_every_interface_is_called_on_loopback() {
    let dev = DevServer::start(&[
        "--model-listen",
        "0.0.0.0:0",
        "--i-know-this-is-not-production",
    ])
    .await;
    assert!(dev.model.starts_with("http://127.0.0.1:"), "{}", dev.model);
    let models = dev
        .http
        .get(format!("{}/v1beta/models", dev.model))
        .header("x-goog-api-key", "dev-frontend-key-01")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
}

#[tokio::test]
async fn dev_reads_no_production_configuration() {
    // A configuration file is refused outright ...
    let (mut command, dir) = assistd(&["--config", "/nonexistent/assistd.toml", "dev"]).await;
    command
        .arg("--data-dir")
        .arg(dir.path().join("dev-data"))
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("assistd dev exits at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("reads no configuration file"), "{stderr}");
    assert!(
        !dir.path().join("dev-data").exists(),
        "nothing was started or written"
    );

    // ... and `ASSISTD_*` variables are not read: a key-encryption key in KMS and a signing
    // key file that does not exist would each stop the server if they were.
    let dev = DevServer::start_with_env(
        &[],
        &[
            ("ASSISTD_KEYS__KEK__PROVIDER", "kms"),
            ("ASSISTD_AUTH__SIGNING_KEY_FILE", "/nonexistent/signing.pem"),
        ],
    )
    .await;
    assert!(dev.grpc.starts_with("http://127.0.0.1:"), "{}", dev.grpc);
}

#[tokio::test]
async fn serve_has_none_of_it() {
    // Defaults: Google as the issuer with sign-in off, Google's Gemini API, no CORS origins.
    let defaults = assistd::config::Config::default();
    assert_eq!(defaults.sign_in.issuer, "https://accounts.google.com");
    assert!(defaults.sign_in.client_id.is_empty());
    assert!(defaults.sign_in.allowed_redirect_uris.is_empty());
    assert_eq!(
        defaults.gemini.base_url,
        "https://generativelanguage.googleapis.com"
    );
    assert!(defaults.server.cors_allowed_origins.is_empty());

    // The dev options do not exist on serve.
    let (mut command, _dir) = assistd(&["serve", "--i-know-this-is-not-production"]).await;
    let refused = command.stderr(Stdio::null()).status().await.unwrap();
    assert_eq!(refused.code(), Some(2), "clap refuses an unknown option");

    // serve with the default configuration: no development provider behind sign-in, no
    // banner.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut command, _dir) = assistd(&["serve"]).await;
    command.env("ASSISTD_SERVER__LISTEN", format!("127.0.0.1:{port}"));
    let mut child = command.spawn().unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let channel = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(channel) = Channel::from_shared(address.clone())
                .unwrap()
                .connect()
                .await
            {
                break channel;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("assistd serve listens within a minute");
    let refused = AuthServiceClient::new(channel)
        .sign_in_with_id_token(authpb::SignInWithIdTokenRequest {
            id_token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".into(),
            nonce: String::new(),
            device_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("not configured"), "{refused:?}");
    child.start_kill().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert!(!stdout.contains("for development only"), "{stdout}");
}

/// The access token's `exp - iat`, in seconds, and its `exp`.
fn access_token_lifetime(access_token: &str) -> (i64, i64) {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1).expect("a JWT payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    (exp - iat, exp)
}

/// Signs `email` in through a development ID token; the tokens.
async fn session_tokens(dev: &DevServer, email: &str) -> authpb::SessionTokens {
    let id_token = dev.id_token(email, "", "n-ttl").await;
    dev.auth()
        .await
        .sign_in_with_id_token(authpb::SignInWithIdTokenRequest {
            id_token,
            nonce: "n-ttl".into(),
            device_name: "browser".into(),
        })
        .await
        .expect("sign in with a development ID token")
        .into_inner()
        .tokens
        .unwrap()
}

#[tokio::test]
async fn access_token_ttl_sets_how_long_signed_in_tokens_live() {
    let dev = DevServer::start(&["--access-token-ttl", "90s"]).await;
    let tokens = session_tokens(&dev, "ada@example.com").await;
    let (lifetime, exp) = access_token_lifetime(&tokens.access_token);
    assert_eq!(lifetime, 90);
    let expire_time = tokens.access_token_expire_time.expect("an expiry");
    assert_eq!(
        expire_time.seconds, exp,
        "the response states the token's own expiry"
    );

    // A refreshed access token gets the same lifetime.
    let refreshed = dev
        .auth()
        .await
        .refresh(authpb::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(access_token_lifetime(&refreshed.access_token).0, 90);

    // Without the flag, the server's default (ten minutes).
    let default = DevServer::start(&[]).await;
    let tokens = session_tokens(&default, "ada@example.com").await;
    assert_eq!(access_token_lifetime(&tokens.access_token).0, 600);
}

#[tokio::test]
async fn an_access_token_ttl_past_fifteen_minutes_is_refused_at_start() {
    let (stderr, _dir) = refused_start(&[
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--provider-listen",
        "127.0.0.1:0",
        "--model-listen",
        "127.0.0.1:0",
        "--access-token-ttl",
        "1h",
    ])
    .await;
    assert!(
        stderr.contains("access_token_ttl must be between 1s and 15m"),
        "{stderr}"
    );
}

/// A self-signed certificate for `localhost` and 127.0.0.1 in `dir`: its PEM and the paths of
/// the certificate and key files.
fn certificate_files(dir: &TempDir) -> (String, String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    (certified.cert.pem(), path(cert), path(key))
}

#[tokio::test]
async fn dev_with_a_certificate_serves_native_grpc_over_tls() {
    let files = TempDir::new().unwrap();
    let (pem, cert, key) = certificate_files(&files);
    let mut dev = DevServer::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    assert!(
        dev.grpc.starts_with("https://127.0.0.1:"),
        "the banner names an https URL: {}",
        dev.grpc
    );
    // Plain HTTP/2 gets no gRPC answer from the TLS port.
    let plaintext = Channel::from_shared(dev.grpc.replacen("https://", "http://", 1))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        AuthServiceClient::new(channel)
            .get_current_user(authpb::GetCurrentUserRequest {})
            .await
            .unwrap_err();
    }

    dev.trusted = Some(pem);
    // Signing in and an authenticated call both go over TLS (tonic offers ALPN h2 only, so
    // every call here is HTTP/2).
    let access_token = dev.sign_in("tls@example.com").await;
    let me = dev
        .auth()
        .await
        .get_current_user(authed(authpb::GetCurrentUserRequest {}, &access_token))
        .await
        .expect("GetCurrentUser over TLS")
        .into_inner();
    assert_eq!(me.user.unwrap().email, "tls@example.com");
}

#[tokio::test]
async fn dev_needs_both_the_certificate_and_its_key() {
    let files = TempDir::new().unwrap();
    let (_, cert, key) = certificate_files(&files);
    for (flag, file) in [("--tls-cert", &cert), ("--tls-key", &key)] {
        let (stderr, _dir) = refused_start(&[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--provider-listen",
            "127.0.0.1:0",
            "--model-listen",
            "127.0.0.1:0",
            flag,
            file,
        ])
        .await;
        let other = if flag == "--tls-cert" {
            "--tls-key"
        } else {
            "--tls-cert"
        };
        assert!(stderr.contains(other), "{flag} alone: {stderr}");
    }
}
