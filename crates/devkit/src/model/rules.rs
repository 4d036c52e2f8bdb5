//! What the local model answers: simple keyword rules over the last turn of a
//! `generateContent` request, deterministic so a screen shows the same reply every time.
//!
//! - After a `functionResponse`: a sentence built from the tool's result.
//! - "remember that X" (not "do you remember that X"): calls `remember` with `fact` X.
//! - "do you remember", "what do you know about me" or the word "recall": calls `recall`, with
//!   the words after "about" (or after "recall") as the query when there are any.
//! - the word "search" or "did we talk about": calls `search_conversations` with the words after
//!   "for" or "about" (the whole message otherwise).
//! - "what time", "what day", "the date" or the word "today": calls `current_time`.
//! - A title request (assistd asks for a title after the first exchange): the first words of
//!   the user's message.
//! - Anything else: a fixed reply quoting the message and listing these rules.
//!
//! A tool is only called when the request declares it; otherwise the fixed reply is given.

use serde_json::{Value, json};

/// The model's next turn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// Text, streamed word by word.
    Text(String),
    /// A call of a declared function.
    Call {
        /// The function's name.
        name: &'static str,
        /// Its arguments, a JSON object.
        args: Value,
    },
}

/// The reply to a `generateContent` request body.
pub(crate) fn reply_to(request: &Value) -> Reply {
    let contents = request["contents"].as_array().cloned().unwrap_or_default();
    let Some(last) = contents.last() else {
        return Reply::Text("Say something and I will answer.".to_owned());
    };
    let parts = last["parts"].as_array().cloned().unwrap_or_default();
    if let Some(response) = parts.iter().find_map(|part| part.get("functionResponse")) {
        return Reply::Text(after_tool(
            response["name"].as_str().unwrap_or_default(),
            &response["response"],
        ));
    }
    let text: String = parts
        .iter()
        .filter_map(|part| part["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let declared = declared_tools(request);
    let call = |name: &'static str, args: Value| {
        declared
            .iter()
            .any(|declared| declared == name)
            .then_some(Reply::Call { name, args })
    };
    rule_for(&text, call).unwrap_or_else(|| Reply::Text(fallback(&text)))
}

/// The tool a message asks for, if the request declares it, or a title.
fn rule_for(text: &str, call: impl Fn(&'static str, Value) -> Option<Reply>) -> Option<Reply> {
    let lower = text.to_lowercase();
    if lower.starts_with("write a title") {
        let user = text.split_once("User:").map_or("", |(_, rest)| {
            rest.split("\n\n").next().unwrap_or_default()
        });
        let title: Vec<&str> = user.split_whitespace().take(5).collect();
        return Some(Reply::Text(if title.is_empty() {
            "New conversation".to_owned()
        } else {
            title
                .join(" ")
                .trim_end_matches(['.', '!', '?', ','])
                .to_owned()
        }));
    }
    if let Some(at) = lower.find("remember that ")
        && !lower[..at].trim_end().ends_with("do you")
    {
        let fact = text[at + "remember that ".len()..]
            .trim()
            .trim_end_matches(['.', '!']);
        if !fact.is_empty() {
            return call("remember", json!({ "fact": capitalise(fact) }));
        }
    }
    if lower.contains("do you remember")
        || lower.contains("what do you know about me")
        || has_word(&lower, "recall")
    {
        let query = words_after(text, &lower, &["about ", "recall "]);
        let args = if query.is_empty() || query.eq_ignore_ascii_case("me") {
            json!({})
        } else {
            json!({ "query": query })
        };
        return call("recall", args);
    }
    if has_word(&lower, "search") || lower.contains("did we talk about") {
        let query = words_after(text, &lower, &["for ", "about "]);
        let query = if query.is_empty() {
            text.trim()
        } else {
            &query
        };
        return call("search_conversations", json!({ "query": query }));
    }
    if ["what time", "what day", "the date"]
        .iter()
        .any(|words| lower.contains(words))
        || has_word(&lower, "today")
    {
        return call("current_time", json!({}));
    }
    None
}

/// The answer once a tool has answered.
fn after_tool(name: &str, result: &Value) -> String {
    if let Some(error) = result.get("error").and_then(Value::as_str) {
        return format!("The {name} tool failed: {error}.");
    }
    match name {
        "remember" => format!(
            "Got it. I will remember: {}.",
            result["remembered"].as_str().unwrap_or("that")
        ),
        "recall" => {
            let facts: Vec<&str> = result["facts"]
                .as_array()
                .map(|facts| facts.iter().filter_map(|f| f["fact"].as_str()).collect())
                .unwrap_or_default();
            if facts.is_empty() {
                "I don't remember anything about that yet.".to_owned()
            } else {
                format!("Here is what I remember: {}.", facts.join("; "))
            }
        }
        "search_conversations" => {
            let snippets: Vec<&str> = result["results"]
                .as_array()
                .map(|hits| hits.iter().filter_map(|h| h["snippet"].as_str()).collect())
                .unwrap_or_default();
            if snippets.is_empty() {
                "I found nothing about that in our earlier conversations.".to_owned()
            } else {
                format!(
                    "I found {} earlier messages. The newest says: \"{}\"",
                    snippets.len(),
                    snippets[0]
                )
            }
        }
        "current_time" => format!(
            "It is {} ({}).",
            result["time"].as_str().unwrap_or("unknown"),
            result["timezone"].as_str().unwrap_or("UTC")
        ),
        other => format!("The {other} tool answered: {result}"),
    }
}

/// The reply when no rule applies.
fn fallback(text: &str) -> String {
    let quoted: String = text.trim().chars().take(200).collect();
    format!(
        "You said: \"{quoted}\". I am assistd's local development model and answer with fixed \
         text. Try \"remember that my cat is Tom\", \"what do you remember about my cat\", \
         \"search for Tom\" or \"what time is it\"."
    )
}

/// The names of the functions the request declares.
fn declared_tools(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["functionDeclarations"].as_array())
        .flatten()
        .filter_map(|declaration| declaration["name"].as_str().map(str::to_owned))
        .collect()
}

/// The words after the first of `markers` found (`lower` is `text` lower-cased), without
/// trailing punctuation.
fn words_after(text: &str, lower: &str, markers: &[&str]) -> String {
    markers
        .iter()
        .find_map(|marker| lower.find(marker).map(|at| at + marker.len()))
        .and_then(|at| text.get(at..))
        .unwrap_or_default()
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .to_owned()
}

/// Whether `word` occurs in `text` as a whole word ("search", not "research").
fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|candidate| candidate == word)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Value {
        json!({
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "tools": [{"functionDeclarations": [
                {"name": "remember"}, {"name": "recall"},
                {"name": "search_conversations"}, {"name": "current_time"},
            ]}],
        })
    }

    #[test]
    fn keywords_pick_the_tools() {
        assert_eq!(
            reply_to(&request("Please remember that my cat is Tom.")),
            Reply::Call {
                name: "remember",
                args: json!({"fact": "My cat is Tom"})
            }
        );
        assert_eq!(
            reply_to(&request("What do you remember about my cat?")),
            Reply::Call {
                name: "recall",
                args: json!({"query": "my cat"})
            }
        );
        assert_eq!(
            reply_to(&request("Do you remember that trip?")),
            Reply::Call {
                name: "recall",
                args: json!({})
            }
        );
        assert_eq!(
            reply_to(&request("Search for Tom")),
            Reply::Call {
                name: "search_conversations",
                args: json!({"query": "Tom"})
            }
        );
        assert_eq!(
            reply_to(&request("What time is it?")),
            Reply::Call {
                name: "current_time",
                args: json!({})
            }
        );
    }

    #[test]
    fn keywords_are_whole_words() {
        assert!(matches!(
            reply_to(&request("I do research on cats")),
            Reply::Text(text) if text.starts_with("You said")
        ));
    }

    #[test]
    fn undeclared_tools_are_not_called() {
        let mut body = request("remember that I like tea");
        body["tools"] = json!([]);
        assert!(matches!(reply_to(&body), Reply::Text(text) if text.starts_with("You said")));
    }

    #[test]
    fn a_tool_result_is_answered_in_words() {
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "remember that my cat is Tom"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "remember", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {
                "name": "remember", "response": {"remembered": "My cat is Tom"}}}]},
        ]});
        assert_eq!(
            reply_to(&body),
            Reply::Text("Got it. I will remember: My cat is Tom.".to_owned())
        );
    }

    #[test]
    fn a_title_is_the_first_words() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text":
            "Write a title of at most six words for the conversation that starts below.\n\nUser: Plan a trip to Rome next week please\n\nAssistant: Sure."}]}]});
        assert_eq!(
            reply_to(&body),
            Reply::Text("Plan a trip to Rome".to_owned())
        );
    }
}
