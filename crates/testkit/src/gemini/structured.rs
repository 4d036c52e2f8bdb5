//! Structured answers: what the server says to a generate request that asks for JSON
//! (`generationConfig.responseMimeType: application/json` with a `responseSchema`), shaped
//! for assistd's mail triage. The batch's message ids are read from the schema (the
//! `enum` of its `message_id` property), so the answer names exactly the messages asked
//! about; a test chooses whether it is whole, partial or malformed.

use serde_json::{Value, json};

use super::{GeminiServer, ScriptedReply};

/// How the server answers a triage request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriageAnswer {
    /// One valid result for every message of the batch (see [`triage_item`]).
    Valid,
    /// Valid results for the messages at even positions of the batch; those at odd
    /// positions are missing.
    Partial,
    /// Text that is not JSON at all.
    NotJson,
    /// JSON of the right shape whose items at odd positions have wrong types
    /// (`needs_reply` a string, `priority` a number); those at even positions are valid.
    WrongTypes,
}

/// Categories and priorities valid results cycle through, by position in the batch.
const CATEGORIES: [&str; 4] = ["work", "finance", "personal", "newsletter"];
const PRIORITIES: [&str; 4] = ["urgent", "high", "normal", "low"];

/// The valid result the server gives the message `id` at `position` of its batch: category
/// and priority cycle through `work/urgent`, `finance/high`, `personal/normal`,
/// `newsletter/low`; a reply is needed at even positions; gist `Gist of {id}`, rationale
/// `Priority of {id}`.
#[must_use]
pub fn triage_item(id: &str, position: usize) -> Value {
    json!({
        "message_id": id,
        "category": CATEGORIES[position % 4],
        "priority": PRIORITIES[position % 4],
        "needs_reply": position.is_multiple_of(2),
        "gist": format!("Gist of {id}"),
        "rationale": format!("Priority of {id}"),
    })
}

/// Whether `request` asks for a JSON answer with a schema.
#[must_use]
pub fn asks_for_json(request: &Value) -> bool {
    let config = &request["generationConfig"];
    config["responseMimeType"] == "application/json" && config["responseSchema"].is_object()
}

/// The message ids the request's `responseSchema` allows (the `enum` of a `message_id`
/// property anywhere in it), in order; empty when it names none.
#[must_use]
pub fn schema_message_ids(request: &Value) -> Vec<String> {
    fn find(schema: &Value) -> Option<Vec<String>> {
        match schema {
            Value::Object(object) => {
                if let Some(ids) = object
                    .get("properties")
                    .and_then(|p| p.get("message_id"))
                    .and_then(|p| p.get("enum"))
                    .and_then(Value::as_array)
                {
                    return Some(
                        ids.iter()
                            .filter_map(|id| id.as_str().map(str::to_owned))
                            .collect(),
                    );
                }
                object.values().find_map(find)
            }
            Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    find(&request["generationConfig"]["responseSchema"]).unwrap_or_default()
}

/// The answer to the triage `request` (the ids of its schema) as `answer` says.
#[must_use]
pub fn triage_reply(request: &Value, answer: TriageAnswer) -> ScriptedReply {
    let ids = schema_message_ids(request);
    let items: Vec<Value> = ids
        .iter()
        .enumerate()
        .filter_map(|(position, id)| match answer {
            TriageAnswer::Valid => Some(triage_item(id, position)),
            TriageAnswer::Partial | TriageAnswer::WrongTypes if position.is_multiple_of(2) => {
                Some(triage_item(id, position))
            }
            TriageAnswer::Partial | TriageAnswer::NotJson => None,
            TriageAnswer::WrongTypes => {
                let mut item = triage_item(id, position);
                item["needs_reply"] = json!("yes");
                item["priority"] = json!(3);
                Some(item)
            }
        })
        .collect();
    match answer {
        TriageAnswer::NotJson => ScriptedReply::text("Here is my triage: everything looks fine!"),
        _ => ScriptedReply::text(json!({ "results": items }).to_string()),
    }
}

impl GeminiServer {
    /// Answers every unqueued generate call that asks for JSON naming message ids with
    /// [`triage_reply`] per `answer`; other unqueued calls get [`ScriptedReply::default`].
    /// Replaces the responder.
    pub fn answer_triage(&self, answer: TriageAnswer) {
        self.respond_with(move |request| {
            if asks_for_json(request) && !schema_message_ids(request).is_empty() {
                triage_reply(request, answer)
            } else {
                ScriptedReply::default()
            }
        });
    }

    /// How many generate calls asked for JSON naming message ids (triage calls) so far.
    #[must_use]
    pub fn triage_call_count(&self) -> usize {
        self.generate_requests()
            .iter()
            .filter(|request| asks_for_json(request) && !schema_message_ids(request).is_empty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ids: &[&str]) -> Value {
        json!({
            "contents": [{"role": "user", "parts": [{"text": "mail"}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"results": {
                    "type": "ARRAY",
                    "items": {"type": "OBJECT", "properties": {
                        "message_id": {"type": "STRING", "enum": ids}
                    }}
                }}}
            }
        })
    }

    fn results(reply: &ScriptedReply) -> Vec<Value> {
        let parsed: Value = serde_json::from_str(&reply.full_text()).unwrap();
        parsed["results"].as_array().unwrap().clone()
    }

    #[test]
    fn ids_come_from_the_schema() {
        assert_eq!(schema_message_ids(&request(&["a", "b"])), ["a", "b"]);
        assert!(schema_message_ids(&json!({"contents": []})).is_empty());
        assert!(asks_for_json(&request(&["a"])));
    }

    #[test]
    fn answers_are_whole_partial_or_malformed() {
        let asked = request(&["a", "b", "c"]);
        let valid = results(&triage_reply(&asked, TriageAnswer::Valid));
        assert_eq!(valid.len(), 3);
        assert_eq!(valid[1], triage_item("b", 1));
        let partial = results(&triage_reply(&asked, TriageAnswer::Partial));
        let ids: Vec<&str> = partial
            .iter()
            .map(|i| i["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "c"]);
        let wrong = results(&triage_reply(&asked, TriageAnswer::WrongTypes));
        assert_eq!(wrong.len(), 3);
        assert_eq!(wrong[1]["needs_reply"], "yes");
        assert_eq!(wrong[0], triage_item("a", 0));
        let text = triage_reply(&asked, TriageAnswer::NotJson).full_text();
        assert!(serde_json::from_str::<Value>(&text).is_err());
    }
}
