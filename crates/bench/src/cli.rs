//! Flags both benches take the same way, and the small gRPC client helpers they share.

use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

/// The default of `--postgres-admin-url`: the local server, trusted superuser.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database backs the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatabaseChoice {
    /// An SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server of --postgres-admin-url.
    Postgres,
    /// SQLite, then PostgreSQL.
    Both,
}

impl DatabaseChoice {
    /// The flag value that selects it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Both => "both",
        }
    }

    /// Whether a run with this choice measures SQLite.
    #[must_use]
    pub fn includes_sqlite(self) -> bool {
        matches!(self, Self::Sqlite | Self::Both)
    }

    /// Whether a run with this choice measures PostgreSQL.
    #[must_use]
    pub fn includes_postgres(self) -> bool {
        matches!(self, Self::Postgres | Self::Both)
    }
}

/// Parses a time flag: seconds (`5`, `2.5`, `0.002`, `5s`) or milliseconds (`500ms`).
///
/// # Errors
/// The text is not such a time, or is negative or too large.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a time like 5, 2.5s, 0.002 or 500ms"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|err| format!("{text:?}: {err}"))
}

/// An HTTP/2 channel to `address` (`http://HOST:PORT`), failing after `timeout` without a
/// connection.
///
/// # Errors
/// The address is not a URI, or no connection was made in time.
pub async fn connect(address: &str, timeout: Duration) -> anyhow::Result<Channel> {
    connect_endpoint(Endpoint::from_shared(address.to_owned())?, timeout).await
}

/// An HTTP/2 channel to `endpoint` (plaintext, or TLS when it carries a TLS configuration),
/// failing after `timeout` without a connection.
///
/// # Errors
/// No connection was made in time.
pub async fn connect_endpoint(endpoint: Endpoint, timeout: Duration) -> anyhow::Result<Channel> {
    let address = endpoint.uri().clone();
    endpoint
        .connect_timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {address} over HTTP/2"))
}

/// `message` as a request carrying `token` (`Bearer …`) as its `authorization` metadata.
pub fn authed<T>(message: T, token: &AsciiMetadataValue) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_seconds_or_milliseconds() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2_500)));
        assert_eq!(parse_duration(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0.002"), Ok(Duration::from_millis(2)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
