//! The audit chain on a real database (SQLite file, or PostgreSQL when
//! `ASSISTD_TEST_DATABASE_URL` is set): appends, concurrency, and every kind of tampering,
//! including of the head row.

mod common;

use common::fresh_store;
use std::collections::BTreeMap;

use assistd_domain::UserId;
use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_store::audit::{AuditChainKey, AuditFilter, AuditLog, ChainBreak, GENESIS_HASH};
use assistd_store::{NewUser, Store};
use sea_orm::{ConnectionTrait, DatabaseBackend, TransactionTrait};

/// The chain key every test uses; tests of forgery compute MACs without it.
fn chain_key() -> AuditChainKey {
    AuditChainKey::from_bytes(&[7u8; 32]).unwrap()
}

fn audit(store: &Store) -> AuditLog {
    AuditLog::new(store, chain_key())
}

fn event(actor: UserId, action: AuditAction, n: usize) -> AuditEvent {
    AuditEvent {
        actor: Some(actor),
        action,
        target: format!("api_key/gemini#{n}"),
        outcome: AuditOutcome::Success,
        context: RequestContext {
            request_id: format!("req-{n}"),
            client_ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: Some("test-agent/1.0".into()),
        },
        metadata: BTreeMap::from([("hint".to_owned(), "…abcd".to_owned())]),
    }
}

async fn append(store: &Store, event: &AuditEvent) {
    let txn = store.connection().begin().await.unwrap();
    audit(store).append(&txn, event).await.unwrap();
    txn.commit().await.unwrap();
}

/// A log of `n` events by one user.
async fn log_of(n: usize) -> (Store, tempfile::TempDir, UserId) {
    let (store, dir) = fresh_store().await;
    let user = store.users().create(NewUser::default()).await.unwrap().id;
    for i in 0..n {
        append(&store, &event(user, AuditAction::ApiKeySet, i)).await;
    }
    (store, dir, user)
}

/// The stored hash of row `seq`.
async fn hash_of(store: &Store, seq: i64) -> String {
    let row = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            store.connection().get_database_backend(),
            format!("SELECT hash FROM audit_events WHERE seq = {seq}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "hash").unwrap()
}

/// The head row as stored: sequence number, hash and MAC.
async fn head_row(store: &Store) -> (i64, String, String) {
    let row = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            store.connection().get_database_backend(),
            "SELECT seq, last_hash, head_mac FROM audit_chain_head WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "seq").unwrap(),
        row.try_get("", "last_hash").unwrap(),
        row.try_get("", "head_mac").unwrap(),
    )
}

/// Overwrites the head row, as someone with write access to the database can.
async fn set_head(store: &Store, seq: i64, last_hash: &str, head_mac: &str) {
    store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE audit_chain_head SET seq = {seq}, last_hash = '{last_hash}', head_mac = '{head_mac}' WHERE id = 1"
        ))
        .await
        .unwrap();
}

/// What an attacker with DDL rights does first: remove the append-only triggers.
async fn drop_append_only_guard(store: &Store) {
    let sql = match store.connection().get_database_backend() {
        DatabaseBackend::Postgres => "DROP TRIGGER audit_events_append_only ON audit_events",
        _ => "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;",
    };
    store.connection().execute_unprepared(sql).await.unwrap();
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let (store, _dir, user) = log_of(5).await;
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.rows, 5);
    assert_eq!(report.first_break, None);
    assert_eq!(report.head_seq, 5);
    assert_eq!(report.head_hash, hash_of(&store, 5).await);

    let listed = audit(&store)
        .list_for_user(user, None, 10, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(listed[0].metadata["hint"], "…abcd");
    assert_eq!(listed[0].client_ip.as_deref(), Some("203.0.113.7"));
    let older = audit(&store)
        .list_for_user(user, Some(3), 10, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(older.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 1]);
}

#[tokio::test]
async fn the_database_refuses_updates_and_deletes() {
    let (store, _dir, _) = log_of(2).await;
    let db = store.connection();
    assert!(
        db.execute_unprepared("UPDATE audit_events SET target = 'x'")
            .await
            .is_err()
    );
    assert!(
        db.execute_unprepared("DELETE FROM audit_events")
            .await
            .is_err()
    );
    assert_eq!(audit(&store).verify().await.unwrap().first_break, None);
}

#[tokio::test]
async fn an_edited_row_is_named() {
    let (store, _dir, _) = log_of(5).await;
    drop_append_only_guard(&store).await;
    store
        .connection()
        .execute_unprepared("UPDATE audit_events SET outcome = 'failure' WHERE seq = 3")
        .await
        .unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.first_break, Some(ChainBreak::Forged { seq: 3 }));
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let (store, _dir, _) = log_of(5).await;
    drop_append_only_guard(&store).await;
    store
        .connection()
        .execute_unprepared("DELETE FROM audit_events WHERE seq = 2")
        .await
        .unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(
        report.first_break,
        Some(ChainBreak::Missing {
            expected_seq: 2,
            found_seq: 3
        })
    );
}

#[tokio::test]
async fn a_deleted_tail_is_noticed() {
    let (store, _dir, _) = log_of(5).await;
    drop_append_only_guard(&store).await;
    store
        .connection()
        .execute_unprepared("DELETE FROM audit_events WHERE seq >= 4")
        .await
        .unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(
        report.first_break,
        Some(ChainBreak::HeadMismatch {
            head_seq: 5,
            last_seq: 3
        })
    );
}

#[tokio::test]
async fn an_inserted_row_is_named() {
    let (store, _dir, _) = log_of(4).await;
    drop_append_only_guard(&store).await;
    // The attacker appends a row that links to the newest one and moves the head along, as
    // the real code would, but MACs it with a key of their own.
    let forger = AuditLog::new(&store, AuditChainKey::from_bytes(&[9u8; 32]).unwrap());
    let txn = store.connection().begin().await.unwrap();
    let user = UserId::new();
    forger
        .append(&txn, &event(user, AuditAction::ApiKeyDeleted, 99))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.first_break, Some(ChainBreak::Forged { seq: 5 }));
}

#[tokio::test]
async fn a_row_inserted_in_the_middle_is_named() {
    let (store, _dir, _) = log_of(4).await;
    drop_append_only_guard(&store).await;
    // Make room after row 2 by renumbering, then put a copy of row 2 into the gap.
    let db = store.connection();
    db.execute_unprepared("UPDATE audit_events SET seq = seq + 100 WHERE seq >= 3")
        .await
        .unwrap();
    db.execute_unprepared("UPDATE audit_events SET seq = seq - 99 WHERE seq >= 103")
        .await
        .unwrap();
    let new_id = match db.get_database_backend() {
        DatabaseBackend::Postgres => "gen_random_uuid()",
        _ => "randomblob(16)",
    };
    db.execute_unprepared(&format!(
        "INSERT INTO audit_events (seq, id, occurred_at, actor_user_id, action, target, outcome, request_id, client_ip, user_agent, metadata, prev_hash, hash)
         SELECT 3, {new_id}, occurred_at, actor_user_id, 'api_key_deleted', target, outcome, request_id, client_ip, user_agent, metadata, hash, hash
         FROM audit_events WHERE seq = 2"
    ))
    .await
    .unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.first_break, Some(ChainBreak::Forged { seq: 3 }));
}

#[tokio::test]
async fn reordered_rows_are_named() {
    let (store, _dir, _) = log_of(4).await;
    drop_append_only_guard(&store).await;
    let db = store.connection();
    db.execute_unprepared("UPDATE audit_events SET seq = 100 WHERE seq = 2")
        .await
        .unwrap();
    db.execute_unprepared("UPDATE audit_events SET seq = 2 WHERE seq = 3")
        .await
        .unwrap();
    db.execute_unprepared("UPDATE audit_events SET seq = 3 WHERE seq = 100")
        .await
        .unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.first_break, Some(ChainBreak::Forged { seq: 2 }));
}

#[tokio::test]
async fn concurrent_appends_form_one_chain() {
    let (store, _dir) = fresh_store().await;
    let user = store.users().create(NewUser::default()).await.unwrap().id;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            append(&store, &event(user, AuditAction::ApiKeyValidated, i)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.rows, 24);
    assert_eq!(report.first_break, None);
}

#[tokio::test]
async fn an_append_rolled_back_with_its_change_leaves_no_trace() {
    let (store, _dir, user) = log_of(2).await;
    let txn = store.connection().begin().await.unwrap();
    audit(&store)
        .append(&txn, &event(user, AuditAction::ApiKeyDeleted, 9))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(report.first_break, None);
    append(&store, &event(user, AuditAction::ApiKeyDeleted, 10)).await;
    assert_eq!(audit(&store).verify().await.unwrap().first_break, None);
}

#[tokio::test]
async fn an_empty_log_verifies_with_the_genesis_head() {
    let (store, _dir) = fresh_store().await;
    assert_eq!(
        head_row(&store).await,
        (0, GENESIS_HASH.to_owned(), String::new())
    );
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.rows, 0);
    assert_eq!(report.first_break, None);
    assert_eq!(
        (report.head_seq, report.head_hash.as_str()),
        (0, GENESIS_HASH)
    );
}

#[tokio::test]
async fn a_deleted_tail_hidden_by_rewriting_the_head_is_noticed() {
    let (store, _dir, user) = log_of(5).await;
    let (_, _, genuine_mac) = head_row(&store).await;
    drop_append_only_guard(&store).await;
    store
        .connection()
        .execute_unprepared("DELETE FROM audit_events WHERE seq >= 4")
        .await
        .unwrap();
    let row_3 = hash_of(&store, 3).await;
    // Without the key the head's MAC can only be left as it was (the MAC of head 5), emptied
    // (the genesis head's form), or computed with another key.
    let other_key_mac = {
        let canonical = format!(r#"["audit_chain_head",3,"{row_3}"]"#);
        let other = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[9u8; 32]);
        let tag = aws_lc_rs::hmac::sign(&other, canonical.as_bytes());
        tag.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for forged_mac in [genuine_mac.as_str(), "", other_key_mac.as_str()] {
        set_head(&store, 3, &row_3, forged_mac).await;
        let report = audit(&store).verify().await.unwrap();
        assert_eq!(report.rows, 3);
        assert_eq!(
            report.first_break,
            Some(ChainBreak::HeadForged { head_seq: 3 }),
            "head MAC {forged_mac:?}"
        );
    }

    // Later genuine appends extend the chain but do not launder the forged head.
    append(&store, &event(user, AuditAction::ApiKeySet, 6)).await;
    append(&store, &event(user, AuditAction::ApiKeySet, 7)).await;
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.rows, 5);
    assert_eq!(
        report.first_break,
        Some(ChainBreak::HeadForged { head_seq: 5 })
    );
}

#[tokio::test]
async fn a_head_rolled_back_to_a_genuine_earlier_state_shows_only_in_the_reported_head() {
    let (store, _dir, user) = log_of(3).await;
    let (seq, last_hash, mac) = head_row(&store).await;
    append(&store, &event(user, AuditAction::ApiKeySet, 3)).await;
    append(&store, &event(user, AuditAction::ApiKeySet, 4)).await;
    let recorded = audit(&store).verify().await.unwrap();
    assert_eq!(recorded.first_break, None);
    assert_eq!(recorded.head_seq, 5);

    drop_append_only_guard(&store).await;
    store
        .connection()
        .execute_unprepared("DELETE FROM audit_events WHERE seq >= 4")
        .await
        .unwrap();
    set_head(&store, seq, &last_hash, &mac).await;
    // Undetectable from inside the database: the chain is intact, only shorter. The head it
    // reports differs from the one recorded outside, whose row is gone.
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!((report.head_seq, report.head_hash), (3, last_hash));
    assert_ne!(report.head_seq, recorded.head_seq);
}

#[tokio::test]
async fn a_row_numbered_below_one_is_refused_and_named() {
    let (store, _dir, user) = log_of(3).await;
    let db = store.connection();
    let new_id = match db.get_database_backend() {
        DatabaseBackend::Postgres => "gen_random_uuid()",
        _ => "randomblob(16)",
    };
    let insert_copy_of_row_1 = |seq: i64| {
        format!(
            "INSERT INTO audit_events (seq, id, occurred_at, actor_user_id, action, target, outcome, request_id, client_ip, user_agent, metadata, prev_hash, hash)
             SELECT {seq}, {new_id}, occurred_at, actor_user_id, 'api_key_deleted', target, outcome, request_id, client_ip, user_agent, metadata, prev_hash, hash
             FROM audit_events WHERE seq = 1"
        )
    };
    // The schema refuses it...
    assert!(
        db.execute_unprepared(&insert_copy_of_row_1(0))
            .await
            .is_err()
    );
    assert!(
        db.execute_unprepared(&insert_copy_of_row_1(-7))
            .await
            .is_err()
    );

    // ...until someone with DDL rights removes the constraint.
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.execute_unprepared("ALTER TABLE audit_events DROP CONSTRAINT ck_audit_events_seq")
                .await
                .unwrap();
            db.execute_unprepared(&insert_copy_of_row_1(0))
                .await
                .unwrap();
        }
        _ => {
            // One call runs on one pooled connection, where the pragma applies.
            db.execute_unprepared(&format!(
                "PRAGMA ignore_check_constraints = ON; {}; PRAGMA ignore_check_constraints = OFF;",
                insert_copy_of_row_1(0)
            ))
            .await
            .unwrap();
        }
    }
    // The user would see it...
    let listed = audit(&store)
        .list_for_user(user, None, 10, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 2, 1, 0]
    );
    // ...so verification must not skip it.
    let report = audit(&store).verify().await.unwrap();
    assert_eq!(report.rows, 1);
    assert_eq!(report.first_break, Some(ChainBreak::BeforeStart { seq: 0 }));
}
