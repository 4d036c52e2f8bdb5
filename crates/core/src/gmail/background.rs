//! The background sync: every poll interval, the mailboxes whose next sync is due (and whose
//! lease is free) are synced, at most `max_concurrent_syncs` at a time on this server. Any
//! number of replicas may run it: the lease lets one of them sync a given mailbox.

use std::sync::Arc;

use assistd_domain::{Error, ErrorReason};
use assistd_store::GmailConnectionState;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::GmailService;

impl GmailService {
    /// Starts the background sync; it stops when `shutdown` fires, after the running syncs
    /// stopped (they stop between two messages when the service's own stop token fires).
    #[must_use]
    pub fn start_background_sync(
        &self,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let limit = service.inner.settings.max_concurrent_syncs;
            let permits = Arc::new(Semaphore::new(limit));
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
                                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                                    break;
                                };
                                let service = service.clone();
                                running.spawn(async move {
                                    service.background_sync(user).await;
                                    drop(permit);
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

    /// One background sync of `user`. A failure that only the user can fix stops the
    /// schedule until they reconnect; the others were recorded by the sync and retry at the
    /// next interval.
    async fn background_sync(&self, user: assistd_domain::UserId) {
        match self.sync(user, false).await {
            Ok(_) => {}
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
    }
}
