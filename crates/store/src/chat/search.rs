//! Full-text search over the user's USER and MODEL messages: an FTS5 table on SQLite, a
//! generated `tsvector` column on PostgreSQL. Both mark highlighted words with private-use
//! characters, which are split into snippet segments here.

use assistd_domain::chat::{
    MessageId, MessageRole, SearchHit, SearchQuery, SessionId, SnippetSegment,
};
use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::{
    Asterisk, Expr, ExprTrait, Func, JoinType, Order, Query, SelectStatement,
};
use sea_orm::{ConnectionTrait, FromQueryResult, Iterable};

use super::rows::message_of;
use super::{ChatRepository, micros};
use crate::entity::{chat_messages, chat_sessions};
use crate::{Backend, db_error};

/// Marks the start of a highlighted run in raw snippets (a private-use character).
const HIGHLIGHT_START: char = '\u{E000}';
/// Marks the end of a highlighted run in raw snippets.
const HIGHLIGHT_END: char = '\u{E001}';
/// Added where a snippet cuts the message short.
const ELLIPSIS: &str = "…";

/// The messages searched, as the statements name them.
const M: &str = "m";
/// The sessions of the messages found.
const S: &str = "s";
/// PostgreSQL's page of hits, headlined after the LIMIT.
const H: &str = "h";
/// SQLite's FTS5 index of USER and MODEL text, keyed by the messages' rowids.
const FTS: &str = "chat_messages_fts";
/// The implicit rowid of SQLite tables, which the FTS5 index is keyed by.
const ROWID: &str = "rowid";
/// PostgreSQL's generated `tsvector` column (not in the entity: nothing reads it back).
const SEARCH: &str = "search";

impl ChatRepository {
    /// The user's USER and MODEL messages that contain every term of `query` (a term of
    /// several words as a phrase), case-insensitively, newest first (ties by id, descending),
    /// strictly after the cursor `after` (created_at and id of the last hit of the previous
    /// page), optionally in one session: at most `limit`, each with its session's title and
    /// a highlighted excerpt. The query's words are bound as parameters, never read as
    /// query syntax.
    ///
    /// # Errors
    /// The database failed.
    pub async fn search_messages(
        &self,
        user: UserId,
        query: &SearchQuery,
        session: Option<SessionId>,
        after: Option<(DateTime<Utc>, MessageId)>,
        limit: u64,
    ) -> Result<Vec<SearchHit>> {
        let terms = search_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.store.connection();
        let backend = self.store.backend();
        let statement = search_statement(backend, user, &terms, session, after, limit);
        let rows = db.query_all(&statement).await.map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let model = chat_messages::Model::from_query_result(row, "").map_err(db_error)?;
                let session_title: String = row.try_get("", "session_title").map_err(db_error)?;
                let raw: Option<String> = row.try_get("", "snippet").map_err(db_error)?;
                let mut snippet = snippet_segments(raw.as_deref().unwrap_or_default());
                if backend == Backend::Postgres {
                    mark_cuts(&mut snippet, model.text.as_deref().unwrap_or_default());
                }
                Ok(SearchHit {
                    message: message_of(model)?,
                    session_title,
                    snippet,
                })
            })
            .collect()
    }
}

/// One search term: its words joined by spaces, and whether it is a phrase.
fn search_terms(query: &SearchQuery) -> Vec<(String, bool)> {
    query
        .terms
        .iter()
        .map(|term| {
            let words: Vec<&str> = term
                .iter()
                .map(String::as_str)
                .filter(|word| !word.is_empty())
                .collect();
            (words.join(" "), words.len() > 1)
        })
        .filter(|(text, _)| text.chars().any(char::is_alphanumeric))
        .collect()
}

/// An FTS5 query requiring every term: each is an FTS5 string (a phrase when it has several
/// words), so nothing the user typed is read as query syntax.
fn fts5_match(terms: &[(String, bool)]) -> String {
    terms
        .iter()
        .map(|(text, _)| format!("\"{}\"", text.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tsquery requiring every term, each bound as a parameter. Raw SQL: sea-query's `PgFunc`
/// tsquery constructors take a text search configuration by OID, not by name like the
/// `'simple'` the index was built with, and sea-query has no `&&` for tsqueries. Only fixed
/// text and numbered placeholders go into the string.
fn tsquery(terms: &[(String, bool)]) -> Expr {
    let calls: Vec<String> = terms
        .iter()
        .enumerate()
        .map(|(index, (_, phrase))| {
            let function = if *phrase {
                "phraseto_tsquery"
            } else {
                "plainto_tsquery"
            };
            format!("{function}('simple', ${})", index + 1)
        })
        .collect();
    Expr::cust_with_values(
        format!("({})", calls.join(" && ")),
        terms.iter().map(|(text, _)| text.clone()),
    )
}

/// Splits a raw snippet at the highlight markers. Unbalanced or stray markers (a stored text
/// may contain them) only toggle highlighting; they never fail.
fn snippet_segments(raw: &str) -> Vec<SnippetSegment> {
    fn flush(segments: &mut Vec<SnippetSegment>, text: &mut String, highlighted: bool) {
        if text.is_empty() {
            return;
        }
        match segments.last_mut() {
            Some(last) if last.highlighted == highlighted => last.text.push_str(text),
            _ => segments.push(SnippetSegment {
                text: text.clone(),
                highlighted,
            }),
        }
        text.clear();
    }
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut highlighted = false;
    for c in raw.chars() {
        if c == HIGHLIGHT_START || c == HIGHLIGHT_END {
            flush(&mut segments, &mut text, highlighted);
            highlighted = c == HIGHLIGHT_START;
        } else {
            text.push(c);
        }
    }
    flush(&mut segments, &mut text, highlighted);
    segments
}

/// Adds an ellipsis where a PostgreSQL headline cut words of `text` off (FTS5 adds its own).
/// Punctuation the headline leaves out at either end is no cut.
fn mark_cuts(segments: &mut Vec<SnippetSegment>, text: &str) {
    let shown: String = segments.iter().map(|s| s.text.as_str()).collect();
    let shown = shown.trim();
    if shown.is_empty() {
        return;
    }
    let has_words = |part: &str| part.chars().any(char::is_alphanumeric);
    let (cut_start, cut_end) = match text.find(shown) {
        Some(at) => (has_words(&text[..at]), has_words(&text[at + shown.len()..])),
        // The headline changed the text between words: compare the ends alone.
        None => (
            !text.trim_start().starts_with(shown),
            !text.trim_end().ends_with(shown),
        ),
    };
    if cut_start {
        match segments.first_mut() {
            Some(first) if !first.highlighted => first.text.insert_str(0, ELLIPSIS),
            _ => segments.insert(
                0,
                SnippetSegment {
                    text: ELLIPSIS.to_owned(),
                    highlighted: false,
                },
            ),
        }
    }
    if cut_end {
        match segments.last_mut() {
            Some(last) if !last.highlighted => last.text.push_str(ELLIPSIS),
            _ => segments.push(SnippetSegment {
                text: ELLIPSIS.to_owned(),
                highlighted: false,
            }),
        }
    }
}

/// The search statement: the page of hits, newest first, by the cursor's keyset; on
/// PostgreSQL wrapped so that headlines are made for that page only (`ts_headline` re-reads
/// each text, too costly for every match).
fn search_statement(
    backend: Backend,
    user: UserId,
    terms: &[(String, bool)],
    session: Option<SessionId>,
    after: Option<(DateTime<Utc>, MessageId)>,
    limit: u64,
) -> SelectStatement {
    use chat_messages::Column;
    let mut page = Query::select();
    page.columns(Column::iter().map(|column| (M, column)))
        .expr_as(
            Expr::col((S, chat_sessions::Column::Title)),
            "session_title",
        );
    let session_of_message =
        Expr::col((S, chat_sessions::Column::Id)).equals((M, Column::SessionId));
    match backend {
        Backend::Sqlite => {
            // Raw SQL for FTS5's auxiliary function and MATCH operator, which sea-query does
            // not know; the query is bound, the rest is fixed text.
            page.expr_as(
                Expr::cust("snippet(chat_messages_fts, 0, char(57344), char(57345), '…', 24)"),
                "snippet",
            )
            .from(FTS)
            .join_as(
                JoinType::Join,
                chat_messages::Entity,
                M,
                Expr::col((M, ROWID)).equals((FTS, ROWID)),
            )
            .join_as(JoinType::Join, chat_sessions::Entity, S, session_of_message)
            .and_where(Expr::cust_with_values(
                "chat_messages_fts MATCH ?",
                [fts5_match(terms)],
            ));
        }
        Backend::Postgres => {
            page.from_as(chat_messages::Entity, M)
                .join_as(JoinType::Join, chat_sessions::Entity, S, session_of_message)
                .and_where(Expr::col((M, SEARCH)).matches(tsquery(terms)));
        }
    }
    page.and_where(Expr::col((M, Column::UserId)).eq(user.as_uuid()))
        // A fixed vocabulary, written as literals (as before) so that the planner sees them
        // even in a generic, parameter-blind plan; only what users type needs binding.
        .and_where(Expr::col((M, Column::Role)).is_in([
            Expr::Constant(MessageRole::User.as_str().into()),
            Expr::Constant(MessageRole::Model.as_str().into()),
        ]));
    if let Some(session) = session {
        page.and_where(Expr::col((M, Column::SessionId)).eq(session.as_uuid()));
    }
    if let Some((at, id)) = after {
        page.and_where(
            Expr::tuple([
                Expr::col((M, Column::CreatedAt)),
                Expr::col((M, Column::Id)),
            ])
            .lt(Expr::tuple([
                Expr::value(micros(at)),
                Expr::value(id.as_uuid()),
            ])),
        );
    }
    page.order_by((M, Column::CreatedAt), Order::Desc)
        .order_by((M, Column::Id), Order::Desc)
        .limit(limit_value(limit));
    match backend {
        Backend::Sqlite => page,
        Backend::Postgres => Query::select()
            .column((H, Asterisk))
            .expr_as(
                Func::cust("ts_headline").args([
                    Expr::Constant("simple".into()),
                    Expr::col((H, Column::Text)),
                    tsquery(terms),
                    Expr::value(format!(
                        "StartSel=\"{HIGHLIGHT_START}\", StopSel=\"{HIGHLIGHT_END}\", \
                         MaxWords=30, MinWords=12, ShortWord=0, MaxFragments=1, \
                         FragmentDelimiter=\" … \""
                    )),
                ]),
                "snippet",
            )
            .from_subquery(page, H)
            .order_by((H, Column::CreatedAt), Order::Desc)
            .order_by((H, Column::Id), Order::Desc)
            .to_owned(),
    }
}

/// A page size the driver can bind: at most `i64::MAX`, the largest LIMIT both engines take
/// (a larger one would not convert, and means "no limit" in effect anyway).
fn limit_value(limit: u64) -> u64 {
    // `Ord::` because sea-query's `ExprTrait` has a `min` too.
    Ord::min(limit, i64::MAX.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(text: &str, highlighted: bool) -> SnippetSegment {
        SnippetSegment {
            text: text.to_owned(),
            highlighted,
        }
    }

    #[test]
    fn snippets_split_at_markers_and_survive_stray_ones() {
        assert_eq!(
            snippet_segments("…the \u{E000}borrow\u{E001} \u{E000}checker\u{E001} says…"),
            vec![
                segment("…the ", false),
                segment("borrow", true),
                segment(" ", false),
                segment("checker", true),
                segment(" says…", false),
            ]
        );
        assert_eq!(
            snippet_segments("\u{E001}\u{E001}a\u{E000}\u{E000}b"),
            vec![segment("a", false), segment("b", true)]
        );
        assert!(snippet_segments("").is_empty());
    }

    #[test]
    fn headline_cuts_are_marked() {
        let mut segments = vec![segment("middle ", false), segment("word", true)];
        mark_cuts(&mut segments, "start middle word end");
        assert_eq!(
            segments,
            vec![
                segment("…middle ", false),
                segment("word", true),
                segment("…", false)
            ]
        );
        let mut whole = vec![segment("all", true)];
        mark_cuts(&mut whole, "all");
        assert_eq!(whole, vec![segment("all", true)]);
        // Punctuation left out at the ends is no cut.
        let mut quoted = vec![segment("Say ", false), segment("hi", true)];
        mark_cuts(&mut quoted, "\"Say hi!\"");
        assert_eq!(quoted, vec![segment("Say ", false), segment("hi", true)]);
    }

    #[test]
    fn fts5_queries_quote_every_term() {
        let query: SearchQuery = "foo\" OR bar*".parse().unwrap();
        let terms = search_terms(&query);
        assert_eq!(
            terms,
            vec![("foo".to_owned(), false), ("or bar".to_owned(), true)]
        );
        assert_eq!(fts5_match(&terms), "\"foo\" \"or bar\"");
        let odd = vec![("a\"b".to_owned(), false)];
        assert_eq!(fts5_match(&odd), "\"a\"\"b\"");
    }

    #[test]
    fn search_statements_bind_every_word() {
        use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder, Value};
        let terms = search_terms(&"robert'); drop \"table".parse().unwrap());
        let after = Some((
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            MessageId::new(),
        ));
        let bound = |values: &[Value], word: &str| {
            values
                .iter()
                .any(|value| *value == Value::from(word.to_owned()))
        };
        let sqlite = search_statement(Backend::Sqlite, UserId::new(), &terms, None, after, 5);
        let (sql, values) = sqlite.build(SqliteQueryBuilder);
        // A `&str`, so that `contains` is the string's and not sea-query's `ExprTrait`'s.
        let sql = sql.as_str();
        assert!(sql.contains("WHERE (chat_messages_fts MATCH ?)"), "{sql}");
        assert!(
            sql.contains(r#"("m"."created_at", "m"."id") < (?, ?)"#),
            "{sql}"
        );
        assert!(sql.ends_with(r#"ORDER BY "m"."created_at" DESC, "m"."id" DESC LIMIT ?"#));
        assert!(!sql.contains("robert"), "{sql}");
        assert!(bound(&values.0, "\"robert\" \"drop\" \"table\""));
        let session = Some(SessionId::new());
        let pg = search_statement(Backend::Postgres, UserId::new(), &terms, session, after, 5);
        let (sql, values) = pg.build(PostgresQueryBuilder);
        let sql = sql.as_str();
        assert!(
            sql.contains(r#""m"."search" @@ ((plainto_tsquery('simple', $5) && "#),
            "{sql}"
        );
        assert!(sql.contains(r#""m"."session_id" = $9"#), "{sql}");
        assert!(
            sql.ends_with(r#"LIMIT $12) AS "h" ORDER BY "h"."created_at" DESC, "h"."id" DESC"#)
        );
        assert!(!sql.contains("robert"), "{sql}");
        assert!(bound(&values.0, "robert") && bound(&values.0, "table"));
    }
}
