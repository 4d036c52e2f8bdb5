//! SeaORM entities, one module per table. Only the store's repositories use them; the rest of
//! assistd sees domain types.

pub(crate) mod api_keys;
pub(crate) mod audit_chain_head;
pub(crate) mod audit_events;
pub(crate) mod chat_memories;
pub(crate) mod chat_messages;
pub(crate) mod chat_sessions;
pub(crate) mod preferences;
pub(crate) mod token_budgets;
pub(crate) mod usage_daily;
pub(crate) mod user_data_keys;
pub(crate) mod users;
