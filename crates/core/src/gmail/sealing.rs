//! Sealing the synced copy: each user with synced mail has a random mail key, stored only
//! sealed under the user's data key in their connection row. A message's header fields
//! (subject, addresses, snippet, attachment list) are one sealed JSON blob and its body
//! another, both bound to the user, their purpose and the Gmail message id. Each distinct
//! search word of a message becomes a blind-index term, a keyed hash under a key derived from
//! the mail key, so the database can intersect words it cannot read.

use assistd_crypto::{MESSAGE_BODY_PURPOSE, MESSAGE_HEADER_PURPOSE, MailKey, blind_index};
use assistd_domain::gmail::{MailAddress, MailAttachment, MailMessage};
use assistd_domain::{Error, Result, UserId};
use assistd_store::{SealedMailKey, SearchTerm, StoredGmailMessage};
use serde::{Deserialize, Serialize};

use super::GmailService;

/// The sealed header blob: every field of a message that is not an id, a label, a date or a
/// size.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SealedHeader {
    pub(super) subject: String,
    pub(super) from: Option<MailAddress>,
    pub(super) to: Vec<MailAddress>,
    pub(super) cc: Vec<MailAddress>,
    pub(super) snippet: String,
    pub(super) attachments: Vec<MailAttachment>,
    pub(super) body_truncated: bool,
}

impl SealedHeader {
    /// The text a phrase is looked for in: what the blind index covers.
    pub(super) fn searchable_text(&self, body: Option<&str>) -> String {
        let mut text = String::new();
        text.push_str(&self.subject);
        for address in self.from.iter().chain(&self.to).chain(&self.cc) {
            text.push('\n');
            text.push_str(&address.display_name);
            text.push_str(" <");
            text.push_str(&address.address);
            text.push('>');
        }
        for attachment in &self.attachments {
            text.push('\n');
            text.push_str(&attachment.filename);
        }
        text.push('\n');
        text.push_str(&self.snippet);
        if let Some(body) = body {
            text.push('\n');
            text.push_str(body);
        }
        text
    }
}

fn address(address: assistd_mailtext::Address) -> MailAddress {
    MailAddress {
        display_name: address.display_name,
        address: address.address,
    }
}

/// A message parsed and ready to seal.
pub(super) struct OpenMessage {
    pub(super) header: SealedHeader,
    pub(super) body: String,
}

impl OpenMessage {
    /// Reads a raw RFC 2822 message, keeping at most `max_body_chars` characters of its body.
    pub(super) fn parse(raw: &[u8], snippet: String, max_body_chars: usize) -> Self {
        // mailtext caps bytes; the contract's unit is characters, at most 4 bytes each.
        let mail = assistd_mailtext::parse(raw, max_body_chars.saturating_mul(4));
        let mut truncated = mail.body_truncated;
        let body = match mail.body_text.char_indices().nth(max_body_chars) {
            Some((cut, _)) => {
                truncated = true;
                mail.body_text[..cut].to_owned()
            }
            None => mail.body_text,
        };
        Self {
            header: SealedHeader {
                subject: mail.subject,
                from: mail.from.map(address),
                to: mail.to.into_iter().map(address).collect(),
                cc: mail.cc.into_iter().map(address).collect(),
                snippet,
                attachments: mail
                    .attachments
                    .into_iter()
                    .map(|a| MailAttachment {
                        filename: a.filename,
                        mime_type: a.mime_type,
                        size_bytes: a.size_bytes,
                    })
                    .collect(),
                body_truncated: truncated,
            },
            body,
        }
    }

    /// The blind-index terms of every distinct search word of the message.
    pub(super) fn terms(&self, key: &MailKey) -> Vec<SearchTerm> {
        let index_key = key.index_key();
        let text = self.header.searchable_text(Some(&self.body));
        assistd_mailtext::search_words(&text)
            .iter()
            .map(|word| blind_index(&index_key, word))
            .collect()
    }

    /// The sealed header and body.
    pub(super) fn seal(
        &self,
        key: &MailKey,
        user: UserId,
        message_id: &str,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let header = serde_json::to_vec(&self.header).map_err(Error::internal)?;
        Ok((
            key.seal(user, MESSAGE_HEADER_PURPOSE, message_id, &header),
            key.seal(user, MESSAGE_BODY_PURPOSE, message_id, self.body.as_bytes()),
        ))
    }
}

impl GmailService {
    /// The user's mail key, opened; `None` when the user has none (never synced, or the mail
    /// was deleted).
    pub(super) async fn mail_key(&self, user: UserId) -> Result<Option<MailKey>> {
        let Some(connection) = self.inner.store.gmail().connection(user).await? else {
            return Ok(None);
        };
        let Some(sealed) = connection.mail_key else {
            return Ok(None);
        };
        self.open_mail_key(user, &sealed).await.map(Some)
    }

    async fn open_mail_key(&self, user: UserId, sealed: &SealedMailKey) -> Result<MailKey> {
        let (data_key, _) = self.inner.sealer.unwrapped_data_key(user).await?;
        Ok(MailKey::unwrap(
            &data_key,
            user,
            sealed.key_version,
            &sealed.sealed,
        )?)
    }

    /// The user's mail key, created and stored on first use. Two syncs racing to create it
    /// both end up with the one stored first.
    pub(super) async fn mail_key_or_create(&self, user: UserId) -> Result<MailKey> {
        if let Some(key) = self.mail_key(user).await? {
            return Ok(key);
        }
        let (data_key, version) = self.inner.sealer.unwrapped_data_key(user).await?;
        let fresh = MailKey::generate();
        let sealed = SealedMailKey {
            sealed: fresh.wrap(&data_key, user, version),
            key_version: version,
        };
        let stored = self
            .inner
            .store
            .gmail()
            .install_mail_key(user, &sealed, self.now())
            .await?;
        if stored == sealed {
            Ok(fresh)
        } else {
            self.open_mail_key(user, &stored).await
        }
    }
}

/// Opens a stored message with the user's mail key; the body only when stored with it.
pub(super) fn open_message(
    key: &MailKey,
    user: UserId,
    stored: StoredGmailMessage,
) -> Result<(MailMessage, SealedHeader)> {
    let id = stored.message_id;
    let header = key.open(user, MESSAGE_HEADER_PURPOSE, &id, &stored.sealed_header)?;
    let header: SealedHeader =
        serde_json::from_slice(header.expose_secret()).map_err(Error::internal)?;
    let body = match stored.sealed_body {
        Some(sealed) => {
            let body = key.open(user, MESSAGE_BODY_PURPOSE, &id, &sealed)?;
            Some(String::from_utf8_lossy(body.expose_secret()).into_owned())
        }
        None => None,
    };
    let message = MailMessage {
        id,
        thread_id: stored.thread_id,
        label_ids: stored.label_ids,
        subject: header.subject.clone(),
        sender: header.from.clone(),
        to: header.to.clone(),
        cc: header.cc.clone(),
        snippet: header.snippet.clone(),
        received_at: stored.internal_date,
        size_estimate: stored.size_estimate,
        attachments: header.attachments.clone(),
        body_text: body,
        body_truncated: header.body_truncated,
    };
    Ok((message, header))
}
