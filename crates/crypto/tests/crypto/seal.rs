//! Sealing and opening one value: round trip, binding to its place, tamper evidence.

use assistd_crypto::{CryptoError, DataKey, ErrorClass, SEAL_FORMAT_V1, SealContext, open, seal};
use assistd_domain::UserId;

use crate::support::flipped;

const CANARY: &str = "AIzaSyCanary-0123456789abcdefghijklmnop";

fn context(owner: UserId) -> SealContext<'static> {
    SealContext {
        owner,
        purpose: "gemini_api_key",
        record: "0196f1c2-7a00-7000-8000-00000000000a",
        key_version: 1,
    }
}

fn assert_invalid(result: Result<assistd_crypto::Secret, CryptoError>, what: &str) {
    match result {
        Err(err) => {
            assert_eq!(err.class(), ErrorClass::InvalidCiphertext, "{what}: {err}");
            assert!(!err.to_string().contains(CANARY), "{what}: the error leaks");
        }
        Ok(_) => panic!("{what}: opened, but must not"),
    }
}

#[test]
fn round_trip_and_fresh_nonces() {
    let key = DataKey::generate();
    let ctx = context(UserId::new());
    let first = seal(&key, &ctx, CANARY.as_bytes());
    let second = seal(&key, &ctx, CANARY.as_bytes());
    assert_ne!(first, second, "every seal draws a new nonce");
    assert_ne!(first[1..13], second[1..13]);
    assert_eq!(first[0], SEAL_FORMAT_V1);
    assert!(
        !first.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "the plaintext is not in the sealed bytes"
    );
    for sealed in [&first, &second] {
        let secret = open(&key, &ctx, sealed).unwrap();
        assert_eq!(secret.expose_secret_str().unwrap(), CANARY);
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }
    // Empty and binary values round-trip too.
    assert!(open(&key, &ctx, &seal(&key, &ctx, b"")).unwrap().is_empty());
    let binary: Vec<u8> = (0..=255).collect();
    assert_eq!(
        open(&key, &ctx, &seal(&key, &ctx, &binary))
            .unwrap()
            .expose_secret(),
        &binary[..]
    );
}

#[test]
fn a_value_copied_to_another_owner_purpose_record_or_version_does_not_open() {
    let key = DataKey::generate();
    let alice = UserId::new();
    let ctx = context(alice);
    let sealed = seal(&key, &ctx, CANARY.as_bytes());

    let elsewhere = [
        (
            "another owner",
            SealContext {
                owner: UserId::new(),
                ..ctx
            },
        ),
        (
            "another purpose",
            SealContext {
                purpose: "google_refresh_token",
                ..ctx
            },
        ),
        (
            "another record",
            SealContext {
                record: "0196f1c2-7a00-7000-8000-00000000000b",
                ..ctx
            },
        ),
        (
            "another key version",
            SealContext {
                key_version: 2,
                ..ctx
            },
        ),
        // Length prefixes: moving a byte between purpose and record changes the context.
        (
            "shifted fields",
            SealContext {
                purpose: "gemini_api_keyx",
                record: &ctx.record[1..],
                ..ctx
            },
        ),
    ];
    for (what, other) in elsewhere {
        assert_invalid(open(&key, &other, &sealed), what);
    }
    assert!(
        open(&key, &ctx, &sealed).is_ok(),
        "still opens where it belongs"
    );
}

#[test]
fn swapping_sealed_values_between_two_users_fails() {
    // Each user has their own data key; Bob's row content pasted into Alice's row.
    let (alice, bob) = (UserId::new(), UserId::new());
    let (alice_key, bob_key) = (DataKey::generate(), DataKey::generate());
    let record = "0196f1c2-7a00-7000-8000-00000000000a";
    let alice_ctx = SealContext {
        owner: alice,
        record,
        ..context(alice)
    };
    let bob_ctx = SealContext {
        owner: bob,
        record,
        ..context(bob)
    };
    let alice_sealed = seal(&alice_key, &alice_ctx, b"alice's key");
    let bob_sealed = seal(&bob_key, &bob_ctx, b"bob's key");

    assert_invalid(
        open(&alice_key, &alice_ctx, &bob_sealed),
        "bob's value in alice's row",
    );
    assert_invalid(
        open(&bob_key, &bob_ctx, &alice_sealed),
        "alice's value in bob's row",
    );
    // Even with the right data key, the owner in the context must match.
    assert_invalid(
        open(&bob_key, &alice_ctx, &bob_sealed),
        "bob's value read as alice's",
    );
    // Two rows of one user: swapping the sealed values between them fails too.
    let row_a = SealContext {
        record: "row-a",
        ..alice_ctx
    };
    let row_b = SealContext {
        record: "row-b",
        ..alice_ctx
    };
    let in_a = seal(&alice_key, &row_a, b"value of row a");
    let in_b = seal(&alice_key, &row_b, b"value of row b");
    assert_invalid(open(&alice_key, &row_a, &in_b), "row b's value in row a");
    assert_invalid(open(&alice_key, &row_b, &in_a), "row a's value in row b");
}

#[test]
fn flipping_any_byte_of_format_nonce_ciphertext_or_tag_fails() {
    let key = DataKey::generate();
    let ctx = context(UserId::new());
    let sealed = seal(&key, &ctx, CANARY.as_bytes());
    // 1 format byte, 12 nonce bytes, 39 ciphertext bytes, 16 tag bytes: every position.
    assert_eq!(sealed.len(), 1 + 12 + CANARY.len() + 16);
    for index in 0..sealed.len() {
        for mask in [0x01, 0x80, 0xff] {
            assert_invalid(
                open(&key, &ctx, &flipped(&sealed, index, mask)),
                &format!("byte {index} ^ {mask:#04x}"),
            );
        }
    }
    for len in 0..sealed.len() {
        assert_invalid(
            open(&key, &ctx, &sealed[..len]),
            &format!("truncated to {len}"),
        );
    }
    let mut extended = sealed.clone();
    extended.push(0);
    assert_invalid(open(&key, &ctx, &extended), "one byte appended");
    assert_invalid(
        open(&DataKey::generate(), &ctx, &sealed),
        "another data key",
    );
    assert!(open(&key, &ctx, &sealed).is_ok());
}
