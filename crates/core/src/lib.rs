//! assistd's services: the domain operations behind every RPC, free of any transport. The gRPC
//! edge authenticates the caller, converts the request into domain types and calls one method
//! here with the caller's [`assistd_domain::UserId`].

mod api_keys;
mod audit_trail;
pub mod auth;
pub mod chat;
pub mod export;
pub mod gmail;
mod preferences;
mod rotation;
mod secrets;
mod service_accounts;

pub use api_keys::{ApiKeyVault, RevealedKey};
pub use audit_trail::AuditTrail;
pub use preferences::{PreferencesService, PreferencesWatch};
pub use rotation::{RotationError, RotationProgress, RotationReport, rotate_data_keys};
pub use secrets::{SecretSealer, UserDataKey};
pub use service_accounts::{
    CreatedServiceAccount, ON_BEHALF_OF_METADATA, ServiceAccounts, ServiceCall,
};
