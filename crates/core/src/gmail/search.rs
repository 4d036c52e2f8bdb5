//! Listing, searching and reading the synced copy. A query's words become blind-index terms
//! and the database returns the messages holding all of them, newest first; phrases are then
//! checked in the opened candidates, and the page keeps filling from further candidates when
//! a check drops some.

use assistd_crypto::blind_index;
use assistd_domain::gmail::{MailFilter, MailMessage};
use assistd_domain::{Error, Result, UserId};
use assistd_store::MessageFilter;
use chrono::{DateTime, Utc};

use super::GmailService;
use super::sealing::open_message;

impl GmailService {
    /// Up to `limit` synced messages matching `filter`, newest first, after `after` (the
    /// receive time and id of the previous page's last message). Bodies are not returned.
    ///
    /// # Errors
    /// The database or the key service failed.
    pub async fn list(
        &self,
        user: UserId,
        filter: &MailFilter,
        after: Option<(DateTime<Utc>, String)>,
        limit: usize,
    ) -> Result<Vec<MailMessage>> {
        let Some(key) = self.mail_key(user).await? else {
            return Ok(Vec::new());
        };
        let query = assistd_mailtext::query_terms(&filter.query);
        // A word too long to be indexed is in no message.
        if query.unmatchable {
            return Ok(Vec::new());
        }
        let index_key = key.index_key();
        let needs_body = !query.phrases.is_empty();
        let store_filter = MessageFilter {
            terms: query
                .words
                .iter()
                .map(|word| blind_index(&index_key, word))
                .collect(),
            label_ids: filter.label_ids.clone(),
            thread_id: filter.thread_id.clone(),
            include_bodies: needs_body,
        };
        let gmail = self.inner.store.gmail();
        let mut found = Vec::with_capacity(limit);
        let mut position = after;
        // Without phrases every candidate matches: one query fills the page.
        let batch = if needs_body { limit.max(25) } else { limit };
        loop {
            let candidates = gmail
                .list_messages(user, &store_filter, position.clone(), batch as u64)
                .await?;
            let exhausted = candidates.len() < batch;
            for stored in candidates {
                position = Some((stored.internal_date, stored.message_id.clone()));
                let (mut message, header) = open_message(&key, user, stored)?;
                if needs_body {
                    let text = header.searchable_text(message.body_text.as_deref());
                    if !query
                        .phrases
                        .iter()
                        .all(|phrase| assistd_mailtext::contains_phrase(&text, phrase))
                    {
                        continue;
                    }
                    message.body_text = None;
                }
                found.push(message);
                if found.len() == limit {
                    return Ok(found);
                }
            }
            if exhausted {
                return Ok(found);
            }
        }
    }

    /// One synced message with its body.
    ///
    /// # Errors
    /// NOT_FOUND for an id that is not in the user's synced copy (unknown, deleted, or
    /// another user's); the database or the key service failed.
    pub async fn get(&self, user: UserId, id: &str) -> Result<MailMessage> {
        let not_found = || Error::NotFound {
            resource: "message",
            id: id.to_owned(),
        };
        let stored = self
            .inner
            .store
            .gmail()
            .get_message(user, id)
            .await?
            .ok_or_else(not_found)?;
        let key = self.mail_key(user).await?.ok_or_else(not_found)?;
        let (message, _) = open_message(&key, user, stored)?;
        Ok(message)
    }
}
