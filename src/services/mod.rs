//! One module per gRPC service: proto <-> domain conversion and handlers that call
//! `assistd-core`.

pub mod apikey;
pub mod auth;
pub mod chat;
pub mod gmail;
pub mod preferences;

use assistd_domain::FieldViolation;
use tonic::Status;

use crate::status::status;

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

/// The field violations of a request that could not be read.
pub(crate) type Violations = Vec<FieldViolation>;

/// The INVALID_ARGUMENT status for `violations`.
pub(crate) fn invalid(violations: Violations) -> Status {
    status(violations.into())
}

/// Both results, or the violations of both: a request with two bad fields learns of both.
pub(crate) fn collect<A, B>(
    a: Result<A, Violations>,
    b: Result<B, Violations>,
) -> Result<(A, B), Violations> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(a.err().into_iter().chain(b.err()).flatten().collect()),
    }
}

/// A required id field, parsed into its typed id.
pub(crate) fn required_id<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, Violations> {
    if value.is_empty() {
        return Err(vec![FieldViolation::new(field, "is required")]);
    }
    value.parse().map_err(|_| {
        vec![FieldViolation::new(
            field,
            format!("{value:?} is not a valid id (a UUID)"),
        )]
    })
}
