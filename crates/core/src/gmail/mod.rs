//! Gmail: the link to the user's mailbox, the sync engine, and the synced copy sealed at
//! rest and searchable through a blind index.

mod config;

pub use config::GmailSettings;
