//! One user's mailbox: messages as raw RFC 2822 bytes with labels, and the history of changes.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use serde_json::{Value, json};

use super::mime::Part;

/// Labels `messages.list` leaves out unless `includeSpamTrash=true`.
const SPAM_TRASH: [&str; 2] = ["SPAM", "TRASH"];

/// The first history id of a new mailbox.
const FIRST_HISTORY_ID: u64 = 1000;

/// `internalDate` of messages added without one: 2024-01-01T00:00:00Z plus a minute each.
const FIRST_INTERNAL_DATE_MS: i64 = 1_704_067_200_000;

/// A message to add to a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The whole message, RFC 2822.
    pub raw: Vec<u8>,
    /// Its labels (`INBOX` by default).
    pub labels: Vec<String>,
    /// The thread it joins; a new thread (named after the message id) when `None`.
    pub thread_id: Option<String>,
    /// `internalDate` in epoch milliseconds; by default a minute after the mailbox's previous
    /// default, so messages added later are newer.
    pub internal_date_ms: Option<i64>,
}

impl NewMessage {
    /// `raw` in the inbox, in a thread of its own, dated after the messages before it.
    pub fn new(raw: impl Into<Vec<u8>>) -> Self {
        Self {
            raw: raw.into(),
            labels: vec!["INBOX".to_owned()],
            thread_id: None,
            internal_date_ms: None,
        }
    }

    /// A plain-text message with this subject and body, from `sender@example.com`.
    pub fn text(subject: &str, body: &str) -> Self {
        Self::new(format!(
            "From: Sender <sender@example.com>\r\nTo: someone@example.com\r\nSubject: {subject}\r\nDate: Mon, 1 Jan 2024 09:30:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n"
        ))
    }

    /// With these labels instead.
    #[must_use]
    pub fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|&label| label.to_owned()).collect();
        self
    }

    /// In this thread.
    #[must_use]
    pub fn thread(mut self, thread_id: impl Into<String>) -> Self {
        self.thread_id = Some(thread_id.into());
        self
    }

    /// With this `internalDate`.
    #[must_use]
    pub fn internal_date_ms(mut self, millis: i64) -> Self {
        self.internal_date_ms = Some(millis);
        self
    }
}

/// A stored message.
#[derive(Clone)]
pub(super) struct Message {
    pub(super) id: String,
    pub(super) thread_id: String,
    pub(super) labels: Vec<String>,
    pub(super) internal_date_ms: i64,
    pub(super) history_id: u64,
    pub(super) raw: Vec<u8>,
}

impl Message {
    fn reference(&self) -> Value {
        json!({ "id": self.id, "threadId": self.thread_id })
    }

    fn with_labels(&self) -> Value {
        json!({ "id": self.id, "threadId": self.thread_id, "labelIds": self.labels })
    }

    /// The message resource in `format` (`minimal`, `metadata`, `full`, `raw`).
    pub(super) fn resource(&self, format: &str, metadata_headers: Option<&[String]>) -> Value {
        let part = Part::parse(&self.raw);
        let mut resource = json!({
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": self.labels,
            "snippet": part.snippet(),
            "sizeEstimate": self.raw.len(),
            "historyId": self.history_id.to_string(),
            "internalDate": self.internal_date_ms.to_string(),
        });
        match format {
            "raw" => resource["raw"] = URL_SAFE.encode(&self.raw).into(),
            "metadata" => resource["payload"] = part.metadata_payload(metadata_headers),
            "full" => resource["payload"] = part.payload(""),
            _ => {}
        }
        resource
    }
}

/// What a history record says happened.
#[derive(Clone)]
pub(super) enum Change {
    Added,
    Deleted,
    LabelsAdded(Vec<String>),
    LabelsRemoved(Vec<String>),
}

impl Change {
    /// The `historyTypes` value that selects it.
    pub(super) const fn history_type(&self) -> &'static str {
        match self {
            Self::Added => "messageAdded",
            Self::Deleted => "messageDeleted",
            Self::LabelsAdded(_) => "labelAdded",
            Self::LabelsRemoved(_) => "labelRemoved",
        }
    }
}

/// One history record: one change of one message.
#[derive(Clone)]
pub(super) struct Record {
    pub(super) id: u64,
    /// The message as it was right after the change.
    message: Message,
    pub(super) change: Change,
}

impl Record {
    pub(super) fn json(&self) -> Value {
        let mut record = json!({
            "id": self.id.to_string(),
            "messages": [self.message.reference()],
        });
        match &self.change {
            Change::Added => {
                record["messagesAdded"] = json!([{ "message": self.message.with_labels() }]);
            }
            Change::Deleted => {
                record["messagesDeleted"] = json!([{ "message": self.message.reference() }]);
            }
            Change::LabelsAdded(labels) => {
                record["labelsAdded"] =
                    json!([{ "message": self.message.with_labels(), "labelIds": labels }]);
            }
            Change::LabelsRemoved(labels) => {
                record["labelsRemoved"] =
                    json!([{ "message": self.message.with_labels(), "labelIds": labels }]);
            }
        }
        record
    }
}

/// A user's mailbox.
pub(super) struct Mailbox {
    pub(super) messages: HashMap<String, Message>,
    pub(super) history: Vec<Record>,
    pub(super) history_id: u64,
    /// The oldest start history id history.list still accepts.
    pub(super) oldest_start: u64,
    next_internal_date_ms: i64,
    /// The address getProfile gives, when it is not the token owner's sign-in address.
    pub(super) address: Option<String>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self {
            messages: HashMap::new(),
            history: Vec::new(),
            history_id: FIRST_HISTORY_ID,
            oldest_start: FIRST_HISTORY_ID,
            next_internal_date_ms: FIRST_INTERNAL_DATE_MS,
            address: None,
        }
    }
}

impl Mailbox {
    fn record(&mut self, message: Message, change: Change) {
        self.history.push(Record {
            id: self.history_id,
            message,
            change,
        });
    }

    pub(super) fn add(&mut self, id: String, new: NewMessage) {
        self.history_id += 1;
        let internal_date_ms = new.internal_date_ms.unwrap_or(self.next_internal_date_ms);
        self.next_internal_date_ms = self.next_internal_date_ms.max(internal_date_ms) + 60_000;
        let message = Message {
            thread_id: new.thread_id.unwrap_or_else(|| id.clone()),
            id: id.clone(),
            labels: new.labels,
            internal_date_ms,
            history_id: self.history_id,
            raw: new.raw,
        };
        self.messages.insert(id, message.clone());
        self.record(message, Change::Added);
    }

    pub(super) fn delete(&mut self, id: &str) -> bool {
        let Some(mut message) = self.messages.remove(id) else {
            return false;
        };
        self.history_id += 1;
        message.history_id = self.history_id;
        self.record(message, Change::Deleted);
        true
    }

    pub(super) fn modify(&mut self, id: &str, add: &[&str], remove: &[&str]) -> bool {
        let Some(message) = self.messages.get_mut(id) else {
            return false;
        };
        let added: Vec<String> = add
            .iter()
            .filter(|&&label| !message.labels.iter().any(|known| known == label))
            .map(|&label| label.to_owned())
            .collect();
        let removed: Vec<String> = remove
            .iter()
            .filter(|&&label| message.labels.iter().any(|known| known == label))
            .map(|&label| label.to_owned())
            .collect();
        let mut changes = Vec::new();
        if !added.is_empty() {
            message.labels.extend(added.iter().cloned());
            self.history_id += 1;
            message.history_id = self.history_id;
            changes.push((message.clone(), Change::LabelsAdded(added)));
        }
        if !removed.is_empty() {
            message.labels.retain(|label| !removed.contains(label));
            self.history_id += 1;
            message.history_id = self.history_id;
            changes.push((message.clone(), Change::LabelsRemoved(removed)));
        }
        // Each change is its own record, under the history id it was given.
        let first = self.history_id + 1 - changes.len() as u64;
        for (offset, (message, change)) in changes.into_iter().enumerate() {
            self.history.push(Record {
                id: first + offset as u64,
                message,
                change,
            });
        }
        true
    }

    /// Drops the history up to now: a start history id before the current one gets 404.
    pub(super) fn expire_history(&mut self) {
        self.history.clear();
        self.oldest_start = self.history_id;
    }

    /// Messages listed by messages.list, newest first.
    pub(super) fn listed(&self, include_spam_trash: bool, label_ids: &[String]) -> Vec<&Message> {
        let mut listed: Vec<&Message> = self
            .messages
            .values()
            .filter(|message| {
                include_spam_trash
                    || !message
                        .labels
                        .iter()
                        .any(|label| SPAM_TRASH.contains(&label.as_str()))
            })
            .filter(|message| {
                label_ids
                    .iter()
                    .all(|wanted| message.labels.contains(wanted))
            })
            .collect();
        listed.sort_by(|a, b| {
            b.internal_date_ms
                .cmp(&a.internal_date_ms)
                .then_with(|| b.id.cmp(&a.id))
        });
        listed
    }

    /// A thread's messages, oldest first.
    pub(super) fn thread(&self, thread_id: &str) -> Vec<&Message> {
        let mut messages: Vec<&Message> = self
            .messages
            .values()
            .filter(|message| message.thread_id == thread_id)
            .collect();
        messages.sort_by(|a, b| {
            a.internal_date_ms
                .cmp(&b.internal_date_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        messages
    }

    pub(super) fn threads_total(&self) -> usize {
        let mut threads: Vec<&str> = self
            .messages
            .values()
            .map(|message| message.thread_id.as_str())
            .collect();
        threads.sort_unstable();
        threads.dedup();
        threads.len()
    }
}
