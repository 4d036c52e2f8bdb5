//! Pages of session lists kept in memory, so that a client listing its sessions again (every
//! app start, every device, every refresh) does not read and map the same rows each time.
//!
//! A page is served only while the user's chat has not changed since it was read. Every
//! change that can alter a listed session (created, updated, deleted, a message appended,
//! which moves its last activity and count) records a chat event in its own transaction and
//! bumps the user's event head (`chat_event_heads.last_seq`); that number is the list's
//! version:
//! - on PostgreSQL each list reads it (a primary-key lookup, batched with the lists of other
//!   calls waiting at the same moment: `heads`) and serves the cached page only when it is the
//!   number the page was read under, so a list on any replica right after a write sees the
//!   write;
//! - on SQLite one process owns the database and every change is published to this process
//!   after its commit, before the write returns (`events::publish_committed`, which calls
//!   [`SessionListCache::changed`]): the version is a counter in memory, and a list asks the
//!   database nothing when its page is cached.
//!
//! A page read while a change committed is stored under the version read before it, which the
//! change has already left behind, so it is never served. Memory is bounded: a few pages per
//! user, and the whole cache is emptied when it holds too many users.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use assistd_domain::UserId;
use assistd_domain::chat::{ArchivedFilter, ChatSession, SessionFilter, SessionId};
use chrono::{DateTime, Utc};

/// Users whose pages are kept; the cache is emptied when one more would exceed it.
const MAX_USERS: usize = 10_000;
/// Pages kept per user (filters × positions); the oldest goes first.
const PAGES_PER_USER: usize = 4;
/// Longest page kept: a page holds at most this many sessions (larger ones are not cached).
const MAX_PAGE: u64 = 100;

/// What a page was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PageKey {
    archived: u8,
    pinned: Option<bool>,
    after: Option<(DateTime<Utc>, SessionId)>,
    limit: u64,
}

impl PageKey {
    pub(super) fn new(
        filter: SessionFilter,
        after: Option<(DateTime<Utc>, SessionId)>,
        limit: u64,
    ) -> Option<Self> {
        let archived = match filter.archived {
            ArchivedFilter::Exclude => 0,
            ArchivedFilter::Only => 1,
            ArchivedFilter::Include => 2,
        };
        (limit <= MAX_PAGE).then_some(Self {
            archived,
            pinned: filter.pinned,
            after,
            limit,
        })
    }
}

#[derive(Debug, Default)]
struct UserPages {
    /// The version the pages were read under.
    version: i64,
    pages: Vec<(PageKey, Arc<Vec<ChatSession>>)>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, UserPages>,
    /// SQLite: each user's version, bumped by every committed change (0 before the first).
    local_versions: HashMap<UserId, i64>,
}

/// Recently listed pages of sessions, per user and version. Shared by every clone of a
/// [`Store`](crate::Store).
#[derive(Debug, Default)]
pub(crate) struct SessionListCache {
    state: Mutex<State>,
}

impl SessionListCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// SQLite: the user's version in this process.
    pub(super) fn local_version(&self, user: UserId) -> i64 {
        self.lock().local_versions.get(&user).copied().unwrap_or(0)
    }

    /// SQLite: a change of the user's chat committed; pages read before it are not served.
    pub(super) fn changed(&self, user: UserId) {
        let mut state = self.lock();
        if state.local_versions.len() >= MAX_USERS && !state.local_versions.contains_key(&user) {
            // Forgetting versions is safe only together with every page read under them.
            state.local_versions.clear();
            state.users.clear();
        }
        *state.local_versions.entry(user).or_insert(0) += 1;
        state.users.remove(&user);
    }

    /// The page read under `version`, if it is kept.
    pub(super) fn get(
        &self,
        user: UserId,
        version: i64,
        key: &PageKey,
    ) -> Option<Arc<Vec<ChatSession>>> {
        let state = self.lock();
        let pages = state.users.get(&user)?;
        if pages.version != version {
            return None;
        }
        pages
            .pages
            .iter()
            .find(|(cached, _)| cached == key)
            .map(|(_, page)| Arc::clone(page))
    }

    /// Keeps a page read under `version`. On SQLite (`local`) it is dropped when the user's
    /// version moved while it was read.
    pub(super) fn put(
        &self,
        user: UserId,
        version: i64,
        key: PageKey,
        page: Arc<Vec<ChatSession>>,
        local: bool,
    ) {
        let mut state = self.lock();
        if local && state.local_versions.get(&user).copied().unwrap_or(0) != version {
            return;
        }
        if !state.users.contains_key(&user) && state.users.len() >= MAX_USERS {
            state.users.clear();
        }
        let pages = state.users.entry(user).or_default();
        if pages.version != version {
            // Only ever forward: an older read finishing late must not evict newer pages.
            if pages.version > version {
                return;
            }
            pages.version = version;
            pages.pages.clear();
        }
        if let Some(slot) = pages.pages.iter_mut().find(|(cached, _)| *cached == key) {
            slot.1 = page;
            return;
        }
        if pages.pages.len() >= PAGES_PER_USER {
            pages.pages.remove(0);
        }
        pages.pages.push((key, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ChatSession {
        let now = Utc::now();
        ChatSession {
            id: SessionId::new(),
            title: "t".into(),
            title_generated: false,
            system_instruction: String::new(),
            model: String::new(),
            pinned: false,
            archived: false,
            message_count: 0,
            created_at: now,
            updated_at: now,
            last_activity_at: now,
        }
    }

    #[test]
    fn a_page_is_served_only_under_the_version_it_was_read_with() {
        let cache = SessionListCache::default();
        let user = UserId::new();
        let key = PageKey::new(SessionFilter::default(), None, 20).unwrap();
        let page = Arc::new(vec![session()]);
        cache.put(user, 3, key, Arc::clone(&page), false);
        assert_eq!(cache.get(user, 3, &key).as_deref(), Some(&*page));
        assert!(cache.get(user, 4, &key).is_none());
        // A late read under an older version does not replace newer pages.
        cache.put(user, 2, key, Arc::new(Vec::new()), false);
        assert_eq!(cache.get(user, 3, &key).as_deref(), Some(&*page));
        let other = PageKey::new(SessionFilter::default(), None, 10).unwrap();
        assert!(cache.get(user, 3, &other).is_none());
        assert!(cache.get(UserId::new(), 3, &key).is_none());
    }

    #[test]
    fn a_local_change_hides_pages_read_before_it() {
        let cache = SessionListCache::default();
        let user = UserId::new();
        let key = PageKey::new(SessionFilter::default(), None, 20).unwrap();
        let version = cache.local_version(user);
        // A change commits while the page is read: the page is not kept.
        cache.changed(user);
        cache.put(user, version, key, Arc::new(vec![session()]), true);
        let now = cache.local_version(user);
        assert_ne!(now, version);
        assert!(cache.get(user, now, &key).is_none());
        cache.put(user, now, key, Arc::new(Vec::new()), true);
        assert!(cache.get(user, now, &key).is_some());
        cache.changed(user);
        assert!(cache.get(user, cache.local_version(user), &key).is_none());
    }

    #[test]
    fn large_pages_are_not_cached() {
        assert!(PageKey::new(SessionFilter::default(), None, MAX_PAGE + 1).is_none());
    }
}
