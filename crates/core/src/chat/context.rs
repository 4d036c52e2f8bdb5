//! The context window: what is sent to the model with each message. The system instruction
//! carries who the user is (language, timezone, current time), the remembered facts and the
//! session's own instruction; the contents carry as many recent turns as fit the budget.
//! Older turns are dropped from the request, never summarised: they stay stored, listable and
//! searchable, and the model can find them with `search_conversations`.

use std::fmt::Write as _;

use assistd_domain::chat::{
    ChatMessage, ChatSession, FinishReason, Memory, MessageContent, MessageId, MessageRole,
};
use assistd_domain::preferences::Preferences;
use assistd_gemini::{Content, FunctionCall, FunctionResponse, Part};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Estimated tokens of a text: about four characters each, plus a little per message.
fn estimate(chars: usize) -> usize {
    chars / 4 + 4
}

fn message_tokens(message: &ChatMessage) -> usize {
    let chars = match &message.content {
        MessageContent::Text(text) => text.len(),
        MessageContent::FunctionCall { args, .. } => args.to_string().len(),
        MessageContent::FunctionResult { response, .. } => response.to_string().len(),
    };
    estimate(chars)
}

/// The system instruction for `session` and the user's preferences and memories at `now`.
pub(crate) fn system_instruction(
    session: &ChatSession,
    preferences: &Preferences,
    memories: &[Memory],
    now: DateTime<Utc>,
) -> String {
    let local = now.with_timezone(&preferences.timezone);
    let mut text = String::new();
    let _ = write!(
        text,
        "You are a personal assistant. Today is {} in the user's timezone {} (UTC{}); the \
         local time is {}.\nThe user's language is {} ({}): answer in it unless the user \
         writes in or asks for another language.\nTools: `remember` saves a lasting fact \
         about the user for every later conversation, `recall` looks facts up, \
         `search_conversations` finds what was said in earlier conversations that is not \
         shown here, `current_time` gives the exact time.",
        local.format("%A, %-d %B %Y"),
        preferences.timezone.name(),
        local.format("%:z"),
        local.format("%H:%M"),
        preferences.language.display_name,
        preferences.language.tag,
    );
    if !memories.is_empty() {
        text.push_str(
            "\n\nFacts you remember about the user from earlier conversations (newest first):",
        );
        for memory in memories {
            let _ = write!(text, "\n- {}", memory.content.replace('\n', " "));
        }
    }
    if !session.system_instruction.trim().is_empty() {
        text.push_str("\n\nInstructions for this conversation:\n");
        text.push_str(&session.system_instruction);
    }
    text
}

/// The messages among `history` that the session got after the exchange `current` began and
/// that are no part of it: other sends', committed while it ran, or before it was resumed
/// (after an outage, or a server that stopped mid-exchange). The model answers the
/// conversation as it stood when the exchange's USER message was sent, plus its own steps.
fn moved_on(history: &[ChatMessage], current: MessageId) -> impl Fn(&ChatMessage) -> bool {
    let began = history
        .iter()
        .find(|message| message.id == current)
        .map(|message| message.sequence);
    move |message: &ChatMessage| {
        began.is_some_and(|began| message.sequence > began)
            && message.exchange_id != Some(current)
            && message.id != current
    }
}

/// The stored history of a session, newest messages last, cut to `budget` estimated tokens:
/// the messages of the exchange `current` are always kept; older turns are dropped whole,
/// starting from the oldest, so that the window begins with a USER message. Messages the
/// session got after `current` began count for nothing ([`contents`] leaves them out).
pub(crate) fn window(history: &[ChatMessage], current: MessageId, budget: usize) -> &[ChatMessage] {
    let later = moved_on(history, current);
    let mut used = 0;
    let mut start = history.len();
    for (index, message) in history.iter().enumerate().rev() {
        if later(message) {
            continue;
        }
        let mandatory = message.exchange_id == Some(current) || message.id == current;
        used += message_tokens(message);
        if used > budget && !mandatory {
            break;
        }
        start = index;
    }
    // Never start inside an exchange: a function result without its call, or a reply without
    // its question, confuses the model (and Gemini refuses a leading function response).
    while start < history.len() && history[start].role != MessageRole::User {
        start += 1;
    }
    &history[start..]
}

/// The Gemini contents for `messages`: consecutive messages of one side merged into one turn,
/// model parts sent back exactly as Gemini wrote them (with their thought signatures).
///
/// An earlier exchange that got no answer — its call failed (an ERROR reply), or Gemini
/// refused the prompt or stopped before any text (an empty SAFETY, CANCELLED or other reply) —
/// is left out whole, its USER message included: sending that text again would have Gemini
/// refuse every later message over it, and a question without its answer would merge into the
/// next user turn. The exchange `current` is always sent, and nothing the session got after
/// it began that is not its own. Server notices are left out.
pub(crate) fn contents(messages: &[ChatMessage], current: MessageId) -> Vec<Content> {
    let later = moved_on(messages, current);
    let unanswered = unanswered_exchanges(messages, current);
    let mut contents: Vec<Content> = Vec::new();
    for message in messages {
        let exchange = message.exchange_id.unwrap_or(message.id);
        if later(message) || unanswered.contains(&exchange) {
            continue;
        }
        let Some((role, parts)) = turn_parts(message) else {
            continue;
        };
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.to_owned()),
                parts,
            }),
        }
    }
    contents
}

/// The exchanges among `messages`, other than `current`, whose last message is not a MODEL
/// reply the model can be shown (see [`turn_parts`]).
fn unanswered_exchanges(
    messages: &[ChatMessage],
    current: MessageId,
) -> std::collections::HashSet<MessageId> {
    let mut last_of: std::collections::HashMap<MessageId, &ChatMessage> =
        std::collections::HashMap::new();
    for message in messages {
        if let Some(exchange) = message.exchange_id {
            last_of.insert(exchange, message);
        }
    }
    last_of
        .into_iter()
        .filter(|(exchange, last)| {
            *exchange != current && !(last.role == MessageRole::Model && turn_parts(last).is_some())
        })
        .map(|(exchange, _)| exchange)
        .collect()
}

/// The role and parts one message contributes, if any.
fn turn_parts(message: &ChatMessage) -> Option<(&'static str, Vec<Part>)> {
    let stored_parts = || -> Option<Vec<Part>> {
        message
            .parts
            .as_ref()
            .and_then(|parts| serde_json::from_value::<Vec<Part>>(parts.clone()).ok())
            .filter(|parts| !parts.is_empty())
    };
    match (&message.role, &message.content) {
        (MessageRole::User, MessageContent::Text(text)) => {
            Some(("user", vec![Part::text(text.clone())]))
        }
        (MessageRole::Model, MessageContent::Text(text)) => {
            let failed = message
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.finish_reason)
                == Some(FinishReason::Error);
            if failed {
                return None;
            }
            let parts = stored_parts().unwrap_or_else(|| vec![Part::text(text.clone())]);
            let has_text = parts.iter().any(|part| {
                !part.is_thought() && part.text.as_deref().is_some_and(|text| !text.is_empty())
            });
            (has_text || parts.iter().any(|part| part.function_call.is_some()))
                .then_some(("model", parts))
        }
        (
            MessageRole::FunctionCall,
            MessageContent::FunctionCall {
                call_id,
                name,
                args,
            },
        ) => {
            let parts = stored_parts().unwrap_or_else(|| {
                vec![Part {
                    function_call: Some(FunctionCall {
                        id: Some(call_id.clone()),
                        name: name.clone(),
                        args: args.clone(),
                    }),
                    ..Part::default()
                }]
            });
            Some(("model", parts))
        }
        (
            MessageRole::FunctionResult,
            MessageContent::FunctionResult {
                call_id,
                name,
                response,
                ..
            },
        ) => Some((
            "user",
            vec![function_response_part(call_id, name, response.clone())],
        )),
        _ => None,
    }
}

/// The part answering a function call. The id is only sent when Gemini gave the call one.
pub(crate) fn function_response_part(call_id: &str, name: &str, response: Value) -> Part {
    Part {
        function_response: Some(FunctionResponse {
            id: (!call_id.starts_with(GENERATED_CALL_ID_PREFIX)).then(|| call_id.to_owned()),
            name: name.to_owned(),
            response,
        }),
        ..Part::default()
    }
}

/// Prefix of call ids the server made up for calls Gemini gave no id.
pub(crate) const GENERATED_CALL_ID_PREFIX: &str = "call-";

#[cfg(test)]
mod tests {
    use super::*;
    use assistd_domain::chat::{ModelCallMetadata, SessionId};
    use serde_json::json;

    fn message(sequence: i64, role: MessageRole, content: MessageContent) -> ChatMessage {
        ChatMessage {
            id: MessageId::new(),
            session_id: SessionId::new(),
            sequence,
            role,
            content,
            client_message_id: None,
            exchange_id: None,
            parts: None,
            metadata: None,
            created_at: Utc::now(),
        }
    }

    fn text(sequence: i64, role: MessageRole, text: &str) -> ChatMessage {
        message(sequence, role, MessageContent::Text(text.to_owned()))
    }

    #[test]
    fn calls_and_results_merge_into_turns_and_parts_go_back_verbatim() {
        let mut call = message(
            3,
            MessageRole::FunctionCall,
            MessageContent::FunctionCall {
                call_id: "c1".into(),
                name: "current_time".into(),
                args: json!({}),
            },
        );
        call.parts = Some(json!([{
            "functionCall": {"id": "c1", "name": "current_time", "args": {}},
            "thoughtSignature": "c2lnbmF0dXJl"
        }]));
        let mut failed = text(6, MessageRole::Model, "");
        failed.metadata = Some(ModelCallMetadata {
            finish_reason: Some(FinishReason::Error),
            ..ModelCallMetadata::default()
        });
        let history = vec![
            text(1, MessageRole::User, "what time is it?"),
            text(2, MessageRole::Model, "Let me check."),
            call,
            message(
                4,
                MessageRole::FunctionResult,
                MessageContent::FunctionResult {
                    call_id: "c1".into(),
                    name: "current_time".into(),
                    response: json!({"time": "10:00"}),
                    failed: false,
                },
            ),
            text(5, MessageRole::Model, "It is ten."),
            failed,
            text(7, MessageRole::User, "thanks"),
        ];
        let contents = contents(&history, MessageId::new());
        let roles: Vec<_> = contents.iter().map(|c| c.role.clone().unwrap()).collect();
        assert_eq!(roles, ["user", "model", "user", "model", "user"]);
        assert_eq!(contents[1].parts.len(), 2);
        assert_eq!(
            contents[1].parts[1].thought_signature.as_deref(),
            Some("c2lnbmF0dXJl")
        );
        let response = contents[2].parts[0].function_response.as_ref().unwrap();
        assert_eq!(response.id.as_deref(), Some("c1"));
    }

    /// A message of the exchange `exchange`.
    fn of(exchange: MessageId, mut message: ChatMessage) -> ChatMessage {
        message.exchange_id = Some(exchange);
        message
    }

    fn ended(mut message: ChatMessage, finish: FinishReason) -> ChatMessage {
        message.metadata = Some(ModelCallMetadata {
            finish_reason: Some(finish),
            ..ModelCallMetadata::default()
        });
        message
    }

    /// A USER message that opens its own exchange.
    fn asked(sequence: i64, question: &str) -> ChatMessage {
        let message = text(sequence, MessageRole::User, question);
        let id = message.id;
        of(id, message)
    }

    #[test]
    fn exchanges_without_an_answer_are_left_out_whole() {
        let blocked = asked(1, "tell me about the blocked topic");
        let blocked_reply = of(
            blocked.id,
            ended(text(2, MessageRole::Model, ""), FinishReason::Safety),
        );
        let answered = asked(3, "What is the capital of France?");
        let answer = of(
            answered.id,
            ended(text(4, MessageRole::Model, "Paris."), FinishReason::Stop),
        );
        let failed = asked(5, "and this one failed");
        let failed_reply = of(
            failed.id,
            ended(text(6, MessageRole::Model, ""), FinishReason::Error),
        );
        // A send that stopped after a tool call and never answered.
        let stalled = asked(7, "look something up");
        let stalled_call = of(
            stalled.id,
            message(
                8,
                MessageRole::FunctionCall,
                MessageContent::FunctionCall {
                    call_id: "c1".into(),
                    name: "recall".into(),
                    args: json!({}),
                },
            ),
        );
        let current = asked(9, "And of Spain?");
        let current_id = current.id;
        let history = vec![
            blocked,
            blocked_reply,
            answered,
            answer,
            failed,
            failed_reply,
            stalled,
            stalled_call,
            current,
        ];
        let contents = contents(&history, current_id);
        let turns: Vec<(String, Vec<String>)> = contents
            .iter()
            .map(|c| {
                (
                    c.role.clone().unwrap(),
                    c.parts.iter().filter_map(|p| p.text.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            turns,
            [
                (
                    "user".to_owned(),
                    vec!["What is the capital of France?".to_owned()]
                ),
                ("model".to_owned(), vec!["Paris.".to_owned()]),
                ("user".to_owned(), vec!["And of Spain?".to_owned()]),
            ]
        );
        // The current exchange is sent even when it has nothing yet.
        let alone = asked(1, "hello");
        let id = alone.id;
        assert_eq!(super::contents(&[alone], id).len(), 1);
    }

    #[test]
    fn the_window_keeps_the_current_exchange_and_starts_at_a_user_message() {
        let long = "x".repeat(4_000);
        let mut history = vec![
            text(1, MessageRole::User, &long),
            text(2, MessageRole::Model, &long),
            text(3, MessageRole::User, "short question"),
            text(4, MessageRole::Model, "short answer"),
            text(5, MessageRole::User, &long),
        ];
        let current = history[4].id;
        history[4].exchange_id = Some(current);
        // Room for the current message and a little more: the short turn fits, the long one
        // does not.
        let window = window(&history, current, 1_100);
        let sequences: Vec<i64> = window.iter().map(|m| m.sequence).collect();
        assert_eq!(sequences, [3, 4, 5]);
        // Even with no room at all the current exchange is sent.
        let window = super::window(&history, current, 0);
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn a_resumed_exchange_ends_the_window_though_the_session_moved_on() {
        let long = "x".repeat(4_000);
        let first = asked(1, "What is the capital of France?");
        let first_answer = of(
            first.id,
            ended(text(2, MessageRole::Model, "Paris."), FinishReason::Stop),
        );
        // The exchange being resumed: its question and the tool round it committed before
        // the database went away.
        let resumed = asked(3, "What time is it?");
        let call = of(
            resumed.id,
            message(
                4,
                MessageRole::FunctionCall,
                MessageContent::FunctionCall {
                    call_id: "c1".into(),
                    name: "current_time".into(),
                    args: json!({}),
                },
            ),
        );
        let result = of(
            resumed.id,
            message(
                5,
                MessageRole::FunctionResult,
                MessageContent::FunctionResult {
                    call_id: "c1".into(),
                    name: "current_time".into(),
                    response: json!({"time": "10:00"}),
                    failed: false,
                },
            ),
        );
        // Meanwhile the session moved on: another send was asked and answered at length.
        let later = asked(6, "And of Spain?");
        let later_answer = of(
            later.id,
            ended(text(7, MessageRole::Model, &long), FinishReason::Stop),
        );
        let current = resumed.id;
        let history = vec![
            first,
            first_answer,
            resumed,
            call,
            result,
            later,
            later_answer,
        ];
        let turns = |budget: usize| -> Vec<(String, Vec<String>)> {
            contents(window(&history, current, budget), current)
                .iter()
                .map(|c| {
                    let parts = c.parts.iter().map(|p| match (&p.text, &p.function_call) {
                        (Some(text), _) => text.clone(),
                        (None, Some(_)) => "call".to_owned(),
                        (None, None) => "result".to_owned(),
                    });
                    (c.role.clone().unwrap(), parts.collect())
                })
                .collect()
        };
        let expected = [
            (
                "user".to_owned(),
                vec!["What is the capital of France?".to_owned()],
            ),
            ("model".to_owned(), vec!["Paris.".to_owned()]),
            ("user".to_owned(), vec!["What time is it?".to_owned()]),
            ("model".to_owned(), vec!["call".to_owned()]),
            ("user".to_owned(), vec!["result".to_owned()]),
        ];
        // With room for everything, the request still ends with the resumed exchange.
        assert_eq!(turns(100_000), expected);
        // The later answer takes no room: the first turn still fits.
        assert_eq!(turns(100), expected);
    }
}
