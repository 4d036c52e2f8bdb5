//! The JSON shapes of the Gmail API and the types calls return.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::GmailError;

/// base64url with or without padding, as Gmail's `raw` comes.
const RAW_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A u64 Gmail sends as a JSON string (`historyId`), accepted as a number too.
fn u64_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(u64),
    }
    match Either::deserialize(deserializer)? {
        Either::Number(number) => Ok(number),
        Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

fn opt_u64_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "u64_string")] u64);
    Ok(Option::<Wrap>::deserialize(deserializer)?.map(|Wrap(value)| value))
}

/// An i64 Gmail may send as a string or a number (`internalDate`, `sizeEstimate`).
fn opt_i64_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(i64),
    }
    match Option::<Either>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Either::Number(number)) => Ok(Some(number)),
        Some(Either::Text(text)) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// `internalDate` (epoch milliseconds) as a UTC time.
fn millis_to_time(millis: Option<i64>) -> Result<DateTime<Utc>, GmailError> {
    let millis =
        millis.ok_or_else(|| GmailError::Protocol("message without internalDate".into()))?;
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| GmailError::Protocol("internalDate out of range".into()))
}

/// The mailbox's profile (users.getProfile).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The mailbox's address.
    pub email_address: String,
    /// Messages in the mailbox.
    #[serde(default)]
    pub messages_total: i64,
    /// Threads in the mailbox.
    #[serde(default)]
    pub threads_total: i64,
    /// The mailbox's current history id: where an incremental sync starts next time.
    #[serde(deserialize_with = "u64_string")]
    pub history_id: u64,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("email_address", &"[redacted]")
            .field("messages_total", &self.messages_total)
            .field("threads_total", &self.threads_total)
            .field("history_id", &self.history_id)
            .finish()
    }
}

/// A message's ids, as messages.list and history records give them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    /// The message id.
    pub id: String,
    /// Its thread's id.
    pub thread_id: String,
}

/// One page of messages.list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// The messages of this page (none when the mailbox or filter is empty: Gmail then
    /// leaves `messages` out).
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    /// The token of the next page; `None` on the last.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Gmail's estimate of the total.
    #[serde(default)]
    pub result_size_estimate: u64,
}

/// messages.get with `format=raw` as sent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMessageWire {
    id: String,
    thread_id: String,
    #[serde(default)]
    label_ids: Vec<String>,
    #[serde(default)]
    snippet: String,
    #[serde(default, deserialize_with = "opt_u64_string")]
    history_id: Option<u64>,
    #[serde(default, deserialize_with = "opt_i64_string")]
    internal_date: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64_string")]
    size_estimate: Option<i64>,
    raw: Option<String>,
}

/// A message fetched with `format=raw`: its ids and labels in the clear, and the RFC 2822
/// bytes. `Debug` leaves out the snippet and the bytes (mail contents).
#[derive(Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The message id.
    pub id: String,
    /// Its thread's id.
    pub thread_id: String,
    /// Its labels (`INBOX`, `UNREAD`, `Label_12` …).
    pub label_ids: Vec<String>,
    /// Gmail's short extract of the text.
    pub snippet: String,
    /// The history id of the message's last change.
    pub history_id: u64,
    /// When Gmail received it (`internalDate`).
    pub internal_date: DateTime<Utc>,
    /// Gmail's size estimate in bytes.
    pub size_estimate: i64,
    /// The whole message as RFC 2822 bytes.
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for RawMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMessage")
            .field("id", &self.id)
            .field("thread_id", &self.thread_id)
            .field("label_ids", &self.label_ids)
            .field("history_id", &self.history_id)
            .field("internal_date", &self.internal_date)
            .field("size_estimate", &self.size_estimate)
            .field("raw_bytes", &self.raw.len())
            .finish_non_exhaustive()
    }
}

impl TryFrom<RawMessageWire> for RawMessage {
    type Error = GmailError;

    fn try_from(wire: RawMessageWire) -> Result<Self, GmailError> {
        let raw = wire
            .raw
            .ok_or_else(|| GmailError::Protocol("format=raw answer without raw".into()))?;
        let raw = RAW_ENGINE
            .decode(raw.trim())
            .map_err(|_| GmailError::Protocol("raw is not base64url".into()))?;
        Ok(Self {
            internal_date: millis_to_time(wire.internal_date)?,
            history_id: wire.history_id.unwrap_or(0),
            size_estimate: wire
                .size_estimate
                .unwrap_or_else(|| i64::try_from(raw.len()).unwrap_or(i64::MAX)),
            id: wire.id,
            thread_id: wire.thread_id,
            label_ids: wire.label_ids,
            snippet: wire.snippet,
            raw,
        })
    }
}

/// A message of a thread (threads.get `format=minimal`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadMessage {
    /// The message id.
    pub id: String,
    /// Its thread's id.
    pub thread_id: String,
    /// Its labels.
    #[serde(default)]
    pub label_ids: Vec<String>,
    /// The history id of its last change.
    #[serde(default, deserialize_with = "opt_u64_string")]
    pub history_id: Option<u64>,
    /// `internalDate`, epoch milliseconds.
    #[serde(default, deserialize_with = "opt_i64_string")]
    pub internal_date: Option<i64>,
}

/// A thread (threads.get `format=minimal`): its messages, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thread {
    /// The thread id.
    pub id: String,
    /// The thread's history id.
    #[serde(default, deserialize_with = "opt_u64_string")]
    pub history_id: Option<u64>,
    /// Its messages.
    #[serde(default)]
    pub messages: Vec<ThreadMessage>,
}

/// A message as a history record names it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMessage {
    /// The message id.
    pub id: String,
    /// Its thread's id.
    pub thread_id: String,
    /// Its labels after the change (Gmail omits them for deletions).
    #[serde(default)]
    pub label_ids: Vec<String>,
}

#[derive(Deserialize)]
struct MessageWrapper {
    message: HistoryMessage,
}

/// Labels added to or removed from a message.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLabelChange {
    /// The message, with its labels after the change.
    pub message: HistoryMessage,
    /// The labels added or removed.
    #[serde(default)]
    pub label_ids: Vec<String>,
}

fn unwrap_messages<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<HistoryMessage>, D::Error> {
    Ok(Vec::<MessageWrapper>::deserialize(deserializer)?
        .into_iter()
        .map(|wrapper| wrapper.message)
        .collect())
}

/// One history record: the changes of one history id.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    /// The record's history id.
    #[serde(deserialize_with = "u64_string")]
    pub id: u64,
    /// Messages added to the mailbox.
    #[serde(default, deserialize_with = "unwrap_messages")]
    pub messages_added: Vec<HistoryMessage>,
    /// Messages deleted from the mailbox.
    #[serde(default, deserialize_with = "unwrap_messages")]
    pub messages_deleted: Vec<HistoryMessage>,
    /// Labels added to messages.
    #[serde(default)]
    pub labels_added: Vec<HistoryLabelChange>,
    /// Labels removed from messages.
    #[serde(default)]
    pub labels_removed: Vec<HistoryLabelChange>,
}

/// One page of history.list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The records of this page, oldest first (none when nothing changed: Gmail then leaves
    /// `history` out).
    #[serde(default, rename = "history")]
    pub records: Vec<HistoryRecord>,
    /// The token of the next page; `None` on the last.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// The mailbox's current history id: where the next incremental sync starts once every
    /// page is applied.
    #[serde(deserialize_with = "u64_string")]
    pub history_id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_history_shapes() {
        let page: HistoryPage = serde_json::from_str(
            r#"{"history":[{"id":"2105","messages":[{"id":"a","threadId":"t"}],
                "messagesAdded":[{"message":{"id":"a","threadId":"t","labelIds":["INBOX"]}}]},
               {"id":"2106","labelsRemoved":[{"message":{"id":"b","threadId":"t2","labelIds":["INBOX"]},"labelIds":["UNREAD"]}]},
               {"id":"2107","messagesDeleted":[{"message":{"id":"c","threadId":"t3"}}]}],
               "nextPageToken":"17","historyId":"2108"}"#,
        )
        .unwrap();
        assert_eq!(page.history_id, 2108);
        assert_eq!(page.records.len(), 3);
        assert_eq!(page.records[0].messages_added[0].label_ids, ["INBOX"]);
        assert_eq!(page.records[1].labels_removed[0].label_ids, ["UNREAD"]);
        assert_eq!(page.records[2].messages_deleted[0].id, "c");
        let empty: HistoryPage = serde_json::from_str(r#"{"historyId":"2108"}"#).unwrap();
        assert!(empty.records.is_empty() && empty.next_page_token.is_none());
    }

    #[test]
    fn decodes_raw_with_or_without_padding() {
        for raw in ["SGk_Pz4-", "SGk_Pz4-Pw", "SGk_Pz4-Pw=="] {
            let wire: RawMessageWire = serde_json::from_value(serde_json::json!({
                "id": "m", "threadId": "t", "historyId": "7", "internalDate": "1704101400000",
                "sizeEstimate": 10, "raw": raw,
            }))
            .unwrap();
            let message = RawMessage::try_from(wire).unwrap();
            assert!(message.raw.starts_with(b"Hi??>"));
            assert_eq!(message.internal_date.timestamp(), 1_704_101_400);
            assert_eq!(message.history_id, 7);
            assert!(!format!("{message:?}").contains("Hi"));
        }
    }
}
