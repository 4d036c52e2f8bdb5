//! Drafts: the one call that writes to a mailbox (users.drafts.create), and the reply
//! headers it needs (users.messages.get `format=metadata`).
//!
//! This client creates drafts and never sends them: it has no call to users.messages.send
//! or users.drafts.send (the endpoint builder refuses a `send` segment, and a test fails if
//! the crate's source names such a path). A draft waits in the user's Drafts until the
//! user sends it from Gmail.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use serde::{Deserialize, Serialize};

use crate::GmailError;
use crate::client::{Operation, UserGmail};

/// One mailbox of a draft's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftAddress {
    /// Display name; empty when none.
    pub name: String,
    /// The address.
    pub address: String,
}

/// The message a draft answers, as Gmail threads a reply: the thread, and the answered
/// message's `Message-ID` and `References` for the reply's `In-Reply-To`/`References`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyHeaders {
    /// The thread the reply joins.
    pub thread_id: String,
    /// The answered message's `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// The answered message's `References`, oldest first, without angle brackets.
    pub references: Vec<String>,
    /// The answered message's `Subject`.
    pub subject: String,
}

/// A draft to create.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewDraft {
    /// `From`; Gmail uses the account's address when none is given.
    pub from: Option<DraftAddress>,
    /// `To`.
    pub to: Vec<DraftAddress>,
    /// `Cc`.
    pub cc: Vec<DraftAddress>,
    /// `Subject`.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// The message this draft replies to, if it is a reply.
    pub reply: Option<ReplyHeaders>,
}

/// A created draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedDraft {
    /// The draft's id.
    pub id: String,
    /// The id of the draft's message.
    pub message_id: String,
    /// The thread the draft's message is in.
    pub thread_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DraftWire<'a> {
    message: DraftMessageWire<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DraftMessageWire<'a> {
    raw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedWire {
    id: String,
    #[serde(default)]
    message: CreatedMessageWire,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedMessageWire {
    #[serde(default)]
    id: String,
    #[serde(default)]
    thread_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataWire {
    thread_id: String,
    #[serde(default)]
    payload: PayloadWire,
}

#[derive(Default, Deserialize)]
struct PayloadWire {
    #[serde(default)]
    headers: Vec<HeaderWire>,
}

#[derive(Deserialize)]
struct HeaderWire {
    name: String,
    value: String,
}

/// The ids of a `Message-ID`/`References` value, without angle brackets.
fn message_ids(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|id| !id.is_empty() && id.contains('@'))
        .map(str::to_owned)
        .collect()
}

fn address(mailbox: &DraftAddress) -> Address<'_> {
    let name = Some(mailbox.name.as_str()).filter(|name| !name.trim().is_empty());
    Address::new_address(name, mailbox.address.as_str())
}

/// The draft as an RFC 5322 message (mail-builder): plain text, encoded words where needed,
/// `In-Reply-To` and `References` for a reply. The `Message-ID` names no host of ours.
///
/// # Errors
/// [`GmailError::Protocol`] when the message cannot be written (it always can in memory).
pub fn draft_message(draft: &NewDraft) -> Result<Vec<u8>, GmailError> {
    let mut builder = MessageBuilder::new()
        .subject(draft.subject.as_str())
        .text_body(draft.body.as_str());
    if let Some(from) = &draft.from {
        builder = builder.from(address(from));
    }
    if !draft.to.is_empty() {
        builder = builder.to(Address::new_list(draft.to.iter().map(address).collect()));
    }
    if !draft.cc.is_empty() {
        builder = builder.cc(Address::new_list(draft.cc.iter().map(address).collect()));
    }
    if let Some(reply) = &draft.reply
        && let Some(answered) = &reply.message_id
    {
        let mut references: Vec<&str> = reply.references.iter().map(String::as_str).collect();
        references.push(answered);
        builder = builder
            .in_reply_to(MessageId::new(answered.as_str()))
            .references(MessageId::new_list(references.into_iter()));
    }
    builder
        .write_to_vec()
        .map_err(|err| GmailError::Protocol(format!("the draft could not be written: {err}")))
}

impl UserGmail<'_> {
    /// What a reply to message `id` needs: its thread, `Message-ID`, `References` and
    /// `Subject` (users.messages.get `format=metadata`, 5 quota units).
    ///
    /// # Errors
    /// [`GmailError::NotFound`] when there is no such message; otherwise as [`GmailError`]
    /// says.
    pub async fn reply_headers(&self, id: &str) -> Result<ReplyHeaders, GmailError> {
        let mut url = self.endpoint(&["messages", id]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("format", "metadata");
            for header in ["Message-ID", "References", "Subject"] {
                query.append_pair("metadataHeaders", header);
            }
        }
        let wire: MetadataWire = self
            .call_json_with(Operation::GetMessage, url, None)
            .await?;
        let header = |name: &str| {
            wire.payload
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .map(|header| header.value.as_str())
        };
        Ok(ReplyHeaders {
            message_id: header("Message-ID")
                .and_then(|value| message_ids(value).into_iter().next()),
            references: header("References").map(message_ids).unwrap_or_default(),
            subject: header("Subject").unwrap_or_default().to_owned(),
            thread_id: wire.thread_id,
        })
    }

    /// Creates a draft in the user's Drafts (users.drafts.create, 10 quota units; needs the
    /// `gmail.compose` scope, else [`GmailError::ScopeMissing`]). A reply goes into the
    /// answered message's thread. Not retried after a 5xx or timeout: Gmail may have created
    /// it.
    ///
    /// # Errors
    /// As [`GmailError`] says.
    pub async fn create_draft(&self, draft: &NewDraft) -> Result<CreatedDraft, GmailError> {
        let raw = URL_SAFE.encode(draft_message(draft)?);
        let body = serde_json::to_vec(&DraftWire {
            message: DraftMessageWire {
                raw,
                thread_id: draft.reply.as_ref().map(|reply| reply.thread_id.as_str()),
            },
        })
        .map_err(|err| GmailError::Protocol(format!("the draft could not be encoded: {err}")))?;
        let url = self.endpoint(&["drafts"]);
        let created: CreatedWire = self
            .call_json_with(Operation::CreateDraft, url, Some(body.into()))
            .await?;
        Ok(CreatedDraft {
            id: created.id,
            message_id: created.message.id,
            thread_id: created.message.thread_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_draft_carries_threading_headers_and_encoded_words() {
        let draft = NewDraft {
            from: None,
            to: vec![DraftAddress {
                name: "Ana Núñez".into(),
                address: "ana@example.com".into(),
            }],
            cc: Vec::new(),
            subject: "Re: Dinner on Friday?".into(),
            body: "Yes, gladly.\n".into(),
            reply: Some(ReplyHeaders {
                thread_id: "t1".into(),
                message_id: Some("m2@example.com".into()),
                references: vec!["m1@example.com".into()],
                subject: "Dinner on Friday?".into(),
            }),
        };
        let raw = String::from_utf8(draft_message(&draft).unwrap()).unwrap();
        assert!(raw.contains("In-Reply-To: <m2@example.com>"), "{raw}");
        assert!(
            raw.contains("References: <m1@example.com> <m2@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("<ana@example.com>"), "{raw}");
        assert!(
            raw.contains("=?utf-8?"),
            "an encoded word for the name: {raw}"
        );
        assert!(raw.contains("Subject: Re: Dinner on Friday?"), "{raw}");
        assert!(raw.contains("Yes, gladly."), "{raw}");
    }

    #[test]
    fn message_id_lists_are_read_without_brackets() {
        assert_eq!(
            message_ids("<a@x> \r\n <b@y>, junk <>"),
            ["a@x".to_owned(), "b@y".to_owned()]
        );
    }
}
