//! SeaORM entities, one module per table. Only the store's repositories use them; the rest of
//! assistd sees domain types.

pub(crate) mod api_keys;
pub(crate) mod audit_chain_head;
pub(crate) mod audit_events;
pub(crate) mod preferences;
pub(crate) mod user_data_keys;
pub(crate) mod users;
