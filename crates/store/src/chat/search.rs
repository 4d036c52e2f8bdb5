//! Full-text search over the user's USER and MODEL messages: an FTS5 table on SQLite, a
//! generated `tsvector` column on PostgreSQL. Both mark highlighted words with private-use
//! characters, which are split into snippet segments here.

use assistd_domain::chat::{MessageId, SearchHit, SearchQuery, SessionId, SnippetSegment};
use assistd_domain::{Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, IdenStatic, Iterable};

use super::rows::message_of;
use super::{ChatRepository, Sql, micros};
use crate::entity::chat_messages;
use crate::{Backend, db_error};

/// Marks the start of a highlighted run in raw snippets (a private-use character).
const HIGHLIGHT_START: char = '\u{E000}';
/// Marks the end of a highlighted run in raw snippets.
const HIGHLIGHT_END: char = '\u{E001}';
/// Added where a snippet cuts the message short.
const ELLIPSIS: &str = "…";

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
        let mut sql = Sql::new(db.get_database_backend());
        match backend {
            Backend::Sqlite => {
                sql.push("SELECT ")
                    .push(&message_columns("m"))
                    .push(
                        ", s.title AS session_title, \
                         snippet(chat_messages_fts, 0, char(57344), char(57345), '…', 24) \
                         AS snippet \
                         FROM chat_messages_fts \
                         JOIN chat_messages m ON m.rowid = chat_messages_fts.rowid \
                         JOIN chat_sessions s ON s.id = m.session_id \
                         WHERE chat_messages_fts MATCH ",
                    )
                    .bind(fts5_match(&terms));
            }
            Backend::Postgres => {
                sql.push("SELECT h.*, ts_headline('simple', h.\"text\", ");
                push_tsquery(&mut sql, &terms);
                sql.push(", ")
                    .bind(format!(
                        "StartSel=\"{HIGHLIGHT_START}\", StopSel=\"{HIGHLIGHT_END}\", \
                         MaxWords=30, MinWords=12, ShortWord=0, MaxFragments=1, \
                         FragmentDelimiter=\" … \""
                    ))
                    .push(") AS snippet FROM (SELECT ")
                    .push(&message_columns("m"))
                    .push(
                        ", s.title AS session_title FROM chat_messages m \
                         JOIN chat_sessions s ON s.id = m.session_id WHERE m.search @@ ",
                    );
                push_tsquery(&mut sql, &terms);
            }
        }
        sql.push(" AND m.user_id = ")
            .bind(user.as_uuid())
            .push(" AND m.role IN ('user', 'model')");
        if let Some(session) = session {
            sql.push(" AND m.session_id = ").bind(session.as_uuid());
        }
        if let Some((at, id)) = after {
            sql.push(" AND (m.created_at, m.id) < (")
                .bind(micros(at))
                .push(", ")
                .bind(id.as_uuid())
                .push(")");
        }
        sql.push(" ORDER BY m.created_at DESC, m.id DESC LIMIT ")
            .bind(limit_value(limit));
        if backend == Backend::Postgres {
            sql.push(") h ORDER BY h.created_at DESC, h.id DESC");
        }
        let rows = db.query_all_raw(sql.build()).await.map_err(db_error)?;
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

/// Appends a tsquery requiring every term, each bound as a parameter.
fn push_tsquery(sql: &mut Sql, terms: &[(String, bool)]) {
    sql.push("(");
    for (index, (text, phrase)) in terms.iter().enumerate() {
        if index > 0 {
            sql.push(" && ");
        }
        sql.push(if *phrase {
            "phraseto_tsquery('simple', "
        } else {
            "plainto_tsquery('simple', "
        })
        .bind(text.clone())
        .push(")");
    }
    sql.push(")");
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

/// The message columns, qualified by `table`, for raw SELECTs that map rows to the entity.
fn message_columns(table: &str) -> String {
    chat_messages::Column::iter()
        .map(|column| format!("{table}.\"{}\"", column.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A page size as a bound SQL integer (sizes beyond `i64` mean "no limit" in effect).
fn limit_value(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
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
}
