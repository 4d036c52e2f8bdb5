//! Full-text search: every term matched newest first, titles and highlighted snippets, and
//! an index that follows deleted sessions and users.

use super::*;

/// Runs FTS5's full check, which compares the index with its content (SQLite only).
async fn fts_integrity_check(store: &Store) -> Result<(), sea_orm::DbErr> {
    store
        .connection()
        .execute_unprepared(
            "INSERT INTO chat_messages_fts (chat_messages_fts, rank) VALUES ('integrity-check', 1)",
        )
        .await
        .map(drop)
}

/// Documents in the SQLite full-text index.
async fn fts_documents(store: &Store) -> i64 {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT count(*) AS n FROM chat_messages_fts_docsize",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// One user's searchable history: (user, model, model, user) messages across two sessions,
/// plus function and system messages that mention the same words.
pub(super) struct Corpus {
    pub(super) rust: ChatSession,
    pub(super) chess: ChatSession,
    pub(super) question: ChatMessage,
    pub(super) explanation: ChatMessage,
    pub(super) chess_question: ChatMessage,
    pub(super) chess_answer: ChatMessage,
}

pub(super) async fn corpus(chat: &ChatRepository, user: UserId) -> Corpus {
    let rust = new_session(chat, user, "Rust talk", 0).await;
    let chess = new_session(chat, user, "Chess club", 0).await;
    let mut rust_messages = chat
        .append_messages(
            user,
            rust.id,
            vec![text(
                MessageRole::User,
                "How does the Borrow Checker work in Rust?",
            )],
            None,
            at(1),
        )
        .await
        .unwrap();
    rust_messages.extend(
        chat.append_messages(
            user,
            rust.id,
            vec![
                function_call("borrow checker"),
                function_result("borrow checker"),
                text(MessageRole::System, "borrow checker notice"),
                reply(
                    None,
                    "The borrow checker enforces ownership rules at compile time.",
                ),
            ],
            None,
            at(2),
        )
        .await
        .unwrap(),
    );
    let chess_question = chat
        .append_messages(
            user,
            chess.id,
            vec![text(MessageRole::User, "I borrowed a chess checker board")],
            None,
            at(3),
        )
        .await
        .unwrap()
        .remove(0);
    let chess_answer = chat
        .append_messages(
            user,
            chess.id,
            vec![reply(
                None,
                "Club rules: borrow a checker board, return it clean.",
            )],
            None,
            at(4),
        )
        .await
        .unwrap()
        .remove(0);
    Corpus {
        rust,
        chess,
        question: rust_messages[0].clone(),
        explanation: rust_messages[4].clone(),
        chess_question,
        chess_answer,
    }
}

pub(super) async fn hits(
    chat: &ChatRepository,
    user: UserId,
    q: &str,
    session: Option<SessionId>,
    after: Option<(DateTime<Utc>, MessageId)>,
    limit: u64,
) -> Vec<MessageId> {
    chat.search_messages(user, &query(q), session, after, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|hit| hit.message.id)
        .collect()
}

#[tokio::test]
async fn search_matches_every_term_newest_first() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let c = corpus(&chat, user).await;
    let stranger = new_user(&store).await;
    let theirs = new_session(&chat, stranger, "Theirs", 0).await;
    chat.append_messages(
        stranger,
        theirs.id,
        vec![text(MessageRole::User, "my borrow checker question")],
        None,
        at(10),
    )
    .await
    .unwrap();

    // Words: every one must match, case-insensitively; "borrowed" is another word.
    assert_eq!(
        hits(&chat, user, "borrow", None, None, 10).await,
        [c.chess_answer.id, c.explanation.id, c.question.id]
    );
    assert_eq!(
        hits(&chat, user, "BORROW Checker", None, None, 10).await,
        [c.chess_answer.id, c.explanation.id, c.question.id]
    );
    assert_eq!(
        hits(&chat, user, "checker board", None, None, 10).await,
        [c.chess_answer.id, c.chess_question.id]
    );
    // A phrase needs its words in order.
    assert_eq!(
        hits(&chat, user, "\"borrow checker\"", None, None, 10).await,
        [c.explanation.id, c.question.id]
    );
    assert_eq!(
        hits(&chat, user, "\"checker borrow\"", None, None, 10).await,
        Vec::<MessageId>::new()
    );
    // One session only.
    assert_eq!(
        hits(&chat, user, "borrow", Some(c.chess.id), None, 10).await,
        [c.chess_answer.id]
    );
    assert_eq!(
        hits(&chat, user, "borrow", Some(c.rust.id), None, 10).await,
        [c.explanation.id, c.question.id]
    );
    // Pages.
    let first = chat
        .search_messages(user, &query("borrow"), None, None, 2)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let last = first.last().unwrap();
    let cursor = Some((last.message.created_at, last.message.id));
    assert_eq!(
        hits(&chat, user, "borrow", None, cursor, 2).await,
        [c.question.id]
    );
    // Each user sees only their own messages.
    assert_eq!(
        hits(&chat, stranger, "borrow", None, None, 10).await.len(),
        1
    );
    // Query syntax of either engine is just words (here: "foo" and the phrase "or bar").
    for q in [
        "foo\" OR bar*",
        "borrow OR nothinglikethis",
        "NEAR(borrow checker)",
        "text:borrow",
        "borrow -checker ^rust & | !",
        "'; DROP TABLE chat_messages; --",
    ] {
        let found = chat
            .search_messages(user, &query(q), None, None, 10)
            .await
            .unwrap();
        if q.starts_with("borrow -checker") {
            // Words only: "borrow", "checker" and "rust" must all match.
            assert_eq!(found.len(), 1, "{q}");
            assert_eq!(found[0].message.id, c.question.id);
        } else {
            assert!(found.is_empty(), "{q}: {found:?}");
        }
    }
}

#[tokio::test]
async fn search_hits_carry_the_session_title_and_a_highlighted_snippet() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let c = corpus(&chat, user).await;
    let found = chat
        .search_messages(user, &query("\"borrow checker\" enforces"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let hit = &found[0];
    assert_eq!(hit.message, c.explanation);
    assert_eq!(hit.session_title, "Rust talk");
    let highlighted: Vec<String> = hit
        .snippet
        .iter()
        .filter(|s| s.highlighted)
        .map(|s| s.text.to_lowercase())
        .collect();
    assert!(
        highlighted.iter().any(|t| t.contains("borrow")),
        "{:?}",
        hit.snippet
    );
    assert!(
        highlighted.iter().any(|t| t.contains("enforces")),
        "{:?}",
        hit.snippet
    );
    let shown: String = hit.snippet.iter().map(|s| s.text.as_str()).collect();
    // The whole message, without ellipses (PostgreSQL leaves out the final full stop).
    assert!(!shown.contains('…'), "{shown}");
    assert_eq!(
        shown.trim_end_matches('.'),
        "The borrow checker enforces ownership rules at compile time"
    );

    // A long message is cut around the match, and the cuts are marked.
    let filler = |word: &str| vec![word; 60].join(" ");
    let long = format!("{} needle {}", filler("before"), filler("after"));
    chat.append_messages(user, c.rust.id, vec![reply(None, &long)], None, at(20))
        .await
        .unwrap();
    let found = chat
        .search_messages(user, &query("needle"), None, None, 10)
        .await
        .unwrap();
    let snippet = &found[0].snippet;
    let shown: String = snippet.iter().map(|s| s.text.as_str()).collect();
    assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
    assert!(shown.len() < long.len() / 2, "{shown}");
    assert!(
        snippet.iter().any(|s| s.highlighted && s.text == "needle"),
        "{snippet:?}"
    );

    // Stored text that contains the marker characters does not break snippets.
    chat.append_messages(
        user,
        c.rust.id,
        vec![text(
            MessageRole::User,
            "odd \u{E001}marker\u{E000} zebra text",
        )],
        None,
        at(21),
    )
    .await
    .unwrap();
    let found = chat
        .search_messages(user, &query("zebra"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].snippet.iter().any(|s| s.text.contains("zebra")));
}

#[tokio::test]
async fn the_search_index_follows_deleted_sessions_and_users() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let c = corpus(&chat, user).await;
    let other = new_user(&store).await;
    let kept = corpus(&chat, other).await;
    if is_sqlite(&store) {
        // Two users × four USER/MODEL messages; function and system messages are not indexed.
        assert_eq!(fts_documents(&store).await, 8);
        fts_integrity_check(&store).await.unwrap();
    }

    chat.delete_session(user, c.rust.id).await.unwrap();
    assert_eq!(
        hits(&chat, user, "borrow", None, None, 10).await,
        [c.chess_answer.id]
    );
    if is_sqlite(&store) {
        assert_eq!(fts_documents(&store).await, 6);
        fts_integrity_check(&store).await.unwrap();
    }

    store.users().delete(user).await.unwrap();
    assert!(hits(&chat, user, "borrow", None, None, 10).await.is_empty());
    assert_eq!(
        hits(&chat, other, "borrow", None, None, 10).await,
        [kept.chess_answer.id, kept.explanation.id, kept.question.id]
    );
    if is_sqlite(&store) {
        assert_eq!(fts_documents(&store).await, 4);
        fts_integrity_check(&store).await.unwrap();

        // Edits of text (none happen today) keep the index in step too.
        store
            .connection()
            .execute_unprepared(
                "UPDATE chat_messages SET text = 'rewritten words' WHERE role = 'model'",
            )
            .await
            .unwrap();
        fts_integrity_check(&store).await.unwrap();
        assert_eq!(
            hits(&chat, other, "rewritten", None, None, 10).await.len(),
            2
        );
        assert_eq!(
            hits(&chat, other, "borrow", None, None, 10).await,
            [kept.question.id]
        );

        // The check is not vacuous: a delete the index missed is reported.
        store
            .connection()
            .execute_unprepared(
                "DROP TRIGGER chat_messages_fts_delete;
                 DELETE FROM chat_messages WHERE role = 'user';",
            )
            .await
            .unwrap();
        assert!(fts_integrity_check(&store).await.is_err());
    }
}
