//! Writing, reading, relabelling and deleting messages; another user's never show.

use assistd_store::MessageFilter;

use super::*;

#[tokio::test]
async fn storing_a_message_twice_leaves_one_row_and_replaces_its_terms() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let first = message(
        "18c0000000000001",
        "t1",
        &["INBOX", "UNREAD", "INBOX"],
        at(10),
    );
    // Repeated tokens count once.
    upsert(&gmail, user, &first, &[term(1), term(2), term(2), term(3)]).await;
    upsert(&gmail, user, &first, &[term(1), term(2), term(3)]).await;
    assert_eq!(gmail.message_count(user).await.unwrap(), 1);
    assert_eq!(rows_of(&store, "gmail_search_terms", user).await, 3);
    assert_eq!(rows_of(&store, "gmail_message_labels", user).await, 2);

    // Stored again with other words and labels (a resync): the old ones are gone.
    let mut changed = first.clone();
    changed.label_ids = vec!["SENT".to_owned()];
    changed.sealed_body = b"another sealed body".to_vec();
    changed.history_id = u64::MAX;
    upsert(&gmail, user, &changed, &[term(3), term(4)]).await;
    assert_eq!(gmail.message_count(user).await.unwrap(), 1);
    assert_eq!(rows_of(&store, "gmail_search_terms", user).await, 2);
    assert_eq!(rows_of(&store, "gmail_message_labels", user).await, 1);
    let find = |terms: Vec<SearchTerm>, labels: &[&str]| MessageFilter {
        terms,
        label_ids: labels.iter().map(|l| (*l).to_owned()).collect(),
        ..MessageFilter::default()
    };
    assert!(
        gmail
            .list_messages(user, &find(vec![term(1)], &[]), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        gmail
            .list_messages(user, &find(vec![], &["INBOX"]), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        gmail
            .list_messages(user, &find(vec![term(4)], &["SENT"]), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let stored = gmail
        .get_message(user, "18c0000000000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.thread_id, "t1");
    assert_eq!(stored.label_ids, ["SENT"]);
    assert_eq!(stored.internal_date, at(10));
    assert_eq!(stored.size_estimate, 1_234);
    assert_eq!(stored.history_id, u64::MAX);
    assert_eq!(stored.sealed_header, changed.sealed_header);
    assert_eq!(
        stored.sealed_body.as_deref(),
        Some(&b"another sealed body"[..])
    );
    assert_eq!(stored.synced_at, at(1));
}

#[tokio::test]
async fn labels_change_and_deleted_messages_leave_nothing_behind() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    upsert(
        &gmail,
        user,
        &message("m1", "t1", &["INBOX", "UNREAD"], at(1)),
        &[term(1), term(2)],
    )
    .await;
    upsert(
        &gmail,
        user,
        &message("m2", "t1", &["INBOX"], at(2)),
        &[term(2)],
    )
    .await;
    let unread = MessageFilter {
        label_ids: vec!["UNREAD".to_owned()],
        ..MessageFilter::default()
    };
    let ids = |messages: Vec<assistd_store::StoredGmailMessage>| {
        messages
            .into_iter()
            .map(|m| m.message_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(gmail.list_messages(user, &unread, None, 10).await.unwrap()),
        ["m1"]
    );

    // Read: UNREAD removed from m1, added to m2 with a user label.
    assert!(
        gmail
            .update_labels(user, "m1", &["INBOX".to_owned()])
            .await
            .unwrap()
    );
    assert!(
        gmail
            .update_labels(
                user,
                "m2",
                &[
                    "INBOX".to_owned(),
                    "UNREAD".to_owned(),
                    "Label_7".to_owned()
                ]
            )
            .await
            .unwrap()
    );
    assert_eq!(
        ids(gmail.list_messages(user, &unread, None, 10).await.unwrap()),
        ["m2"]
    );
    assert_eq!(
        gmail
            .get_message(user, "m2")
            .await
            .unwrap()
            .unwrap()
            .label_ids,
        ["INBOX", "UNREAD", "Label_7"]
    );
    assert_eq!(rows_of(&store, "gmail_message_labels", user).await, 4);
    assert!(!gmail.update_labels(user, "m9", &[]).await.unwrap());

    assert!(gmail.delete_message(user, "m1").await.unwrap());
    assert!(!gmail.delete_message(user, "m1").await.unwrap());
    assert!(gmail.get_message(user, "m1").await.unwrap().is_none());
    assert_eq!(rows_of(&store, "gmail_search_terms", user).await, 1);
    assert_eq!(rows_of(&store, "gmail_message_labels", user).await, 3);
    assert_eq!(gmail.message_count(user).await.unwrap(), 1);
    let stored = gmail
        .stored_message_ids(user, &["m1".to_owned(), "m2".to_owned(), "m3".to_owned()])
        .await
        .unwrap();
    assert_eq!(stored, ["m2".to_owned()].into_iter().collect());
}

#[tokio::test]
async fn another_users_messages_never_show() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let owner = connected_user(&store).await;
    let other = connected_user(&store).await;
    // The same Gmail id, thread, labels and tokens in both mailboxes.
    upsert(
        &gmail,
        owner,
        &message("m1", "t1", &["INBOX"], at(1)),
        &[term(1)],
    )
    .await;
    upsert(
        &gmail,
        other,
        &message("m1", "t1", &["INBOX"], at(1)),
        &[term(1)],
    )
    .await;
    upsert(
        &gmail,
        owner,
        &message("only-owner", "t1", &["INBOX"], at(2)),
        &[term(1)],
    )
    .await;

    assert!(
        gmail
            .get_message(other, "only-owner")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!gmail.update_labels(other, "only-owner", &[]).await.unwrap());
    assert!(!gmail.delete_message(other, "only-owner").await.unwrap());
    assert!(
        gmail
            .stored_message_ids(other, &["only-owner".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
    let everything = MessageFilter {
        terms: vec![term(1)],
        label_ids: vec!["INBOX".to_owned()],
        thread_id: Some("t1".to_owned()),
        include_bodies: true,
    };
    let seen: Vec<String> = gmail
        .list_messages(other, &everything, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(seen, ["m1"]);
    // The other user's changes leave the owner's copy as it was.
    assert!(gmail.delete_message(other, "m1").await.unwrap());
    assert_eq!(gmail.message_count(owner).await.unwrap(), 2);
    assert_eq!(
        gmail
            .list_messages(owner, &everything, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(rows_of(&store, "gmail_search_terms", owner).await, 2);
}

#[tokio::test]
async fn a_batch_is_stored_whole_and_only_while_connected() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let batch = vec![
        (
            message("m1", "t1", &["INBOX"], at(1)),
            vec![term(1), term(2)],
        ),
        (message("m2", "t2", &["INBOX"], at(2)), vec![term(2)]),
        // The same message again in the batch: the last copy wins, nothing doubles.
        (message("m1", "t1", &["SENT"], at(1)), vec![term(3)]),
    ];
    assert!(gmail.upsert_messages(user, &batch, at(3)).await.unwrap());
    assert_eq!(gmail.message_count(user).await.unwrap(), 2);
    assert_eq!(rows_of(&store, "gmail_search_terms", user).await, 2);
    assert_eq!(rows_of(&store, "gmail_message_labels", user).await, 2);
    assert_eq!(
        gmail
            .get_message(user, "m1")
            .await
            .unwrap()
            .unwrap()
            .label_ids,
        ["SENT"]
    );

    assert!(gmail.disconnect(user, false, at(4)).await.unwrap());
    let late = vec![(message("m3", "t3", &["INBOX"], at(5)), vec![term(4)])];
    assert!(!gmail.upsert_messages(user, &late, at(5)).await.unwrap());
    assert_eq!(gmail.message_count(user).await.unwrap(), 2);
}
