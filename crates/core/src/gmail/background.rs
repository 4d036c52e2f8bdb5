//! The background sync: every poll interval, the mailboxes whose next sync is due (and whose
//! lease is free) are synced, at most `max_concurrent_syncs` at a time on this server. Any
//! number of replicas may run it: the lease lets one of them sync a given mailbox.
//!
//! With `gmail.auto_triage`, a sync that added INBOX messages to the copy is followed by a
//! triage of them with the user's own key, exactly as TriageInbox would do it (same key, budget,
//! usage, model), after the sync finished and released its lease, so the sync is neither
//! delayed nor failed by it:
//! - only the newest `triage_batch_size * AUTO_TRIAGE_BATCHES` of the sync's new INBOX
//!   messages count (a first sync of a large mailbox triages its newest mail, not all of it),
//!   and nothing received before the oldest of those; messages with a stored triage are not
//!   triaged again;
//! - a user without a Gemini key is skipped quietly (a debug line): mail is synced, nothing
//!   else happens, no error is recorded on the connection;
//! - any other failure (a key Google rejects, which is then marked INVALID; the month's budget
//!   spent; Gemini's rate limit; an outage, after the usual retries of one model call) is
//!   logged at warn, with the reason and no secret, and not retried: the messages stay
//!   untriaged until the user asks (TriageInbox) and the next sync looks only at its own new
//!   mail;
//! - at most `max_concurrent_syncs` triages run at once on a server, one per mailbox, and a
//!   mailbox still being triaged is not synced again until its triage ends;
//! - a stopping server stops its triages between two model calls' results (what was stored
//!   stays).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use assistd_domain::audit::RequestContext;
use assistd_domain::{Error, ErrorReason, UserId};
use assistd_store::GmailConnectionState;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::AUTO_TRIAGE_BATCHES;
use super::sync::NewInboxMail;
use super::{GmailService, MailAssistant, TriageSelection};

/// The mailboxes this server is syncing or triaging right now.
#[derive(Clone, Default)]
struct Busy(Arc<Mutex<HashSet<UserId>>>);

impl Busy {
    /// Marks `user` busy; `None` when it already is.
    fn claim(&self, user: UserId) -> Option<BusyGuard> {
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        users.insert(user).then(|| BusyGuard {
            busy: self.clone(),
            user,
        })
    }
}

/// Frees its mailbox when dropped, however the task holding it ends.
struct BusyGuard {
    busy: Busy,
    user: UserId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.busy
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.user);
    }
}

/// What the automatic triage after one sync looks at: the newest `cap` of the sync's new
/// INBOX messages, by receive time. `None` when the sync added none.
///
/// TriageInbox's selection is the newest `max_messages` INBOX messages received at or after
/// `start`: with `max_messages` the number of new messages kept and `start` the receive time
/// of the oldest of them, it is those messages (or, when mail received after them was synced
/// before, the newest of them and that mail) and never anything older.
fn auto_triage_selection(new_mail: &NewInboxMail, cap: usize) -> Option<TriageSelection> {
    let mut received = new_mail.received.clone();
    received.sort_unstable_by(|a, b| b.cmp(a));
    received.truncate(cap.max(1));
    let start = *received.last()?;
    Some(TriageSelection {
        max_messages: received.len(),
        start,
        unread_only: false,
        refresh: false,
    })
}

/// The context model calls of an automatic triage run under: no client, and a request id
/// that says where they came from (it shows in the audit row if Google rejects the key).
fn background_context() -> RequestContext {
    RequestContext {
        request_id: format!("gmail-auto-triage-{}", uuid::Uuid::now_v7()),
        client_ip: None,
        user_agent: None,
    }
}

/// The machine-readable reason of `err`, for the log.
fn reason_of(err: &Error) -> &'static str {
    match err {
        Error::FailedPrecondition { reason, .. }
        | Error::ResourceExhausted { reason, .. }
        | Error::Unavailable { reason, .. }
        | Error::Aborted { reason, .. }
        | Error::Unauthenticated { reason, .. }
        | Error::PermissionDenied { reason, .. } => reason.as_str(),
        Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
        Error::NotFound { .. } => "NOT_FOUND",
        Error::Internal(_) => "INTERNAL",
    }
}

impl GmailService {
    /// Starts the background sync; it stops when `shutdown` fires, after the running syncs
    /// stopped (they stop between two messages when the service's own stop token fires) and
    /// the running automatic triages stopped.
    ///
    /// `auto_triage` is the assistant that triages each sync's new INBOX mail (pass it when
    /// `gmail.auto_triage` is on); `None` syncs only. The task holds the assistant, the
    /// service does not, so nothing refers back to itself.
    #[must_use]
    pub fn start_background_sync(
        &self,
        shutdown: CancellationToken,
        auto_triage: Option<MailAssistant>,
    ) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let limit = service.inner.settings.max_concurrent_syncs;
            let permits = Arc::new(Semaphore::new(limit));
            let triage_permits = Arc::new(Semaphore::new(limit));
            let busy = Busy::default();
            let mut running = JoinSet::new();
            loop {
                while running.try_join_next().is_some() {}
                let free = permits.available_permits();
                if free > 0 {
                    let due = service
                        .inner
                        .store
                        .gmail()
                        .users_due_for_sync(service.now(), free as u64)
                        .await;
                    match due {
                        Ok(users) => {
                            for user in users {
                                // Still triaging after its last sync: synced when that ends.
                                let Some(guard) = busy.claim(user) else {
                                    continue;
                                };
                                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                                    break;
                                };
                                let service = service.clone();
                                let assistant = auto_triage.clone();
                                let triage_permits = Arc::clone(&triage_permits);
                                let shutdown = shutdown.clone();
                                running.spawn(async move {
                                    let new_mail = service.background_sync(user).await;
                                    drop(permit);
                                    if let (Some(assistant), Some(new_mail)) = (assistant, new_mail)
                                    {
                                        tokio::select! {
                                            () = shutdown.cancelled() => {}
                                            () = service.auto_triage(
                                                &assistant,
                                                user,
                                                &new_mail,
                                                &triage_permits,
                                            ) => {}
                                        }
                                    }
                                    drop(guard);
                                });
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "looking for mailboxes due for a sync failed");
                        }
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(service.inner.settings.sync_poll_interval) => {}
                }
            }
            while running.join_next().await.is_some() {}
        })
    }

    /// One background sync of `user`; returns the INBOX mail it added when it succeeded. A
    /// failure that only the user can fix stops the schedule until they reconnect; the others
    /// were recorded by the sync and retry at the next interval.
    async fn background_sync(&self, user: UserId) -> Option<NewInboxMail> {
        match self.sync_reporting_new_mail(user, false).await {
            Ok((_, new_mail)) => return Some(new_mail),
            Err(Error::Aborted { .. }) => {
                // Another server holds the lease: it syncs the mailbox.
            }
            Err(Error::FailedPrecondition { reason, message }) => {
                let now = self.now();
                let gmail = self.inner.store.gmail();
                let stopped = async {
                    gmail
                        .record_sync_error(user, reason.as_str(), &message, now, None)
                        .await?;
                    if reason != ErrorReason::GmailNotConnected {
                        gmail
                            .set_state(user, GmailConnectionState::ReauthRequired, now)
                            .await?;
                    }
                    Ok::<_, Error>(())
                }
                .await;
                if let Err(err) = stopped {
                    tracing::warn!(%user, error = %err, "stopping the background sync of a mailbox failed");
                }
            }
            Err(err) => {
                tracing::debug!(%user, error = %err, "background gmail sync failed");
            }
        }
        None
    }

    /// Triages the INBOX mail one background sync of `user` added (see the module's notes),
    /// once one of `permits` is free. Failures are logged, never returned: the sync is done.
    async fn auto_triage(
        &self,
        assistant: &MailAssistant,
        user: UserId,
        new_mail: &NewInboxMail,
        permits: &Semaphore,
    ) {
        let cap = self
            .inner
            .settings
            .triage_batch_size
            .saturating_mul(AUTO_TRIAGE_BATCHES);
        let Some(selection) = auto_triage_selection(new_mail, cap) else {
            return;
        };
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let context = background_context();
        match assistant.triage_inbox(user, &context, &selection).await {
            Ok(report) => {
                tracing::info!(
                    %user,
                    new_inbox = new_mail.received.len(),
                    triaged = report.triaged_count,
                    model_calls = report.usage.model_calls,
                    "automatic triage after a background sync"
                );
            }
            Err(Error::FailedPrecondition {
                reason: ErrorReason::ApiKeyMissing,
                ..
            }) => {
                tracing::debug!(%user, "no Gemini key: the new mail is left untriaged");
            }
            Err(err) => {
                tracing::warn!(
                    %user,
                    reason = reason_of(&err),
                    error = %err,
                    request_id = %context.request_id,
                    "automatic triage after a background sync failed; the new mail stays untriaged until TriageInbox"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn no_new_inbox_mail_means_no_triage() {
        assert_eq!(auto_triage_selection(&NewInboxMail::default(), 50), None);
    }

    #[test]
    fn the_selection_covers_the_new_mail_and_nothing_older() {
        let new_mail = NewInboxMail {
            received: vec![at(30), at(10), at(20)],
        };
        let selection = auto_triage_selection(&new_mail, 50).unwrap();
        assert_eq!(selection.max_messages, 3);
        assert_eq!(selection.start, at(10));
        assert!(!selection.refresh && !selection.unread_only);
    }

    #[test]
    fn a_large_first_sync_is_cut_to_its_newest_messages() {
        let new_mail = NewInboxMail {
            received: (0..1_000).map(at).collect(),
        };
        let selection = auto_triage_selection(&new_mail, 50).unwrap();
        assert_eq!(selection.max_messages, 50);
        assert_eq!(selection.start, at(950));
    }
}
