//! The Gmail model: the state of a user's link to Gmail, synced messages, and the rules for
//! Gmail's own ids and the search of the synced copy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidValue;

/// Longest `ListMessagesRequest.query`, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most label ids one listing may filter by.
pub const MAX_LABEL_FILTERS: usize = 10;
/// Longest Gmail id (message, thread) or label id accepted.
pub const MAX_GMAIL_ID_LEN: usize = 128;

/// The state of the user's Gmail link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// No Gmail grant is stored.
    NotConnected,
    /// A grant with `gmail.readonly` and a refresh token is stored.
    Connected,
    /// Google refused the stored grant or it lacks `gmail.readonly`: reconnect.
    ReauthRequired,
}

/// Why the latest sync failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    /// The ErrorInfo reason the sync answered with, e.g. `GMAIL_UNAVAILABLE`.
    pub reason: String,
    /// What happened and what fixes it; never a token or mail content.
    pub message: String,
    /// When the failed sync ended.
    pub at: DateTime<Utc>,
}

/// The user's Gmail link and sync state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmailConnection {
    /// State of the link.
    pub state: ConnectionState,
    /// Gmail address of the account, from the Gmail profile; empty before the first sync.
    pub email_address: String,
    /// Granted OAuth scopes.
    pub scopes: Vec<String>,
    /// When Gmail access was granted (latest consent).
    pub connected_at: Option<DateTime<Utc>>,
    /// When the latest successful sync finished.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The history id the synced copy is current to.
    pub history_id: Option<u64>,
    /// Messages in the synced copy.
    pub synced_message_count: u64,
    /// A sync of this mailbox is running.
    pub sync_in_progress: bool,
    /// The latest sync failed (and none succeeded since).
    pub last_sync_error: Option<SyncFailure>,
}

/// What one sync changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// A full sync ran.
    pub full_sync: bool,
    /// Messages newly added to the synced copy.
    pub added: u32,
    /// Synced messages whose labels changed.
    pub updated: u32,
    /// Messages removed from the synced copy.
    pub deleted: u32,
    /// When the sync started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// The connection after the sync.
    pub connection: GmailConnection,
}

/// One mailbox of a header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailAddress {
    /// Display name; empty when none.
    pub display_name: String,
    /// The address.
    pub address: String,
}

/// An attachment, without its contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailAttachment {
    /// File name as given in the message.
    pub filename: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
}

/// One synced message, opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailMessage {
    /// Gmail message id.
    pub id: String,
    /// Gmail thread id.
    pub thread_id: String,
    /// Gmail label ids.
    pub label_ids: Vec<String>,
    /// Subject, decoded.
    pub subject: String,
    /// From.
    pub sender: Option<MailAddress>,
    /// To.
    pub to: Vec<MailAddress>,
    /// Cc.
    pub cc: Vec<MailAddress>,
    /// Gmail's snippet.
    pub snippet: String,
    /// Gmail's internalDate.
    pub received_at: DateTime<Utc>,
    /// Gmail's size estimate.
    pub size_estimate: i64,
    /// Attachments.
    pub attachments: Vec<MailAttachment>,
    /// Plain-text body; `None` in listings.
    pub body_text: Option<String>,
    /// The body was cut at the configured limit.
    pub body_truncated: bool,
}

/// What a listing of synced mail is narrowed to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailFilter {
    /// Words (and "phrases") every listed message contains; empty: no text filter.
    pub query: String,
    /// Label ids every listed message carries.
    pub label_ids: Vec<String>,
    /// Only this thread.
    pub thread_id: Option<String>,
}

/// Checks a Gmail message or thread id: Gmail's ids are lowercase hex; anything else cannot
/// name a synced message.
///
/// # Errors
/// The id is empty, too long or not hex.
pub fn check_gmail_id(id: &str) -> Result<(), InvalidValue> {
    if id.is_empty() {
        return Err(InvalidValue("is required".into()));
    }
    if id.len() > MAX_GMAIL_ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InvalidValue(format!(
            "must be a Gmail id: at most {MAX_GMAIL_ID_LEN} letters and digits, such as \"18f3c2a1b4d5e6f7\""
        )));
    }
    Ok(())
}

/// Checks a Gmail label id: a system label (`INBOX`, `CATEGORY_PERSONAL`) or a user label
/// (`Label_12`): letters, digits and `_`, at most 128 characters.
///
/// # Errors
/// The label id is empty, too long or holds other characters.
pub fn check_label_id(label: &str) -> Result<(), InvalidValue> {
    if label.is_empty()
        || label.len() > MAX_GMAIL_ID_LEN
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(InvalidValue(format!(
            "{label:?} is not a Gmail label id (letters, digits, '_' and '-', at most {MAX_GMAIL_ID_LEN}), such as \"INBOX\" or \"Label_12\""
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_ids_and_labels_are_checked() {
        assert!(check_gmail_id("18f3c2a1b4d5e6f7").is_ok());
        assert!(check_gmail_id("").is_err());
        assert!(check_gmail_id("../x").is_err());
        assert!(check_gmail_id(&"a".repeat(129)).is_err());
        assert!(check_label_id("INBOX").is_ok());
        assert!(check_label_id("Label_12").is_ok());
        assert!(check_label_id("CATEGORY_PERSONAL").is_ok());
        assert!(check_label_id("in box").is_err());
        assert!(check_label_id("").is_err());
    }
}
