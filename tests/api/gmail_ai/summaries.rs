//! SummarizeMessage and SummarizeThread: stored, reused until the thread changes or
//! `refresh`, long threads from their newest messages, another user's ids.

use assistd_testkit::gemini::ScriptedReply;
use tonic::Code;

use super::setup::{
    mail, summarize_message, summarize_thread, summary_json, sync, thread_of, user_with_mail,
};
use crate::helpers::{spawn_gmail_app, spawn_gmail_app_with};

#[tokio::test]
async fn summaries_are_reused_until_the_thread_gets_a_new_message() {
    let app = spawn_gmail_app().await;
    let gemini = &app.app.gemini;
    let (user, ids) = user_with_mail(
        &app,
        "alice",
        vec![mail(
            "Q3 numbers",
            "Can you confirm the Q3 numbers by Friday?",
        )],
        true,
    )
    .await;
    let thread = thread_of(&app, &user, &ids[0]).await;
    app.gmail.add_message(
        &user.sub,
        mail("Re: Q3 numbers", "Reminder: Friday.").thread(thread.clone()),
    );
    sync(&app, &user).await;

    gemini.push_reply(ScriptedReply::text(summary_json(
        "Ana wants the Q3 numbers.",
    )));
    let first = summarize_thread(&app, &user, &thread, false).await.unwrap();
    let summary = first.summary.unwrap();
    assert_eq!(summary.summary, "Ana wants the Q3 numbers.");
    assert_eq!(summary.key_points, ["First point."]);
    assert_eq!(summary.action_items, ["Reply by Friday."]);
    assert_eq!(summary.model, "gemini-2.5-flash");
    assert!(!summary.cached);
    assert_eq!(first.message_count, 2);
    assert_eq!(first.usage.unwrap().model_call_count, 1);
    let calls = gemini.generate_requests().len();

    // Stored: no model call, the same summary, marked cached, zero usage.
    let again = summarize_thread(&app, &user, &thread, false).await.unwrap();
    assert_eq!(gemini.generate_requests().len(), calls);
    let cached = again.summary.unwrap();
    assert!(cached.cached);
    assert_eq!(cached.summary, summary.summary);
    assert_eq!(cached.create_time, summary.create_time);
    assert_eq!(again.message_count, 2);
    assert_eq!(again.usage.unwrap(), Default::default());

    // A new message in the thread: summarised again.
    app.gmail.add_message(
        &user.sub,
        mail("Re: Q3 numbers", "Sent them.").thread(thread.clone()),
    );
    sync(&app, &user).await;
    gemini.push_reply(ScriptedReply::text(summary_json("The numbers were sent.")));
    let after = summarize_thread(&app, &user, &thread, false).await.unwrap();
    assert_eq!(gemini.generate_requests().len(), calls + 1);
    let fresh = after.summary.unwrap();
    assert!(!fresh.cached);
    assert_eq!(fresh.summary, "The numbers were sent.");
    assert_eq!(after.message_count, 3);

    // A message summary: written once, then reused until `refresh`.
    gemini.push_reply(ScriptedReply::text(summary_json("Confirm by Friday.")));
    let message = summarize_message(&app, &user, &ids[0], false)
        .await
        .unwrap();
    assert!(!message.summary.as_ref().unwrap().cached);
    assert_eq!(message.usage.unwrap().model_call_count, 1);
    let reused = summarize_message(&app, &user, &ids[0], false)
        .await
        .unwrap();
    assert!(reused.summary.as_ref().unwrap().cached);
    assert_eq!(reused.summary.unwrap().summary, "Confirm by Friday.");
    assert_eq!(gemini.generate_requests().len(), calls + 2);
    // An answer that is not the JSON asked for becomes the summary's text.
    gemini.push_reply(ScriptedReply::text("Plain words."));
    let refreshed = summarize_message(&app, &user, &ids[0], true).await.unwrap();
    let refreshed = refreshed.summary.unwrap();
    assert!(!refreshed.cached);
    assert_eq!(refreshed.summary, "Plain words.");
    assert!(refreshed.key_points.is_empty());
    assert_eq!(gemini.generate_requests().len(), calls + 3);

    // Every call asked for JSON with a schema, in the user's language (English by default).
    for request in gemini.generate_requests() {
        assert_eq!(
            request["generationConfig"]["responseMimeType"],
            "application/json"
        );
        let instruction = request["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(instruction.contains("English"), "{instruction}");
    }
}

#[tokio::test]
async fn a_long_thread_is_summarised_from_its_newest_messages_that_fit() {
    let app = spawn_gmail_app_with(|config| config.gmail.summary_context_tokens = 1_000).await;
    let gemini = &app.app.gemini;
    let (user, ids) = user_with_mail(
        &app,
        "bob",
        vec![mail(
            "Long thread",
            &format!("oldest {}", "a".repeat(1_500)),
        )],
        true,
    )
    .await;
    let thread = thread_of(&app, &user, &ids[0]).await;
    for i in 1..5 {
        app.gmail.add_message(
            &user.sub,
            mail(
                "Re: Long thread",
                &format!("reply{i} {}", "b".repeat(1_500)),
            )
            .thread(thread.clone()),
        );
    }
    sync(&app, &user).await;
    gemini.push_reply(ScriptedReply::text(summary_json("Long.")));
    let answer = summarize_thread(&app, &user, &thread, false).await.unwrap();
    // 1,000 tokens are about 4,000 characters: two blocks of ~1,700 fit, a third does not.
    assert_eq!(answer.message_count, 2);
    let request = gemini.generate_requests().pop().unwrap();
    let text = request["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert!(text.contains("reply4") && text.contains("reply3"));
    assert!(!text.contains("reply2") && !text.contains("oldest"));
    // Oldest first among those covered.
    assert!(text.find("reply3").unwrap() < text.find("reply4").unwrap());
    let instruction = request["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        instruction.contains("newest 2 of the 5 messages"),
        "{instruction}"
    );
}

#[tokio::test]
async fn another_users_message_and_thread_are_not_found() {
    let app = spawn_gmail_app().await;
    let (alice, _) = user_with_mail(&app, "alice", Vec::new(), true).await;
    let (bob, bob_ids) = user_with_mail(&app, "bob", vec![mail("Bob's", "private")], true).await;
    let bob_thread = thread_of(&app, &bob, &bob_ids[0]).await;
    let calls = app.app.gemini.generate_requests().len();
    for id in [bob_ids[0].as_str(), "18f3c2a1b4d5e6f7"] {
        let status = summarize_message(&app, &alice, id, false)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    for id in [bob_thread.as_str(), "18f3c2a1b4d5e6f7"] {
        let status = summarize_thread(&app, &alice, id, true).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    assert_eq!(app.app.gemini.generate_requests().len(), calls);
    let status = summarize_message(&app, &alice, "../x", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
