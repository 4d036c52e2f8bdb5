//! How fast a search is over a realistic mailbox: 10,000 messages of about 150 distinct words
//! each, words drawn with a Zipf-like law from a 30,000-word vocabulary. Ignored by default
//! (it measures, it asserts no timing); run it with
//! `cargo test -p assistd-store --test gmail -- --ignored --nocapture search_speed`
//! (and `ASSISTD_TEST_DATABASE_URL` for PostgreSQL, where the writes are followed by
//! `VACUUM ANALYZE` unless `ASSISTD_NO_VACUUM` is set). It prints the write rate, the p50/p99
//! of searches of 1, 2 and 3 words with a page of 25, and the database's query plan.

use std::time::{Duration, Instant};

use assistd_store::{Backend, MessageFilter};
use sea_orm::{DatabaseBackend, Statement};

use super::*;

const MESSAGES: u32 = 10_000;
const WORDS_PER_MESSAGE: usize = 150;
const VOCABULARY: f64 = 30_000.0;
const QUERIES: usize = 300;
const BATCH: usize = 100;

/// xorshift: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A word number with probability falling like 1/rank (log-uniform rank).
    fn zipf_word(&mut self) -> u32 {
        (VOCABULARY.powf(self.unit()) as u32).saturating_sub(1)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::test]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn search_speed() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let started = Instant::now();
    // Written as a sync does: a page of messages per transaction.
    let mut batch = Vec::new();
    for n in 0..MESSAGES {
        let mut words = std::collections::HashSet::new();
        while words.len() < WORDS_PER_MESSAGE {
            words.insert(rng.zipf_word());
        }
        let terms: Vec<SearchTerm> = words.into_iter().map(term).collect();
        let labels: &[&str] = if n % 3 == 0 {
            &["INBOX", "UNREAD"]
        } else {
            &["INBOX"]
        };
        let new = message(
            &format!("18d{n:013x}"),
            &format!("t{}", n / 4),
            labels,
            at(i64::from(n) * 37),
        );
        batch.push((new, terms));
        if batch.len() == BATCH || n + 1 == MESSAGES {
            assert!(gmail.upsert_messages(user, &batch, at(1)).await.unwrap());
            batch.clear();
        }
    }
    let written = started.elapsed();
    println!(
        "wrote {MESSAGES} messages x {WORDS_PER_MESSAGE} terms, {BATCH} per transaction, in {written:.1?} ({:.0} messages/s)",
        f64::from(MESSAGES) / written.as_secs_f64()
    );
    // What autovacuum does after such a burst of inserts: statistics, and pages marked
    // all-visible, so that counting a posting is an index-only scan. `ASSISTD_NO_VACUUM`
    // skips it, to see the cost on a PostgreSQL with autovacuum off.
    if store.backend() == Backend::Postgres && std::env::var_os("ASSISTD_NO_VACUUM").is_none() {
        use sea_orm::ConnectionTrait as _;
        store
            .connection()
            .execute_unprepared("VACUUM ANALYZE")
            .await
            .unwrap();
        println!("VACUUM ANALYZE after writing (ASSISTD_NO_VACUUM=1 skips it)");
    }

    for words in 1..=3usize {
        let mut times = Vec::with_capacity(QUERIES);
        let mut hits = 0usize;
        for q in 0..QUERIES {
            let filter = MessageFilter {
                terms: (0..words).map(|_| term(rng.zipf_word())).collect(),
                label_ids: if q % 2 == 0 {
                    vec!["INBOX".to_owned()]
                } else {
                    vec![]
                },
                ..MessageFilter::default()
            };
            let start = Instant::now();
            let page = gmail.list_messages(user, &filter, None, 25).await.unwrap();
            times.push(start.elapsed());
            hits += page.len();
        }
        times.sort();
        println!(
            "{words} word(s), page of 25, {QUERIES} queries: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({:.1} hits per page)",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1],
            hits as f64 / QUERIES as f64
        );
    }
    // The worst case: the most common words (word 0 is in about 1/ln(30000) ≈ 10% of the
    // draws, so in nearly every message).
    let mut times = Vec::new();
    for words in [vec![0], vec![0, 1], vec![0, 1, 2]] {
        let filter = MessageFilter {
            terms: words.iter().map(|w| term(*w)).collect(),
            ..MessageFilter::default()
        };
        let start = Instant::now();
        let page = gmail.list_messages(user, &filter, None, 25).await.unwrap();
        times.push((words.len(), start.elapsed(), page.len()));
    }
    println!("most common words (count, time, hits): {times:?}");
    let matching = rows_of(&store, "gmail_search_terms", user).await;
    println!("index rows: {matching}");
    let size = match store.backend() {
        Backend::Sqlite => {
            "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()"
        }
        Backend::Postgres => "SELECT pg_total_relation_size('gmail_search_terms')::bigint AS n",
    };
    let bytes: i64 = store
        .connection()
        .query_one_raw(Statement::from_string(
            match store.backend() {
                Backend::Sqlite => DatabaseBackend::Sqlite,
                Backend::Postgres => DatabaseBackend::Postgres,
            },
            size,
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    println!(
        "{}: {:.1} MiB",
        match store.backend() {
            Backend::Sqlite => "whole SQLite database",
            Backend::Postgres => "gmail_search_terms with its index",
        },
        bytes as f64 / 1_048_576.0
    );
    explain(&store, user).await;
}

/// Prints the plans of a two-word search with a label filter as `list_messages` builds them:
/// driven by a short posting, and walking the messages newest first.
async fn explain(store: &Store, user: UserId) {
    let (backend, prefix, join, p): (DatabaseBackend, &str, &str, fn(usize) -> String) =
        match store.backend() {
            Backend::Sqlite => (
                DatabaseBackend::Sqlite,
                "EXPLAIN QUERY PLAN ",
                "CROSS JOIN",
                |_| "?".to_owned(),
            ),
            Backend::Postgres => (
                DatabaseBackend::Postgres,
                "EXPLAIN ANALYZE ",
                "INNER JOIN",
                |n| format!("${n}"),
            ),
        };
    let columns = "m.message_id, m.thread_id, m.label_ids, m.internal_date, m.size_estimate, \
                   m.history_id, m.sealed_header, m.synced_at";
    let fence = if store.backend() == Backend::Postgres {
        " OFFSET 0"
    } else {
        ""
    };
    let probe = |user: usize, key: &str, value: usize, table: &str| {
        format!(
            "EXISTS (SELECT 1 FROM {table} AS p WHERE p.user_id = {} AND p.{key} = {} \
             AND p.message_id = m.message_id{fence})",
            p(user),
            p(value)
        )
    };
    let driven = format!(
        "{prefix}SELECT {columns} FROM gmail_search_terms AS d {join} gmail_messages AS m \
         ON m.user_id = d.user_id AND m.message_id = d.message_id \
         WHERE d.user_id = {} AND d.term = {} AND m.user_id = {} AND {} AND {} \
         ORDER BY m.internal_date DESC, m.message_id DESC LIMIT {}",
        p(1),
        p(2),
        p(3),
        probe(4, "term", 5, "gmail_search_terms"),
        probe(6, "label_id", 7, "gmail_message_labels"),
        p(8)
    );
    let walk = format!(
        "{prefix}SELECT {columns} FROM gmail_messages AS m WHERE m.user_id = {} AND {} AND {} \
         AND {} ORDER BY m.internal_date DESC, m.message_id DESC LIMIT {}",
        p(1),
        probe(2, "term", 3, "gmail_search_terms"),
        probe(4, "term", 5, "gmail_search_terms"),
        probe(6, "label_id", 7, "gmail_message_labels"),
        p(8)
    );
    let u = user.as_uuid();
    for (name, sql, values) in [
        (
            "driven by a short posting (a rare word)",
            driven,
            vec![
                u.into(),
                term(20_000).to_vec().into(),
                u.into(),
                u.into(),
                term(3).to_vec().into(),
                u.into(),
                "INBOX".into(),
                25i64.into(),
            ],
        ),
        (
            "walking newest first (common words)",
            walk,
            vec![
                u.into(),
                u.into(),
                term(0).to_vec().into(),
                u.into(),
                term(1).to_vec().into(),
                u.into(),
                "INBOX".into(),
                25i64.into(),
            ],
        ),
    ] {
        let values: Vec<sea_orm::Value> = values;
        let rows = store
            .connection()
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap();
        println!("query plan, {name}:");
        for row in rows {
            let line: String = match store.backend() {
                Backend::Sqlite => row.try_get("", "detail").unwrap(),
                Backend::Postgres => row.try_get("", "QUERY PLAN").unwrap(),
            };
            println!("  {line}");
        }
    }
}
