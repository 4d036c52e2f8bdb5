//! Sessions: created, changed, listed by activity and filter, deleted.

use super::*;

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

/// Many users listing at once (on PostgreSQL their event heads are then read together, in
/// batches): each list made after one's own change shows it, never a page cached before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_lists_each_see_their_callers_last_change() {
    const USERS: usize = 24;
    const ROUNDS: i64 = 8;
    let (store, _dir) = fresh_store().await;
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(new_user(&store).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        let chat = store.chat();
        tasks.spawn(async move {
            let mut created = Vec::new();
            for round in 0..ROUNDS {
                // A page read (and cached) before the change…
                let before = chat
                    .list_sessions(user, SessionFilter::default(), None, 20)
                    .await
                    .unwrap();
                assert_eq!(before.len(), created.len());
                let session = new_session(&chat, user, &format!("r{round}"), round).await;
                created.push(session.id);
                // …is not what a list after it gets.
                let after: Vec<_> = chat
                    .list_sessions(user, SessionFilter::default(), None, 20)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
                let mut expected = created.clone();
                expected.reverse();
                assert_eq!(after, expected, "round {round}");
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
}
