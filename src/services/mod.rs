//! One module per gRPC service: proto <-> domain conversion and handlers that call
//! `assistd-core`.

pub mod apikey;
pub mod auth;
pub mod chat;
pub mod planned;
pub mod preferences;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Status;

use crate::status::invalid_field;

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
