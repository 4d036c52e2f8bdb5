//! Chat persistence on a real database (SQLite file, or PostgreSQL when
//! `ASSISTD_TEST_DATABASE_URL` is set): sessions, the sequence allocator under concurrency,
//! idempotent sends, history pages, full-text search and its index, memories, usage and
//! budgets, and that another user's ids behave like unknown ones everywhere.

mod common;

use common::fresh_store;
use std::time::{Duration, Instant};

use assistd_domain::chat::{
    ArchivedFilter, ChatMessage, ChatSession, ExchangeStart, ExchangeState, FinishReason, MemoryId,
    MessageContent, MessageError, MessageId, MessageRole, ModelCallMetadata, NewMessage,
    NewSession, SearchQuery, SessionFilter, SessionId, SessionPatch, UsageRecord,
};
use assistd_domain::{Error, UserId};
use assistd_store::{ChatRepository, NewUser, Store, UsageDelta};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::json;

fn is_sqlite(store: &Store) -> bool {
    store.connection().get_database_backend() == DatabaseBackend::Sqlite
}

/// A fixed instant plus `secs` seconds (with a sub-millisecond part, to check precision).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

async fn new_user(store: &Store) -> UserId {
    store.users().create(NewUser::default()).await.unwrap().id
}

async fn new_session(chat: &ChatRepository, user: UserId, title: &str, now: i64) -> ChatSession {
    chat.create_session(
        user,
        &NewSession {
            title: title.into(),
            ..NewSession::default()
        },
        at(now),
    )
    .await
    .unwrap()
}

fn text(role: MessageRole, text: &str) -> NewMessage {
    NewMessage {
        role,
        content: MessageContent::Text(text.into()),
        exchange_id: None,
        parts: None,
        metadata: None,
    }
}

fn function_call(text: &str) -> NewMessage {
    NewMessage {
        role: MessageRole::FunctionCall,
        content: MessageContent::FunctionCall {
            call_id: "call-1".into(),
            name: "search_history".into(),
            args: json!({ "query": text }),
        },
        exchange_id: None,
        parts: Some(json!([{ "functionCall": { "name": "search_history" } }])),
        metadata: Some(ModelCallMetadata {
            model: "gemini-2.5-flash".into(),
            prompt_tokens: 10,
            output_tokens: 5,
            total_tokens: 15,
            ..ModelCallMetadata::default()
        }),
    }
}

fn function_result(text: &str) -> NewMessage {
    NewMessage {
        role: MessageRole::FunctionResult,
        content: MessageContent::FunctionResult {
            call_id: "call-1".into(),
            name: "search_history".into(),
            response: json!({ "found": text }),
            failed: true,
        },
        exchange_id: None,
        parts: None,
        metadata: None,
    }
}

/// A model reply with every metadata field set.
fn reply(exchange: Option<MessageId>, text: &str) -> NewMessage {
    NewMessage {
        role: MessageRole::Model,
        content: MessageContent::Text(text.into()),
        exchange_id: exchange,
        parts: Some(json!([{ "text": text, "thoughtSignature": "c2ln" }])),
        metadata: Some(ModelCallMetadata {
            model: "gemini-2.5-pro".into(),
            prompt_tokens: 100,
            output_tokens: 40,
            total_tokens: 140,
            finish_reason: Some(FinishReason::Incomplete),
            latency_ms: Some(1234),
            first_token_ms: Some(321),
            error: Some(MessageError {
                reason: "PROVIDER_STREAM_INTERRUPTED".into(),
                message: "the stream broke off".into(),
            }),
        }),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: assistd_domain::Result<T>, expected: &str) {
    match result {
        Err(Error::NotFound { resource, .. }) => assert_eq!(resource, expected),
        other => panic!("expected NOT_FOUND {expected}, got {other:?}"),
    }
}

fn sequences(messages: &[ChatMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.sequence).collect()
}

fn query(q: &str) -> SearchQuery {
    q.parse().unwrap()
}

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

#[tokio::test]
async fn sessions_are_created_changed_listed_and_deleted() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let created = chat
        .create_session(
            user,
            &NewSession {
                title: String::new(),
                system_instruction: "Be brief.".into(),
                model: "gemini-2.5-flash".into(),
            },
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(created.created_at, at(0));
    assert_eq!(created.last_activity_at, at(0));
    assert_eq!(chat.get_session(user, created.id).await.unwrap(), created);

    // A generated title only lands on an untitled session.
    assert!(
        chat.set_generated_title(user, created.id, "Greetings", at(1))
            .await
            .unwrap()
    );
    let titled = chat.get_session(user, created.id).await.unwrap();
    assert_eq!(
        (titled.title.as_str(), titled.title_generated),
        ("Greetings", true)
    );
    assert!(
        !chat
            .set_generated_title(user, created.id, "Other", at(2))
            .await
            .unwrap()
    );

    let patched = chat
        .update_session(
            user,
            created.id,
            &SessionPatch {
                title: Some("Mine".into()),
                pinned: Some(true),
                ..SessionPatch::default()
            },
            at(5),
        )
        .await
        .unwrap();
    assert_eq!(patched.title, "Mine");
    assert!(!patched.title_generated);
    assert!(patched.pinned);
    assert_eq!(patched.system_instruction, "Be brief.");
    assert_eq!(patched.updated_at, at(5));
    assert_eq!(patched.last_activity_at, at(0));
    assert_eq!(chat.get_session(user, created.id).await.unwrap(), patched);

    chat.delete_session(user, created.id).await.unwrap();
    assert_not_found(chat.get_session(user, created.id).await, "chat session");
    assert_not_found(chat.delete_session(user, created.id).await, "chat session");
}

#[tokio::test]
async fn another_users_ids_are_not_found_everywhere() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let owner = new_user(&store).await;
    let other = new_user(&store).await;
    let session = new_session(&chat, owner, "", 0).await;
    let ExchangeStart::Started(sent) = chat
        .begin_exchange(owner, session.id, "send-1", "hello", at(60), at(1))
        .await
        .unwrap()
    else {
        panic!("expected a new send");
    };
    let memory = chat
        .add_memory(owner, "likes tea", None, at(2))
        .await
        .unwrap();
    let s = session.id;

    assert_not_found(chat.get_session(other, s).await, "chat session");
    assert_not_found(
        chat.update_session(other, s, &SessionPatch::default(), at(3))
            .await,
        "chat session",
    );
    assert_not_found(
        chat.set_generated_title(other, s, "x", at(3)).await,
        "chat session",
    );
    assert_not_found(chat.delete_session(other, s).await, "chat session");
    assert_not_found(
        chat.begin_exchange(other, s, "send-2", "hi", at(60), at(3))
            .await,
        "chat session",
    );
    assert_not_found(
        chat.append_messages(other, s, vec![text(MessageRole::Model, "x")], None, at(3))
            .await,
        "chat session",
    );
    assert_not_found(
        chat.append_messages(other, s, vec![], None, at(3)).await,
        "chat session",
    );
    assert_not_found(
        chat.list_messages(other, s, true, None, 10).await,
        "chat session",
    );
    assert_not_found(chat.recent_messages(other, s, 10).await, "chat session");
    assert_not_found(
        chat.finish_exchange(other, sent.id, ExchangeState::Done)
            .await,
        "message",
    );
    assert_not_found(chat.exchange_messages(other, sent.id).await, "message");
    assert_not_found(chat.delete_memory(other, memory.id).await, "memory");
    assert_not_found(
        chat.add_memory(other, "steals", Some(s), at(3)).await,
        "chat session",
    );
    assert!(
        chat.list_sessions(other, SessionFilter::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        chat.list_memories(other, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        chat.search_messages(other, &query("hello"), None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A client message id is per user: the other user's send with the same id is their own.
    let theirs = new_session(&chat, other, "", 4).await;
    assert!(matches!(
        chat.begin_exchange(other, theirs.id, "send-1", "hello", at(60), at(5))
            .await
            .unwrap(),
        ExchangeStart::Started(_)
    ));
    // Unknown ids alike.
    assert_not_found(
        chat.get_session(owner, SessionId::new()).await,
        "chat session",
    );
    assert_not_found(chat.delete_memory(owner, MemoryId::new()).await, "memory");
    assert_not_found(
        chat.exchange_messages(owner, MessageId::new()).await,
        "message",
    );
    // Nothing of the owner's changed.
    assert_eq!(chat.get_session(owner, s).await.unwrap().message_count, 1);
    assert_eq!(chat.count_memories(owner).await.unwrap(), 1);
}

#[tokio::test]
async fn session_lists_page_by_activity_and_filter() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let mut sessions = Vec::new();
    // Pairs share an activity time, so ties are broken by id.
    for i in 0..7 {
        sessions.push(new_session(&chat, user, &format!("s{i}"), i / 2).await);
    }
    // Activity moves the session to the front.
    chat.append_messages(
        user,
        sessions[0].id,
        vec![text(MessageRole::System, "x")],
        None,
        at(100),
    )
    .await
    .unwrap();
    // Newest activity first; ties (same second) by id descending, which is creation order
    // reversed for UUIDv7 ids.
    let mut expected_all = vec![sessions[0].id];
    expected_all.extend(sessions[1..].iter().rev().map(|s| s.id));

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = chat
            .list_sessions(user, SessionFilter::default(), after, 3)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|s| (s.last_activity_at, s.id));
        seen.extend(page.iter().map(|s| s.id));
    }
    assert_eq!(seen, expected_all);

    chat.update_session(
        user,
        sessions[2].id,
        &SessionPatch {
            archived: Some(true),
            ..SessionPatch::default()
        },
        at(101),
    )
    .await
    .unwrap();
    chat.update_session(
        user,
        sessions[3].id,
        &SessionPatch {
            pinned: Some(true),
            ..SessionPatch::default()
        },
        at(101),
    )
    .await
    .unwrap();
    let list = |archived, pinned| {
        let chat = chat.clone();
        async move {
            chat.list_sessions(user, SessionFilter { archived, pinned }, None, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(ArchivedFilter::Only, None).await, vec![sessions[2].id]);
    assert_eq!(list(ArchivedFilter::Exclude, None).await.len(), 6);
    assert_eq!(list(ArchivedFilter::Include, None).await.len(), 7);
    assert_eq!(
        list(ArchivedFilter::Exclude, Some(true)).await,
        vec![sessions[3].id]
    );
    assert_eq!(list(ArchivedFilter::Include, Some(false)).await.len(), 6);
}

#[tokio::test]
async fn messages_round_trip_with_every_field() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let exchange = MessageId::new();
    let appended = chat
        .append_messages(
            user,
            session.id,
            vec![
                text(MessageRole::User, "question"),
                function_call("weather"),
                function_result("sunny"),
                reply(Some(exchange), "answer"),
                text(MessageRole::System, "notice"),
            ],
            None,
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(sequences(&appended), [1, 2, 3, 4, 5]);
    assert!(appended.iter().all(|m| m.created_at == at(10)));
    let listed = chat
        .list_messages(user, session.id, true, None, 10)
        .await
        .unwrap();
    assert_eq!(listed, appended);
    assert_eq!(
        listed[3]
            .metadata
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .reason,
        "PROVIDER_STREAM_INTERRUPTED"
    );
    assert_eq!(listed[3].exchange_id, Some(exchange));
    assert_eq!(listed[1].metadata.as_ref().unwrap().finish_reason, None);
    assert_eq!(listed[0].metadata, None);

    let session = chat.get_session(user, session.id).await.unwrap();
    assert_eq!(session.message_count, 5);
    assert_eq!(session.last_activity_at, at(10));

    // A body that does not fit its role is refused, and nothing is committed.
    let mut wrong = text(MessageRole::FunctionCall, "not a call");
    wrong.exchange_id = None;
    assert!(matches!(
        chat.append_messages(
            user,
            session.id,
            vec![text(MessageRole::User, "ok"), wrong],
            None,
            at(11)
        )
        .await,
        Err(Error::Internal(_))
    ));
    assert_eq!(
        chat.get_session(user, session.id)
            .await
            .unwrap()
            .message_count,
        5
    );

    // Unknown stored values are internal errors, not panics or guesses.
    store
        .connection()
        .execute_unprepared("UPDATE chat_messages SET role = 'robot' WHERE sequence = 5")
        .await
        .unwrap();
    assert!(matches!(
        chat.list_messages(user, session.id, true, None, 10).await,
        Err(Error::Internal(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_consecutive_sequences() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let chat = chat.clone();
        tasks.push(tokio::spawn(async move {
            chat.append_messages(
                user,
                session.id,
                vec![
                    text(MessageRole::User, &format!("q{i}")),
                    function_call("x"),
                    reply(None, &format!("a{i}")),
                ],
                None,
                at(i),
            )
            .await
            .unwrap()
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let batch = task.await.unwrap();
        let first = batch[0].sequence;
        assert_eq!(sequences(&batch), [first, first + 1, first + 2]);
        all.extend(sequences(&batch));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=60).collect::<Vec<_>>());
    let stored = chat
        .list_messages(user, session.id, true, None, 100)
        .await
        .unwrap();
    assert_eq!(sequences(&stored), (1..=60).collect::<Vec<_>>());
    let session = chat.get_session(user, session.id).await.unwrap();
    assert_eq!(session.message_count, 60);
    // The latest activity wins whatever order the writers committed in.
    assert_eq!(session.last_activity_at, at(19));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_sends_with_one_id_start_once() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let chat = chat.clone();
        tasks.push(tokio::spawn(async move {
            chat.begin_exchange(user, session.id, "same-id", "hello", at(300), at(1))
                .await
                .unwrap()
        }));
    }
    let (mut started, mut in_progress) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            ExchangeStart::Started(_) => started += 1,
            ExchangeStart::InProgress => in_progress += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((started, in_progress), (1, 99));
    let messages = chat
        .list_messages(user, session.id, true, None, 200)
        .await
        .unwrap();
    assert_eq!(sequences(&messages), [1]);
    let session = chat.get_session(user, session.id).await.unwrap();
    assert_eq!(session.message_count, 1);
}

#[tokio::test]
async fn resends_find_what_became_of_the_send() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let other_session = new_session(&chat, user, "", 0).await;

    let ExchangeStart::Started(sent) = chat
        .begin_exchange(user, session.id, "c1", "hello", at(60), at(0))
        .await
        .unwrap()
    else {
        panic!("expected a new send");
    };
    assert_eq!(sent.role, MessageRole::User);
    assert_eq!(sent.exchange_id, Some(sent.id));
    assert_eq!(sent.client_message_id.as_deref(), Some("c1"));
    assert_eq!(sent.sequence, 1);

    // A look without a lease: a new id, and a send being answered.
    let peek = |id: &'static str, t: &'static str, now| {
        let chat = chat.clone();
        async move {
            chat.peek_exchange(user, session.id, id, t, at(now))
                .await
                .unwrap()
        }
    };
    assert_eq!(peek("c0", "hello", 0).await, None);
    assert_eq!(
        peek("c1", "hello", 59).await,
        Some(ExchangeStart::InProgress)
    );
    assert_eq!(peek("c1", "other", 59).await, Some(ExchangeStart::Conflict));
    // Lease still held.
    assert_eq!(
        chat.begin_exchange(user, session.id, "c1", "hello", at(90), at(59))
            .await
            .unwrap(),
        ExchangeStart::InProgress
    );
    // Same id, other text or other session.
    for (s, t) in [(session.id, "hello!"), (other_session.id, "hello")] {
        assert_eq!(
            chat.begin_exchange(user, s, "c1", t, at(90), at(1))
                .await
                .unwrap(),
            ExchangeStart::Conflict
        );
    }

    // The server died: once the lease expires another request resumes the send.
    let call = NewMessage {
        exchange_id: Some(sent.id),
        ..function_call("x")
    };
    let partial = chat
        .append_messages(user, session.id, vec![call], None, at(5))
        .await
        .unwrap();
    // Expired: a look leaves the decision to begin_exchange.
    assert_eq!(peek("c1", "hello", 60).await, None);
    let ExchangeStart::Resumed {
        user_message,
        messages,
    } = chat
        .begin_exchange(user, session.id, "c1", "hello", at(120), at(60))
        .await
        .unwrap()
    else {
        panic!("expected the send to be resumed");
    };
    assert_eq!(user_message, sent);
    assert_eq!(messages, partial);
    // ... and holds the new lease.
    assert_eq!(
        chat.begin_exchange(user, session.id, "c1", "hello", at(180), at(100))
            .await
            .unwrap(),
        ExchangeStart::InProgress
    );

    // It fails; a resend resumes at once.
    chat.finish_exchange(user, sent.id, ExchangeState::Failed)
        .await
        .unwrap();
    assert_eq!(peek("c1", "hello", 101).await, None);
    assert!(matches!(
        chat.begin_exchange(user, session.id, "c1", "hello", at(200), at(101))
            .await
            .unwrap(),
        ExchangeStart::Resumed { .. }
    ));

    // It is done; a resend returns the reply without calling the model again.
    let answer = chat
        .append_messages(
            user,
            session.id,
            vec![reply(Some(sent.id), "hi there")],
            None,
            at(102),
        )
        .await
        .unwrap();
    chat.finish_exchange(user, sent.id, ExchangeState::Done)
        .await
        .unwrap();
    let ExchangeStart::Finished {
        user_message,
        messages,
    } = chat
        .begin_exchange(user, session.id, "c1", "hello", at(300), at(500))
        .await
        .unwrap()
    else {
        panic!("expected the finished send");
    };
    assert_eq!(user_message, sent);
    let mut expected = partial.clone();
    expected.extend(answer);
    assert_eq!(messages, expected);
    assert_eq!(
        peek("c1", "hello", 500).await,
        Some(ExchangeStart::Finished {
            user_message: sent.clone(),
            messages: expected.clone()
        })
    );
    assert_eq!(
        chat.exchange_messages(user, sent.id).await.unwrap(),
        expected
    );
    // A message that is no send cannot be finished.
    assert_not_found(
        chat.finish_exchange(user, partial[0].id, ExchangeState::Done)
            .await,
        "message",
    );
    assert!(matches!(
        chat.finish_exchange(user, sent.id, ExchangeState::Running { lease_until: at(1) })
            .await,
        Err(Error::Internal(_))
    ));
    // Only the one USER message was ever stored.
    let all = chat
        .list_messages(user, session.id, true, None, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().filter(|m| m.role == MessageRole::User).count(),
        1
    );
    assert_eq!(sequences(&all), [1, 2, 3]);
}

#[tokio::test]
async fn history_pages_both_ways_from_a_bound() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let batch: Vec<NewMessage> = (1..=10)
        .map(|i| text(MessageRole::User, &format!("m{i}")))
        .collect();
    chat.append_messages(user, session.id, batch, None, at(1))
        .await
        .unwrap();
    let page = |forward, start, limit| {
        let chat = chat.clone();
        async move {
            sequences(
                &chat
                    .list_messages(user, session.id, forward, start, limit)
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(page(true, None, 4).await, [1, 2, 3, 4]);
    assert_eq!(page(true, Some(5), 4).await, [5, 6, 7, 8]);
    assert_eq!(page(true, Some(9), 4).await, [9, 10]);
    assert_eq!(page(true, Some(11), 4).await, Vec::<i64>::new());
    assert_eq!(page(false, None, 4).await, [10, 9, 8, 7]);
    assert_eq!(page(false, Some(6), 4).await, [6, 5, 4, 3]);
    assert_eq!(page(false, Some(2), 4).await, [2, 1]);
    assert_eq!(page(false, Some(0), 4).await, Vec::<i64>::new());
    assert_eq!(
        sequences(&chat.recent_messages(user, session.id, 3).await.unwrap()),
        [8, 9, 10]
    );

    // Walking the whole history page by page meets every message once.
    let mut walked = Vec::new();
    let mut start = None;
    loop {
        let got = page(false, start, 3).await;
        let Some(&last) = got.last() else { break };
        walked.extend(got);
        start = Some(last - 1);
    }
    assert_eq!(walked, (1..=10).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn history_pages_stay_fast_in_a_session_of_a_hundred_thousand_messages() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let db = store.connection();
    let backend = db.get_database_backend();
    let fill = match backend {
        DatabaseBackend::Postgres => {
            "INSERT INTO chat_messages (id, user_id, session_id, sequence, role, text, created_at)
             SELECT gen_random_uuid(), $1, $2, i, 'system', 'filler ' || i, $3
             FROM generate_series(1, 100000) AS i"
        }
        _ => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
             INSERT INTO chat_messages (id, user_id, session_id, sequence, role, text, created_at)
             SELECT randomblob(16), ?, ?, i, 'system', 'filler ' || i, ? FROM n"
        }
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        fill,
        [
            user.as_uuid().into(),
            session.id.as_uuid().into(),
            at(1).into(),
        ],
    ))
    .await
    .unwrap();
    db.execute_unprepared(
        "UPDATE chat_sessions SET last_sequence = 100000, message_count = 100000",
    )
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE").await.unwrap();

    // The page query walks the (session, sequence) index: no sort, no scan.
    let plan_sql = match backend {
        DatabaseBackend::Postgres => {
            "EXPLAIN SELECT * FROM chat_messages WHERE session_id = $1 AND user_id = $2
             AND sequence >= $3 ORDER BY sequence LIMIT 50"
        }
        _ => {
            "EXPLAIN QUERY PLAN SELECT * FROM chat_messages WHERE session_id = ? AND user_id = ?
             AND sequence >= ? ORDER BY sequence LIMIT 50"
        }
    };
    let plan = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            plan_sql,
            [
                session.id.as_uuid().into(),
                user.as_uuid().into(),
                50_000i64.into(),
            ],
        ))
        .await
        .unwrap();
    let plan: Vec<String> = plan
        .iter()
        .map(|row| {
            row.try_get::<String>(
                "",
                if backend == DatabaseBackend::Postgres {
                    "QUERY PLAN"
                } else {
                    "detail"
                },
            )
            .unwrap()
        })
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("idx_chat_messages_session_sequence"),
        "{plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
        "{plan}"
    );

    let started = Instant::now();
    for (forward, start) in [
        (true, Some(50_000)),
        (false, Some(50_000)),
        (false, None),
        (true, Some(99_990)),
    ] {
        let page = chat
            .list_messages(user, session.id, forward, start, 50)
            .await
            .unwrap();
        assert!(!page.is_empty());
    }
    let latest = chat.recent_messages(user, session.id, 20).await.unwrap();
    assert_eq!(latest.last().unwrap().sequence, 100_000);
    // Indexed pages take a millisecond or so; the bound only catches scans and sorts on a
    // busy machine.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The next append continues after the bulk rows.
    let next = chat
        .append_messages(
            user,
            session.id,
            vec![text(MessageRole::User, "more")],
            None,
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(next[0].sequence, 100_001);
}

/// One user's searchable history: (user, model, model, user) messages across two sessions,
/// plus function and system messages that mention the same words.
struct Corpus {
    rust: ChatSession,
    chess: ChatSession,
    question: ChatMessage,
    explanation: ChatMessage,
    chess_question: ChatMessage,
    chess_answer: ChatMessage,
}

async fn corpus(chat: &ChatRepository, user: UserId) -> Corpus {
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

async fn hits(
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

#[tokio::test]
async fn memories_are_kept_listed_found_and_forgotten() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let other = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let tea = chat
        .add_memory(user, "Likes green TEA", None, at(1))
        .await
        .unwrap();
    let coffee = chat
        .add_memory(user, "Hates coffee", Some(session.id), at(2))
        .await
        .unwrap();
    let munich = chat
        .add_memory(user, "Lives ÜBER dem Café in München", None, at(3))
        .await
        .unwrap();
    chat.add_memory(other, "also likes tea", None, at(4))
        .await
        .unwrap();
    assert_eq!(coffee.source_session_id, Some(session.id));
    assert_eq!(coffee.created_at, at(2));

    assert_eq!(
        chat.list_memories(user, None, 10).await.unwrap(),
        vec![munich.clone(), coffee.clone(), tea.clone()]
    );
    let page = chat.list_memories(user, None, 2).await.unwrap();
    let cursor = page.last().map(|m| (m.created_at, m.id));
    assert_eq!(
        chat.list_memories(user, cursor, 2).await.unwrap(),
        vec![tea.clone()]
    );
    assert_eq!(chat.count_memories(user).await.unwrap(), 3);

    let find = |words: &[&str], limit| {
        let chat = chat.clone();
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        async move {
            chat.find_memories(user, &words, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find(&["tea"], 10).await, [tea.id]);
    assert_eq!(find(&["COFFEE", "green"], 10).await, [coffee.id, tea.id]);
    assert_eq!(find(&["über", "münchen"], 10).await, [munich.id]);
    assert_eq!(find(&["es"], 1).await, [munich.id]);
    assert_eq!(find(&["nothing"], 10).await, Vec::<MemoryId>::new());
    assert_eq!(find(&[], 2).await, [munich.id, coffee.id]);
    assert_eq!(find(&["  "], 5).await.len(), 3);

    // The source is forgotten with its session; the memory stays.
    chat.delete_session(user, session.id).await.unwrap();
    let listed = chat.list_memories(user, None, 10).await.unwrap();
    assert_eq!(listed[1].id, coffee.id);
    assert_eq!(listed[1].source_session_id, None);

    chat.delete_memory(user, tea.id).await.unwrap();
    assert_not_found(chat.delete_memory(user, tea.id).await, "memory");
    assert_eq!(chat.count_memories(user).await.unwrap(), 2);
    assert_eq!(chat.count_memories(other).await.unwrap(), 1);
}

#[tokio::test]
async fn usage_adds_up_per_day_and_model() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let other = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let usage = |d, model: &str, tokens| UsageDelta {
        day: day(d),
        model: model.into(),
        requests: 1,
        prompt_tokens: tokens,
        output_tokens: tokens * 2,
        total_tokens: tokens * 3,
    };
    chat.record_usage(user, &usage(1, "flash", 10))
        .await
        .unwrap();
    chat.record_usage(user, &usage(1, "flash", 5))
        .await
        .unwrap();
    chat.append_messages(
        user,
        session.id,
        vec![reply(None, "x")],
        Some(usage(1, "pro", 100)),
        at(1),
    )
    .await
    .unwrap();
    chat.append_messages(user, session.id, vec![], Some(usage(2, "flash", 1)), at(2))
        .await
        .unwrap();
    chat.record_usage(user, &usage(30, "flash", 1000))
        .await
        .unwrap();
    chat.record_usage(other, &usage(1, "flash", 7))
        .await
        .unwrap();

    let record = |d, model: &str, requests, tokens| UsageRecord {
        day: day(d),
        model: model.into(),
        request_count: requests,
        prompt_tokens: tokens,
        output_tokens: tokens * 2,
        total_tokens: tokens * 3,
    };
    assert_eq!(
        chat.usage_between(user, day(1), day(2), None)
            .await
            .unwrap(),
        vec![
            record(1, "flash", 2, 15),
            record(1, "pro", 1, 100),
            record(2, "flash", 1, 1)
        ]
    );
    assert_eq!(
        chat.usage_between(user, day(2), day(30), Some("flash"))
            .await
            .unwrap(),
        vec![record(2, "flash", 1, 1), record(30, "flash", 1, 1000)]
    );
    assert!(
        chat.usage_between(user, day(3), day(29), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        chat.tokens_between(user, day(1), day(1)).await.unwrap(),
        345
    );
    assert_eq!(
        chat.tokens_between(user, day(1), day(30)).await.unwrap(),
        3348
    );
    assert_eq!(chat.tokens_between(user, day(3), day(29)).await.unwrap(), 0);
    assert_eq!(
        chat.tokens_between(other, day(1), day(30)).await.unwrap(),
        21
    );

    // A failed append records no usage.
    assert_not_found(
        chat.append_messages(
            user,
            SessionId::new(),
            vec![],
            Some(usage(1, "flash", 1)),
            at(3),
        )
        .await,
        "chat session",
    );
    assert_eq!(
        chat.tokens_between(user, day(1), day(1)).await.unwrap(),
        345
    );
}

#[tokio::test]
async fn budgets_are_set_and_cleared() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let other = new_user(&store).await;
    let unset = chat.budget(user).await.unwrap();
    assert_eq!((unset.monthly_limit, unset.updated_at), (None, None));

    let set = chat
        .set_budget(store.connection(), user, Some(50_000), at(1))
        .await
        .unwrap();
    assert_eq!(
        (set.monthly_limit, set.updated_at),
        (Some(50_000), Some(at(1)))
    );
    assert_eq!(chat.budget(user).await.unwrap(), set);
    let raised = chat
        .set_budget(store.connection(), user, Some(80_000), at(2))
        .await
        .unwrap();
    assert_eq!(chat.budget(user).await.unwrap(), raised);

    let cleared = chat
        .set_budget(store.connection(), user, None, at(3))
        .await
        .unwrap();
    assert_eq!(
        (cleared.monthly_limit, cleared.updated_at),
        (None, Some(at(3)))
    );
    assert_eq!(chat.budget(user).await.unwrap(), cleared);
    assert_eq!(chat.budget(other).await.unwrap().updated_at, None);

    // A deleted account cannot set one.
    store.users().delete(other).await.unwrap();
    assert!(matches!(
        chat.set_budget(store.connection(), other, Some(1), at(4))
            .await,
        Err(Error::Unauthenticated { .. })
    ));
}

#[tokio::test]
async fn the_chat_migration_rolls_back_and_applies_again() {
    use assistd_migration::{Migrator, MigratorTrait};
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    corpus(&chat, user).await;
    // The sign-in migration came after chat: roll back both.
    Migrator::down(store.connection(), Some(2)).await.unwrap();
    assert!(chat.get_session(user, SessionId::new()).await.is_err());
    store.migrate().await.unwrap();
    let c = corpus(&chat, user).await;
    assert_eq!(
        hits(&chat, user, "borrow", None, None, 10).await,
        [c.chess_answer.id, c.explanation.id, c.question.id]
    );
}
