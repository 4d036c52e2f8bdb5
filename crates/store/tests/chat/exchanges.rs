//! Idempotent sends: one start under a hundred concurrent sends with one client message
//! id, and what a resend finds in each state of the send.

use super::*;

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
            chat.begin_exchange(user, session.id, &cid("same-id"), "hello", at(300), at(1))
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
        .begin_exchange(user, session.id, &cid("c1"), "hello", at(60), at(0))
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
            chat.peek_exchange(user, session.id, &cid(id), t, at(now))
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
        chat.begin_exchange(user, session.id, &cid("c1"), "hello", at(90), at(59))
            .await
            .unwrap(),
        ExchangeStart::InProgress
    );
    // Same id, other text or other session.
    for (s, t) in [(session.id, "hello!"), (other_session.id, "hello")] {
        assert_eq!(
            chat.begin_exchange(user, s, &cid("c1"), t, at(90), at(1))
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
        .begin_exchange(user, session.id, &cid("c1"), "hello", at(120), at(60))
        .await
        .unwrap()
    else {
        panic!("expected the send to be resumed");
    };
    assert_eq!(user_message, sent);
    assert_eq!(messages, partial);
    // ... and holds the new lease.
    assert_eq!(
        chat.begin_exchange(user, session.id, &cid("c1"), "hello", at(180), at(100))
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
        chat.begin_exchange(user, session.id, &cid("c1"), "hello", at(200), at(101))
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
        .begin_exchange(user, session.id, &cid("c1"), "hello", at(300), at(500))
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
async fn renewing_leases_extends_only_the_listed_sends_still_running() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let (alice, bob) = (new_user(&store).await, new_user(&store).await);
    let start = |user, id: &'static str| {
        let chat = chat.clone();
        async move {
            let session = new_session(&chat, user, "", 0).await;
            let ExchangeStart::Started(sent) = chat
                .begin_exchange(user, session.id, &cid(id), "hello", at(60), at(0))
                .await
                .unwrap()
            else {
                panic!("expected a new send");
            };
            (session, sent)
        }
    };
    let (alice_session, alice_send) = start(alice, "a").await;
    let (bob_session, bob_send) = start(bob, "b").await;
    let (_, failed_send) = start(alice, "f").await;
    let (unlisted_session, _) = start(alice, "u").await;
    chat.finish_exchange(alice, failed_send.id, ExchangeState::Failed)
        .await
        .unwrap();

    assert_eq!(chat.renew_leases(&[], at(500)).await.unwrap(), 0);
    // Two users' running sends and a failed one: only the running two are extended.
    let renewed = chat
        .renew_leases(&[alice_send.id, bob_send.id, failed_send.id], at(500))
        .await
        .unwrap();
    assert_eq!(renewed, 2);
    for (user, session, id) in [(alice, alice_session.id, "a"), (bob, bob_session.id, "b")] {
        assert_eq!(
            chat.peek_exchange(user, session, &cid(id), "hello", at(400))
                .await
                .unwrap(),
            Some(ExchangeStart::InProgress),
            "send {id} keeps its renewed lease"
        );
    }
    // The failed send stays failed: a resend may take it at once.
    let failed_session = failed_send.session_id;
    assert_eq!(
        chat.peek_exchange(alice, failed_session, &cid("f"), "hello", at(1))
            .await
            .unwrap(),
        None
    );
    // A send not listed keeps its first lease, which lapsed at 60.
    assert_eq!(
        chat.peek_exchange(alice, unlisted_session.id, &cid("u"), "hello", at(61))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_reply_and_the_end_of_its_send_commit_together() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let ExchangeStart::Started(sent) = chat
        .begin_exchange(user, session.id, &cid("c1"), "hello", at(60), at(0))
        .await
        .unwrap()
    else {
        panic!("expected a new send");
    };
    let answer = chat
        .append_and_finish(
            user,
            session.id,
            vec![reply(Some(sent.id), "hi there")],
            None,
            Some((sent.id, ExchangeState::Done)),
            at(1),
        )
        .await
        .unwrap();
    // Done at once, lease or not.
    assert_eq!(
        chat.begin_exchange(user, session.id, &cid("c1"), "hello", at(90), at(2))
            .await
            .unwrap(),
        ExchangeStart::Finished {
            user_message: sent.clone(),
            messages: answer,
        }
    );

    // A send that is not the user's is not finished, and its reply is not stored either.
    let other = new_user(&store).await;
    let ExchangeStart::Started(theirs) = chat
        .begin_exchange(user, session.id, &cid("c2"), "again", at(60), at(3))
        .await
        .unwrap()
    else {
        panic!("expected a new send");
    };
    let other_session = new_session(&chat, other, "", 0).await;
    assert_not_found(
        chat.append_and_finish(
            other,
            other_session.id,
            vec![reply(Some(theirs.id), "sneaky")],
            None,
            Some((theirs.id, ExchangeState::Done)),
            at(4),
        )
        .await,
        "message",
    );
    assert!(
        chat.list_messages(other, other_session.id, true, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_send_whose_reply_was_stored_but_not_its_end_is_finished_not_run_again() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let begin = |id: &'static str, lease: i64, now: i64| {
        let chat = chat.clone();
        async move {
            chat.begin_exchange(user, session.id, &cid(id), "hello", at(lease), at(now))
                .await
                .unwrap()
        }
    };
    let ExchangeStart::Started(sent) = begin("c1", 60, 0).await else {
        panic!("expected a new send");
    };
    // The reply went in, then the server stopped before the send was marked done (two
    // separate writes, as servers before this one made them).
    let mut stop = reply(Some(sent.id), "the whole answer");
    if let Some(metadata) = stop.metadata.as_mut() {
        metadata.finish_reason = Some(FinishReason::Stop);
        metadata.error = None;
    }
    let answer = chat
        .append_messages(user, session.id, vec![stop], None, at(5))
        .await
        .unwrap();
    // While the lease holds the send is in progress; once it lapses the resend gets the
    // stored reply instead of a new model call.
    assert_eq!(begin("c1", 120, 30).await, ExchangeStart::InProgress);
    assert_eq!(
        begin("c1", 120, 61).await,
        ExchangeStart::Finished {
            user_message: sent.clone(),
            messages: answer.clone(),
        }
    );
    assert_eq!(
        chat.peek_exchange(user, session.id, &cid("c1"), "hello", at(62))
            .await
            .unwrap(),
        Some(ExchangeStart::Finished {
            user_message: sent,
            messages: answer,
        })
    );

    // A send that stopped after a tool call, or whose reply records a failure, is resumed.
    let ExchangeStart::Started(second) = begin("c2", 60, 0).await else {
        panic!("expected a new send");
    };
    chat.append_messages(
        user,
        session.id,
        vec![NewMessage {
            exchange_id: Some(second.id),
            ..function_call("lookup")
        }],
        None,
        at(5),
    )
    .await
    .unwrap();
    assert!(matches!(
        begin("c2", 200, 61).await,
        ExchangeStart::Resumed { .. }
    ));
    let ExchangeStart::Started(third) = begin("c3", 60, 0).await else {
        panic!("expected a new send");
    };
    let mut failed = reply(Some(third.id), "");
    if let Some(metadata) = failed.metadata.as_mut() {
        metadata.finish_reason = Some(FinishReason::Error);
    }
    chat.append_messages(user, session.id, vec![failed], None, at(5))
        .await
        .unwrap();
    assert!(matches!(
        begin("c3", 200, 61).await,
        ExchangeStart::Resumed { .. }
    ));
}
