//! The data-key cache: single flight, maximum age, maximum uses, forgetting a user.

use std::sync::Arc;
use std::time::Duration;

use assistd_crypto::{
    CachePolicy, DataKeyCache, KeyEncryptionKey, LocalKek, SealContext, WrappedDataKey,
};
use assistd_domain::UserId;

use crate::support::CountingKek;

fn ctx(owner: UserId) -> SealContext<'static> {
    SealContext {
        owner,
        purpose: "gemini_api_key",
        record: "row-1",
        key_version: 1,
    }
}

async fn setup(
    policy: CachePolicy,
    delay: Duration,
) -> (
    Arc<CountingKek>,
    DataKeyCache,
    WrappedDataKey,
    Vec<u8>,
    UserId,
) {
    let counting = Arc::new(CountingKek::new(Arc::new(LocalKek::generate()), delay));
    let owner = UserId::new();
    let (key, wrapped) = counting.generate_data_key(owner).await.unwrap();
    let sealed = assistd_crypto::seal(&key, &ctx(owner), b"sk-canary");
    let cache = DataKeyCache::new(Arc::clone(&counting) as Arc<dyn KeyEncryptionKey>, policy);
    (counting, cache, wrapped, sealed, owner)
}

#[test]
fn defaults_are_five_minutes_and_ten_thousand_uses() {
    let policy = CachePolicy::default();
    assert_eq!(policy.max_age, Duration::from_secs(300));
    assert_eq!(policy.max_uses, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_reveals_make_one_unwrap() {
    // Each unwrap takes 50 ms, so the 1,000 requests really arrive while the first is running.
    let (counting, cache, wrapped, sealed, owner) =
        setup(CachePolicy::default(), Duration::from_millis(50)).await;
    let cache = Arc::new(cache);
    let (wrapped, sealed) = (Arc::new(wrapped), Arc::new(sealed));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, wrapped, sealed) = (
                Arc::clone(&cache),
                Arc::clone(&wrapped),
                Arc::clone(&sealed),
            );
            tokio::spawn(async move {
                let secret = cache.open(&wrapped, &ctx(owner), &sealed).await.unwrap();
                secret.expose_secret() == b"sk-canary"
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(counting.unwraps(), 1);
    // And warm: 1,000 more cost nothing.
    for _ in 0..1000 {
        cache.open(&wrapped, &ctx(owner), &sealed).await.unwrap();
    }
    assert_eq!(counting.unwraps(), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.unwraps), (1, 1999, 1));
}

#[tokio::test(start_paused = true)]
async fn keys_expire_after_max_age() {
    let policy = CachePolicy {
        max_age: Duration::from_secs(60),
        max_uses: 1_000,
    };
    let (counting, cache, wrapped, _, owner) = setup(policy, Duration::ZERO).await;
    cache.data_key(owner, &wrapped).await.unwrap();
    assert_eq!(counting.unwraps(), 1);
    tokio::time::advance(Duration::from_secs(59)).await;
    cache.data_key(owner, &wrapped).await.unwrap();
    assert_eq!(counting.unwraps(), 1, "59 s old: still served from memory");
    tokio::time::advance(Duration::from_secs(2)).await;
    cache.data_key(owner, &wrapped).await.unwrap();
    assert_eq!(counting.unwraps(), 2, "61 s old: unwrapped again");
    assert_eq!(cache.stats().evictions, 1);

    // Expired entries are swept: after another max_age nothing is held.
    tokio::time::advance(Duration::from_secs(61)).await;
    cache.evict_expired();
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn keys_are_dropped_after_max_uses() {
    let policy = CachePolicy {
        max_age: Duration::from_secs(3600),
        max_uses: 3,
    };
    let (counting, cache, wrapped, _, owner) = setup(policy, Duration::ZERO).await;
    let mut unwraps_after_each = Vec::new();
    for _ in 0..7 {
        cache.data_key(owner, &wrapped).await.unwrap();
        unwraps_after_each.push(counting.unwraps());
    }
    // Uses 1–3 share the first unwrap, 4–6 the second, 7 needs a third.
    assert_eq!(unwraps_after_each, [1, 1, 1, 2, 2, 2, 3]);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (4, 3, 2));
}

#[tokio::test]
async fn zero_max_uses_disables_caching() {
    let policy = CachePolicy {
        max_age: Duration::from_secs(3600),
        max_uses: 0,
    };
    let (counting, cache, wrapped, _, owner) = setup(policy, Duration::ZERO).await;
    for _ in 0..3 {
        cache.data_key(owner, &wrapped).await.unwrap();
    }
    assert_eq!(counting.unwraps(), 3);
}

#[tokio::test]
async fn forgetting_a_user_drops_only_their_keys() {
    let counting = Arc::new(CountingKek::new(
        Arc::new(LocalKek::generate()),
        Duration::ZERO,
    ));
    let cache = DataKeyCache::new(
        Arc::clone(&counting) as Arc<dyn KeyEncryptionKey>,
        CachePolicy::default(),
    );
    let (alice, bob) = (UserId::new(), UserId::new());
    // Keys made through the cache are cached from the start.
    let (_, alice_wrapped) = cache.generate_data_key(alice).await.unwrap();
    let (_, bob_wrapped) = cache.generate_data_key(bob).await.unwrap();
    cache.data_key(alice, &alice_wrapped).await.unwrap();
    cache.data_key(bob, &bob_wrapped).await.unwrap();
    assert_eq!(counting.unwraps(), 0);

    cache.forget_user(alice);
    cache.data_key(bob, &bob_wrapped).await.unwrap();
    assert_eq!(counting.unwraps(), 0, "bob's key is still cached");
    cache.data_key(alice, &alice_wrapped).await.unwrap();
    assert_eq!(
        counting.unwraps(),
        1,
        "alice's key had to be unwrapped again"
    );

    // The cache key includes the owner: bob cannot get alice's key from memory.
    assert!(cache.data_key(bob, &alice_wrapped).await.is_err());
    cache.clear();
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let (counting, cache, wrapped, sealed, owner) =
        setup(CachePolicy::default(), Duration::ZERO).await;
    let mut tampered = wrapped.ciphertext().to_vec();
    tampered[20] ^= 1;
    let tampered = WrappedDataKey::new(wrapped.kek_id(), tampered);
    for _ in 0..2 {
        assert!(cache.open(&tampered, &ctx(owner), &sealed).await.is_err());
    }
    assert_eq!(counting.unwraps(), 2);
    // A wrong sealed value fails after a successful unwrap, and the key stays cached.
    assert!(
        cache
            .open(
                &wrapped,
                &ctx(owner),
                b"\x01garbage-garbage-garbage-garbage"
            )
            .await
            .is_err()
    );
    assert!(cache.open(&wrapped, &ctx(owner), &sealed).await.is_ok());
    assert_eq!(counting.unwraps(), 3);
}
