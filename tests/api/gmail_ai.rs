//! The AI RPCs of GmailService end to end, on SQLite and PostgreSQL, against the in-tree
//! OpenID provider, the Gmail peer and the Gemini peer.
//!
//! - [`triage`]: batches counted at the peer, results stored and not recomputed, `refresh`,
//!   partial and malformed answers leaving only the affected messages untriaged, triage shown
//!   on listed messages.
//! - [`summaries`]: message and thread summaries reused until the thread gets a new message
//!   (or `refresh`), long threads covered from their newest messages, another user's ids.
//! - [`auto_triage`]: `gmail.auto_triage` after background syncs: new INBOX mail triaged once
//!   (⌈n/batch⌉ calls), a first sync capped to its newest mail, off by default, users without
//!   a key left alone, a failed triage not retried.
//! - [`containment`]: hostile mail reaches the model only inside the untrusted-data wrapper,
//!   never in the system instruction, with no tools declared; every AI error of the
//!   contract for each RPC; summaries and triage gone after deletion, Disconnect and
//!   DeleteAccount.

mod auto_triage;
mod containment;
mod setup;
mod summaries;
mod triage;
