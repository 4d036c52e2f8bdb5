//! Per-user quota: a bucket of quota units per user, waited on before each request.
//!
//! Google limits each user to a number of quota units per second (250; messages.get costs
//! 5, …). Each user's bucket remembers the units it spent during the last window and admits
//! a request only when the window still has room for its cost, else waits until enough of
//! the spent units leave the window. So, counting by send time, a user never spends more than
//! the limit in any window, bursts included. The window is slightly longer than one second
//! ([`WINDOW`]) so that network jitter between this client and Google cannot squeeze two
//! windows' worth of requests into one second at Google's end.
//!
//! Buckets of users who spent nothing during the last window hold no information and are
//! dropped on the next sweep, so the map holds only recently active users.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The span over which a user's units are counted: one second plus a margin for jitter.
pub const WINDOW: Duration = Duration::from_millis(1050);

/// How often idle buckets are dropped (checked on each acquire).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One user's spending during the last [`WINDOW`].
#[derive(Debug, Default)]
struct Bucket {
    /// When each admitted request was sent and what it cost, oldest first.
    spent: VecDeque<(Instant, u32)>,
    /// Sum of `spent`'s costs.
    total: u32,
    /// Callers currently waiting on this bucket (it is not dropped while any is).
    waiting: usize,
}

impl Bucket {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, cost)) = self.spent.front() {
            if now.duration_since(at) >= WINDOW {
                self.spent.pop_front();
                self.total -= cost;
            } else {
                break;
            }
        }
    }

    /// Spends `cost` now if the window has room (a request costing more than the whole limit
    /// goes through alone), else says how long until it will.
    fn try_spend(&mut self, now: Instant, cost: u32, limit: u32) -> Result<(), Duration> {
        self.expire(now);
        if self.total + cost <= limit || self.spent.is_empty() {
            self.spent.push_back((now, cost));
            self.total += cost;
            return Ok(());
        }
        let mut freed = 0;
        for &(at, spent) in &self.spent {
            freed += spent;
            if self.total - freed + cost <= limit {
                return Err((at + WINDOW).saturating_duration_since(now));
            }
        }
        // Unreachable in practice (the loop frees everything), but never wait forever.
        Err(WINDOW)
    }
}

#[derive(Debug)]
struct Buckets {
    users: HashMap<String, Bucket>,
    last_sweep: Instant,
}

/// The quota buckets of every user, shared by the clones of a
/// [`GmailClient`](crate::GmailClient).
#[derive(Clone, Debug)]
pub struct QuotaBuckets {
    units_per_window: u32,
    inner: Arc<Mutex<Buckets>>,
}

impl QuotaBuckets {
    /// Buckets admitting `units_per_second` units per user per [`WINDOW`].
    #[must_use]
    pub fn new(units_per_second: u32) -> Self {
        Self {
            units_per_window: units_per_second.max(1),
            inner: Arc::new(Mutex::new(Buckets {
                users: HashMap::new(),
                last_sweep: Instant::now(),
            })),
        }
    }

    /// Waits until `key`'s bucket has room for `cost` units, and spends them.
    pub async fn acquire(&self, key: &str, cost: u32) {
        let mut registered = false;
        loop {
            let wait = {
                let mut buckets = self.inner.lock().expect("quota buckets poisoned");
                let now = Instant::now();
                if now.duration_since(buckets.last_sweep) >= SWEEP_EVERY {
                    buckets.last_sweep = now;
                    buckets.users.retain(|_, bucket| {
                        bucket.expire(now);
                        bucket.waiting > 0 || !bucket.spent.is_empty()
                    });
                }
                let bucket = buckets.users.entry(key.to_owned()).or_default();
                match bucket.try_spend(now, cost, self.units_per_window) {
                    Ok(()) => {
                        if registered {
                            bucket.waiting -= 1;
                        }
                        return;
                    }
                    Err(wait) => {
                        if !registered {
                            bucket.waiting += 1;
                            registered = true;
                        }
                        wait
                    }
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// How many users have a bucket (for tests of the eviction).
    #[must_use]
    pub fn tracked_users(&self) -> usize {
        self.inner
            .lock()
            .expect("quota buckets poisoned")
            .users
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units admitted in every window of length [`WINDOW`] − 1 ms (i.e. any "one second plus
    /// margin" at the far end) never exceed the limit.
    fn max_in_any_window(sent: &[(Instant, u32)], window: Duration) -> u32 {
        sent.iter()
            .map(|&(start, _)| {
                sent.iter()
                    .filter(|&&(at, _)| at >= start && at.duration_since(start) < window)
                    .map(|&(_, cost)| cost)
                    .sum()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_spends_more_than_the_limit_in_a_second() {
        let buckets = QuotaBuckets::new(250);
        let start = Instant::now();
        let mut sent = Vec::new();
        for i in 0..200 {
            let cost = if i % 7 == 0 { 10 } else { 5 };
            buckets.acquire("user-a", cost).await;
            sent.push((Instant::now(), cost));
        }
        let total: u32 = sent.iter().map(|&(_, cost)| cost).sum();
        assert!(max_in_any_window(&sent, Duration::from_secs(1)) <= 250);
        // Throughput is the limit per window: no slower than needed.
        let elapsed = Instant::now().duration_since(start);
        let lower_bound = WINDOW.mul_f64(f64::from(total) / 250.0 - 1.0);
        assert!(elapsed >= lower_bound, "{elapsed:?} < {lower_bound:?}");
        assert!(
            elapsed <= WINDOW.mul_f64(f64::from(total) / 250.0 + 1.0),
            "{elapsed:?} too slow for {total} units"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn first_window_is_a_burst_then_it_waits() {
        let buckets = QuotaBuckets::new(10);
        let start = Instant::now();
        buckets.acquire("u", 5).await;
        buckets.acquire("u", 5).await;
        assert_eq!(Instant::now(), start, "within the limit: no wait");
        buckets.acquire("u", 5).await;
        assert_eq!(Instant::now().duration_since(start), WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn users_are_independent() {
        let buckets = QuotaBuckets::new(10);
        let start = Instant::now();
        buckets.acquire("a", 10).await;
        buckets.acquire("b", 10).await;
        assert_eq!(Instant::now(), start);
        buckets.acquire("a", 1).await;
        assert_eq!(Instant::now().duration_since(start), WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cost_above_the_limit_goes_through_alone() {
        let buckets = QuotaBuckets::new(3);
        buckets.acquire("u", 10).await;
        let start = Instant::now();
        buckets.acquire("u", 10).await;
        assert_eq!(Instant::now().duration_since(start), WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_users_are_evicted() {
        let buckets = QuotaBuckets::new(250);
        for user in 0..100 {
            buckets.acquire(&format!("user-{user}"), 5).await;
        }
        assert_eq!(buckets.tracked_users(), 100);
        tokio::time::advance(SWEEP_EVERY).await;
        buckets.acquire("latest", 5).await;
        assert_eq!(buckets.tracked_users(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_of_one_user_share_the_limit() {
        let buckets = QuotaBuckets::new(50);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let buckets = buckets.clone();
            let sent = Arc::clone(&sent);
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    buckets.acquire("u", 5).await;
                    sent.lock().unwrap().push((Instant::now(), 5));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 80);
        assert!(max_in_any_window(&sent, Duration::from_secs(1)) <= 50);
        assert!(max_in_any_window(&sent, WINDOW - Duration::from_millis(1)) <= 50);
    }
}
