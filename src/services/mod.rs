//! One module per gRPC service: proto <-> domain conversion and handlers that call
//! `assistd-core`.

pub mod apikey;
pub mod auth;
pub mod chat;
pub mod planned;
pub mod preferences;

/// A protobuf timestamp for `at`.
pub(crate) fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The instant a protobuf timestamp names, if it is a valid one.
pub(crate) fn from_timestamp(ts: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| chrono::DateTime::from_timestamp(ts.seconds, nanos))
}
