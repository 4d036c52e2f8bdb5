//! The metrics listener: off unless configured, the OpenMetrics text it serves parses, and the
//! figures move with the calls the server handles.

use std::collections::BTreeMap;
use std::time::Duration;

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::auth::v1 as authpb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd::proto::preferences::v1 as pb;
use tokio_stream::StreamExt as _;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, spawn_app, spawn_app_with};

/// Every sample of an exposition, by `name{labels}` as written, after checking that each line
/// is a well-formed OpenMetrics line: `# HELP`, `# TYPE` or `# UNIT` of a declared family, a
/// sample of the family declared last with a numeric value, and `# EOF` last.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut family: Option<String> = None;
    let mut lines = text.lines().peekable();
    let mut saw_eof = false;
    while let Some(line) = lines.next() {
        assert!(!saw_eof, "nothing follows # EOF: {line:?}");
        if line == "# EOF" {
            saw_eof = true;
            assert!(lines.peek().is_none(), "# EOF is the last line");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let keyword = words.next().unwrap();
            let name = words.next().unwrap_or_else(|| panic!("bad line {line:?}"));
            assert!(
                matches!(keyword, "HELP" | "TYPE" | "UNIT"),
                "unknown descriptor {line:?}"
            );
            assert!(valid_name(name), "bad metric name in {line:?}");
            if keyword == "TYPE" {
                let kind = words.next().unwrap();
                assert!(
                    matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "info" | "unknown" | "summary"
                    ),
                    "bad type in {line:?}"
                );
            }
            family = Some(name.to_owned());
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample has a value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("numeric value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad sample name in {line:?}");
        let family = family.as_deref().expect("a sample follows its descriptor");
        assert!(
            name.starts_with(family),
            "sample {name} outside its family {family}"
        );
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "labels in braces: {line:?}"
            );
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(valid_name(key), "bad label name in {line:?}");
                assert!(!value.contains('\n'));
            }
        }
        samples.insert(series.to_owned(), value);
    }
    assert!(saw_eof, "the exposition ends with # EOF");
    samples
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let url = app.metrics_url.as_deref().expect("a metrics listener");
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse(&response.text().await.unwrap())
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// The sum of every sample whose series starts with `prefix`.
fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.starts_with(prefix))
        .map(|(_, value)| value)
        .sum()
}

const GET: &str = "/assistd.preferences.v1.PreferencesService/GetPreferences";
const WATCH: &str = "/assistd.preferences.v1.PreferencesService/WatchPreferences";

async fn spawn_with_metrics() -> TestApp {
    spawn_app_with(|config| {
        config.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let app = spawn_app().await;
    assert!(app.metrics_url.is_none());
    assert_eq!(app.config.server.metrics_listen, None);
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code_with_latency_and_streams_in_flight() {
    let app = spawn_with_metrics().await;
    let token = app.token_for(app.create_user().await);
    let before = scrape(&app).await;
    assert_eq!(
        value(
            &before,
            &format!("assistd_rpc_calls_total{{method=\"{GET}\",code=\"ok\"}}")
        ),
        0.0
    );

    let mut client = app.preferences().await;
    for _ in 0..3 {
        client
            .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
            .await
            .unwrap();
    }
    client
        .get_preferences(authed(
            pb::GetPreferencesRequest::default(),
            "expired-or-forged",
        ))
        .await
        .unwrap_err();
    app.preferences_web()
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap();
    let mut watch = client
        .watch_preferences(authed(pb::WatchPreferencesRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();

    let after = scrape(&app).await;
    assert_eq!(
        value(
            &after,
            &format!("assistd_rpc_calls_total{{method=\"{GET}\",code=\"ok\"}}")
        ),
        4.0,
        "three native calls and one grpc-web call"
    );
    assert_eq!(
        value(
            &after,
            &format!("assistd_rpc_calls_total{{method=\"{GET}\",code=\"unauthenticated\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            &format!("assistd_rpc_duration_seconds_count{{method=\"{GET}\"}}")
        ),
        5.0
    );
    assert_eq!(
        value(
            &after,
            &format!("assistd_rpc_duration_seconds_bucket{{le=\"+Inf\",method=\"{GET}\"}}")
        ),
        5.0,
        "{:?}",
        after
            .keys()
            .filter(|k| k.contains("bucket"))
            .take(3)
            .collect::<Vec<_>>()
    );
    assert!(
        value(
            &after,
            &format!("assistd_rpc_sent_bytes_total{{method=\"{GET}\"}}")
        ) > 0.0
    );
    assert_eq!(
        value(
            &after,
            &format!("assistd_rpc_in_flight{{method=\"{WATCH}\"}}")
        ),
        1.0,
        "the open watch stream"
    );
    assert_eq!(value(&after, "assistd_db_pool_max_connections"), 16.0);
    assert!(sum(&after, "assistd_db_pool_connections{") >= 1.0);

    drop(watch);
    let mut closed = false;
    for _ in 0..200 {
        let now = scrape(&app).await;
        if value(
            &now,
            &format!("assistd_rpc_in_flight{{method=\"{WATCH}\"}}"),
        ) == 0.0
        {
            assert_eq!(
                value(
                    &now,
                    &format!("assistd_rpc_calls_total{{method=\"{WATCH}\",code=\"cancelled\"}}")
                ),
                1.0
            );
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the closed stream leaves the in-flight gauge");
}

#[tokio::test]
async fn made_up_methods_share_one_label() {
    let app = spawn_with_metrics().await;
    let client = reqwest::Client::new();
    for path in ["/x.Y/Z1", "/x.Y/Z2", "/nothing"] {
        client
            .post(format!("{}{path}", app.address))
            .header("content-type", "application/grpc-web+proto")
            .body(Vec::new())
            .send()
            .await
            .unwrap();
    }
    let samples = scrape(&app).await;
    assert!(
        samples.keys().all(|series| !series.contains("x.Y")),
        "{samples:?}"
    );
    assert_eq!(
        value(
            &samples,
            "assistd_rpc_duration_seconds_count{method=\"unknown\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn upstream_calls_audit_appends_data_keys_and_sign_ins_are_counted() {
    let app = spawn_with_metrics().await;
    let token = app.token_for(app.create_user().await);
    app.gemini.allow_key(GOOD_KEY);
    UserApiKeyServiceClient::new(app.channel().await)
        .set_api_key(authed(
            keypb::SetApiKeyRequest {
                provider: keypb::Provider::Gemini.into(),
                api_key: GOOD_KEY.into(),
                allow_unverified: false,
            },
            &token,
        ))
        .await
        .unwrap();
    let status = UserApiKeyServiceClient::new(app.channel().await)
        .set_api_key(authed(
            keypb::SetApiKeyRequest {
                provider: keypb::Provider::Gemini.into(),
                api_key: "AIzaSy-not-a-key-google-knows-0000".into(),
                allow_unverified: false,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    AuthServiceClient::new(app.channel().await)
        .refresh(authpb::RefreshRequest {
            refresh_token: "a-refresh-token-nobody-issued".into(),
        })
        .await
        .unwrap_err();

    let samples = scrape(&app).await;
    assert_eq!(
        value(
            &samples,
            "assistd_upstream_calls_total{peer=\"gemini\",operation=\"models.list\",outcome=\"ok\"}"
        ),
        1.0,
        "{samples:?}"
    );
    assert_eq!(
        value(
            &samples,
            "assistd_upstream_calls_total{peer=\"gemini\",operation=\"models.list\",outcome=\"invalid_api_key\"}"
        ),
        1.0,
        "{samples:?}"
    );
    assert_eq!(
        value(
            &samples,
            "assistd_upstream_duration_seconds_count{peer=\"gemini\",operation=\"models.list\"}"
        ),
        2.0
    );
    // The stored key and the refused attempt are audited.
    assert!(
        value(&samples, "assistd_audit_appends_total") >= 2.0,
        "{samples:?}"
    );
    assert!(
        sum(&samples, "assistd_data_key_cache_lookups_total{") >= 1.0,
        "sealing the key looked up the user's data key: {samples:?}"
    );
    let refreshes = sum(
        &samples,
        "assistd_sign_in_outcomes_total{method=\"refresh\"",
    );
    assert_eq!(refreshes, 1.0, "{samples:?}");
    assert_eq!(
        value(
            &samples,
            "assistd_sign_in_outcomes_total{method=\"refresh\",outcome=\"ok\"}"
        ),
        0.0
    );
    // With `ASSISTD_TEST_KEK=kms` the data key was made by moto's KMS, and counted.
    let kms = sum(&samples, "assistd_upstream_calls_total{peer=\"kms\"");
    if app.config.keys.kek.provider == assistd::config::KekProvider::Kms {
        assert!(
            value(
                &samples,
                "assistd_upstream_calls_total{peer=\"kms\",operation=\"GenerateDataKey\",outcome=\"ok\"}"
            ) >= 1.0,
            "{samples:?}"
        );
    } else {
        assert_eq!(kms, 0.0, "the local KEK makes no upstream calls");
    }
    let text = format!("{samples:?}");
    assert!(!text.contains(GOOD_KEY) && !text.contains(&token));
}

#[tokio::test]
async fn the_metrics_listener_answers_only_get_metrics() {
    let app = spawn_with_metrics().await;
    let url = app.metrics_url.clone().unwrap();
    let other = url.replace("/metrics", "/other");
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 404);
    let post = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(post.status(), 404);
    // The API port does not answer scrapes.
    let api = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap();
    assert_ne!(api.status(), 200);
}

/// `assistd_upstream_calls_total` of the sign-in provider for `operation` and `outcome`.
fn google_calls(samples: &BTreeMap<String, f64>, operation: &str, outcome: &str) -> f64 {
    value(
        samples,
        &format!(
            "assistd_upstream_calls_total{{peer=\"google\",operation=\"{operation}\",outcome=\"{outcome}\"}}"
        ),
    )
}

#[tokio::test]
async fn calls_to_the_sign_in_provider_are_counted_by_operation_and_outcome() {
    use assistd_testkit::oidc::OidcProvider;

    let provider = OidcProvider::start().await;
    let issuer = provider.issuer();
    let app = spawn_app_with(move |config| {
        config.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.sign_in.issuer = issuer;
        config.sign_in.client_id = OidcProvider::CLIENT_ID.into();
        config.sign_in.client_secret = OidcProvider::CLIENT_SECRET.into();
        config.sign_in.allowed_redirect_uris = vec![OidcProvider::REDIRECT_URI.into()];
        config.sign_in.sign_in_per_ip_per_minute = 10_000;
        config.sign_in.sign_in_per_user_per_minute = 10_000;
    })
    .await;
    let mut auth = AuthServiceClient::new(app.channel().await);
    let begin = || authpb::BeginLoginRequest {
        redirect_uri: OidcProvider::REDIRECT_URI.into(),
        request_gmail_access: false,
        request_gmail_compose: false,
        login_hint: String::new(),
    };
    let complete = |state: String, code: String| authpb::CompleteLoginRequest {
        state,
        code,
        device_name: String::new(),
    };

    let before = scrape(&app).await;
    assert_eq!(
        sum(&before, "assistd_upstream_calls_total{peer=\"google\""),
        0.0,
        "nothing is fetched before the first sign-in: {before:?}"
    );

    // A sign-in: discovery (at BeginLogin), then the code exchange and the JWKS.
    let begun = auth.begin_login(begin()).await.unwrap().into_inner();
    let (state, code) = crate::signin::authorize(&begun.authorization_url).await;
    auth.complete_login(complete(state, code)).await.unwrap();
    let signed_in = scrape(&app).await;
    for operation in ["discovery", "token", "jwks"] {
        assert_eq!(
            google_calls(&signed_in, operation, "ok"),
            1.0,
            "{operation}: {signed_in:?}"
        );
        assert_eq!(
            value(
                &signed_in,
                &format!(
                    "assistd_upstream_duration_seconds_count{{peer=\"google\",operation=\"{operation}\"}}"
                )
            ),
            1.0,
            "{operation}: {signed_in:?}"
        );
    }
    assert_eq!(
        sum(&signed_in, "assistd_upstream_calls_total{peer=\"google\""),
        3.0,
        "{signed_in:?}"
    );

    // A code the provider never issued: the token endpoint refuses it. Discovery and the
    // JWKS come from the cache.
    let begun = auth.begin_login(begin()).await.unwrap().into_inner();
    auth.complete_login(complete(begun.state, "a-code-nobody-issued".into()))
        .await
        .unwrap_err();
    let refused = scrape(&app).await;
    assert_eq!(
        google_calls(&refused, "token", "refused"),
        1.0,
        "{refused:?}"
    );
    assert_eq!(google_calls(&refused, "token", "ok"), 1.0);
    assert_eq!(google_calls(&refused, "discovery", "ok"), 1.0);

    // The token endpoint fails: unavailable, and the sign-in answers UNAVAILABLE.
    provider.set_token_endpoint_failure(Some(503));
    let begun = auth.begin_login(begin()).await.unwrap().into_inner();
    let (state, code) = crate::signin::authorize(&begun.authorization_url).await;
    let status = auth
        .complete_login(complete(state, code))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let failed = scrape(&app).await;
    assert_eq!(
        google_calls(&failed, "token", "unavailable"),
        1.0,
        "{failed:?}"
    );
    assert_eq!(
        value(
            &failed,
            "assistd_upstream_duration_seconds_count{peer=\"google\",operation=\"token\"}"
        ),
        3.0
    );

    // The provider is gone: the discovery document, marked stale by the token endpoint's
    // failure, cannot be fetched again (the stale copy still serves BeginLogin).
    drop(provider);
    auth.begin_login(begin()).await.unwrap();
    let gone = scrape(&app).await;
    assert_eq!(
        google_calls(&gone, "discovery", "unavailable"),
        1.0,
        "{gone:?}"
    );
    assert_eq!(google_calls(&gone, "discovery", "ok"), 1.0);
}
