//! Usage adding up per day and model, and monthly budgets set and cleared.

use super::*;

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
