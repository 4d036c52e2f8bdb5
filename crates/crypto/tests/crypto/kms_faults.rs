//! KMS failures that moto does not play, from the fault-injecting endpoint: each maps to its
//! class, nothing is retried more than configured, and nothing comes back unprotected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use assistd_crypto::{
    CachePolicy, CryptoError, DataKey, DataKeyCache, ErrorClass, KekRefusal, KeyEncryptionKey,
    KmsKek, KmsSettings, SealContext, WrappedDataKey, seal,
};
use assistd_domain::UserId;
use assistd_testkit::kms::{Fault, KmsProxy, MotoKms, sdk_config};
use base64::Engine as _;

use crate::support::{kms_kek, test_settings};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Refused(KekRefusal),
    Class(ErrorClass),
}

fn cases() -> Vec<(Fault, Expect)> {
    use Expect::{Class, Refused};
    let arn = "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0000-4000-8000-000000000000";
    vec![
        (
            Fault::kms(400, "DisabledException", &format!("{arn} is disabled.")),
            Refused(KekRefusal::KeyDisabled),
        ),
        (
            Fault::kms(
                400,
                "KMSInvalidStateException",
                &format!("{arn} is pending deletion."),
            ),
            Refused(KekRefusal::KeyPendingDeletion),
        ),
        (
            Fault::kms(
                400,
                "KMSInvalidStateException",
                &format!("{arn} is pending import."),
            ),
            Refused(KekRefusal::InvalidKeyState),
        ),
        (
            Fault::kms(
                400,
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/assistd is not authorized to perform: kms:Decrypt",
            ),
            Refused(KekRefusal::AccessDenied),
        ),
        (
            Fault::kms(
                400,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            Refused(KekRefusal::AccessDenied),
        ),
        (
            Fault::kms(
                400,
                "NotFoundException",
                &format!("Key '{arn}' does not exist"),
            ),
            Refused(KekRefusal::KeyNotFound),
        ),
        (
            Fault::kms(
                400,
                "IncorrectKeyException",
                "The key ID in the request does not identify a CMK that can perform this operation.",
            ),
            Refused(KekRefusal::WrongKey),
        ),
        (
            Fault::kms(
                400,
                "InvalidKeyUsageException",
                "KeyUsage SIGN_VERIFY is not compatible",
            ),
            Refused(KekRefusal::InvalidKeyUsage),
        ),
        (
            Fault::kms(400, "ThrottlingException", "Rate exceeded"),
            Class(ErrorClass::Unavailable),
        ),
        (
            Fault::kms(
                400,
                "KeyUnavailableException",
                "custom key store unavailable",
            ),
            Class(ErrorClass::Unavailable),
        ),
        (
            Fault::kms(500, "KMSInternalException", "internal"),
            Class(ErrorClass::Unavailable),
        ),
        (
            Fault::kms(503, "DependencyTimeoutException", "timeout"),
            Class(ErrorClass::Unavailable),
        ),
        (Fault::raw(500, ""), Class(ErrorClass::Unavailable)),
        (
            Fault::raw(503, "<html><body>Service Unavailable</body></html>"),
            Class(ErrorClass::Unavailable),
        ),
        (
            Fault::kms(400, "InvalidCiphertextException", ""),
            Class(ErrorClass::InvalidCiphertext),
        ),
        (
            Fault::kms(400, "ValidationException", "1 validation error detected"),
            Class(ErrorClass::Internal),
        ),
    ]
}

fn check(err: &CryptoError, expect: Expect, what: &str) {
    match expect {
        Expect::Refused(reason) => {
            assert!(
                matches!(err, CryptoError::KekRefused { reason: got, .. } if *got == reason),
                "{what}: expected {reason:?}, got {err:?}"
            );
            assert_eq!(err.class(), ErrorClass::FailedPrecondition, "{what}");
            assert!(!err.is_retryable());
            assert!(matches!(
                assistd_domain::Error::from(clone_class(err)),
                assistd_domain::Error::FailedPrecondition { .. }
            ));
        }
        Expect::Class(class) => {
            assert_eq!(err.class(), class, "{what}: {err:?}");
            assert_eq!(err.is_retryable(), class == ErrorClass::Unavailable);
            if class == ErrorClass::Unavailable {
                assert!(matches!(
                    assistd_domain::Error::from(clone_class(err)),
                    assistd_domain::Error::Unavailable { .. }
                ));
            }
        }
    }
}

/// A stand-in error of the same class, to exercise the domain mapping without consuming `err`.
fn clone_class(err: &CryptoError) -> CryptoError {
    match err {
        CryptoError::KekRefused {
            kek_id,
            reason,
            message,
        } => CryptoError::KekRefused {
            kek_id: kek_id.clone(),
            reason: *reason,
            message: message.clone(),
        },
        CryptoError::KekUnavailable { kek_id, message } => CryptoError::KekUnavailable {
            kek_id: kek_id.clone(),
            message: message.clone(),
        },
        other => CryptoError::Internal(other.to_string()),
    }
}

fn unwrap_err<T>(result: Result<T, CryptoError>, what: &str) -> CryptoError {
    match result {
        Err(err) => err,
        Ok(_) => panic!("{what}: succeeded, but must fail closed"),
    }
}

#[tokio::test]
async fn every_kms_error_maps_to_its_class_for_every_operation() {
    let proxy = KmsProxy::start(None).await;
    let kek = kms_kek(proxy.endpoint(), "alias/assistd-test").await;
    let owner = UserId::new();
    let stored = WrappedDataKey::new(kek.id(), vec![7; 150]);
    for (fault, expect) in cases() {
        for operation in ["GenerateDataKey", "Encrypt", "Decrypt"] {
            proxy.fail(operation, fault.clone());
            let before = proxy.count(operation);
            let what = format!("{operation} answered {fault:?}");
            let err = match operation {
                "GenerateDataKey" => unwrap_err(kek.generate_data_key(owner).await, &what),
                "Encrypt" => unwrap_err(kek.wrap(owner, &DataKey::generate()).await, &what),
                _ => unwrap_err(kek.unwrap(owner, &stored).await, &what),
            };
            check(&err, expect, &what);
            assert_eq!(
                proxy.count(operation) - before,
                1,
                "{what}: exactly one request"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_or_hanging_kms_is_unavailable_quickly() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let kek = kms_kek(
        &format!("http://127.0.0.1:{closed_port}"),
        "alias/assistd-test",
    )
    .await;
    let err = unwrap_err(
        kek.generate_data_key(UserId::new()).await,
        "connection refused",
    );
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");

    let proxy = KmsProxy::start(None).await;
    proxy.fail(
        "Decrypt",
        Fault::raw(200, "{}").after(Duration::from_secs(30)),
    );
    let settings = KmsSettings {
        operation_timeout: Duration::from_millis(500),
        ..test_settings("alias/assistd-test")
    };
    let kek = KmsKek::from_sdk_config(&sdk_config(proxy.endpoint()).await, &settings);
    let started = Instant::now();
    let stored = WrappedDataKey::new(kek.id(), vec![7; 150]);
    let err = unwrap_err(kek.unwrap(UserId::new(), &stored).await, "hanging KMS");
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retries_are_bounded_by_max_attempts() {
    let proxy = KmsProxy::start(None).await;
    proxy.fail(
        "Decrypt",
        Fault::kms(500, "KMSInternalException", "internal"),
    );
    let settings = KmsSettings {
        max_attempts: 2,
        ..test_settings("alias/assistd-test")
    };
    let kek = KmsKek::from_sdk_config(&sdk_config(proxy.endpoint()).await, &settings);
    let stored = WrappedDataKey::new(kek.id(), vec![7; 150]);
    let err = unwrap_err(kek.unwrap(UserId::new(), &stored).await, "500 twice");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert_eq!(proxy.count("Decrypt"), 2);
}

#[tokio::test]
async fn malformed_answers_fail_closed_without_echoing_key_material() {
    let proxy = KmsProxy::start(None).await;
    let kek = kms_kek(proxy.endpoint(), "alias/assistd-test").await;
    let owner = UserId::new();
    let plaintext = base64::engine::general_purpose::STANDARD.encode([0x5a; 32]);

    // A data key KMS did not give us wrapped must not be used: it could never be stored.
    proxy.fail(
        "GenerateDataKey",
        Fault::raw(
            200,
            &format!(r#"{{"KeyId":"k","Plaintext":"{plaintext}"}}"#),
        ),
    );
    let err = unwrap_err(kek.generate_data_key(owner).await, "no CiphertextBlob");
    assert_eq!(err.class(), ErrorClass::Internal);
    assert!(!format!("{err} {err:?}").contains(&plaintext));

    proxy.fail("Encrypt", Fault::raw(200, r#"{"KeyId":"k"}"#));
    let err = unwrap_err(
        kek.wrap(owner, &DataKey::generate()).await,
        "Encrypt without blob",
    );
    assert_eq!(err.class(), ErrorClass::Internal);

    let stored = WrappedDataKey::new(kek.id(), vec![7; 150]);
    let short = base64::engine::general_purpose::STANDARD.encode([0x5a; 16]);
    for body in [
        format!(r#"{{"KeyId":"k","Plaintext":"{short}"}}"#),
        r#"{"KeyId":"k"}"#.to_owned(),
        "not json".to_owned(),
    ] {
        proxy.fail("Decrypt", Fault::raw(200, &body));
        let err = unwrap_err(kek.unwrap(owner, &stored).await, &body);
        assert!(
            matches!(err.class(), ErrorClass::Internal | ErrorClass::Unavailable),
            "{body}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains(&short));
    }

    // A wrapped key that names another KEK is refused before any request is made.
    let before = proxy.count("Decrypt");
    let foreign = WrappedDataKey::new("kms:alias/other", vec![7; 150]);
    let err = unwrap_err(kek.unwrap(owner, &foreign).await, "foreign KEK id");
    assert!(matches!(
        err,
        CryptoError::KekRefused {
            reason: KekRefusal::WrongKey,
            ..
        }
    ));
    assert_eq!(proxy.count("Decrypt"), before);
}

#[tokio::test]
async fn reveals_fail_closed_while_kms_refuses_and_recover_after() {
    let moto = MotoKms::shared().await;
    let key_id = moto.create_key().await;
    let proxy = KmsProxy::start(Some(moto.endpoint())).await;
    let kek: Arc<dyn KeyEncryptionKey> = Arc::new(kms_kek(proxy.endpoint(), &key_id).await);
    let owner = UserId::new();
    let ctx = SealContext {
        owner,
        purpose: "gemini_api_key",
        record: "row-1",
        key_version: 1,
    };
    let (key, wrapped) = kek.generate_data_key(owner).await.unwrap();
    let sealed = seal(&key, &ctx, b"sk-canary");
    drop(key);
    let cache = DataKeyCache::new(kek, CachePolicy::default());

    proxy.fail(
        "Decrypt",
        Fault::kms(400, "DisabledException", "key is disabled"),
    );
    let err = unwrap_err(cache.open(&wrapped, &ctx, &sealed).await, "disabled key");
    assert_eq!(err.class(), ErrorClass::FailedPrecondition);
    assert!(!err.to_string().contains("sk-canary"));

    proxy.fail(
        "Decrypt",
        Fault::kms(400, "ThrottlingException", "Rate exceeded"),
    );
    let err = unwrap_err(cache.open(&wrapped, &ctx, &sealed).await, "throttled");
    assert!(err.is_retryable());

    proxy.heal("Decrypt");
    let secret = cache.open(&wrapped, &ctx, &sealed).await.unwrap();
    assert_eq!(secret.expose_secret(), b"sk-canary");
    assert_eq!(proxy.count("Decrypt"), 3);
    assert_eq!(cache.stats().unwraps, 3);
}
