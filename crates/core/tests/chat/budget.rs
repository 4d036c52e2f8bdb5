//! The monthly token budget: a spent budget refuses sends before anything is stored or the
//! model is called, and the next month lets them through again.

use assistd_core::chat::ExchangeEvent;
use assistd_domain::audit::RequestContext;
use assistd_domain::{Error, ErrorReason};
use assistd_testkit::gemini::ScriptedReply;
use chrono::{Datelike, TimeZone, Utc};

use crate::harness::{Harness, failure, ok};

#[tokio::test]
async fn a_spent_budget_refuses_sends_until_the_next_month() {
    let h = Harness::new().await;
    // The middle of a month, so the test does not depend on today's date.
    let start = Utc.with_ymd_and_hms(2031, 5, 15, 12, 0, 0).unwrap();
    h.clock.set(start);
    h.chat
        .set_token_budget(h.user, &RequestContext::default(), Some(100))
        .await
        .unwrap();
    h.gemini
        .push_reply(ScriptedReply::text("Expensive").usage(120, 30, 0));

    ok(h.send("m-1", "Hi", false).await);
    let budget = h.chat.token_budget(h.user).await.unwrap();
    assert_eq!(budget.used, 150);
    assert!(budget.exhausted());

    let err = failure(h.send("m-2", "Again", false).await);
    let Error::ResourceExhausted {
        reason,
        retry_after,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*reason, ErrorReason::TokenBudgetExhausted);
    let next_month = Utc.with_ymd_and_hms(2031, 6, 1, 0, 0, 0).unwrap();
    assert_eq!(*retry_after, (next_month - start).to_std().ok());
    assert_eq!(
        h.model_calls(),
        1,
        "the refused send did not call the model"
    );
    assert_eq!(h.stored().await.len(), 2, "the refused send stored nothing");

    h.clock.set(next_month + chrono::Duration::hours(1));
    let budget = h.chat.token_budget(h.user).await.unwrap();
    assert_eq!(budget.used, 0);
    assert_eq!(budget.period_start, next_month);
    assert!(!budget.exhausted());
    h.gemini.push_reply(ScriptedReply::text("Fresh month"));
    let events = ok(h.send("m-3", "New month", false).await);

    assert!(matches!(events.last(), Some(ExchangeEvent::Completed(_))));
    assert_eq!(h.model_calls(), 2);
    let stored = h.stored().await;
    assert_eq!(stored.len(), 4);
    assert_eq!(
        stored[2].created_at.month(),
        6,
        "stored at the clock's time"
    );
    let budget = h.chat.token_budget(h.user).await.unwrap();
    assert_eq!(
        budget.used,
        h.tokens_today().await,
        "June's spend is the new send's"
    );
}
