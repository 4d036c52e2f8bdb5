//! Per-user quota: a bucket of quota units per user, waited on before each request.
//!
//! Google limits each user to a number of quota units per second (250; messages.get costs
//! 5, …), counted when requests arrive at Google. This client cannot see that moment, only
//! that it lies between admitting a request and receiving its answer. So a request counts
//! against its user's bucket from the moment it is admitted, for as long as it is in flight,
//! and for one window ([`WINDOW`]) after its answer arrived; a request is admitted only when
//! the units counted now leave room for its cost. Then no window of one second at Google's
//! end can hold more than the limit, however long requests take on their way: every request
//! that arrived at Google in the second before the newest one arrived was still counted when
//! that newest one was admitted.
//!
//! The price is throughput when answers are slow: a request's units come back one window
//! after its answer instead of one window after it was sent.
//!
//! Buckets of users with nothing counted hold no information and are dropped on the next
//! sweep, so the map holds only recently active users.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a request's units count after its answer arrived: one second, plus a little for
/// clocks that tick differently at Google's end.
pub const WINDOW: Duration = Duration::from_millis(1010);

/// How often idle buckets are dropped (checked on each acquire).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often a caller looks again while requests in flight hold the room it needs (their
/// answers free it at an unknown time).
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);

/// One admitted request.
#[derive(Debug)]
struct Spent {
    id: u64,
    cost: u32,
    /// When its answer arrived; `None` while it is in flight.
    answered: Option<Instant>,
}

/// One user's counted requests.
#[derive(Debug, Default)]
struct Bucket {
    spent: Vec<Spent>,
    /// Sum of `spent`'s costs.
    total: u32,
    /// Callers currently waiting on this bucket (it is not dropped while any is).
    waiting: usize,
}

impl Bucket {
    /// Forgets requests answered a window ago or more.
    fn expire(&mut self, now: Instant) {
        let mut freed = 0;
        self.spent.retain(|spent| match spent.answered {
            Some(at) if now.duration_since(at) >= WINDOW => {
                freed += spent.cost;
                false
            }
            _ => true,
        });
        self.total -= freed;
    }

    /// Counts `cost` now as request `id` if there is room (a request costing more than the
    /// whole limit goes through alone), else says how long to wait before looking again.
    fn try_spend(&mut self, now: Instant, id: u64, cost: u32, limit: u32) -> Result<(), Duration> {
        self.expire(now);
        if self.total + cost <= limit || self.spent.is_empty() {
            self.spent.push(Spent {
                id,
                cost,
                answered: None,
            });
            self.total += cost;
            return Ok(());
        }
        // The answered requests leave in order of their answers; find when enough have.
        let mut answered: Vec<(Instant, u32)> = self
            .spent
            .iter()
            .filter_map(|spent| spent.answered.map(|at| (at, spent.cost)))
            .collect();
        answered.sort_unstable_by_key(|&(at, _)| at);
        let mut freed = 0;
        for (at, spent) in answered {
            freed += spent;
            if self.total - freed + cost <= limit {
                return Err((at + WINDOW).saturating_duration_since(now));
            }
        }
        // Requests in flight hold the room: look again soon.
        Err(IN_FLIGHT_POLL)
    }

    /// Request `id`'s answer arrived now.
    fn answered(&mut self, id: u64, now: Instant) {
        if let Some(spent) = self.spent.iter_mut().find(|spent| spent.id == id) {
            spent.answered = Some(now);
        }
    }
}

#[derive(Debug)]
struct Buckets {
    users: HashMap<String, Bucket>,
    last_sweep: Instant,
    next_id: u64,
}

/// The quota buckets of every user, shared by the clones of a
/// [`GmailClient`](crate::GmailClient).
#[derive(Clone, Debug)]
pub struct QuotaBuckets {
    units_per_window: u32,
    inner: Arc<Mutex<Buckets>>,
}

/// An admitted request's units, counted while this lives (the request is in flight) and for
/// one [`WINDOW`] after it is dropped: drop it when the answer has arrived.
#[derive(Debug)]
pub struct QuotaSpend {
    buckets: QuotaBuckets,
    key: String,
    id: u64,
}

impl Drop for QuotaSpend {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if let Some(bucket) = buckets.users.get_mut(&self.key) {
            bucket.answered(self.id, now);
        }
    }
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
                next_id: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `key`'s bucket has room for `cost` units, and counts them until the
    /// returned [`QuotaSpend`] is dropped and one window more.
    pub async fn acquire(&self, key: &str, cost: u32) -> QuotaSpend {
        let mut registered = false;
        loop {
            let wait = {
                let mut buckets = self.lock();
                let now = Instant::now();
                if now.duration_since(buckets.last_sweep) >= SWEEP_EVERY {
                    buckets.last_sweep = now;
                    buckets.users.retain(|_, bucket| {
                        bucket.expire(now);
                        bucket.waiting > 0 || !bucket.spent.is_empty()
                    });
                }
                let id = buckets.next_id;
                buckets.next_id += 1;
                let bucket = buckets.users.entry(key.to_owned()).or_default();
                match bucket.try_spend(now, id, cost, self.units_per_window) {
                    Ok(()) => {
                        if registered {
                            bucket.waiting -= 1;
                        }
                        return QuotaSpend {
                            buckets: self.clone(),
                            key: key.to_owned(),
                            id,
                        };
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
        self.lock().users.len()
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

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_counts_until_a_window_after_its_answer() {
        let buckets = QuotaBuckets::new(10);
        let start = Instant::now();
        let slow = buckets.acquire("u", 10).await;
        // Its answer takes 3 s: the next request waits for it, then one window more.
        let answer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(slow);
        });
        buckets.acquire("u", 10).await;
        let waited = Instant::now().duration_since(start);
        answer.await.unwrap();
        assert!(waited >= Duration::from_secs(3) + WINDOW, "{waited:?}");
        assert!(
            waited <= Duration::from_secs(3) + WINDOW + IN_FLIGHT_POLL * 2,
            "{waited:?}"
        );
    }
}
