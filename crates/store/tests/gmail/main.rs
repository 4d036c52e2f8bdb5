//! Gmail persistence on a real database (SQLite file, or PostgreSQL when
//! `ASSISTD_TEST_DATABASE_URL` is set): the connection row and its lease, sync progress and
//! schedule; messages with their labels and blind index; exact search with keyset pages;
//! deletion of mail and accounts; another user's messages never showing. One file per group;
//! this one holds the fixtures they share.

#[path = "../common/mod.rs"]
mod common;
mod connection;
mod messages;
mod search;
mod speed;

use assistd_domain::UserId;
use assistd_store::{GmailStore, NewGmailMessage, NewUser, SearchTerm, Store};
use chrono::{DateTime, TimeDelta, Utc};
use common::fresh_store;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

/// A fixed instant plus `secs` seconds (with a sub-millisecond part, to check precision).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-04T10:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

async fn new_user(store: &Store) -> UserId {
    store.users().create(NewUser::default()).await.unwrap().id
}

/// A new user with a connected Gmail account.
async fn connected_user(store: &Store) -> UserId {
    let user = new_user(store).await;
    store
        .gmail()
        .connect(
            user,
            "someone@example.com",
            &["https://www.googleapis.com/auth/gmail.readonly".to_owned()],
            at(0),
        )
        .await
        .unwrap();
    user
}

/// A token standing for a word (tests need no real HMAC: the store only compares bytes).
fn term(word: u32) -> SearchTerm {
    let mut token = [0u8; 16];
    token[..4].copy_from_slice(&word.to_be_bytes());
    token[15] = 0xA5;
    token
}

fn message(id: &str, thread: &str, labels: &[&str], date: DateTime<Utc>) -> NewGmailMessage {
    NewGmailMessage {
        message_id: id.to_owned(),
        thread_id: thread.to_owned(),
        label_ids: labels.iter().map(|label| (*label).to_owned()).collect(),
        internal_date: date,
        size_estimate: 1_234,
        history_id: 900_000 + u64::from(id.len() as u32),
        sealed_header: format!("sealed header of {id}").into_bytes(),
        sealed_body: format!("sealed body of {id}").into_bytes(),
    }
}

async fn upsert(gmail: &GmailStore, user: UserId, message: &NewGmailMessage, terms: &[SearchTerm]) {
    assert!(
        gmail
            .upsert_message(user, message, terms, at(1))
            .await
            .unwrap(),
        "the message was stored"
    );
}

/// Rows of `table` that belong to `user`, counted directly in the database.
async fn rows_of(store: &Store, table: &'static str, user: UserId) -> i64 {
    let count = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from(table)
        .and_where(Expr::col("user_id").eq(user.as_uuid()))
        .to_owned();
    store
        .connection()
        .query_one(&count)
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}
