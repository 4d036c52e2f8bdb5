//! One module per gRPC service: proto <-> domain conversion and handlers that call
//! `assistd-core`.

pub mod planned;
pub mod preferences;
