//! The domain of assistd, free of any transport and storage: typed ids, the error every
//! operation returns, and the preferences model with its validation.
//!
//! The gRPC edge (the root `assistd` crate) converts protobuf messages into these types and
//! [`Error`] into `tonic::Status`; the store persists them. Nothing here knows about either.

pub mod apikey;
pub mod audit;
pub mod auth;
pub mod chat;
mod clock;
mod error;
pub mod gmail;
mod id;
pub mod preferences;
pub mod secret_file;
pub mod service_account;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorReason, FieldViolation, InvalidValue, Result};
pub use id::{AuthSessionId, UserId};
pub use service_account::ServiceAccountId;
