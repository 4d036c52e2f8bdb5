//! Every AI error of the contract as the mail AI tools meet it. The chat's own model call
//! succeeds; then, before the tool's inner model call, the world changes the way it does in
//! production (Google rejects the key, a quota runs out, Gemini is overloaded, the month's
//! budget is spent by the call that just happened). The model is told what happened as the
//! tool's error, the user gets the model's answer (or the chat's own error when the chat's
//! next call meets the same cause), and no secret appears anywhere.

use std::sync::Arc;

use assistd::proto::apikey::v1 as keypb;
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd_testkit::gemini::{
    ErrorBody, GeminiServer, ScriptedReply, TriageAnswer, schema_message_ids, triage_reply,
};
use serde_json::{Value, json};
use tonic::Code;

use super::setup::{
    answers_a_tool, assistant_bodies, chat_bodies, function_results, history, last_turn_responses,
    mail_from_ana, new_session, ready, recent_mail, send_in, set_key, sign_in, summary_json, sync,
    text_of,
};
use crate::apikey::GOOD_KEY;
use crate::helpers::{GmailTestApp, GmailUser, authed, reason, spawn_gmail_app_with};

/// The model's answer after a tool failed.
const FINAL: &str = "I could not do that just now; here is why.";
/// Retries of an outage by the mail AI (the test server's setting).
const MAX_RETRIES: u32 = 2;

/// Plays the models: the chat's first call asks for `tool` with `args`, and while it answers,
/// `meanwhile` runs (what happens between that call and the tool's own model call); a chat
/// call answering a tool gets [`FINAL`]. Mail AI calls that get through are answered whole.
fn script(
    app: &GmailTestApp,
    tool: &'static str,
    args: Value,
    meanwhile: impl Fn(&GeminiServer) + Send + Sync + 'static,
) {
    let peer = Arc::downgrade(&app.app.gemini);
    app.app.gemini.clear_requests();
    app.app.gemini.respond_with(move |request| {
        if request.get("tools").is_none() {
            return if schema_message_ids(request).is_empty() {
                ScriptedReply::text(summary_json("A summary."))
            } else {
                triage_reply(request, TriageAnswer::Valid)
            };
        }
        if answers_a_tool(request) {
            return ScriptedReply::text(FINAL);
        }
        if let Some(peer) = peer.upgrade() {
            meanwhile(&peer);
        }
        ScriptedReply::function_call(tool, args.clone())
    });
}

/// What one failing case left behind.
struct Outcome {
    /// The tool result the chat's model was sent.
    sent_to_model: Value,
    /// The SendMessage answer.
    answer: Result<String, tonic::Status>,
    /// The stored tool result: failed, response.
    stored: (bool, Value),
    /// Everything the user can read of the exchange, and what the model was sent, as text.
    visible: String,
}

/// Sends `text` in a new session of `user` and collects what the tool's failure became.
async fn run(app: &GmailTestApp, user: &GmailUser, tool: &str, text: &str) -> Outcome {
    let session = new_session(app, user).await;
    let answer = send_in(app, user, &session, text).await;
    let chats = chat_bodies(app);
    assert_eq!(
        chats.len(),
        2,
        "the chat's call and the call after the tool"
    );
    let responses = last_turn_responses(&chats[1]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].0, tool);
    let messages = history(app, user, &session).await;
    let stored = function_results(&messages);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, tool);
    let visible = format!(
        "{answer:?} {messages:?} {}",
        app.app
            .gemini
            .generate_requests()
            .iter()
            .map(Value::to_string)
            .collect::<String>()
    );
    Outcome {
        sent_to_model: responses[0].1.clone(),
        answer: answer.map(|sent| text_of(sent.reply.as_ref().unwrap()).to_owned()),
        stored: (stored[0].1, stored[0].2.clone()),
        visible,
    }
}

/// The tool's error as the model got it: the same as stored, failed, naming `reason`.
fn assert_told(outcome: &Outcome, reason: &str, words: &str) -> String {
    let error = outcome.sent_to_model["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {}", outcome.sent_to_model))
        .to_owned();
    assert_eq!(outcome.sent_to_model, json!({"error": error}));
    assert_eq!(outcome.stored, (true, outcome.sent_to_model.clone()));
    assert!(error.contains(&format!("({reason})")), "{error}");
    assert!(error.contains(words), "{error}");
    assert!(!error.contains(GOOD_KEY), "{error}");
    assert!(!outcome.visible.contains(GOOD_KEY));
    error
}

/// A user with a two-message thread and recent untriaged inbox mail, synced, with a key;
/// the thread id.
async fn user_with_mail(app: &GmailTestApp, sub: &str) -> (GmailUser, String) {
    let user = sign_in(app, sub, false).await;
    let (_, thread) = mail_from_ana(app, &user, "Shall we have dinner on Friday at eight?");
    app.gmail.add_message(
        &user.sub,
        recent_mail(
            "Bo",
            "Can you review this today?",
            "The draft is attached.",
            5,
        ),
    );
    ready(app, &user).await;
    (user, thread)
}

/// The two AI tools, with the arguments and user text that call them for `thread`.
fn tools(thread: &str) -> [(&'static str, Value, &'static str); 2] {
    [
        (
            "summarize_thread",
            json!({"thread_id": thread}),
            "summarise the dinner thread",
        ),
        ("mail_needing_reply", json!({}), "what needs my reply?"),
    ]
}

async fn spawn() -> GmailTestApp {
    spawn_gmail_app_with(|config| config.chat.max_retries = MAX_RETRIES).await
}

#[tokio::test]
async fn without_a_key_the_chat_refuses_before_any_tool_runs() {
    let app = spawn().await;
    let user = sign_in(&app, "ada", false).await;
    let (_, thread) = mail_from_ana(&app, &user, "Dinner on Friday?");
    sync(&app, &user).await;
    for (tool, args, text) in tools(&thread) {
        script(&app, tool, args, |_| {});
        let session = new_session(&app, &user).await;
        let status = send_in(&app, &user, &session, text).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(reason(&status), "API_KEY_MISSING");
        assert!(status.message().contains("SetApiKey"), "{status:?}");
        // No model was asked, so no tool ran: nothing but the user's message, if anything.
        assert!(app.app.gemini.generate_requests().is_empty());
        assert!(function_results(&history(&app, &user, &session).await).is_empty());
    }
}

#[tokio::test]
async fn a_rate_limit_on_the_tools_call_is_told_to_the_model() {
    let app = spawn().await;
    let (user, thread) = user_with_mail(&app, "bea").await;
    for (tool, args, text) in tools(&thread) {
        script(&app, tool, args, |peer| {
            peer.fail_next(1, ErrorBody::ResourceExhausted);
        });
        let outcome = run(&app, &user, tool, text).await;
        assert_told(&outcome, "PROVIDER_RATE_LIMITED", "quota is exhausted");
        // A rate limit is not retried; the chat's next call got through.
        assert_eq!(assistant_bodies(&app).len(), 1, "{tool}");
        assert_eq!(outcome.answer.unwrap(), FINAL);
    }
}

#[tokio::test]
async fn an_outage_beyond_the_retries_is_told_to_the_model() {
    let app = spawn().await;
    let (user, thread) = user_with_mail(&app, "cleo").await;
    let calls = usize::try_from(MAX_RETRIES).unwrap() + 1;
    for (tool, args, text) in tools(&thread) {
        script(&app, tool, args, move |peer| {
            peer.fail_next(calls, ErrorBody::Unavailable);
        });
        let outcome = run(&app, &user, tool, text).await;
        assert_told(&outcome, "PROVIDER_UNAVAILABLE", "Gemini is unavailable");
        // The first call and every retry met the outage.
        assert_eq!(assistant_bodies(&app).len(), calls, "{tool}");
        assert_eq!(outcome.answer.unwrap(), FINAL);
    }
}

#[tokio::test]
async fn a_budget_spent_by_the_chats_own_call_stops_the_tools_call() {
    let app = spawn().await;
    let (user, thread) = user_with_mail(&app, "dina").await;
    let mut keys = UserApiKeyServiceClient::new(app.app.channel().await);
    for (tool, args, text) in tools(&thread) {
        // The month's usage so far, plus one token: the chat's first call may start, and
        // spends it.
        let used = keys
            .get_token_budget(authed(keypb::GetTokenBudgetRequest {}, &user.token))
            .await
            .unwrap()
            .into_inner()
            .budget
            .unwrap()
            .used_token_count;
        keys.set_token_budget(authed(
            keypb::SetTokenBudgetRequest {
                monthly_token_limit: used + 1,
            },
            &user.token,
        ))
        .await
        .unwrap();
        script(&app, tool, args, |_| {});
        let outcome = run(&app, &user, tool, text).await;
        assert_told(&outcome, "TOKEN_BUDGET_EXHAUSTED", "budget");
        // Refused before asking Gemini.
        assert!(assistant_bodies(&app).is_empty(), "{tool}");
        assert_eq!(outcome.answer.unwrap(), FINAL);
        keys.clear_token_budget(authed(keypb::ClearTokenBudgetRequest {}, &user.token))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_key_google_rejects_on_the_tools_call_is_marked_invalid() {
    let app = spawn().await;
    let (user, thread) = user_with_mail(&app, "eva").await;
    let mut keys = UserApiKeyServiceClient::new(app.app.channel().await);
    for (tool, args, text) in tools(&thread) {
        // The user deletes the key in Google AI Studio while the chat is answering.
        script(&app, tool, args, |peer| peer.revoke_key(GOOD_KEY));
        let outcome = run(&app, &user, tool, text).await;
        assert_told(&outcome, "API_KEY_INVALID", "rejected your API key");
        assert_eq!(assistant_bodies(&app).len(), 1, "{tool}");
        // The chat's next call meets the same key: the user gets the chat's own error.
        let status = outcome.answer.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(reason(&status), "API_KEY_INVALID");
        assert!(!status.message().contains(GOOD_KEY));
        let key = keys
            .get_api_key(authed(
                keypb::GetApiKeyRequest {
                    provider: keypb::Provider::Gemini.into(),
                },
                &user.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .api_key
            .unwrap();
        assert_eq!(key.status(), keypb::ApiKeyStatus::Invalid);
        // A new key for the next tool.
        set_key(&app, &user).await;
    }
}
