//! Another user's message and thread ids get the same answer as unknown ones from every mail
//! tool, and no tool lists or reads another user's mail.

use assistd_testkit::gemini::{ScriptedReply, schema_message_ids};
use serde_json::json;

use super::setup::{
    assistant_bodies, generate_bodies, play_models, ready, recent_mail, response_sent, results,
    send, sign_in,
};
use crate::helpers::spawn_gmail_app;

#[tokio::test]
async fn another_users_ids_are_not_found_like_random_ones_for_every_tool() {
    let app = spawn_gmail_app().await;
    let owner = sign_in(&app, "gwen", true).await;
    let theirs = app.gmail.add_message(
        &owner.sub,
        recent_mail(
            "Ana",
            "Private plans",
            "Private plans for Friday. Can you confirm?",
            5,
        ),
    );
    ready(&app, &owner).await;
    let other = sign_in(&app, "hugo", true).await;
    let own = app.gmail.add_message(
        &other.sub,
        recent_mail("Ivo", "Lunch tomorrow?", "Shall we have lunch tomorrow?", 5),
    );
    ready(&app, &other).await;

    // The owner's message needs a reply: the owner is told so.
    play_models(
        &app,
        vec![
            ScriptedReply::function_call("mail_needing_reply", json!({})),
            ScriptedReply::text("Ana's private plans need your reply."),
        ],
        "unused",
    );
    send(&app, &owner, "what needs my reply?").await;
    let owners = response_sent(&app, "mail_needing_reply");
    assert_eq!(owners["untrusted_mail"]["messages"][0]["id"], json!(theirs));
    assert_eq!(owners["count"], json!(1));

    // The other user names the owner's ids to every tool, beside random ones.
    app.app.gemini.clear_requests();
    let random = "0123456789abcdef";
    play_models(
        &app,
        vec![
            ScriptedReply::function_call("read_mail", json!({"message_id": theirs}))
                .with_function_call("read_mail", json!({"message_id": random}))
                .with_function_call(
                    "create_draft",
                    json!({"reply_to_message_id": theirs, "to": ["ana@example.com"], "body": "Yes"}),
                )
                .with_function_call("summarize_thread", json!({"thread_id": theirs}))
                .with_function_call("summarize_thread", json!({"thread_id": random}))
                .with_function_call("mail_needing_reply", json!({})),
            ScriptedReply::text("Not found."),
        ],
        "A summary that must not be written.",
    );
    let sent = send(
        &app,
        &other,
        "read those, summarise and draft a reply to Ana",
    )
    .await;
    let results = results(&sent);
    let names: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "read_mail",
            "read_mail",
            "create_draft",
            "summarize_thread",
            "summarize_thread",
            "mail_needing_reply"
        ]
    );
    for result in &results[..5] {
        assert!(result.1, "{result:?}");
    }
    // Messages: the owner's id answers exactly like a random one, for every tool.
    assert_eq!(results[0].2, results[1].2);
    assert_eq!(results[0].2, results[2].2);
    assert_eq!(
        results[0].2,
        json!({"error": "there is no synced message with that id"})
    );
    // Threads: likewise.
    assert_eq!(results[3].2, results[4].2);
    assert_eq!(
        results[3].2,
        json!({"error": "there is no synced thread with that id"})
    );
    // The other user's needs-reply list holds their own mail only.
    assert!(!results[5].1, "{:?}", results[5].2);
    assert_eq!(results[5].2["message_ids"], json!([own]));
    let listed = response_sent(&app, "mail_needing_reply");
    assert_eq!(listed["untrusted_mail"]["messages"][0]["id"], json!(own));
    assert_eq!(listed["count"], json!(1));

    // The mail AI was asked once, to triage the other user's new message: no summary was
    // written, and nothing of the owner's mail reached any model.
    let inner = assistant_bodies(&app);
    assert_eq!(inner.len(), 1);
    assert_eq!(schema_message_ids(&inner[0]), std::slice::from_ref(&own));
    for body in generate_bodies(&app) {
        assert!(!body.to_string().contains("Private plans"));
    }
    assert!(app.gmail.drafts(&other.sub).is_empty());
    assert!(app.gmail.drafts(&owner.sub).is_empty());
    assert_eq!(app.gmail.send_attempts(), 0);
}
