//! The mail tools in chat, end to end on SQLite and PostgreSQL: the server signed in against
//! the in-tree OpenID provider, mail synced from the Gmail API peer, and a scripted Gemini
//! peer that plays both the chat's model (calling the tools) and the model the mail AI calls.
//!
//! - [`drafts`]: `create_draft` lands in the peer's Drafts and nothing is sent; the compose
//!   scope decides whether it is offered; hostile mail cannot get a draft written.
//! - [`assistant`]: "what needs my reply?" through `mail_needing_reply` (new inbox mail
//!   triaged first, counted per batch) and `summarize_thread` (wrapped as untrusted data,
//!   reused while the thread is unchanged).
//! - [`failures`]: every AI error of the contract as the tools meet it — no key, a key Google
//!   rejects, the budget spent, a rate limit, an outage — what the model is told, what the
//!   user gets, and that no secret leaks.
//! - [`isolation`]: another user's message and thread ids get the same answer as unknown
//!   ones from every tool, and no tool lists another user's mail.

mod assistant;
mod drafts;
mod failures;
mod isolation;
mod setup;
