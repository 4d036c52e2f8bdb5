//! A send end to end: unary and streamed replies, a retry after a 5xx, a cancel mid-stream.

use std::time::Duration;

use assistd_core::chat::ExchangeEvent;
use assistd_domain::chat::{FinishReason, MessageRole};
use assistd_testkit::gemini::{ErrorBody, Fault, ScriptedReply};

use crate::harness::{Harness, finish, ok, text};

#[tokio::test]
async fn a_unary_send_commits_the_message_and_the_reply() {
    let h = Harness::new().await;
    h.gemini
        .push_reply(ScriptedReply::text("Hello there").usage(10, 2, 0));

    let events = ok(h.send("m-1", "Hi", false).await);

    assert_eq!(events.len(), 3, "{events:?}");
    let ExchangeEvent::UserMessage(user) = &events[0] else {
        panic!("the user message comes first: {events:?}");
    };
    let ExchangeEvent::ModelMessage(reply) = &events[1] else {
        panic!("then the reply: {events:?}");
    };
    let ExchangeEvent::Completed(summary) = &events[2] else {
        panic!("then the end: {events:?}");
    };
    assert_eq!(text(user), "Hi");
    assert_eq!(text(reply), "Hello there");
    assert_eq!(summary.reply_id, reply.id);
    assert_eq!(summary.finish_reason, FinishReason::Stop);
    assert!(!summary.replayed);
    assert_eq!(summary.usage.model_calls, 1);
    assert_eq!(summary.usage.total_tokens, 12);

    let stored = h.stored().await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].role, MessageRole::User);
    assert_eq!(stored[0].client_message_id.as_deref(), Some("m-1"));
    assert_eq!(stored[1].role, MessageRole::Model);
    assert_eq!(text(&stored[1]), "Hello there");
    assert_eq!(finish(&stored[1]), Some(FinishReason::Stop));
    assert_eq!(h.tokens_today().await, 12);
    let paths: Vec<String> = h.gemini.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().any(|path| path.ends_with(":generateContent")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn a_streamed_send_relays_deltas_then_completes() {
    let h = Harness::new().await;
    h.gemini
        .push_reply(ScriptedReply::chunks(["Hel", "lo", " there"]));

    let events = ok(h.send("m-1", "Hi", true).await);

    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|event| match event {
            ExchangeEvent::TextDelta(delta) => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hel", "lo", " there"]);
    assert!(matches!(events[0], ExchangeEvent::UserMessage(_)));
    assert!(matches!(events[1], ExchangeEvent::TextDelta(_)));
    let n = events.len();
    assert!(
        matches!(&events[n - 2], ExchangeEvent::ModelMessage(m) if text(m) == "Hello there"),
        "{events:?}"
    );
    assert!(matches!(&events[n - 1], ExchangeEvent::Completed(s) if !s.replayed));

    let stored = h.stored().await;
    assert_eq!(stored.len(), 2);
    assert_eq!(text(&stored[1]), "Hello there");
    assert_eq!(finish(&stored[1]), Some(FinishReason::Stop));
    let paths: Vec<String> = h.gemini.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths
            .iter()
            .any(|path| path.ends_with(":streamGenerateContent")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn a_5xx_before_any_text_is_retried() {
    let h = Harness::new().await;
    h.gemini.fail_next(1, ErrorBody::Unavailable);
    h.gemini
        .push_reply(ScriptedReply::text("Second time lucky"));

    let events = ok(h.send("m-1", "Hi", false).await);

    assert!(
        matches!(events.last(), Some(ExchangeEvent::Completed(s)) if s.finish_reason == FinishReason::Stop)
    );
    assert_eq!(h.model_calls(), 2, "one failed call and its retry");
    let stored = h.stored().await;
    assert_eq!(stored.len(), 2, "no error reply for the failed attempt");
    assert_eq!(text(&stored[1]), "Second time lucky");
    assert_eq!(finish(&stored[1]), Some(FinishReason::Stop));
    assert!(stored[1].metadata.as_ref().unwrap().error.is_none());
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let h = Harness::with(|config| config.max_retries = 1).await;
    h.gemini.fail_always(ErrorBody::Unavailable);

    let err = crate::harness::failure(h.send("m-1", "Hi", false).await);

    assert!(
        matches!(err, assistd_domain::Error::Unavailable { .. }),
        "{err:?}"
    );
    assert_eq!(h.model_calls(), 2, "the call and one retry");
    let stored = h.stored().await;
    assert_eq!(stored.len(), 2);
    assert_eq!(finish(&stored[1]), Some(FinishReason::Error));
}

#[tokio::test]
async fn a_cancel_mid_stream_keeps_the_partial_reply() {
    let h = Harness::new().await;
    h.gemini
        .push_reply(ScriptedReply::chunks(["The first part", " and the rest"]));
    // One event, then silence until the client goes away.
    h.gemini.fail_next(1, Fault::StallAfter(1));

    let mut events = h.chat.send(h.user, h.request("m-1", "Hi", true));
    let first = events.recv().await.unwrap().unwrap();
    assert!(matches!(first, ExchangeEvent::UserMessage(_)));
    let delta = events.recv().await.unwrap().unwrap();
    assert_eq!(delta, ExchangeEvent::TextDelta("The first part".into()));
    drop(events);

    assert!(
        h.gemini
            .wait_for_stream_disconnects(1, Duration::from_secs(5))
            .await
            .is_some(),
        "the upstream request is dropped"
    );
    let stored = h.wait_for_messages(2).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(text(&stored[1]), "The first part");
    assert_eq!(finish(&stored[1]), Some(FinishReason::Cancelled));
}
