//! The local key-encryption key: wrapping, owner binding, tamper evidence, key files.

use std::sync::Arc;

use assistd_crypto::{
    CryptoError, DataKey, ErrorClass, KekRefusal, KeyEncryptionKey, LocalKek, SealContext,
    WrappedDataKey, open, seal,
};
use assistd_domain::UserId;

use crate::support::flipped;

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
async fn generated_keys_unwrap_for_their_owner_only() {
    let kek = LocalKek::generate();
    let (alice, bob) = (UserId::new(), UserId::new());
    let (key, wrapped) = kek.generate_data_key(alice).await.unwrap();
    assert_eq!(wrapped.kek_id(), kek.id());
    assert_eq!(wrapped.ciphertext().len(), 1 + 12 + 32 + 16);

    let sealed = seal(&key, &ctx(alice), b"sk-canary");
    let again = kek.unwrap(alice, &wrapped).await.unwrap();
    assert_eq!(
        open(&again, &ctx(alice), &sealed).unwrap().expose_secret(),
        b"sk-canary"
    );

    let err = expect_err(kek.unwrap(bob, &wrapped).await, "alice's key for bob");
    assert_eq!(err.class(), ErrorClass::InvalidCiphertext);

    // Wrapping is randomized: the same data key wraps to different bytes each time.
    let rewrapped = kek.wrap(alice, &key).await.unwrap();
    assert_ne!(rewrapped.ciphertext(), wrapped.ciphertext());
    let from_rewrap = kek.unwrap(alice, &rewrapped).await.unwrap();
    assert!(open(&from_rewrap, &ctx(alice), &sealed).is_ok());
}

#[tokio::test]
async fn flipping_any_byte_of_a_wrapped_key_fails_to_unwrap() {
    let kek = LocalKek::generate();
    let owner = UserId::new();
    let (_, wrapped) = kek.generate_data_key(owner).await.unwrap();
    let bytes = wrapped.ciphertext();
    for index in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let tampered = WrappedDataKey::new(kek.id(), flipped(bytes, index, mask));
            let err = expect_err(kek.unwrap(owner, &tampered).await, &format!("byte {index}"));
            assert_eq!(
                err.class(),
                ErrorClass::InvalidCiphertext,
                "byte {index}: {err}"
            );
        }
    }
    for len in 0..bytes.len() {
        let truncated = WrappedDataKey::new(kek.id(), bytes[..len].to_vec());
        expect_err(
            kek.unwrap(owner, &truncated).await,
            &format!("truncated to {len}"),
        );
    }
    assert!(kek.unwrap(owner, &wrapped).await.is_ok());
}

#[tokio::test]
async fn another_master_key_refuses_or_fails_to_authenticate() {
    let (kek, other) = (LocalKek::generate(), LocalKek::generate());
    assert_ne!(kek.id(), other.id());
    let owner = UserId::new();
    let (_, wrapped) = kek.generate_data_key(owner).await.unwrap();

    let err = expect_err(other.unwrap(owner, &wrapped).await, "wrong KEK");
    assert!(matches!(
        err,
        CryptoError::KekRefused {
            reason: KekRefusal::WrongKey,
            ..
        }
    ));
    assert_eq!(err.class(), ErrorClass::FailedPrecondition);

    // A forged KEK id does not help: the other key cannot authenticate the bytes.
    let forged = WrappedDataKey::new(other.id(), wrapped.ciphertext().to_vec());
    let err = expect_err(other.unwrap(owner, &forged).await, "forged KEK id");
    assert_eq!(err.class(), ErrorClass::InvalidCiphertext);
}

#[tokio::test]
async fn master_key_files_are_private_stable_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/master.key");
    let first = LocalKek::load_or_generate(&path).unwrap();
    let second = LocalKek::load_or_generate(&path).unwrap();
    assert_eq!(
        first.id(),
        second.id(),
        "the second start reads the first key"
    );
    assert!(first.id().starts_with("local:"));
    assert_eq!(first.id().len(), "local:".len() + 16);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let file_mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(file_mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN ASSISTD MASTER KEY-----\n"));
    let base64 = first.expose_master_key_base64();
    assert!(text.contains(base64.as_str()));
    assert!(!first.id().contains(base64.as_str()));
    assert!(!format!("{first:?}").contains(base64.as_str()));

    // The same key given as env/config text is the same KEK, and opens the same data keys.
    let from_env = LocalKek::from_base64(&base64).unwrap();
    assert_eq!(from_env.id(), first.id());
    let owner = UserId::new();
    let (_, wrapped) = first.generate_data_key(owner).await.unwrap();
    assert!(from_env.unwrap(owner, &wrapped).await.is_ok());
    assert!(LocalKek::from_base64(&format!("  {}\n", base64.as_str())).is_ok());

    for bad in ["", "not base64!", "AAAA", &base64[..40]] {
        assert!(
            matches!(
                LocalKek::from_base64(bad),
                Err(CryptoError::MalformedMasterKey(_))
            ),
            "{bad:?} must be refused"
        );
    }
    std::fs::write(&path, "garbage").unwrap();
    assert!(matches!(
        LocalKek::load(&path),
        Err(CryptoError::MalformedMasterKey(_))
    ));
    assert!(matches!(
        LocalKek::load(&dir.path().join("missing")),
        Err(CryptoError::MasterKeyFile { .. })
    ));
}

#[test]
fn processes_starting_at_once_agree_on_one_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("data/master.key"));
    let ids: Vec<String> = (0..8)
        .map(|_| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || LocalKek::load_or_generate(&path).unwrap().id().to_owned())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
}
