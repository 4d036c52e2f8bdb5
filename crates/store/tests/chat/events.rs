//! The chat feed's events: every change writes its event, numbered per user without gaps, in
//! the change's own transaction (a change that fails leaves none); replay reads sessions and
//! messages as they are now and leaves out deleted ones; users never share events; pruning by
//! age.

use assistd_store::chat_feed::ChatChange;

use super::*;

/// The user's events after `after`, as `kind:id` strings, and the last number looked at.
async fn events(chat: &ChatRepository, user: UserId, after: i64) -> (Vec<String>, Option<i64>) {
    let (events, scanned) = chat.events_after(user, after, 100).await.unwrap();
    let names = events
        .iter()
        .map(|event| {
            let name = match &event.change {
                ChatChange::SessionCreated(s) => format!("created:{}", s.id),
                ChatChange::SessionUpdated(s) => format!("updated:{}:{}", s.id, s.title),
                ChatChange::SessionDeleted(id) => format!("deleted:{id}"),
                ChatChange::MessageCommitted(m) => format!("message:{}", m.id),
                ChatChange::ExchangeFinished {
                    exchange, failed, ..
                } => format!("finished:{exchange}:{failed}"),
            };
            format!("{}={name}", event.seq)
        })
        .collect();
    (names, scanned)
}

#[tokio::test]
async fn every_change_writes_its_event_numbered_in_order() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    assert_eq!(chat.last_event_seq(user).await.unwrap(), 0);

    let session = new_session(&chat, user, "", 0).await; // 1
    chat.update_session(
        user,
        session.id,
        &SessionPatch {
            title: Some("Trip".into()),
            ..SessionPatch::default()
        },
        at(1),
    )
    .await
    .unwrap(); // 2
    let ExchangeStart::Started(sent) = chat
        .begin_exchange(user, session.id, &cid("c1"), "hello", at(60), at(2))
        .await
        .unwrap()
    else {
        panic!("expected a new send");
    }; // 3
    let replies = chat
        .append_and_finish(
            user,
            session.id,
            vec![reply(Some(sent.id), "hi")],
            None,
            Some((sent.id, ExchangeState::Done)),
            at(3),
        )
        .await
        .unwrap(); // 4, 5
    let ExchangeStart::Started(failing) = chat
        .begin_exchange(user, session.id, &cid("c2"), "again", at(60), at(4))
        .await
        .unwrap()
    else {
        panic!("expected a new send");
    }; // 6
    chat.finish_exchange(user, failing.id, ExchangeState::Failed)
        .await
        .unwrap(); // 7
    let untitled = new_session(&chat, user, "", 5).await; // 8
    assert!(
        chat.set_generated_title(user, untitled.id, "Named", at(6))
            .await
            .unwrap()
    ); // 9
    chat.delete_session(user, untitled.id).await.unwrap(); // 10

    assert_eq!(chat.last_event_seq(user).await.unwrap(), 10);
    let (names, scanned) = events(&chat, user, 0).await;
    assert_eq!(
        names,
        [
            format!("1=created:{}", session.id),
            // Read as it is now: the update carries the current title.
            format!("2=updated:{}:Trip", session.id),
            format!("3=message:{}", sent.id),
            format!("4=message:{}", replies[0].id),
            format!("5=finished:{}:false", sent.id),
            format!("6=message:{}", failing.id),
            format!("7=finished:{}:true", failing.id),
            // 8 and 9 name a session deleted since: left out, its deletion is not.
            format!("10=deleted:{}", untitled.id),
        ]
    );
    assert_eq!(scanned, Some(10));
    assert_eq!(chat.first_event_after(user, 4).await.unwrap(), Some(5));
}

#[tokio::test]
async fn a_change_that_fails_leaves_no_event() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let stranger = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let theirs = new_session(&chat, stranger, "", 0).await;
    let before = chat.last_event_seq(user).await.unwrap();

    // The reply is inserted before the exchange's end fails (no such send): both roll back,
    // and so does the event written between them.
    let err = chat
        .append_and_finish(
            user,
            session.id,
            vec![text(MessageRole::Model, "orphan")],
            None,
            Some((MessageId::new(), ExchangeState::Done)),
            at(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        chat.list_messages(user, session.id, true, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Another user's session: refused like a missing one, with no event for anyone.
    assert!(chat.delete_session(user, theirs.id).await.is_err());
    assert!(
        chat.update_session(user, theirs.id, &SessionPatch::default(), at(2))
            .await
            .is_err()
    );
    assert_eq!(chat.last_event_seq(user).await.unwrap(), before);
    assert_eq!(events(&chat, user, before).await, (Vec::new(), None));
    assert_eq!(chat.last_event_seq(stranger).await.unwrap(), 1);
}

#[tokio::test]
async fn users_are_numbered_apart_and_never_read_each_others_events() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let alice = new_user(&store).await;
    let bob = new_user(&store).await;
    let hers = new_session(&chat, alice, "", 0).await;
    new_session(&chat, alice, "", 1).await;
    let his = new_session(&chat, bob, "", 2).await;
    let (names, _) = events(&chat, bob, 0).await;
    assert_eq!(names, [format!("1=created:{}", his.id)]);
    let (names, _) = events(&chat, alice, 0).await;
    assert_eq!(names.len(), 2);
    assert_eq!(names[0], format!("1=created:{}", hers.id));
}

#[tokio::test]
async fn pruning_deletes_events_older_than_the_cutoff_only() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    new_session(&chat, user, "", 0).await;
    let newer = new_session(&chat, user, "", 100).await;
    let pruned = store.prune_chat_events(at(50)).await.unwrap();
    assert_eq!(pruned, 1);
    let (names, _) = events(&chat, user, 0).await;
    assert_eq!(names, [format!("2=created:{}", newer.id)]);
    // The numbering goes on from the head, not from what is left.
    assert_eq!(chat.last_event_seq(user).await.unwrap(), 2);
    assert_eq!(chat.first_event_after(user, 0).await.unwrap(), Some(2));
}
