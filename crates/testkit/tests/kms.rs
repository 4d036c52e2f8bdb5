//! The KMS peers: moto is shared and hands out fresh keys, and the fault-injecting endpoint
//! counts, fails and forwards as told. Driven by the AWS SDK and a plain HTTP client.

use std::time::{Duration, Instant};

use assistd_testkit::kms::{self, Fault, KmsProxy, MotoKms};
use aws_sdk_kms::error::ProvideErrorMetadata as _;
use aws_sdk_kms::primitives::Blob;
use serde_json::Value;

/// A KMS JSON 1.1 request for `operation` with `body`, as a plain HTTP client sends it.
async fn call(endpoint: &str, operation: &str, body: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("x-amz-target", format!("TrentService.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn moto_is_shared_and_hands_out_fresh_keys() {
    let moto = MotoKms::shared().await;
    assert!(std::ptr::eq(moto, MotoKms::shared().await));
    assert!(moto.endpoint().starts_with("http://"), "{moto:?}");
    assert!(!moto.endpoint().ends_with('/'));

    let (first, second) = (moto.create_key().await, moto.create_key().await);
    assert_ne!(first, second);
    let described = moto
        .client()
        .await
        .describe_key()
        .key_id(&first)
        .send()
        .await;
    let metadata = described.unwrap().key_metadata.unwrap();
    assert_eq!(metadata.key_id(), first);
    assert_eq!(
        metadata.key_spec().map(|spec| spec.as_str()),
        Some("SYMMETRIC_DEFAULT")
    );
}

#[tokio::test]
async fn the_proxy_forwards_to_moto_and_counts_by_operation() {
    let moto = MotoKms::shared().await;
    let key_id = moto.create_key().await;
    let proxy = KmsProxy::start(Some(moto.endpoint())).await;
    let client = kms::client(proxy.endpoint()).await;

    let data_key = client
        .generate_data_key()
        .key_id(&key_id)
        .number_of_bytes(32)
        .encryption_context("user_id", "alice")
        .send()
        .await
        .unwrap();
    let blob = data_key.ciphertext_blob().unwrap().clone();
    let decrypted = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("user_id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext(), data_key.plaintext());
    let encrypted = client
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(vec![1; 32]))
        .send()
        .await
        .unwrap();
    assert!(encrypted.ciphertext_blob().is_some());

    // moto enforces the encryption context, through the proxy too.
    let err = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("user_id", "bob")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidCiphertextException"), "{err:?}");

    assert_eq!(proxy.count("GenerateDataKey"), 1);
    assert_eq!(proxy.count("Decrypt"), 2);
    assert_eq!(proxy.count("Encrypt"), 1);
    assert_eq!(proxy.count("ReEncrypt"), 0);
    assert_eq!(proxy.counts().values().sum::<usize>(), 4);

    // A failed operation is counted and not forwarded; healed, it is forwarded again.
    proxy.fail(
        "Decrypt",
        Fault::kms(400, "DisabledException", "key is \"disabled\""),
    );
    let err = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("user_id", "alice")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("DisabledException"), "{err:?}");
    assert_eq!(err.message(), Some("key is \"disabled\""));
    assert_eq!(proxy.count("Decrypt"), 3);

    proxy.heal("Decrypt");
    client
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("user_id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(proxy.count("Decrypt"), 4);
}

#[tokio::test]
async fn without_upstream_the_proxy_answers_faults_or_an_internal_error() {
    let proxy = KmsProxy::start(None).await;
    assert_eq!(proxy.endpoint(), format!("http://{}", proxy.addr()));

    let (status, content_type, body) = call(proxy.endpoint(), "Decrypt", "{}").await;
    assert_eq!(status, 500);
    assert_eq!(content_type, "application/x-amz-json-1.1");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["__type"], "KMSInternalException");

    proxy.fail(
        "Decrypt",
        Fault::raw(503, "<html>Service Unavailable</html>"),
    );
    proxy.fail(
        "Encrypt",
        Fault::kms(400, "ThrottlingException", "Rate exceeded"),
    );
    let (status, _, body) = call(proxy.endpoint(), "Decrypt", "{}").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "<html>Service Unavailable</html>")
    );
    let (status, _, body) = call(proxy.endpoint(), "Encrypt", "{}").await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["__type"], "ThrottlingException");
    assert_eq!(body["message"], "Rate exceeded");

    proxy.heal_all();
    assert_eq!(call(proxy.endpoint(), "Encrypt", "{}").await.0, 500);
    assert_eq!(proxy.count("Decrypt"), 2);
    assert_eq!(proxy.count("Encrypt"), 2);
}

#[tokio::test]
async fn a_delayed_fault_answers_after_its_delay() {
    let proxy = KmsProxy::start(None).await;
    let fault = Fault::raw(200, "{}").after(Duration::from_millis(300));
    assert_eq!(
        (fault.status(), fault.body(), fault.delay()),
        (200, "{}", Duration::from_millis(300))
    );
    proxy.fail("GenerateDataKey", fault);
    let started = Instant::now();
    let (status, _, body) = call(proxy.endpoint(), "GenerateDataKey", "{}").await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn server_env_points_the_default_chain_at_the_endpoint() {
    let env = kms::server_env("http://127.0.0.1:5055");
    let names: Vec<&str> = env.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_EC2_METADATA_DISABLED"
        ]
    );
    assert_eq!(env[0].1, "http://127.0.0.1:5055");
    assert_eq!(env[1].1, kms::REGION);
    assert_eq!(env[4].1, "true");
}
