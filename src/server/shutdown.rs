//! Stopping the server: the grace for in-flight calls, stopping the chat exchanges that
//! outlive it, waiting for them and the background Gmail sync, then closing the store.

use std::time::Duration;

use anyhow::Context as _;

use super::Application;

/// How long a stopping server waits, after the grace, for the exchanges it stopped to store
/// their partial replies and for their calls to be answered, before it closes the store.
const STOP_EXCHANGES_WITHIN: Duration = Duration::from_secs(5);
impl Application {
    /// Runs until shutdown is requested, then stops gracefully: no new connection or call is
    /// accepted, and in-flight calls get up to the configured grace period to finish. Chat
    /// sends still running after it are stopped: each stores what was written of its reply
    /// (CANCELLED), releases its lease, and its client gets what was streamed so far and then
    /// UNAVAILABLE `SERVER_SHUTTING_DOWN` with a RetryInfo. The server waits up to
    /// five seconds for that, then closes the store.
    ///
    /// # Errors
    /// The server failed, or calls were still running five seconds after their exchanges
    /// were stopped (e.g. the database hung while their replies were stored).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            shutdown,
            grace,
            mut server,
            store,
            chat,
            background_sync,
            ..
        } = self;
        let result = tokio::select! {
            joined = &mut server => Some(joined),
            () = shutdown.cancelled() => None,
        };
        // When the exchanges stopped after the grace must have stored their ends.
        let mut stop_by = None;
        let joined = match result {
            Some(joined) => joined,
            None => {
                tracing::info!(grace = ?grace, "shutting down: finishing in-flight calls");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(
                            grace = ?grace,
                            running_exchanges = chat.running_exchanges(),
                            "calls outlived the grace period: stopping the running chat \
                             exchanges (their partial replies are stored, their clients told \
                             to resend)"
                        );
                        chat.stop_exchanges();
                        let deadline = tokio::time::Instant::now() + STOP_EXCHANGES_WITHIN;
                        stop_by = Some(deadline);
                        if let Ok(joined) = tokio::time::timeout_at(deadline, &mut server).await {
                            joined
                        } else {
                            server.abort();
                            let running = chat.running_exchanges();
                            store.close().await;
                            anyhow::bail!(
                                "calls were still running {STOP_EXCHANGES_WITHIN:?} after the \
                                 grace period of {grace:?} ({running} chat exchanges not \
                                 finished); stopped anyway"
                            );
                        }
                    }
                }
            }
        };
        shutdown.cancel();
        // Every call is answered, but an exchange whose client went away may still be storing
        // its CANCELLED reply: let it finish before the store closes.
        chat.stop_exchanges();
        let stop_by =
            stop_by.unwrap_or_else(|| tokio::time::Instant::now() + STOP_EXCHANGES_WITHIN);
        if tokio::time::timeout_at(stop_by, chat.exchanges_finished())
            .await
            .is_err()
        {
            tracing::warn!(
                running_exchanges = chat.running_exchanges(),
                "chat exchanges did not finish storing within {STOP_EXCHANGES_WITHIN:?}; \
                 closing the store anyway (their sends are resumable once their leases lapse)"
            );
        }
        // The background sync stops its syncs between two messages; their leases are
        // released, or lapse, before another server takes the mailboxes over.
        if let Some(background_sync) = background_sync
            && tokio::time::timeout_at(stop_by, background_sync)
                .await
                .is_err()
        {
            tracing::warn!(
                "the background Gmail sync did not stop in time; closing the store anyway"
            );
        }
        store.close().await;
        joined
            .context("server task panicked")?
            .context("server failed")?;
        tracing::info!("assistd stopped");
        Ok(())
    }
}
