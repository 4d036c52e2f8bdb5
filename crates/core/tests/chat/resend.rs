//! Sends repeated with the same client id: answered from the stored outcome, refused while the
//! first is still running, taken over once the first one's lease ran out.

use std::time::Duration;

use assistd_core::chat::ExchangeEvent;
use assistd_domain::chat::{FinishReason, MessageRole};
use assistd_domain::{Clock, Error, ErrorReason};
use assistd_testkit::gemini::ScriptedReply;

use crate::harness::{Harness, cid, failure, finish, ok, text};

#[tokio::test]
async fn a_resend_replays_the_stored_outcome_without_a_model_call() {
    let h = Harness::new().await;
    h.gemini.push_reply(ScriptedReply::text("Only once"));
    let first = ok(h.send("m-1", "Hi", false).await);
    let ExchangeEvent::Completed(original) = first.last().unwrap().clone() else {
        panic!("{first:?}");
    };

    let again = ok(h.send("m-1", "Hi", true).await);

    assert_eq!(h.model_calls(), 1, "the resend did not call the model");
    assert_eq!(again.len(), 3, "{again:?}");
    assert!(matches!(&again[0], ExchangeEvent::UserMessage(m) if text(m) == "Hi"));
    assert!(matches!(&again[1], ExchangeEvent::ModelMessage(m) if text(m) == "Only once"));
    let ExchangeEvent::Completed(replayed) = &again[2] else {
        panic!("{again:?}");
    };
    assert!(replayed.replayed);
    assert_eq!(replayed.reply_id, original.reply_id);
    assert_eq!(replayed.usage, original.usage);
    let stored = h.stored().await;
    assert_eq!(stored.len(), 2, "nothing new was stored");
}

#[tokio::test]
async fn a_resend_while_the_first_runs_is_aborted() {
    let h = Harness::new().await;
    h.gemini.push_reply(ScriptedReply::text("Slow answer"));
    h.gemini.set_latency(Duration::from_millis(700));
    let mut first = h.chat.send(h.user, h.request("m-1", "Hi", false));
    assert!(matches!(
        first.recv().await,
        Some(Ok(ExchangeEvent::UserMessage(_)))
    ));

    let err = failure(h.send("m-1", "Hi", false).await);

    let Error::Aborted { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*reason, ErrorReason::MessageInProgress);
    let mut rest = Vec::new();
    while let Some(event) = first.recv().await {
        rest.push(event.unwrap());
    }
    assert!(matches!(rest.last(), Some(ExchangeEvent::Completed(_))));
    assert_eq!(h.model_calls(), 1);
    let stored = h.stored().await;
    assert_eq!(stored.len(), 2, "one user message, one reply: {stored:?}");
    assert_eq!(text(&stored[1]), "Slow answer");
}

#[tokio::test]
async fn an_expired_lease_lets_a_resend_take_the_exchange_over() {
    let h = Harness::new().await;
    // A server began this exchange and stopped before ending it.
    let now = h.clock.now();
    let lease = chrono::Duration::from_std(h.chat.config().exchange_lease).unwrap();
    h.store
        .chat()
        .begin_exchange(h.user, h.session, &cid("m-1"), "Hi", now + lease, now)
        .await
        .unwrap();
    let abandoned = h.stored().await;
    assert_eq!(abandoned.len(), 1);

    let err = failure(h.send("m-1", "Hi", false).await);
    assert!(
        matches!(&err, Error::Aborted { reason, .. } if *reason == ErrorReason::MessageInProgress),
        "while the lease runs: {err:?}"
    );
    assert_eq!(h.model_calls(), 0);

    h.clock.advance(lease + chrono::Duration::seconds(1));
    h.gemini.push_reply(ScriptedReply::text("Picked up"));
    let events = ok(h.send("m-1", "Hi", false).await);

    assert!(matches!(&events[0], ExchangeEvent::UserMessage(m) if m.id == abandoned[0].id));
    assert!(matches!(events.last(), Some(ExchangeEvent::Completed(s)) if !s.replayed));
    assert_eq!(h.model_calls(), 1);
    let stored = h.stored().await;
    assert_eq!(stored.len(), 2, "the user message was not stored twice");
    assert_eq!(stored[0].id, abandoned[0].id);
    assert_eq!(stored[1].role, MessageRole::Model);
    assert_eq!(text(&stored[1]), "Picked up");
    assert_eq!(finish(&stored[1]), Some(FinishReason::Stop));
}
