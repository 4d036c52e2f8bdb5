//! The tool loop: the model calls a tool, the server runs it, the model answers with its
//! result, and everything is stored in order.

use assistd_core::chat::ExchangeEvent;
use assistd_domain::Clock as _;
use assistd_domain::chat::{FinishReason, MessageContent, MessageRole};
use assistd_testkit::gemini::ScriptedReply;
use serde_json::json;

use crate::harness::{Harness, finish, ok, text};

#[tokio::test]
async fn the_model_remembers_a_fact_then_replies() {
    let h = Harness::new().await;
    h.gemini.push_reply(ScriptedReply::function_call(
        "remember",
        json!({"fact": "Prefers metric units"}),
    ));
    h.gemini.push_reply(ScriptedReply::text("Noted."));

    let events = ok(h.send("m-1", "I use metric units", false).await);

    let kinds: Vec<&str> = events
        .iter()
        .map(|event| match event {
            ExchangeEvent::UserMessage(_) => "user",
            ExchangeEvent::TextDelta(_) => "delta",
            ExchangeEvent::ModelMessage(_) => "model",
            ExchangeEvent::FunctionCall(_) => "call",
            ExchangeEvent::FunctionResult(_) => "result",
            ExchangeEvent::Completed(_) => "completed",
        })
        .collect();
    assert_eq!(kinds, ["user", "call", "result", "model", "completed"]);
    let ExchangeEvent::Completed(summary) = events.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(summary.usage.model_calls, 2);

    let memories = h.chat.memories(h.user, None, 10).await.unwrap();
    assert_eq!(memories.len(), 1);
    assert_eq!(memories[0].content, "Prefers metric units");
    assert_eq!(memories[0].source_session_id, Some(h.session));

    let stored = h.stored().await;
    let roles: Vec<MessageRole> = stored.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            MessageRole::User,
            MessageRole::FunctionCall,
            MessageRole::FunctionResult,
            MessageRole::Model
        ]
    );
    let MessageContent::FunctionCall { name, call_id, .. } = &stored[1].content else {
        panic!("{:?}", stored[1]);
    };
    assert_eq!(name, "remember");
    let MessageContent::FunctionResult {
        call_id: answered,
        failed,
        ..
    } = &stored[2].content
    else {
        panic!("{:?}", stored[2]);
    };
    assert_eq!(answered, call_id);
    assert!(!failed);
    assert_eq!(text(&stored[3]), "Noted.");
    assert_eq!(finish(&stored[3]), Some(FinishReason::Stop));
    for message in &stored[1..] {
        assert_eq!(message.exchange_id, Some(stored[0].id));
    }

    let requests = h.gemini.generate_requests();
    assert_eq!(requests.len(), 2);
    let last_turn = requests[1]["contents"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last_turn["parts"][0]["functionResponse"]["name"],
        json!("remember")
    );
}

#[tokio::test]
async fn current_time_reads_the_clock_when_it_runs_not_when_the_exchange_began() {
    let h = Harness::new().await;
    let began = h.clock.now();
    let clock = h.clock.clone();
    // The first model call takes ninety seconds (a slow, thinking model); the tool then runs.
    h.gemini.respond_with(move |body| {
        let answered = body["contents"].to_string().contains("functionResponse");
        if answered {
            ScriptedReply::text("It is later than you think.")
        } else {
            clock.advance(chrono::Duration::seconds(90));
            ScriptedReply::function_call("current_time", json!({}))
        }
    });
    ok(h.send("t-1", "what time is it?", false).await);
    let stored = h.stored().await;
    let MessageContent::FunctionResult { response, .. } = &stored[2].content else {
        panic!("{:?}", stored[2]);
    };
    let told = chrono::DateTime::parse_from_rfc3339(response["time"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let expected = began + chrono::Duration::seconds(90);
    // The tool reports whole seconds.
    assert!(
        (told - expected).num_seconds().abs() <= 1,
        "told {told}, the clock said {expected}"
    );
}
