//! The keyring: opening keys of previous KEKs and re-wrapping them for rotation.

use std::sync::Arc;

use assistd_crypto::{
    CryptoError, ErrorClass, KeyEncryptionKey, Keyring, LocalKek, SealContext, open, seal,
};
use assistd_domain::UserId;

#[tokio::test]
async fn rotation_rewraps_without_touching_sealed_values_and_is_idempotent() {
    let old: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate());
    let new: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::generate());
    let owner = UserId::new();
    let ctx = SealContext {
        owner,
        purpose: "gemini_api_key",
        record: "row-1",
        key_version: 1,
    };

    // Before the rotation: a data key under the old KEK and a value sealed with it.
    let (key, wrapped_old) = old.generate_data_key(owner).await.unwrap();
    let sealed = seal(&key, &ctx, b"stored before the rotation");
    drop(key);

    let keyring = Keyring::new(Arc::clone(&new)).with_previous(Arc::clone(&old));
    assert_eq!(keyring.id(), new.id());
    assert!(!keyring.is_current(&wrapped_old));
    // Readable through the keyring while the rotation has not reached it.
    let via_old = keyring.unwrap(owner, &wrapped_old).await.unwrap();
    assert!(open(&via_old, &ctx, &sealed).is_ok());

    let wrapped_new = keyring.rewrap(owner, &wrapped_old).await.unwrap();
    assert_eq!(wrapped_new.kek_id(), new.id());
    assert!(keyring.is_current(&wrapped_new));
    // Running the rotation again changes nothing.
    assert_eq!(
        keyring.rewrap(owner, &wrapped_new).await.unwrap(),
        wrapped_new
    );

    // After the rotation the old KEK can be retired: the new wrapping opens the old value.
    let retired = Keyring::new(Arc::clone(&new));
    let key = retired.unwrap(owner, &wrapped_new).await.unwrap();
    assert_eq!(
        open(&key, &ctx, &sealed).unwrap().expose_secret(),
        b"stored before the rotation"
    );
    // … but a key still wrapped by the retired KEK names an unknown KEK.
    let err = match retired.unwrap(owner, &wrapped_old).await {
        Err(err) => err,
        Ok(_) => panic!("the retired KEK must be unknown"),
    };
    assert!(matches!(err, CryptoError::UnknownKek { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::FailedPrecondition);
    assert!(retired.rewrap(owner, &wrapped_old).await.is_err());

    // The owner stays bound through a rewrap.
    assert!(keyring.unwrap(UserId::new(), &wrapped_new).await.is_err());
    // New keys come from the current KEK.
    let (_, fresh) = keyring.generate_data_key(owner).await.unwrap();
    assert_eq!(fresh.kek_id(), new.id());
}
