//! Thought signatures: the server signs every function call it makes and, like Gemini 3,
//! refuses a conversation whose model turns come back without them.

use std::hash::{BuildHasher as _, RandomState};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::reply::CallTag;

/// Values Google documents as accepted in place of a real signature (for function calls
/// made by another model or written by hand).
const VALIDATOR_SKIPS: [&str; 2] = [
    "skip_thought_signature_validator",
    "context_engineering_is_the_way_to_go",
];

/// A function call the server made, with the id and `thoughtSignature` it gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCall {
    /// `functionCall.id`.
    pub id: String,
    /// `functionCall.name`.
    pub name: String,
    /// `functionCall.args`.
    pub args: Value,
    /// The part's `thoughtSignature`: base64, different for every call.
    pub signature: String,
}

/// Issues ids and signatures; random-looking, different per server.
#[derive(Debug)]
pub(super) struct Signer {
    seed: u64,
    issued: u64,
}

impl Default for Signer {
    fn default() -> Self {
        Self {
            seed: RandomState::new().hash_one(0x5eed_u64),
            issued: 0,
        }
    }
}

impl Signer {
    /// A fresh id and signature.
    pub(super) fn issue(&mut self) -> CallTag {
        self.issued += 1;
        let mut state = self.seed ^ self.issued.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            state = splitmix64(state);
            state
        };
        // Real signatures are serialized protobuf messages: field 1, then its length.
        let mut bytes = vec![0x0a, 0x2e];
        while bytes.len() < 48 {
            bytes.extend_from_slice(&next().to_le_bytes());
        }
        bytes.truncate(48);
        CallTag {
            id: format!("{:08x}", next() >> 32),
            signature: STANDARD.encode(bytes),
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The first function call part of a model turn in `request.contents` whose
/// `thoughtSignature` is missing or is not the one issued for that call: its name and the
/// position Google reports (the turn's 1-based index in `contents`).
///
/// A call is found among the issued ones by `functionCall.id`, or by name and arguments when
/// the id was dropped; a call this server never made needs some signature (Google cannot
/// check another model's either).
pub(super) fn unsigned_call(request: &Value, issued: &[IssuedCall]) -> Option<(String, usize)> {
    let contents = request.get("contents")?.as_array()?;
    for (index, content) in contents.iter().enumerate() {
        if content.get("role").and_then(Value::as_str) != Some("model") {
            continue;
        }
        let parts = content.get("parts").and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            let Some(call) = part.get("functionCall") else {
                continue;
            };
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
            let signature = part
                .get("thoughtSignature")
                .and_then(Value::as_str)
                .filter(|signature| !signature.is_empty());
            if signature.is_some_and(|signature| VALIDATOR_SKIPS.contains(&signature)) {
                continue;
            }
            let id = call.get("id").and_then(Value::as_str);
            let known: Vec<&IssuedCall> = issued
                .iter()
                .filter(|issued| match id {
                    Some(id) => issued.id == id,
                    None => {
                        issued.name == name
                            && call.get("args").unwrap_or(&Value::Null) == &issued.args
                    }
                })
                .collect();
            let valid = match signature {
                None => false,
                Some(_) if known.is_empty() => true,
                Some(signature) => known.iter().any(|issued| issued.signature == signature),
            };
            if !valid {
                return Some((name.to_owned(), index + 1));
            }
        }
    }
    None
}

/// Gemini 3's message for a function call without its signature.
pub(super) fn missing_signature_message(name: &str, position: usize) -> String {
    format!(
        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {position}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn turn(part: &Value) -> Value {
        json!({"contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [part]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
        ]})
    }

    #[test]
    fn signatures_are_checked_per_issued_call() {
        let mut signer = Signer::default();
        let tag = signer.issue();
        assert_ne!(signer.issue(), tag);
        assert!(tag.signature.starts_with("Ci"), "{}", tag.signature);
        let issued = [IssuedCall {
            id: tag.id.clone(),
            name: "f".to_owned(),
            args: json!({"q": 1}),
            signature: tag.signature.clone(),
        }];
        let call = json!({"id": tag.id, "name": "f", "args": {"q": 1}});
        let echoed = json!({"functionCall": call, "thoughtSignature": tag.signature});
        assert_eq!(unsigned_call(&turn(&echoed), &issued), None);
        let no_id = json!({"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": tag.signature});
        assert_eq!(unsigned_call(&turn(&no_id), &issued), None);

        let stripped = json!({"functionCall": call});
        assert_eq!(
            unsigned_call(&turn(&stripped), &issued),
            Some(("f".to_owned(), 2))
        );
        let forged = json!({"functionCall": call, "thoughtSignature": "Zm9yZ2Vk"});
        assert!(unsigned_call(&turn(&forged), &issued).is_some());
        let skipped =
            json!({"functionCall": call, "thoughtSignature": "skip_thought_signature_validator"});
        assert_eq!(unsigned_call(&turn(&skipped), &issued), None);
        // A call from elsewhere needs a signature, any.
        let foreign = json!({"functionCall": {"name": "g", "args": {}}, "thoughtSignature": "abc"});
        assert_eq!(unsigned_call(&turn(&foreign), &issued), None);
        let foreign = json!({"functionCall": {"name": "g", "args": {}}});
        assert_eq!(
            unsigned_call(&turn(&foreign), &issued),
            Some(("g".to_owned(), 2))
        );
    }
}
