//! SeaORM entities, one module per table. Only the store's repositories use them; the rest of
//! assistd sees domain types.

pub(crate) mod api_keys;
pub(crate) mod audit_chain_head;
pub(crate) mod audit_events;
pub(crate) mod auth_sessions;
pub(crate) mod chat_event_heads;
pub(crate) mod chat_events;
pub(crate) mod chat_memories;
pub(crate) mod chat_messages;
pub(crate) mod chat_sessions;
pub(crate) mod gmail_connections;
pub(crate) mod gmail_message_labels;
pub(crate) mod gmail_message_summaries;
pub(crate) mod gmail_messages;
pub(crate) mod gmail_search_terms;
pub(crate) mod gmail_thread_summaries;
pub(crate) mod gmail_triage_results;
pub(crate) mod google_links;
pub(crate) mod login_attempts;
pub(crate) mod preferences;
pub(crate) mod refresh_tokens;
pub(crate) mod service_account_users;
pub(crate) mod service_accounts;
pub(crate) mod token_budgets;
pub(crate) mod usage_daily;
pub(crate) mod used_id_tokens;
pub(crate) mod user_data_keys;
pub(crate) mod users;
