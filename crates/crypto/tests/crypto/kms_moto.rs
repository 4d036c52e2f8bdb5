//! The KMS key-encryption key against moto's KMS server.

use std::sync::Arc;

use assistd_crypto::{
    CachePolicy, CryptoError, DataKey, DataKeyCache, ErrorClass, KeyEncryptionKey, Keyring,
    LocalKek, SealContext, WrappedDataKey, open, seal,
};
use assistd_domain::UserId;

use assistd_testkit::kms::{KmsProxy, MotoKms};

use crate::support::{flipped, kms_kek};

fn ctx(owner: UserId) -> SealContext<'static> {
    SealContext {
        owner,
        purpose: "gemini_api_key",
        record: "row-1",
        key_version: 1,
    }
}

fn expect_err(result: Result<DataKey, CryptoError>, what: &str) -> CryptoError {
    match result {
        Err(err) => err,
        Ok(_) => panic!("{what}: unwrapped, but must not"),
    }
}

#[tokio::test]
async fn generate_decrypt_and_wrap_round_trip() {
    let moto = MotoKms::shared().await;
    let key_id = moto.create_key().await;
    let kek = kms_kek(moto.endpoint(), &key_id).await;
    assert_eq!(kek.id(), format!("kms:{key_id}"));
    let owner = UserId::new();

    let (key, wrapped) = kek.generate_data_key(owner).await.unwrap();
    assert_eq!(wrapped.kek_id(), kek.id());
    let sealed = seal(&key, &ctx(owner), b"sk-canary");
    let unwrapped = kek.unwrap(owner, &wrapped).await.unwrap();
    assert_eq!(
        open(&unwrapped, &ctx(owner), &sealed)
            .unwrap()
            .expose_secret(),
        b"sk-canary"
    );

    // Encrypt (used by rotation) wraps an existing key; Decrypt gives it back.
    let rewrapped = kek.wrap(owner, &key).await.unwrap();
    assert_ne!(rewrapped.ciphertext(), wrapped.ciphertext());
    let again = kek.unwrap(owner, &rewrapped).await.unwrap();
    assert!(open(&again, &ctx(owner), &sealed).is_ok());
}

#[tokio::test]
async fn another_owners_encryption_context_fails() {
    let moto = MotoKms::shared().await;
    let kek = kms_kek(moto.endpoint(), &moto.create_key().await).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let (_, wrapped) = kek.generate_data_key(alice).await.unwrap();
    // KMS itself refuses: the ciphertext is bound to {"user_id": alice}.
    let err = expect_err(kek.unwrap(bob, &wrapped).await, "alice's key for bob");
    assert_eq!(err.class(), ErrorClass::InvalidCiphertext, "{err}");
    assert!(kek.unwrap(alice, &wrapped).await.is_ok());
}

#[tokio::test]
async fn flipping_any_byte_of_a_kms_wrapped_key_fails_to_unwrap() {
    let moto = MotoKms::shared().await;
    let kek = kms_kek(moto.endpoint(), &moto.create_key().await).await;
    let owner = UserId::new();
    let (_, wrapped) = kek.generate_data_key(owner).await.unwrap();
    let bytes = wrapped.ciphertext();
    let mut classes = std::collections::BTreeMap::<String, usize>::new();
    for index in 0..bytes.len() {
        let tampered = WrappedDataKey::new(kek.id(), flipped(bytes, index, 0x01));
        let err = expect_err(kek.unwrap(owner, &tampered).await, &format!("byte {index}"));
        *classes.entry(format!("{:?}", err.class())).or_default() += 1;
    }
    eprintln!(
        "{} flipped positions, failures by class: {classes:?}",
        bytes.len()
    );
    assert!(kek.unwrap(owner, &wrapped).await.is_ok());
}

#[tokio::test]
async fn rotation_from_a_local_master_key_to_kms_and_back() {
    let moto = MotoKms::shared().await;
    let local: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate());
    let kms: Arc<dyn KeyEncryptionKey> =
        Arc::new(kms_kek(moto.endpoint(), &moto.create_key().await).await);
    let owner = UserId::new();
    let (key, under_local) = local.generate_data_key(owner).await.unwrap();
    let sealed = seal(&key, &ctx(owner), b"sealed under local");

    let to_kms = Keyring::new(Arc::clone(&kms)).with_previous(Arc::clone(&local));
    let under_kms = to_kms.rewrap(owner, &under_local).await.unwrap();
    assert_eq!(under_kms.kek_id(), kms.id());
    let key = Keyring::new(Arc::clone(&kms))
        .unwrap(owner, &under_kms)
        .await
        .unwrap();
    assert!(open(&key, &ctx(owner), &sealed).is_ok());

    let back = Keyring::new(Arc::clone(&local)).with_previous(Arc::clone(&kms));
    let under_local_again = back.rewrap(owner, &under_kms).await.unwrap();
    let key = local.unwrap(owner, &under_local_again).await.unwrap();
    assert!(open(&key, &ctx(owner), &sealed).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reveals_with_a_warm_cache_make_at_most_one_kms_decrypt() {
    let moto = MotoKms::shared().await;
    let key_id = moto.create_key().await;
    // The counting endpoint forwards to moto and counts every KMS request by operation.
    let proxy = KmsProxy::start(Some(moto.endpoint())).await;
    let kek = Arc::new(kms_kek(proxy.endpoint(), &key_id).await);
    let owner = UserId::new();
    let (key, wrapped) = kek.generate_data_key(owner).await.unwrap();
    let sealed = Arc::new(seal(&key, &ctx(owner), b"sk-canary"));
    drop(key);
    assert_eq!(proxy.count("GenerateDataKey"), 1);

    // A fresh cache, as after a restart: 1,000 concurrent reveals, then 1,000 more.
    let cache = Arc::new(DataKeyCache::new(kek, CachePolicy::default()));
    let wrapped = Arc::new(wrapped);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, wrapped, sealed) = (
                Arc::clone(&cache),
                Arc::clone(&wrapped),
                Arc::clone(&sealed),
            );
            tokio::spawn(async move {
                let secret = cache.open(&wrapped, &ctx(owner), &sealed).await.unwrap();
                assert_eq!(secret.expose_secret(), b"sk-canary");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for _ in 0..1000 {
        cache.open(&wrapped, &ctx(owner), &sealed).await.unwrap();
    }
    assert_eq!(proxy.count("Decrypt"), 1, "2,000 reveals, one KMS Decrypt");
}
