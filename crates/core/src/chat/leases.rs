//! The leases of the exchanges this process is running, renewed together: every third of
//! `exchange_lease`, one task extends every held lease in one statement (per 500 exchanges),
//! so the lease can be short — a send whose server stopped is resumable soon after — while one
//! still being answered is never taken over. A waiting exchange costs an entry in a set, not a
//! task and a statement of its own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use assistd_domain::Clock;
use assistd_domain::chat::MessageId;
use assistd_store::Store;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Most exchanges whose leases one statement renews.
const RENEWAL_CHUNK: usize = 500;

/// The exchanges whose leases this process renews, and the task that renews them.
#[derive(Debug)]
pub(super) struct LeaseKeeper {
    held: Mutex<HashSet<MessageId>>,
    /// Started with the first lease held; started again if it ever ended (a panic, or the
    /// runtime it ran on is gone).
    task: Mutex<Option<JoinHandle<()>>>,
    store: Store,
    clock: Arc<dyn Clock>,
    lease: Duration,
}

/// A lease held until dropped.
#[derive(Debug)]
pub(super) struct HeldLease {
    keeper: Arc<LeaseKeeper>,
    exchange: MessageId,
}

impl LeaseKeeper {
    pub(super) fn new(store: Store, clock: Arc<dyn Clock>, lease: Duration) -> Self {
        Self {
            held: Mutex::default(),
            task: Mutex::default(),
            store,
            clock,
            lease,
        }
    }

    /// Keeps renewing the lease of `exchange` (taken when it began) until the returned guard
    /// is dropped. Must be called within a tokio runtime.
    pub(super) fn hold(self: &Arc<Self>, exchange: MessageId) -> HeldLease {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(exchange);
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            *task = Some(tokio::spawn(renew(Arc::downgrade(self))));
        }
        HeldLease {
            keeper: Arc::clone(self),
            exchange,
        }
    }

    /// How often the leases are renewed: a third of the lease, so one failed renewal still
    /// leaves time for the next.
    fn every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(50))
    }

    fn held(&self) -> Vec<MessageId> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// Extends every held lease to now + `lease`.
    async fn renew_all(&self) {
        let exchanges = self.held();
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30));
        let chat = self.store.chat();
        for chunk in exchanges.chunks(RENEWAL_CHUNK) {
            if let Err(err) = chat.renew_leases(chunk, self.clock.now() + lease).await {
                tracing::warn!(error = %err, exchanges = chunk.len(), "could not renew exchange leases");
            }
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.keeper
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.exchange);
    }
}

/// The renewing task: ends when the keeper is gone.
async fn renew(keeper: Weak<LeaseKeeper>) {
    let Some(every) = keeper.upgrade().map(|keeper| keeper.every()) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(keeper) = keeper.upgrade() else {
            return;
        };
        keeper.renew_all().await;
    }
}
