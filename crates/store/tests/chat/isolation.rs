//! Another user's ids behave like unknown ones everywhere.

use super::*;

#[tokio::test]
async fn another_users_ids_are_not_found_everywhere() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let owner = new_user(&store).await;
    let other = new_user(&store).await;
    let session = new_session(&chat, owner, "", 0).await;
    let ExchangeStart::Started(sent) = chat
        .begin_exchange(owner, session.id, &cid("send-1"), "hello", at(60), at(1))
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
        chat.begin_exchange(other, s, &cid("send-2"), "hi", at(60), at(3))
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
        chat.begin_exchange(other, theirs.id, &cid("send-1"), "hello", at(60), at(5))
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
