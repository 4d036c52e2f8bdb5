//! How a list of the user's messages is planned and written as one statement: the postings
//! a filter requires (blind index terms and labels), which of them drives (or whether the
//! messages are walked newest first), and the statement that reads the page.

use assistd_domain::{Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, JoinType, Order, Query, SelectStatement};

use super::messages::{
    M, MessageFilter, SearchTerm, distinct_labels, distinct_terms, message_select,
};
use super::micros;
use crate::entity::gmail_messages;
use crate::{Backend, db_error};

/// A list of message ids kept in primary key order per key: the blind index (messages having
/// a term) and the labels (messages carrying a label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Posting {
    /// Messages that have this blind index token.
    Term(SearchTerm),
    /// Messages that carry this label.
    Label(String),
}

impl Posting {
    /// The table, its key column and the key.
    fn parts(&self) -> (&'static str, &'static str, sea_orm::Value) {
        match self {
            Self::Term(term) => ("gmail_search_terms", "term", term.to_vec().into()),
            Self::Label(label) => ("gmail_message_labels", "label_id", label.clone().into()),
        }
    }
}

/// Every posting the filter requires: its distinct terms, then its distinct labels.
pub(super) fn postings_of(filter: &MessageFilter) -> Vec<Posting> {
    distinct_terms(&filter.terms)
        .into_iter()
        .map(Posting::Term)
        .chain(
            distinct_labels(&filter.label_ids)
                .into_iter()
                .map(Posting::Label),
        )
        .collect()
}

/// The posting alias when it drives the list.
const D: &str = "d";
/// A posting's alias in an EXISTS probe.
const P: &str = "p";

/// How many rows of a posting, or of the user's messages, are counted at most when
/// planning: larger postings are treated as this large.
const COUNT_CAP: u64 = 20_000;

/// How many rows of `table` the user has with `key` = `value` (all the user's rows without a
/// key), counted up to `cap`.
async fn rows_up_to<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    table: &'static str,
    key: Option<(&'static str, sea_orm::Value)>,
    cap: u64,
) -> Result<u64> {
    let mut rows = Query::select();
    rows.expr(Expr::value(1))
        .from(table)
        .and_where(Expr::col("user_id").eq(user.as_uuid()))
        .limit(cap);
    if let Some((key, value)) = key {
        rows.and_where(Expr::col(key).eq(value));
    }
    let count = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from_subquery(rows.to_owned(), P)
        .to_owned();
    let n: i64 = db
        .query_one(&count)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("a count returned no row"))?
        .try_get("", "n")
        .map_err(db_error)?;
    Ok(n.unsigned_abs())
}

/// How many rows of a posting are counted first, per row of the page asked for: a posting
/// shorter than `DRIVE_FACTOR × limit` drives the list (each of its rows costs one message
/// lookup), and one long posting alone is walked (a page fills after a few dozen messages).
const DRIVE_FACTOR: u64 = 40;

/// The bounds of that first count, whatever the page size.
const MIN_DRIVE_CAP: u64 = 200;

/// Which posting drives the list, if one should; `Err(())` when a posting is empty, so
/// nothing matches.
///
/// Driving reads every row of the shortest posting (a message lookup and a probe of each
/// other posting per row) and sorts what matched; walking reads the user's messages newest
/// first, probing every posting per message, until the page is full. Counting is cheap per
/// row but not free (on PostgreSQL a row not yet marked all-visible by vacuum costs a heap
/// visit), so postings are first counted up to `DRIVE_FACTOR × limit`: a posting below that
/// drives, and a single long posting walks. Only when several postings are all long are they
/// counted further, with the user's messages, and the cheaper plan estimated as if the words
/// were independent (see [`cheaper_driver`]): words each common but rare together would make
/// the walk read the whole mailbox to fill a page.
pub(super) async fn choose_driver<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    postings: &[Posting],
    limit: u64,
) -> Result<std::result::Result<Option<usize>, ()>> {
    let first_cap = limit
        .saturating_mul(DRIVE_FACTOR)
        .clamp(MIN_DRIVE_CAP, COUNT_CAP);
    let mut sizes = Vec::with_capacity(postings.len());
    for posting in postings {
        let (table, key, value) = posting.parts();
        let size = rows_up_to(db, user, table, Some((key, value)), first_cap).await?;
        if size == 0 {
            return Ok(Err(()));
        }
        sizes.push(size);
    }
    let shortest = sizes
        .iter()
        .enumerate()
        .min_by_key(|(_, size)| **size)
        .map(|(index, size)| (index, *size));
    match shortest {
        None => Ok(Ok(None)),
        Some((index, size)) if size < first_cap => Ok(Ok(Some(index))),
        Some(_) if postings.len() == 1 => Ok(Ok(None)),
        Some(_) => {
            for (posting, size) in postings.iter().zip(sizes.iter_mut()) {
                let (table, key, value) = posting.parts();
                *size = rows_up_to(db, user, table, Some((key, value)), COUNT_CAP).await?;
            }
            let messages = rows_up_to(db, user, "gmail_messages", None, COUNT_CAP).await?;
            Ok(Ok(cheaper_driver(&sizes, messages, limit)))
        }
    }
}

/// The cheaper plan by an estimate from the postings' sizes (each at least 1) and the
/// user's message count: the index of the posting to drive from, or `None` to walk. The
/// walk reads about `limit / selectivity` messages, the selectivity being the product of each
/// posting's share of the messages, and at most all of them; driving reads the shortest
/// posting.
fn cheaper_driver(sizes: &[u64], messages: u64, limit: u64) -> Option<usize> {
    let (shortest, &rows) = sizes.iter().enumerate().min_by_key(|(_, size)| **size)?;
    #[allow(clippy::cast_precision_loss)] // counts up to COUNT_CAP are exact in an f64
    let walked = {
        let total = Ord::max(messages, 1) as f64;
        let selectivity: f64 = sizes
            .iter()
            .map(|&size| (size as f64 / total).min(1.0))
            .product();
        (limit as f64 / selectivity).min(total)
    };
    #[allow(clippy::cast_precision_loss)]
    let driven = rows as f64;
    (driven <= walked).then_some(shortest)
}

/// EXISTS: the message `m` is in `posting` (a primary key probe). On PostgreSQL `OFFSET 0`
/// keeps the probe a probe: without it the planner turns every EXISTS into a semi-join it
/// may drive from (a whole label's or word's posting), which is what the plan chosen here
/// avoids.
fn in_posting(backend: Backend, user: UserId, posting: &Posting) -> Expr {
    let (table, key, value) = posting.parts();
    let mut probe = Query::select();
    probe
        .expr(Expr::value(1))
        .from_as(table, P)
        .and_where(Expr::col((P, "user_id")).eq(user.as_uuid()))
        .and_where(Expr::col((P, key)).eq(value))
        .and_where(Expr::col((P, "message_id")).equals((M, gmail_messages::Column::MessageId)));
    if backend == Backend::Postgres {
        probe.offset(0);
    }
    Expr::exists(probe)
}

/// The list statement: the page of messages passing the filter, newest first, after the
/// cursor. With a `driver`, the statement reads that posting's range of the primary key and
/// looks each message up (on SQLite a CROSS JOIN keeps that order: its planner would
/// otherwise walk the date index, not knowing how short the posting is); without, it walks
/// the user's messages newest first (by thread when a thread is given). Every other posting
/// is a primary key probe per message.
pub(super) fn list_statement(
    backend: Backend,
    user: UserId,
    filter: &MessageFilter,
    postings: &[Posting],
    driver: Option<usize>,
    after: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> SelectStatement {
    use gmail_messages::Column;
    let mut select = message_select(filter.include_bodies);
    match driver.and_then(|index| postings.get(index)) {
        Some(posting) => {
            let (table, key, value) = posting.parts();
            let join = match backend {
                Backend::Sqlite => JoinType::CrossJoin,
                Backend::Postgres => JoinType::InnerJoin,
            };
            let link = Expr::col((M, Column::UserId))
                .equals((D, "user_id"))
                .and(Expr::col((M, Column::MessageId)).equals((D, "message_id")));
            // sea-query writes a CROSS JOIN without its ON: the link is also in WHERE.
            select
                .from_as(table, D)
                .join_as(join, gmail_messages::Entity, M, link.clone())
                .and_where(link)
                .and_where(Expr::col((D, "user_id")).eq(user.as_uuid()))
                .and_where(Expr::col((D, key)).eq(value));
        }
        None => {
            select.from_as(gmail_messages::Entity, M);
        }
    }
    select.and_where(Expr::col((M, Column::UserId)).eq(user.as_uuid()));
    for (index, posting) in postings.iter().enumerate() {
        if Some(index) != driver {
            select.and_where(in_posting(backend, user, posting));
        }
    }
    if let Some(thread) = &filter.thread_id {
        select.and_where(Expr::col((M, Column::ThreadId)).eq(thread.as_str()));
    }
    if let Some((at, id)) = after {
        select.and_where(
            Expr::tuple([
                Expr::col((M, Column::InternalDate)),
                Expr::col((M, Column::MessageId)),
            ])
            .lt(Expr::tuple([Expr::value(micros(at)), Expr::value(id)])),
        );
    }
    select
        .order_by((M, Column::InternalDate), Order::Desc)
        .order_by((M, Column::MessageId), Order::Desc)
        .limit(Ord::min(limit, i64::MAX.unsigned_abs()));
    select
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheaper_plan_drives_or_walks() {
        // One rare word: its 30 rows beat walking most of 10,000 messages.
        assert_eq!(cheaper_driver(&[30], 10_000, 25), Some(0));
        // One common word: a page fills after about 170 of the messages.
        assert_eq!(cheaper_driver(&[1_500], 10_000, 25), None);
        // Three words, each common but rare together: the walk would read nearly all
        // messages; the shortest posting drives.
        assert_eq!(cheaper_driver(&[1_500, 1_400, 1_600], 10_000, 25), Some(1));
        // A label every message carries changes nothing.
        assert_eq!(cheaper_driver(&[10_000, 1_500], 10_000, 25), None);
        assert_eq!(cheaper_driver(&[10_000, 30], 10_000, 25), Some(1));
        // Small mailboxes walk at most all their messages.
        assert_eq!(cheaper_driver(&[3], 3, 25), Some(0));
        assert_eq!(cheaper_driver(&[], 10, 25), None);
    }

    #[test]
    fn list_statements_bind_every_value_and_drive_as_planned() {
        use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
        let filter = MessageFilter {
            terms: vec![[7; 16], [9; 16]],
            label_ids: vec!["INBOX'--".to_owned()],
            thread_id: Some("t'1".to_owned()),
            include_bodies: false,
        };
        let postings = postings_of(&filter);
        assert_eq!(postings.len(), 3);
        let after = Some((
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            "m'1".to_owned(),
        ));
        let user = UserId::new();
        let walk = list_statement(
            Backend::Sqlite,
            user,
            &filter,
            &postings,
            None,
            after.clone(),
            25,
        );
        let (sql, _) = walk.build(SqliteQueryBuilder);
        let sql = sql.as_str();
        assert!(
            sql.contains(r#"FROM "gmail_messages" AS "m" WHERE"#),
            "{sql}"
        );
        assert_eq!(sql.matches("EXISTS").count(), 3, "{sql}");
        assert!(!sql.contains("INBOX") && !sql.contains("t'1") && !sql.contains("m'1"));
        assert!(!sql.contains("sealed_body"), "{sql}");
        assert!(
            sql.ends_with(r#"ORDER BY "m"."internal_date" DESC, "m"."message_id" DESC LIMIT ?"#),
            "{sql}"
        );
        // The label drives: read first, the terms probed.
        let driven = list_statement(
            Backend::Sqlite,
            user,
            &filter,
            &postings,
            Some(2),
            after.clone(),
            25,
        );
        let (sql, _) = driven.build(SqliteQueryBuilder);
        let sql = sql.as_str();
        assert!(
            sql.contains(
                r#"FROM "gmail_message_labels" AS "d" CROSS JOIN "gmail_messages" AS "m""#
            ),
            "{sql}"
        );
        assert_eq!(sql.matches("EXISTS").count(), 2, "{sql}");
        assert!(
            sql.contains(
                r#""m"."user_id" = "d"."user_id" AND "m"."message_id" = "d"."message_id""#
            ),
            "{sql}"
        );
        let driven = list_statement(
            Backend::Postgres,
            user,
            &filter,
            &postings,
            Some(0),
            after,
            25,
        );
        let (sql, _) = driven.build(PostgresQueryBuilder);
        assert!(
            sql.as_str()
                .contains(r#"FROM "gmail_search_terms" AS "d" INNER JOIN "gmail_messages" AS "m""#),
            "{sql}"
        );
    }
}
