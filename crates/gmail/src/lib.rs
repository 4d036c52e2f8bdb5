//! A client of the Gmail REST API (`gmail/v1`), called on behalf of each user with their
//! own OAuth access token.
//!
//! [`GmailClient`] is built once per process from a [`GmailConfig`] and shared: it holds one
//! connection pool, the per-user quota buckets and the global bound on requests in flight,
//! and no token. [`GmailClient::for_user`] gives a [`UserGmail`] for one user: a quota key
//! (the user's id) and the [`AccessTokenSource`] that hands out that user's access token.
//!
//! Calls ([`UserGmail`]):
//! - [`UserGmail::profile`]: `GET users/me/profile` (1 quota unit);
//! - [`UserGmail::list_messages`]: `GET users/me/messages`, SPAM and TRASH excluded
//!   (5 units);
//! - [`UserGmail::get_raw`]: `GET users/me/messages/{id}?format=raw`, the RFC 2822 bytes
//!   decoded (5 units);
//! - [`UserGmail::get_thread`]: `GET users/me/threads/{id}?format=minimal` (10 units);
//! - [`UserGmail::list_history`]: `GET users/me/history` with all four history types
//!   (2 units);
//! - [`UserGmail::reply_headers`]: `GET users/me/messages/{id}?format=metadata` for the
//!   threading headers of a reply (5 units);
//! - [`UserGmail::create_draft`]: `POST users/me/drafts` with an RFC 5322 message built by
//!   mail-builder (10 units; needs `gmail.compose`).
//!
//! No mail is ever sent: there is no call to users.messages.send or users.drafts.send, the
//! endpoint builder refuses a `send` segment, and `tests/never_sends.rs` fails if the
//! source names such a path.
//!
//! Every call:
//! - waits for a permit of the global semaphore ([`GmailConfig::max_concurrent_requests`]),
//!   then for the user's quota bucket ([`GmailConfig::quota_units_per_second`], Google's
//!   per-user limit of 250 units per second by default), which counts the request until a
//!   second after its answer, so one user never goes over the limit at Google's end;
//! - sends the token in the `Authorization` header only: never in a URL, an error, a `Debug`
//!   output or a log field ([`AccessToken`] redacts itself);
//! - after a 401 asks the token source once for a refreshed token and retries once;
//! - honours `Retry-After` (seconds or an HTTP date) on 429 and on 403 rate-limit answers,
//!   and retries 5xx answers, timeouts and dropped connections with exponential backoff and
//!   jitter, both within bounds;
//! - runs in a `gmail.call` tracing span recording the operation, the attempts and the
//!   outcome (no ids, addresses or contents).
//!
//! Failures are [`GmailError`]s a sync engine decides on by variant alone.

mod client;
mod config;
mod drafts;
mod error;
mod quota;
mod token;
mod wire;

pub use client::{CallObserver, GmailClient, Operation, UserGmail};
pub use config::{ConfigError, DEFAULT_BASE_URL, GmailConfig};
pub use drafts::{CreatedDraft, DraftAddress, NewDraft, ReplyHeaders, draft_message};
pub use error::GmailError;
pub use quota::{QuotaBuckets, QuotaSpend, WINDOW as QUOTA_WINDOW};
pub use token::{AccessToken, AccessTokenSource};
pub use wire::{
    HistoryLabelChange, HistoryMessage, HistoryPage, HistoryRecord, MessagePage, MessageRef,
    Profile, RawMessage, Thread, ThreadMessage,
};
