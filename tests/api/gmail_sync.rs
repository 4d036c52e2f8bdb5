//! Gmail sync end to end, on SQLite and PostgreSQL, against the in-tree OpenID provider and
//! the testkit Gmail peer: users sign in with Gmail access through the redirect flow, and
//! their mailboxes are synced through SyncMailbox or in the background.
//!
//! - [`sync`]: a first sync of 1,000 messages within Gmail's per-user quota, then incremental
//!   syncs that pick up exactly 3 new messages, 1 label change, 1 deletion and a move to
//!   TRASH; an expired history id (404) forces a full resync without duplicates; 429 and 403
//!   rate-limit answers are waited out.
//! - [`crash`]: a full sync killed with SIGKILL half-way, in an `assistd serve` process, is
//!   completed by the next one without duplicates, at the mailbox's history id.
//! - [`replicas`]: three `assistd serve` replicas on PostgreSQL with background sync sync
//!   each mailbox once per interval, never two at once, and take over a killed one's lease.
//! - [`canary`]: a synced word is searchable but in no database file, dump or TRACE log, and
//!   shredded mail does not open after Disconnect or DeleteAccount.

mod canary;
mod crash;
pub(crate) mod mail;
mod replicas;
pub(crate) mod setup;
mod sync;
