//! Fetching a sync's messages: each one read (`format=raw`), parsed, sealed and indexed, a
//! few at a time, and stored by one writer in batches.

use assistd_domain::{Error, Result};
use assistd_gmail::GmailError;
use assistd_store::{NewGmailMessage, SearchTerm};
use futures::StreamExt as _;

use super::{FETCH_CONCURRENCY, INBOX, Run, Stored, WRITE_BATCH, excluded, not_connected};
use crate::gmail::gmail_error;
use crate::gmail::sealing::OpenMessage;

impl Run<'_> {
    /// Fetches, seals and stores `ids`; returns what was new.
    ///
    /// Up to [`FETCH_CONCURRENCY`] messages are fetched and parsed at once, while one writer
    /// stores whatever is ready, up to [`WRITE_BATCH`] messages per transaction. One writer
    /// and few transactions keep a sync from queueing its own writes behind each other: on
    /// SQLite every write transaction takes the database's one write lock.
    pub(super) async fn fetch_all(&self, ids: Vec<String>) -> Result<Stored> {
        let (ready, mut to_write) = tokio::sync::mpsc::channel(WRITE_BATCH * 2);
        let fetching = async move {
            let mut fetches = futures::stream::iter(ids)
                .map(|id| async move { self.fetch(&id).await })
                .buffer_unordered(FETCH_CONCURRENCY);
            while let Some(fetched) = fetches.next().await {
                if let Some(message) = fetched?
                    && ready.send(message).await.is_err()
                {
                    // The writer failed; its error is the one returned.
                    break;
                }
            }
            Ok::<_, Error>(())
        };
        let writing = async move {
            let mut added = Stored::default();
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            while to_write.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                self.check()?;
                let stored = self.store_batch(&batch).await?;
                added.new += stored.new;
                added.new_inbox.extend(stored.new_inbox);
                batch.clear();
            }
            Ok::<_, Error>(added)
        };
        let ((), added) = tokio::try_join!(fetching, writing)?;
        Ok(added)
    }

    /// Stores fetched messages in one transaction; returns those not stored before.
    async fn store_batch(&self, batch: &[(NewGmailMessage, Vec<SearchTerm>)]) -> Result<Stored> {
        let gmail = self.service.inner.store.gmail();
        let ids: Vec<String> = batch.iter().map(|(m, _)| m.message_id.clone()).collect();
        let stored = gmail.stored_message_ids(self.user, &ids).await?;
        if !gmail.upsert_messages(self.user, batch, self.now()).await? {
            return Err(not_connected());
        }
        let new: Vec<&NewGmailMessage> = batch
            .iter()
            .map(|(message, _)| message)
            .filter(|message| !stored.contains(&message.message_id))
            .collect();
        Ok(Stored {
            new: u32::try_from(new.len()).unwrap_or(u32::MAX),
            new_inbox: new
                .iter()
                .filter(|message| message.label_ids.iter().any(|label| label == INBOX))
                .map(|message| message.internal_date)
                .collect(),
        })
    }

    /// Fetches one message and seals it for storing; `None` when it is gone or excluded (an
    /// excluded message is removed from the copy).
    async fn fetch(&self, id: &str) -> Result<Option<(NewGmailMessage, Vec<SearchTerm>)>> {
        self.check()?;
        let raw = match self.api.get_raw(id).await {
            Ok(raw) => raw,
            // Deleted since it was listed: nothing to store.
            Err(GmailError::NotFound) => return Ok(None),
            Err(err) => return Err(gmail_error(err)),
        };
        if excluded(&raw.label_ids) {
            let gmail = self.service.inner.store.gmail();
            gmail.delete_message(self.user, &raw.id).await?;
            return Ok(None);
        }
        let max_body = self.service.inner.settings.max_body_chars;
        let snippet = raw.snippet.clone();
        let bytes = raw.raw;
        let open =
            tokio::task::spawn_blocking(move || OpenMessage::parse(&bytes, snippet, max_body))
                .await
                .map_err(Error::internal)?;
        let terms = open.terms(self.key);
        let (sealed_header, sealed_body) = open.seal(self.key, self.user, &raw.id)?;
        let message = NewGmailMessage {
            message_id: raw.id,
            thread_id: raw.thread_id,
            label_ids: raw.label_ids,
            internal_date: raw.internal_date,
            size_estimate: raw.size_estimate,
            history_id: raw.history_id,
            sealed_header,
            sealed_body,
        };
        Ok(Some((message, terms)))
    }
}
