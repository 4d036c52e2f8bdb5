//! What the provider remembers between requests (authorization codes, access and refresh
//! tokens), each for a bounded time and in bounded number, so a provider left running for
//! days, or flooded with sign-ins, does not grow without end.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Values by token, each forgotten `lifetime` after it was issued, and the oldest forgotten
/// first once `capacity` are held.
pub(super) struct Expiring<V> {
    lifetime: Duration,
    capacity: usize,
    entries: HashMap<String, (Instant, V)>,
    /// Tokens in issue order with their issue instants; may name tokens already removed.
    order: VecDeque<(Instant, String)>,
}

impl<V> Expiring<V> {
    /// An empty set whose entries live `lifetime`, at most `capacity` at once.
    pub(super) fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            lifetime,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps `value` under `token`, issued at `now`, after forgetting what expired by then and,
    /// when full, the oldest entries.
    pub(super) fn insert(&mut self, now: Instant, token: String, value: V) {
        self.prune(now);
        while self.order.len() >= self.capacity {
            self.forget_oldest();
        }
        self.order.push_back((now, token.clone()));
        self.entries.insert(token, (now, value));
    }

    /// The value under `token` if it has not expired at `now`.
    pub(super) fn get(&self, now: Instant, token: &str) -> Option<&V> {
        self.entries
            .get(token)
            .filter(|(issued, _)| !self.expired(*issued, now))
            .map(|(_, value)| value)
    }

    /// Takes the value under `token` out; `None` if it is unknown or expired at `now`.
    pub(super) fn remove(&mut self, now: Instant, token: &str) -> Option<V> {
        let (issued, value) = self.entries.remove(token)?;
        (!self.expired(issued, now)).then_some(value)
    }

    /// How many entries are held (expired ones not yet pruned included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets every entry that expired by `now`.
    pub(super) fn prune(&mut self, now: Instant) {
        while let Some((issued, _)) = self.order.front() {
            if !self.expired(*issued, now) {
                break;
            }
            self.forget_oldest();
        }
    }

    fn expired(&self, issued: Instant, now: Instant) -> bool {
        now.saturating_duration_since(issued) > self.lifetime
    }

    /// Drops the oldest token of the issue order, and its entry unless that was issued again.
    fn forget_oldest(&mut self) {
        if let Some((issued, token)) = self.order.pop_front()
            && self
                .entries
                .get(&token)
                .is_some_and(|(held, _)| *held == issued)
        {
            self.entries.remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_entry_expires_after_its_lifetime_and_is_pruned() {
        let start = Instant::now();
        let mut codes = Expiring::new(MINUTE, 100);
        codes.insert(start, "a".into(), 1);
        codes.insert(start + MINUTE / 2, "b".into(), 2);
        assert_eq!(codes.get(start + MINUTE, "a"), Some(&1));
        assert_eq!(
            codes.get(start + MINUTE + Duration::from_secs(1), "a"),
            None
        );
        // Inserting prunes what expired, and only that.
        codes.insert(start + MINUTE + Duration::from_secs(1), "c".into(), 3);
        assert_eq!(codes.len(), 2);
        assert_eq!(codes.remove(start + MINUTE * 2, "a"), None);
        assert_eq!(codes.remove(start + MINUTE, "b"), Some(2));
        assert_eq!(codes.remove(start + MINUTE, "b"), None, "taken once");
        codes.prune(start + MINUTE * 3);
        assert_eq!(codes.len(), 0);
    }

    #[test]
    fn a_full_set_forgets_its_oldest_entries() {
        let start = Instant::now();
        let mut tokens = Expiring::new(MINUTE, 3);
        for (index, token) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let at = start + Duration::from_secs(u64::try_from(index).unwrap());
            tokens.insert(at, token.into(), index);
        }
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.get(start, "a"), None);
        assert_eq!(tokens.get(start, "b"), None);
        assert_eq!(tokens.get(start, "e"), Some(&4));
        // Tokens taken out early still leave the bookkeeping bounded.
        for index in 0..1000u64 {
            let token = format!("t{index}");
            tokens.insert(start + Duration::from_secs(5), token.clone(), 0);
            tokens.remove(start + Duration::from_secs(5), &token);
        }
        assert!(tokens.order.len() <= 3);
        assert_eq!(tokens.len(), 0);
    }
}
