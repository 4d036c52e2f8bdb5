//! TriageInbox: batches, storage, refresh, partial and malformed answers.

use assistd::proto::gmail::v1 as pb;
use assistd_testkit::gemini::TriageAnswer;

use super::setup::{mail, triage, user_with_mail};
use crate::helpers::{authed, spawn_gmail_app_with};

fn inbox(n: usize) -> Vec<assistd_testkit::gmail::NewMessage> {
    (0..n)
        .map(|i| mail(&format!("Message {i}"), &format!("Body of message {i}.")))
        .collect()
}

#[tokio::test]
async fn fifty_messages_take_one_call_per_batch_and_are_triaged_once() {
    let app = spawn_gmail_app_with(|config| config.gmail.triage_batch_size = 7).await;
    let (user, ids) = user_with_mail(&app, "alice", inbox(50), true).await;
    app.app.gemini.answer_triage(TriageAnswer::Valid);

    let first = triage(&app, &user, 50, false).await.unwrap();
    // ⌈50 / 7⌉ = 8 model calls, counted at the peer.
    assert_eq!(app.app.gemini.triage_call_count(), 8);
    assert_eq!(first.triaged_count, 50);
    let usage = first.usage.unwrap();
    assert_eq!(usage.model_call_count, 8);
    assert!(usage.total_token_count > 0);
    assert_eq!(first.messages.len(), 50);
    assert!(first.messages.iter().all(|m| m.triage.is_some()));
    // Most urgent first, then newest first.
    let ranks: Vec<i32> = first
        .messages
        .iter()
        .map(|m| m.triage.as_ref().unwrap().priority)
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    assert_eq!(
        first.messages[0].triage.as_ref().unwrap().priority(),
        pb::TriagePriority::Urgent
    );
    for message in &first.messages {
        let result = message.triage.as_ref().unwrap();
        assert_eq!(result.message_id, message.id);
        assert_eq!(result.thread_id, message.thread_id);
        assert_eq!(result.gist, format!("Gist of {}", message.id));
        assert_eq!(result.model, "gemini-2.5-flash");
        assert!(message.body_text.is_empty());
    }

    // Stored: a second call makes no model call and returns the same results.
    let again = triage(&app, &user, 50, false).await.unwrap();
    assert_eq!(app.app.gemini.triage_call_count(), 8);
    assert_eq!(again.triaged_count, 0);
    assert_eq!(again.usage.unwrap().model_call_count, 0);
    assert_eq!(again.messages, first.messages);

    // The stored triage shows on listed and read messages.
    let listed = app
        .gmail_client()
        .await
        .list_messages(authed(
            pb::ListMessagesRequest {
                page_size: 100,
                ..Default::default()
            },
            &user.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(listed.len(), 50);
    assert!(listed.iter().all(|m| m.triage.is_some()));
    let read = app
        .gmail_client()
        .await
        .get_message(authed(
            pb::GetMessageRequest {
                message_id: ids[3].clone(),
            },
            &user.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(read.triage.unwrap().gist, format!("Gist of {}", ids[3]));

    // `refresh` triages them all again.
    let refreshed = triage(&app, &user, 50, true).await.unwrap();
    assert_eq!(app.app.gemini.triage_call_count(), 16);
    assert_eq!(refreshed.triaged_count, 50);
}

#[tokio::test]
async fn partial_and_malformed_answers_leave_only_the_affected_messages_untriaged() {
    let app = spawn_gmail_app_with(|config| config.gmail.triage_batch_size = 10).await;
    let (user, _) = user_with_mail(&app, "bob", inbox(6), true).await;

    // Not JSON at all: nothing triaged, and still an answer rather than an error.
    app.app.gemini.answer_triage(TriageAnswer::NotJson);
    let none = triage(&app, &user, 0, false).await.unwrap();
    assert_eq!(none.triaged_count, 0);
    assert_eq!(none.messages.len(), 6);
    assert!(none.messages.iter().all(|m| m.triage.is_none()));

    // Items of the wrong types are skipped; the others are stored.
    app.app.gemini.answer_triage(TriageAnswer::WrongTypes);
    let half = triage(&app, &user, 0, false).await.unwrap();
    assert_eq!(half.triaged_count, 3);
    let untriaged: Vec<&str> = half
        .messages
        .iter()
        .filter(|m| m.triage.is_none())
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(untriaged.len(), 3);
    // Untriaged messages come last.
    assert!(half.messages[3..].iter().all(|m| m.triage.is_none()));

    // Only the untriaged ones go to the model next time; a partial answer leaves some.
    app.app.gemini.clear_requests();
    app.app.gemini.answer_triage(TriageAnswer::Partial);
    let more = triage(&app, &user, 0, false).await.unwrap();
    let asked = app.app.gemini.generate_requests();
    assert_eq!(asked.len(), 1);
    let mut asked_ids = assistd_testkit::gemini::schema_message_ids(&asked[0]);
    asked_ids.sort_unstable();
    let mut expected: Vec<String> = untriaged.iter().map(|id| (*id).to_owned()).collect();
    expected.sort_unstable();
    assert_eq!(asked_ids, expected);
    assert_eq!(more.triaged_count, 2);
    assert_eq!(
        more.messages.iter().filter(|m| m.triage.is_none()).count(),
        1
    );

    // A whole answer finishes the job, with one call for the one message left.
    app.app.gemini.answer_triage(TriageAnswer::Valid);
    let done = triage(&app, &user, 0, false).await.unwrap();
    assert_eq!(done.triaged_count, 1);
    assert!(done.messages.iter().all(|m| m.triage.is_some()));
}

#[tokio::test]
async fn bad_triage_requests_are_named() {
    let app = spawn_gmail_app_with(|_| {}).await;
    let (user, _) = user_with_mail(&app, "carol", Vec::new(), false).await;
    let status = app
        .gmail_client()
        .await
        .triage_inbox(authed(
            pb::TriageInboxRequest {
                max_messages: -1,
                start_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 3_600,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &user.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    use tonic_types::StatusExt as _;
    let fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["max_messages", "start_time"]);
    // Nothing synced: an empty answer, no model call, no key needed.
    let empty = triage(&app, &user, 0, false).await.unwrap();
    assert!(empty.messages.is_empty());
    assert_eq!(app.app.gemini.triage_call_count(), 0);
}
