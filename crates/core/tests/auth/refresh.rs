//! Refresh-token rotation: a new pair per refresh, the same successor for a retry within
//! the grace window, the session revoked for a replay after it, one successor for parallel
//! refreshes.

use assistd_domain::{Error, ErrorReason};
use assistd_identity::token_hash;

use crate::fixture::{Fixture, GRACE, client};

/// The reason of an UNAUTHENTICATED error, or a panic naming what came instead.
fn unauthenticated_reason(err: Error) -> ErrorReason {
    match err {
        Error::Unauthenticated { reason, .. } => reason,
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refresh_hands_out_a_new_pair_and_uses_up_the_old_token() {
    let fixture = Fixture::start().await;
    let signed = fixture.sign_in().await;
    let first = signed.tokens;
    let second = fixture
        .auth
        .refresh(&first.refresh_token, &client())
        .await
        .unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access.token, first.access.token);
    assert_eq!(second.session_id, first.session_id);

    // The old token is spent and names its successor; only the successor is unused.
    let auth = fixture.store.auth();
    let old = auth
        .refresh_token(
            fixture.store.connection(),
            &token_hash(&first.refresh_token),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(old.used_at.is_some());
    assert_eq!(
        old.successor_hash.as_deref(),
        Some(token_hash(&second.refresh_token).as_str())
    );
    assert_eq!(
        fixture
            .count("SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL")
            .await,
        1
    );
    // The successor goes on rotating.
    let third = fixture
        .auth
        .refresh(&second.refresh_token, &client())
        .await
        .unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_successor() {
    let fixture = Fixture::start().await;
    let first = fixture.sign_in().await.tokens;
    let successor = fixture
        .auth
        .refresh(&first.refresh_token, &client())
        .await
        .unwrap();
    // The response was lost; the client retries just inside the window.
    fixture
        .clock
        .advance(chrono::Duration::from_std(GRACE).unwrap() - chrono::Duration::seconds(1));
    let retried = fixture
        .auth
        .refresh(&first.refresh_token, &client())
        .await
        .unwrap();
    assert_eq!(retried.refresh_token, successor.refresh_token);
    assert_eq!(retried.session_id, successor.session_id);
    assert_eq!(
        fixture
            .count(
                "SELECT count(*) FROM audit_events WHERE action = 'refresh_token_reuse_detected'"
            )
            .await,
        0
    );
    // The successor itself still works.
    fixture
        .auth
        .refresh(&successor.refresh_token, &client())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replay_after_the_grace_window_revokes_the_session_family() {
    let fixture = Fixture::start().await;
    let signed = fixture.sign_in().await;
    let user = signed.user.id;
    let first = signed.tokens;
    let successor = fixture
        .auth
        .refresh(&first.refresh_token, &client())
        .await
        .unwrap();
    fixture
        .clock
        .advance(chrono::Duration::from_std(GRACE).unwrap() + chrono::Duration::seconds(1));
    let err = fixture
        .auth
        .refresh(&first.refresh_token, &client())
        .await
        .unwrap_err();
    assert_eq!(unauthenticated_reason(err), ErrorReason::RefreshTokenReused);

    // Both the replayed token and its successor are refused now, and so is the session.
    for token in [&first.refresh_token, &successor.refresh_token] {
        let err = fixture.auth.refresh(token, &client()).await.unwrap_err();
        assert_eq!(unauthenticated_reason(err), ErrorReason::SessionRevoked);
    }
    let err = fixture
        .auth
        .session_gate()
        .check(user, Some(successor.session_id))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated_reason(err), ErrorReason::SessionRevoked);
    assert_eq!(
        fixture
            .count(
                "SELECT count(*) FROM audit_events WHERE action = 'refresh_token_reuse_detected'"
            )
            .await,
        1
    );
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_yield_one_successor() {
    let fixture = Fixture::start().await;
    let first = fixture.sign_in().await.tokens;
    let client = client();
    let calls = (0..20).map(|_| fixture.auth.refresh(&first.refresh_token, &client));
    let successors: std::collections::HashSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|result| result.unwrap().refresh_token)
        .collect();
    assert_eq!(successors.len(), 1, "every caller got the same successor");
    assert_eq!(
        fixture
            .count("SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL")
            .await,
        1
    );
    assert_eq!(
        fixture
            .count("SELECT count(*) FROM audit_events WHERE action = 'token_refreshed'")
            .await,
        1
    );
    assert_eq!(
        fixture
            .count(
                "SELECT count(*) FROM audit_events WHERE action = 'refresh_token_reuse_detected'"
            )
            .await,
        0
    );
}
