//! One module per gRPC service: proto <-> domain conversion and handlers that call
//! `assistd-core`.

pub mod apikey;
pub mod auth;
pub mod chat;
pub mod planned;
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

// The page-token helpers below serve only AuthService.ListSessions until it moves to
// `crate::paging` like every other list.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::status::invalid_field;

/// Page tokens: `kind` and fields joined by `\n`, base64url. The kind keeps a token of one
/// list from being accepted by another.
pub(crate) fn encode_token(kind: &str, fields: &[String]) -> String {
    let mut text = kind.to_owned();
    for field in fields {
        text.push('\n');
        text.push_str(field);
    }
    URL_SAFE_NO_PAD.encode(text)
}

pub(crate) fn decode_token(
    token: &str,
    kind: &str,
    rpc: &str,
    count: usize,
) -> Result<Vec<String>, Status> {
    let bad = || {
        invalid_field(
            "page_token",
            format!("not a token from a previous {rpc} response with the same request fields"),
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(bad)?;
    let mut fields = text.split('\n');
    if fields.next() != Some(kind) {
        return Err(bad());
    }
    let fields: Vec<String> = fields.map(str::to_owned).collect();
    if fields.len() != count {
        return Err(bad());
    }
    Ok(fields)
}

/// A page size: 0 means `default`, larger than `max` means `max`, negative is refused.
pub(crate) fn page_size(value: i32, default: u64, max: u64) -> Result<u64, Status> {
    match u64::try_from(value) {
        Ok(0) => Ok(default),
        Ok(size) => Ok(size.min(max)),
        Err(_) => Err(invalid_field("page_size", "must not be negative")),
    }
}

/// Cuts `items` (fetched with one more than `limit`) to the page and returns the token of the
/// next page, made from the page's last item, or "" when this is the last page.
pub(crate) fn next_page<T>(
    items: &mut Vec<T>,
    limit: u64,
    token: impl FnOnce(&T) -> String,
) -> String {
    if items.len() as u64 <= limit {
        return String::new();
    }
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    items.last().map(token).unwrap_or_default()
}

/// A time as microseconds since the epoch, for page tokens.
pub(crate) fn micros(at: DateTime<Utc>) -> String {
    at.timestamp_micros().to_string()
}

/// The time [`micros`] wrote, if `text` is one.
pub(crate) fn from_micros(text: &str) -> Option<DateTime<Utc>> {
    text.parse().ok().and_then(DateTime::from_timestamp_micros)
}
