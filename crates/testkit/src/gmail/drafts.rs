//! users.drafts.create, and the send methods this server refuses loudly.
//!
//! A draft needs a token with `gmail.compose` (or `gmail.modify`, `mail.google.com`); one with
//! `gmail.readonly` alone gets Google's 403 `insufficientPermissions`. Created drafts are kept
//! per user with their raw message parsed ([`RecordedDraft`]). Any request to a send path
//! (`messages/send`, `drafts/send`, the upload variants) is recorded as a violation
//! ([`super::GmailServer::send_attempts`]) and answered 500, so a test that lets one through
//! fails however it reads the answer.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

use super::State;

/// The scopes that let a token create drafts.
pub const GMAIL_COMPOSE_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://mail.google.com/",
];

/// `gmail.compose`, the scope assistd asks for to create drafts.
pub const GMAIL_COMPOSE: &str = GMAIL_COMPOSE_SCOPES[0];

/// base64url with or without padding.
const RAW_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A draft a client created, with its message parsed enough to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedDraft {
    /// The draft's id (`r…`).
    pub id: String,
    /// The id of its message.
    pub message_id: String,
    /// Its thread: the one the request named, else a new one.
    pub thread_id: String,
    /// The `threadId` the request named, if any.
    pub requested_thread_id: Option<String>,
    /// `To` addresses.
    pub to: Vec<String>,
    /// `Cc` addresses.
    pub cc: Vec<String>,
    /// `Bcc` addresses.
    pub bcc: Vec<String>,
    /// `Subject`, decoded.
    pub subject: String,
    /// `In-Reply-To`, without brackets.
    pub in_reply_to: Option<String>,
    /// `References`, without brackets.
    pub references: Vec<String>,
    /// The first text body.
    pub body_text: String,
    /// The message as received.
    pub raw: Vec<u8>,
}

/// Whether `path` names a send method (any user, any API root).
pub(super) fn is_send_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.ends_with("/messages/send") || path.ends_with("/drafts/send")
}

/// The answer to a send request: a violation, loudly.
pub(super) fn send_refused() -> Value {
    json!({"error": {"code": 500, "message": "This test server never sends mail; a client called a send method.", "status": "INTERNAL"}})
}

fn addresses(address: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    address
        .map(|address| {
            address
                .iter()
                .filter_map(|addr| addr.address().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn header_ids(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match value {
        mail_parser::HeaderValue::Text(text) => vec![text.to_string()],
        mail_parser::HeaderValue::TextList(list) => {
            list.iter().map(std::string::ToString::to_string).collect()
        }
        _ => Vec::new(),
    }
}

/// Creates a draft in `user`'s mailbox from a drafts.create body and returns Gmail's answer.
pub(super) fn create(state: &mut State, user: &str, body: &[u8]) -> Result<Value, DraftRefusal> {
    let request: Value =
        serde_json::from_slice(body).map_err(|_| DraftRefusal::BadRequest("Invalid JSON"))?;
    let raw = request["message"]["raw"]
        .as_str()
        .ok_or(DraftRefusal::BadRequest("Missing draft message"))?;
    let raw = RAW_ENGINE
        .decode(raw)
        .map_err(|_| DraftRefusal::BadRequest("Invalid raw message"))?;
    let requested_thread_id = request["message"]["threadId"].as_str().map(str::to_owned);
    if let Some(thread) = &requested_thread_id
        && state.mailbox(user).thread(thread).is_empty()
    {
        return Err(DraftRefusal::NotFound);
    }
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .ok_or(DraftRefusal::BadRequest("Invalid raw message"))?;
    state.next_message += 1;
    let message_id = format!("{:016x}", 0x18f4_0000_0000_0000_u64 + state.next_message);
    let id = format!("r{}", 5_000_000_000_u64 + state.next_message);
    let thread_id = requested_thread_id
        .clone()
        .unwrap_or_else(|| message_id.clone());
    let draft = RecordedDraft {
        id: id.clone(),
        message_id: message_id.clone(),
        thread_id: thread_id.clone(),
        requested_thread_id,
        to: addresses(parsed.to()),
        cc: addresses(parsed.cc()),
        bcc: addresses(parsed.bcc()),
        subject: parsed.subject().unwrap_or_default().to_owned(),
        in_reply_to: header_ids(parsed.in_reply_to()).into_iter().next(),
        references: header_ids(parsed.references()),
        body_text: parsed.body_text(0).unwrap_or_default().into_owned(),
        raw,
    };
    state.drafts.entry(user.to_owned()).or_default().push(draft);
    Ok(json!({
        "id": id,
        "message": {"id": message_id, "threadId": thread_id, "labelIds": ["DRAFT"]},
    }))
}

/// Why a drafts.create request was refused.
#[derive(Debug)]
pub(super) enum DraftRefusal {
    /// 400 with this message.
    BadRequest(&'static str),
    /// 404: the named thread is not in the mailbox.
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_paths_are_recognised() {
        assert!(is_send_path("/gmail/v1/users/me/messages/send"));
        assert!(is_send_path("/upload/gmail/v1/users/me/messages/send"));
        assert!(is_send_path("/gmail/v1/users/me/drafts/send/"));
        assert!(!is_send_path("/gmail/v1/users/me/drafts"));
        assert!(!is_send_path("/gmail/v1/users/me/messages/sender"));
    }

    #[test]
    fn a_draft_is_recorded_with_its_headers() {
        let mut state = State::default();
        let raw = "To: Ana <ana@example.com>\r\nCc: bo@example.com\r\nSubject: Re: Lunch\r\nIn-Reply-To: <m1@example.com>\r\nReferences: <m0@example.com> <m1@example.com>\r\n\r\nYes!\r\n";
        let body = json!({"message": {"raw": RAW_ENGINE.encode(raw)}}).to_string();
        let answer = create(&mut state, "ana", body.as_bytes()).unwrap();
        let draft = &state.drafts["ana"][0];
        assert_eq!(answer["id"], json!(draft.id));
        assert_eq!(draft.to, ["ana@example.com"]);
        assert_eq!(draft.cc, ["bo@example.com"]);
        assert_eq!(draft.subject, "Re: Lunch");
        assert_eq!(draft.in_reply_to.as_deref(), Some("m1@example.com"));
        assert_eq!(draft.references, ["m0@example.com", "m1@example.com"]);
        assert_eq!(draft.body_text.trim(), "Yes!");
        let unknown = json!({"message": {"raw": RAW_ENGINE.encode(raw), "threadId": "nope"}});
        assert!(matches!(
            create(&mut state, "ana", unknown.to_string().as_bytes()),
            Err(DraftRefusal::NotFound)
        ));
    }
}
