//! Messages: every field round-trips, the sequence allocator under concurrent appends, and
//! history pages both ways, fast in a long session.

use super::*;

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
