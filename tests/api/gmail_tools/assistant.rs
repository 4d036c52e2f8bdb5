//! `mail_needing_reply` and `summarize_thread`: the AI over the synced mail as chat tools.

use std::collections::BTreeSet;

use assistd_testkit::gemini::{
    ScriptedReply, TriageAnswer, asks_for_json, schema_message_ids, triage_reply,
};
use assistd_testkit::gmail::NewMessage;
use serde_json::{Value, json};

use super::setup::{
    answers_a_tool, assert_not_in_system, assistant_bodies, chat_bodies, generate_bodies,
    last_turn_responses, mail_from_ana, play_models, ready, recent_mail, recorded_calls,
    response_sent, results, send, sign_in, sync,
};
use crate::helpers::{GmailTestApp, spawn_gmail_app, spawn_gmail_app_with};

/// The chat's model asks for `mail_needing_reply`, then answers naming the subject of every
/// message the tool returned; the mail AI triages every batch whole.
fn model_that_names_what_needs_a_reply(app: &GmailTestApp) {
    app.app.gemini.respond_with(|request| {
        if request.get("tools").is_none() {
            return triage_reply(request, TriageAnswer::Valid);
        }
        if !answers_a_tool(request) {
            return ScriptedReply::function_call("mail_needing_reply", json!({}));
        }
        let subjects: Vec<String> = last_turn_responses(request)
            .iter()
            .flat_map(|(_, response)| {
                response["untrusted_mail"]["messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|message| message["subject"].as_str().unwrap_or_default().to_owned())
            .collect();
        ScriptedReply::text(format!("These need your reply: {}.", subjects.join("; ")))
    });
}

/// The message ids the triage calls so far marked as needing a reply (the peer's valid
/// triage marks those at even positions of their batch), and every id triaged.
fn marked_by_triage(app: &GmailTestApp) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut needing = BTreeSet::new();
    let mut triaged = BTreeSet::new();
    for request in generate_bodies(app)
        .iter()
        .filter(|request| asks_for_json(request))
    {
        for (position, id) in schema_message_ids(request).into_iter().enumerate() {
            if position % 2 == 0 {
                needing.insert(id.clone());
            }
            triaged.insert(id);
        }
    }
    (needing, triaged)
}

/// The ids of the messages in a `mail_needing_reply` result the model got.
fn listed_ids(response: &Value) -> Vec<String> {
    response["untrusted_mail"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn what_needs_my_reply_names_exactly_the_messages_triage_marked() {
    let app = spawn_gmail_app_with(|config| config.gmail.triage_batch_size = 3).await;
    let user = sign_in(&app, "nora", false).await;
    let senders = ["Ana", "Bo", "Cai", "Dee", "Eli", "Fay", "Gus"];
    let mut subjects = std::collections::HashMap::new();
    for (index, sender) in senders.iter().enumerate() {
        let subject = format!("Question {index} from {sender}");
        let minutes_ago = 80 - 10 * i64::try_from(index).unwrap();
        let id = app.gmail.add_message(
            &user.sub,
            recent_mail(sender, &subject, "Can you tell me by Friday?", minutes_ago),
        );
        subjects.insert(id, subject);
    }
    // A month old: outside the window the tool triages on its own.
    let old = app.gmail.add_message(
        &user.sub,
        recent_mail("Old", "An old question", "Still there?", 60 * 24 * 30),
    );
    ready(&app, &user).await;
    model_that_names_what_needs_a_reply(&app);

    let sent = send(&app, &user, "what needs my reply?").await;

    // ⌈7 / 3⌉ triage calls, counted at the peer and in the user's usage (with the chat's two).
    assert_eq!(app.app.gemini.triage_call_count(), 3);
    assert_eq!(chat_bodies(&app).len(), 2);
    assert_eq!(recorded_calls(&app, &user).await, 5);
    let (needing, triaged) = marked_by_triage(&app);
    assert_eq!(triaged.len(), 7);
    assert!(!triaged.contains(&old));
    assert_eq!(needing.len(), 5, "{needing:?}");

    // The model got exactly those, wrapped as untrusted data, most urgent first.
    let response = response_sent(&app, "mail_needing_reply");
    assert!(
        response["data_notice"]
            .as_str()
            .unwrap()
            .contains("UNTRUSTED")
    );
    let listed = listed_ids(&response);
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), needing);
    assert_eq!(listed.len(), needing.len());
    assert_eq!(response["count"], json!(5));
    assert_eq!(response["newly_triaged"], json!(7));
    assert!(response.get("not_triaged").is_none());
    let rank = |priority: &str| {
        ["urgent", "high", "normal", "low"]
            .iter()
            .position(|p| *p == priority)
            .unwrap()
    };
    let messages = response["untrusted_mail"]["messages"].as_array().unwrap();
    let ranks: Vec<usize> = messages
        .iter()
        .map(|m| rank(m["priority"].as_str().unwrap()))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    for message in messages {
        let id = message["id"].as_str().unwrap();
        assert_eq!(message["thread_id"], json!(id));
        assert_eq!(message["subject"], json!(subjects[id]));
        assert_eq!(message["gist"], json!(format!("Gist of {id}")));
        assert!(
            message["from"]["address"]
                .as_str()
                .unwrap()
                .ends_with("@example.com")
        );
        assert!(message["date"].as_str().unwrap().len() >= 20, "{message}");
    }

    // The reply names them, and only them.
    let reply = super::setup::text_of(sent.reply.as_ref().unwrap());
    for (id, subject) in &subjects {
        assert_eq!(
            reply.contains(subject.as_str()),
            needing.contains(id),
            "{reply}"
        );
    }
    // The history keeps the ids, not the mail.
    let results = results(&sent);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "mail_needing_reply");
    assert!(!results[0].1);
    assert_eq!(results[0].2["message_ids"], json!(listed));
    assert!(!results[0].2.to_string().contains("Question"));
    assert!(!results[0].2.to_string().contains("Gist"));
    assert_not_in_system(&app, &["Question", "Gist of"]);

    // Asked again: the stored triage answers, no triage call.
    app.app.gemini.clear_requests();
    let again = send(&app, &user, "what needs my reply now?").await;
    assert_eq!(app.app.gemini.triage_call_count(), 0);
    assert_eq!(
        listed_ids(&response_sent(&app, "mail_needing_reply")),
        listed
    );
    assert_eq!(
        response_sent(&app, "mail_needing_reply")["newly_triaged"],
        json!(0)
    );
    assert!(!results_failed(&again));

    // A new message arrives: only it is triaged, and it is listed.
    let new = app.gmail.add_message(
        &user.sub,
        recent_mail("Hal", "Question 7 from Hal", "Can we talk today?", 1),
    );
    sync(&app, &user).await;
    app.app.gemini.clear_requests();
    send(&app, &user, "and now?").await;
    assert_eq!(app.app.gemini.triage_call_count(), 1);
    assert_eq!(
        schema_message_ids(&assistant_bodies(&app)[0]),
        std::slice::from_ref(&new)
    );
    let now_listed = listed_ids(&response_sent(&app, "mail_needing_reply"));
    assert!(now_listed.contains(&new), "{now_listed:?}");
    assert_eq!(now_listed.len(), 6);
}

fn results_failed(sent: &assistd::proto::chat::v1::SendMessageResponse) -> bool {
    results(sent).iter().any(|result| result.1)
}

#[tokio::test]
async fn summarize_thread_reaches_the_model_as_untrusted_data_and_is_reused() {
    let app = spawn_gmail_app().await;
    let user = sign_in(&app, "olga", false).await;
    let (_, thread) = mail_from_ana(&app, &user, "Shall we have dinner on Friday at eight?");
    app.gmail.add_message(
        &user.sub,
        NewMessage::text(
            "Re: Dinner on Friday?",
            "Or Saturday, if that suits you better?",
        )
        .thread(thread.clone()),
    );
    ready(&app, &user).await;
    let summary = "Ana invites you to dinner on Friday at eight, or Saturday.";
    let ask = || {
        vec![
            ScriptedReply::function_call("summarize_thread", json!({"thread_id": thread})),
            ScriptedReply::text("Ana invites you to dinner on Friday or Saturday."),
        ]
    };
    play_models(&app, ask(), summary);

    let sent = send(&app, &user, "summarise the dinner thread with Ana").await;
    let results = results(&sent);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "summarize_thread");
    assert!(!results[0].1, "{:?}", results[0].2);
    // The history keeps the thread id only.
    assert_eq!(results[0].2["thread_id"], json!(thread));
    assert!(!results[0].2.to_string().contains("Friday"));

    // One summary call, with no tools and the mail in its user turn only.
    let inner = assistant_bodies(&app);
    assert_eq!(inner.len(), 1);
    assert!(inner[0].get("tools").is_none());
    assert!(inner[0]["contents"].to_string().contains("Or Saturday"));
    assert!(
        !inner[0]["systemInstruction"]
            .to_string()
            .contains("Saturday")
    );

    // The summary reached the chat's model wrapped as untrusted data.
    let response = response_sent(&app, "summarize_thread");
    assert!(
        response["data_notice"]
            .as_str()
            .unwrap()
            .contains("UNTRUSTED")
    );
    let mail = &response["untrusted_mail"];
    assert_eq!(mail["thread_id"], json!(thread));
    assert_eq!(mail["summary"], json!(summary));
    assert_eq!(mail["key_points"], json!(["Dinner on Friday at eight."]));
    assert_eq!(mail["action_items"], json!(["Answer Ana."]));
    assert_eq!(response["covered_messages"], json!(2));
    assert_eq!(response["reused_stored_summary"], json!(false));
    assert_eq!(
        super::setup::text_of(sent.reply.as_ref().unwrap()),
        "Ana invites you to dinner on Friday or Saturday."
    );
    assert_not_in_system(&app, &["dinner on Friday at eight", "Saturday"]);
    assert_eq!(recorded_calls(&app, &user).await, 3);

    // Asked again: the stored summary, no model call besides the chat's own two.
    app.app.gemini.clear_requests();
    play_models(&app, ask(), "A summary that must not be written.");
    let again = send(&app, &user, "summarise the dinner thread again").await;
    assert_eq!(generate_bodies(&app).len(), 2);
    assert!(assistant_bodies(&app).is_empty());
    let reused = response_sent(&app, "summarize_thread");
    assert_eq!(reused["untrusted_mail"]["summary"], json!(summary));
    assert_eq!(reused["reused_stored_summary"], json!(true));
    assert!(!results_failed(&again));
    assert_eq!(recorded_calls(&app, &user).await, 5);
}
