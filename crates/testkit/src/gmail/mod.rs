//! A Gmail API server (`gmail/v1`) on 127.0.0.1 for tests.
//!
//! It speaks the REST shapes of the peer description (`peers/gmail/README.md`), for the
//! mailboxes of users of an [`OidcProvider`]: a bearer token must
//! be an access token that provider issued, unexpired and unrevoked (else the 401
//! `authError` body), carrying `gmail.readonly` (or `gmail.modify`, `mail.google.com`;
//! else the 403 `insufficientPermissions` body). The mailbox is the token owner's, keyed by
//! their `sub`; `userId` in the path is `me` or their address.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /gmail/v1/users/me/profile` | `{emailAddress, messagesTotal, threadsTotal, historyId}`; the address is the token owner's unless [`GmailServer::set_address`] set another |
//! | `GET /gmail/v1/users/me/messages?maxResults=&pageToken=&labelIds=&includeSpamTrash=` | `{messages[]{id,threadId}, nextPageToken?, resultSizeEstimate}` newest first (by `internalDate`), SPAM/TRASH left out unless asked for, `messages` omitted when empty; `maxResults` 100 by default, at most 500 |
//! | `GET /gmail/v1/users/me/messages/{id}?format=raw\|minimal\|metadata\|full&metadataHeaders=` | the message resource; `raw` is the stored bytes, base64url; 404 `notFound` for a deleted or unknown id |
//! | `GET /gmail/v1/users/me/threads/{id}?format=` | `{id, historyId, messages[]}` oldest first, each in `format`; 404 for an unknown thread |
//! | `GET /gmail/v1/users/me/history?startHistoryId=&historyTypes=&pageToken=&maxResults=` | records after `startHistoryId` (filtered by the repeated `historyTypes`), paged, `history` omitted when empty, with the current `historyId`; 404 `notFound` when the start is older than the history kept |
//! | `POST /gmail/v1/users/me/drafts` `{message: {raw, threadId?}}` | `{id, message{id, threadId, labelIds}}`; needs `gmail.compose` (403 `insufficientPermissions` otherwise); 404 for an unknown `threadId`; recorded ([`GmailServer::drafts`]) |
//! | any `…/messages/send` or `…/drafts/send` | never sends: recorded as a violation ([`GmailServer::send_attempts`]) and answered 500 |
//!
//! Every mailbox change made through the test API ([`GmailServer::add_message`],
//! [`GmailServer::delete_message`], [`GmailServer::modify_labels`]) appends a history record
//! with a new history id, as Gmail does; [`GmailServer::expire_history`] forgets the history
//! so far, so an older start gets the 404 that forces a full sync.
//!
//! Quota: each call costs Gmail's units (getProfile 1, history.list 2, messages.list 5,
//! messages.get 5, threads.get 10). A user whose calls of the last second (by arrival) would
//! pass [`GmailServer::set_quota`] units (250 by default) gets 429 `rateLimitExceeded` (or,
//! [switched](GmailServer::set_rate_limit_answer), 403 `userRateLimitExceeded`). The peer
//! records, per user, the most units asked for in any one second, refused calls included
//! ([`GmailServer::max_units_in_one_second`]), so a test can assert a client never went over.
//!
//! | tool | for |
//! | --- | --- |
//! | [`GmailServer::add_message`], [`NewMessage`], [`GmailServer::delete_message`], [`GmailServer::modify_labels`], [`GmailServer::expire_history`], [`GmailServer::set_address`] | the mailbox, its history and its address |
//! | [`GmailServer::history_id`], [`GmailServer::message_ids`], [`GmailServer::message_count`] | what the mailbox holds |
//! | [`GmailServer::set_quota`], [`GmailServer::set_rate_limit_answer`], [`GmailServer::set_rate_limit_retry_after`] | the per-user quota |
//! | [`GmailServer::fail_next`], [`GmailServer::inject`], [`Fault`], [`ErrorBody`], [`FaultRule`] | error answers (with `Retry-After`), stalls, dropped connections, for the next N calls or always, of one operation or any |
//! | [`GmailServer::calls`], [`GmailServer::total_calls`], [`GmailServer::max_concurrent_requests`], [`GmailServer::max_units_in_one_second`], [`GmailServer::rate_limited_answers`], [`GmailServer::request_targets`] | what clients did: calls per user and operation, the most requests of one user in flight at once, quota use, paths and queries as received |
//!
//! Faults apply after the call is counted and before the token check, as when Google's front
//! end fails. Page tokens are offsets into the current listing (a mailbox changing between
//! pages shifts them, as Gmail's may); `q` and history's `labelId` are ignored. `format=full`
//! is simple: charsets are not converted, `message/rfc822` parts
//! are leaves and attachment bodies are inlined as `data`.

mod api;
pub mod bodies;
mod drafts;
mod fault;
mod mailbox;
mod mime;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::oidc::{OidcProvider, OidcTokens};
use crate::serve::{AllowedHosts, Bound, Serving};

pub use drafts::{GMAIL_COMPOSE, GMAIL_COMPOSE_SCOPES, RecordedDraft};
pub use fault::{ErrorBody, Fault, FaultRule};
pub use mailbox::NewMessage;

/// The scopes that let a token read a mailbox (drafts need [`GMAIL_COMPOSE_SCOPES`]).
pub const GMAIL_READ_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://mail.google.com/",
];

/// `gmail.readonly`, the scope assistd asks for.
pub const GMAIL_READONLY: &str = GMAIL_READ_SCOPES[0];

/// Gmail's default per-user quota, units per second.
pub const DEFAULT_QUOTA_UNITS_PER_SECOND: u32 = 250;

/// A method of the Gmail API this server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// users.getProfile.
    GetProfile,
    /// users.messages.list.
    ListMessages,
    /// users.messages.get.
    GetMessage,
    /// users.threads.get.
    GetThread,
    /// users.history.list.
    ListHistory,
    /// users.drafts.create.
    CreateDraft,
}

impl Operation {
    /// Quota units one call costs.
    #[must_use]
    pub const fn cost(self) -> u32 {
        match self {
            Self::GetProfile => 1,
            Self::ListHistory => 2,
            Self::ListMessages | Self::GetMessage => 5,
            Self::GetThread | Self::CreateDraft => 10,
        }
    }
}

/// How a user over quota is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RateLimitAnswer {
    /// 429 `rateLimitExceeded` (the default).
    #[default]
    TooManyRequests,
    /// 403 `userRateLimitExceeded`.
    UserRateLimit403,
}

/// A running Gmail API server. Dropping it stops it and closes its connections.
pub struct GmailServer {
    shared: Arc<Shared>,
    server: Serving,
}

impl std::fmt::Debug for GmailServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GmailServer")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl GmailServer {
    /// Starts a server on 127.0.0.1 and an ephemeral port that accepts the access tokens
    /// `oidc` issues. Mailboxes start empty at history id 1000; the quota is 250 units per
    /// second.
    ///
    /// # Panics
    /// No port can be bound on 127.0.0.1.
    pub async fn start(oidc: &OidcProvider) -> Self {
        let shared = Arc::new(Shared {
            tokens: oidc.tokens(),
            state: Mutex::new(State::default()),
        });
        let bound = Bound::localhost("Gmail test server").await;
        let hosts = AllowedHosts::for_addr(bound.addr());
        let server = bound.answer_only_to(hosts).serve({
            let shared = Arc::clone(&shared);
            move |request, hangup| api::handle(Arc::clone(&shared), hangup, request)
        });
        Self { shared, server }
    }

    /// The socket address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The API root to configure a client with: `http://127.0.0.1:PORT/gmail/v1/`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}/gmail/v1/", self.server.addr())
    }

    /// Adds a message to `user`'s mailbox (by `sub`), with a new history record
    /// (`messagesAdded`); returns its id (16 hex digits, like Gmail's).
    pub fn add_message(&self, user: &str, message: NewMessage) -> String {
        let mut state = self.shared.lock();
        state.next_message += 1;
        let id = format!("{:016x}", 0x18f3_0000_0000_0000_u64 + state.next_message);
        state.mailbox(user).add(id.clone(), message);
        id
    }

    /// Makes getProfile give `address` as `user`'s mailbox address (by default the token
    /// owner's sign-in address), as for an account whose sign-in address is an alias.
    pub fn set_address(&self, user: &str, address: &str) {
        self.shared.lock().mailbox(user).address = Some(address.to_owned());
    }

    /// Deletes a message for good, with a `messagesDeleted` record; `false` if there is no
    /// such message.
    pub fn delete_message(&self, user: &str, id: &str) -> bool {
        self.shared.lock().mailbox(user).delete(id)
    }

    /// Adds and removes labels, with a `labelsAdded` and/or a `labelsRemoved` record (each
    /// its own history id) for the labels that actually changed; `false` if there is no such
    /// message.
    pub fn modify_labels(&self, user: &str, id: &str, add: &[&str], remove: &[&str]) -> bool {
        self.shared.lock().mailbox(user).modify(id, add, remove)
    }

    /// Forgets the history so far: history.list with a start before the current history id
    /// gets 404 from now on.
    pub fn expire_history(&self, user: &str) {
        self.shared.lock().mailbox(user).expire_history();
    }

    /// The mailbox's current history id.
    #[must_use]
    pub fn history_id(&self, user: &str) -> u64 {
        self.shared.lock().mailbox(user).history_id
    }

    /// The ids messages.list would list (SPAM and TRASH left out), newest first.
    #[must_use]
    pub fn message_ids(&self, user: &str) -> Vec<String> {
        self.shared
            .lock()
            .mailbox(user)
            .listed(false, &[])
            .into_iter()
            .map(|message| message.id.clone())
            .collect()
    }

    /// How many messages the mailbox holds (SPAM and TRASH included).
    #[must_use]
    pub fn message_count(&self, user: &str) -> usize {
        self.shared.lock().mailbox(user).messages.len()
    }

    /// A message's labels, `None` if there is no such message.
    #[must_use]
    pub fn labels(&self, user: &str, id: &str) -> Option<Vec<String>> {
        self.shared
            .lock()
            .mailbox(user)
            .messages
            .get(id)
            .map(|message| message.labels.clone())
    }

    /// Sets each user's quota in units per second.
    pub fn set_quota(&self, units_per_second: u32) {
        self.shared.lock().quota = units_per_second;
    }

    /// How a user over quota is answered.
    pub fn set_rate_limit_answer(&self, answer: RateLimitAnswer) {
        self.shared.lock().rate_limit_answer = answer;
    }

    /// The `Retry-After` header of quota answers (none by default).
    pub fn set_rate_limit_retry_after(&self, value: Option<String>) {
        self.shared.lock().rate_limit_retry_after = value;
    }

    /// Adds a fault rule. Rules are tried in the order added; the first that matches a
    /// request applies (and counts down if limited).
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    /// The next `n` requests (any operation) get `fault`.
    pub fn fail_next(&self, n: usize, fault: impl Into<Fault>) {
        self.inject(FaultRule::next(n, fault));
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Calls of `operation` received for `user` (by `sub`), whatever the answer.
    #[must_use]
    pub fn calls(&self, user: &str, operation: Operation) -> usize {
        self.shared
            .lock()
            .users
            .get(user)
            .and_then(|usage| usage.calls.get(&operation).copied())
            .unwrap_or(0)
    }

    /// Calls received for `user`, all operations.
    #[must_use]
    pub fn total_calls(&self, user: &str) -> usize {
        self.shared
            .lock()
            .users
            .get(user)
            .map_or(0, |usage| usage.calls.values().sum())
    }

    /// The most requests of `user` the server held at once.
    #[must_use]
    pub fn max_concurrent_requests(&self, user: &str) -> usize {
        self.shared
            .lock()
            .users
            .get(user)
            .map_or(0, |usage| usage.max_in_flight)
    }

    /// The most quota units `user` asked for within any one second (by arrival), refused
    /// calls included.
    #[must_use]
    pub fn max_units_in_one_second(&self, user: &str) -> u32 {
        self.shared
            .lock()
            .users
            .get(user)
            .map_or(0, |usage| usage.max_demand)
    }

    /// How many calls of `user` were refused for quota.
    #[must_use]
    pub fn rate_limited_answers(&self, user: &str) -> usize {
        self.shared
            .lock()
            .users
            .get(user)
            .map_or(0, |usage| usage.refused)
    }

    /// The path and query of every request received, in order (to check what a client puts
    /// in URLs).
    #[must_use]
    pub fn request_targets(&self) -> Vec<String> {
        self.shared.lock().targets.clone()
    }

    /// The drafts created in `user`'s mailbox (by `sub`), oldest first.
    #[must_use]
    pub fn drafts(&self, user: &str) -> Vec<RecordedDraft> {
        self.shared
            .lock()
            .drafts
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests to a send method (`messages/send`, `drafts/send`) arrived, from any
    /// user, whatever their token: a client that never sends leaves this at zero.
    #[must_use]
    pub fn send_attempts(&self) -> usize {
        self.shared.lock().send_attempts
    }

    /// Forgets the counters (calls, concurrency, quota use, targets); mailboxes stay.
    pub fn reset_counters(&self) {
        let mut state = self.shared.lock();
        state.users.clear();
        state.targets.clear();
    }
}

/// State shared by the handle and the connections.
struct Shared {
    tokens: OidcTokens,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("Gmail test server state poisoned")
    }
}

/// One user's use of the API.
#[derive(Default)]
struct Usage {
    calls: HashMap<Operation, usize>,
    in_flight: usize,
    max_in_flight: usize,
    /// Units of every call in the last second, by arrival.
    demand: VecDeque<(Instant, u32)>,
    max_demand: u32,
    /// Units of the calls admitted in the last second.
    spent: VecDeque<(Instant, u32)>,
    refused: usize,
}

fn window_sum(log: &mut VecDeque<(Instant, u32)>, now: Instant) -> u32 {
    while log
        .front()
        .is_some_and(|&(at, _)| now.duration_since(at) >= Duration::from_secs(1))
    {
        log.pop_front();
    }
    log.iter().map(|&(_, units)| units).sum()
}

impl Usage {
    /// Counts a call's units; `false` if it goes over `quota` (and is refused).
    fn admit(&mut self, units: u32, quota: u32) -> bool {
        let now = Instant::now();
        self.demand.push_back((now, units));
        let demand = window_sum(&mut self.demand, now);
        self.max_demand = self.max_demand.max(demand);
        if window_sum(&mut self.spent, now) + units > quota {
            self.refused += 1;
            return false;
        }
        self.spent.push_back((now, units));
        true
    }
}

struct State {
    mailboxes: HashMap<String, mailbox::Mailbox>,
    next_message: u64,
    quota: u32,
    rate_limit_answer: RateLimitAnswer,
    rate_limit_retry_after: Option<String>,
    faults: Vec<FaultRule>,
    users: HashMap<String, Usage>,
    targets: Vec<String>,
    drafts: HashMap<String, Vec<RecordedDraft>>,
    send_attempts: usize,
}

impl Default for State {
    fn default() -> Self {
        Self {
            mailboxes: HashMap::new(),
            next_message: 0,
            quota: DEFAULT_QUOTA_UNITS_PER_SECOND,
            rate_limit_answer: RateLimitAnswer::default(),
            rate_limit_retry_after: None,
            faults: Vec::new(),
            users: HashMap::new(),
            targets: Vec::new(),
            drafts: HashMap::new(),
            send_attempts: 0,
        }
    }
}

impl State {
    fn mailbox(&mut self, user: &str) -> &mut mailbox::Mailbox {
        self.mailboxes.entry(user.to_owned()).or_default()
    }

    fn take_fault(&mut self, operation: Option<Operation>) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|rule| rule.matches(operation))?;
        let rule = &mut self.faults[index];
        let fault = rule.fault.clone();
        if let Some(remaining) = &mut rule.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                self.faults.remove(index);
            }
        }
        Some(fault)
    }
}
