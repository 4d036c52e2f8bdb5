//! Data export: everything a user owns, as NDJSON in the `assistd.export` format, version 2.
//!
//! The export is a stream of lines, each one JSON object:
//! 1. a header: `{"type":"header","format":"assistd.export","version":2,"user_id":…,
//!    "exported_at":…}`;
//! 2. one record per row the user owns, each with a `type` field (see
//!    [`assistd_store::export::RecordType`]), type by type in the order of
//!    [`RecordType::ALL`];
//! 3. an end record: `{"type":"end","records":N}`, N counting the records between header and
//!    end. A stream without it was cut short.
//!
//! The bytes are handed to a [`ChunkSink`] in chunks of at most [`MAX_CHUNK_BYTES`]; chunk
//! boundaries fall anywhere, even inside a line, so a reader concatenates them. Rows are read
//! in keyset pages of [`DEFAULT_PAGE_SIZE`] and each chunk is handed on before the next page is
//! read, so a slow reader slows the export down instead of making it buffer the account.
//!
//! It is not a snapshot: each page is its own query, so a row written or deleted while the
//! export runs may or may not be in it. Secrets and what is derived from them never are:
//! see [`NOT_EXPORTED`](assistd_store::export::NOT_EXPORTED).
//!
//! Every export is audited (`data_exported`) once it ends, with its outcome and record count.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome, RequestContext};
use assistd_domain::{Clock, Error, Result, UserId};
use assistd_store::Store;
use assistd_store::audit::AuditLog;
use assistd_store::db_error;
use assistd_store::export::{ExportCursor, RecordType};
use chrono::SecondsFormat;

/// The `format` of the header record.
pub const FORMAT: &str = "assistd.export";
/// The `version` of the header record.
pub const VERSION: u32 = 2;
/// The largest chunk handed to a [`ChunkSink`]: 256 KiB.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;
/// Rows read per query.
pub const DEFAULT_PAGE_SIZE: u64 = 200;

/// Where the export's bytes go, chunk by chunk.
pub trait ChunkSink: Send {
    /// Hands on one chunk, waiting while the reader is behind. `false` means the reader left:
    /// the export stops.
    fn send(&mut self, chunk: Vec<u8>) -> impl Future<Output = bool> + Send;
}

/// Keeps every chunk in memory: for tests and callers that want the whole export at once.
impl ChunkSink for Vec<Vec<u8>> {
    async fn send(&mut self, chunk: Vec<u8>) -> bool {
        self.push(chunk);
        true
    }
}

/// Who asked for the export; it decides the audit row's actor.
#[derive(Clone, Debug)]
pub enum Requester {
    /// The user, through the API.
    User(RequestContext),
    /// An operator, on the server's command line.
    Operator,
}

/// How an export ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records between the header and the end record.
    pub records: u64,
    /// Bytes handed on.
    pub bytes: u64,
    /// Chunks handed on.
    pub chunks: u64,
    /// Whether every byte was handed on (`false`: the reader left before the end).
    pub complete: bool,
}

/// Exports one user's data. Cheap to clone.
#[derive(Clone)]
pub struct DataExport {
    store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    page_size: u64,
}

impl std::fmt::Debug for DataExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataExport")
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl DataExport {
    /// Exports from `store`, auditing in `audit`, with `clock` for `exported_at`.
    #[must_use]
    pub fn new(store: Store, audit: AuditLog, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            audit,
            clock,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// This export reading `rows` rows per query (at least 1). The output does not depend on
    /// it; tests use it to show that.
    #[must_use]
    pub fn with_page_size(mut self, rows: u64) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// Writes `user`'s export to `sink`, then audits it. A reader that leaves ends the export
    /// early (`complete: false`), audited as a failure.
    ///
    /// # Errors
    /// The database failed (the export stops where it was; the failure is audited when the
    /// audit log can still be written).
    pub async fn run<S: ChunkSink>(
        &self,
        user: UserId,
        requester: &Requester,
        sink: &mut S,
    ) -> Result<ExportSummary> {
        let mut out = ChunkWriter::new(sink);
        let result = self.write(user, &mut out).await;
        let summary = ExportSummary {
            records: out.records,
            bytes: out.bytes,
            chunks: out.chunks,
            complete: matches!(result, Ok(true)),
        };
        let failure = match &result {
            Ok(true) => None,
            Ok(false) => Some("client_left"),
            Err(_) => Some("error"),
        };
        let audited = self.audit_export(user, requester, &summary, failure).await;
        let complete = result?;
        audited?;
        Ok(ExportSummary {
            complete,
            ..summary
        })
    }

    /// Writes header, records and end; `Ok(false)` when the reader left.
    async fn write<S: ChunkSink>(
        &self,
        user: UserId,
        out: &mut ChunkWriter<'_, S>,
    ) -> Result<bool> {
        let header = Header {
            kind: "header",
            format: FORMAT,
            version: VERSION,
            user_id: user.as_uuid(),
            exported_at: self
                .clock
                .now()
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        let header = serde_json::to_vec(&header).map_err(Error::internal)?;
        if !out.line(&header).await {
            return Ok(false);
        }
        let repository = self.store.export();
        for kind in RecordType::ALL {
            let mut after: Option<ExportCursor> = None;
            loop {
                let page = repository
                    .page(user, kind, after.as_ref(), self.page_size)
                    .await?;
                for record in &page.records {
                    let line = serde_json::to_vec(record).map_err(Error::internal)?;
                    if !out.line(&line).await {
                        return Ok(false);
                    }
                    out.records += 1;
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        let end = format!("{{\"type\":\"end\",\"records\":{}}}", out.records);
        Ok(out.line(end.as_bytes()).await && out.flush().await)
    }

    async fn audit_export(
        &self,
        user: UserId,
        requester: &Requester,
        summary: &ExportSummary,
        failure: Option<&str>,
    ) -> Result<()> {
        let (actor, context, requested_by) = match requester {
            Requester::User(context) => (Some(user), context.clone(), "user"),
            Requester::Operator => (None, RequestContext::default(), "operator"),
        };
        let mut metadata = BTreeMap::from([
            ("records".to_owned(), summary.records.to_string()),
            ("bytes".to_owned(), summary.bytes.to_string()),
            ("requested_by".to_owned(), requested_by.to_owned()),
        ]);
        if let Some(reason) = failure {
            metadata.insert("reason".to_owned(), reason.to_owned());
        }
        let event = AuditEvent {
            actor,
            action: AuditAction::DataExported,
            target: format!("user/{user}"),
            outcome: if failure.is_none() {
                AuditOutcome::Success
            } else {
                AuditOutcome::Failure
            },
            context,
            metadata,
        };
        let txn = self.store.begin_write().await?;
        self.audit.append(&txn, &event).await?;
        txn.commit().await.map_err(db_error)
    }
}

/// The first line of an export, its fields in this order.
#[derive(serde::Serialize)]
struct Header {
    #[serde(rename = "type")]
    kind: &'static str,
    format: &'static str,
    version: u32,
    user_id: uuid::Uuid,
    exported_at: String,
}

/// Collects lines into chunks of [`MAX_CHUNK_BYTES`] and hands each on when full.
struct ChunkWriter<'a, S> {
    sink: &'a mut S,
    buffer: Vec<u8>,
    records: u64,
    bytes: u64,
    chunks: u64,
}

impl<'a, S: ChunkSink> ChunkWriter<'a, S> {
    fn new(sink: &'a mut S) -> Self {
        Self {
            sink,
            buffer: Vec::with_capacity(MAX_CHUNK_BYTES),
            records: 0,
            bytes: 0,
            chunks: 0,
        }
    }

    /// Appends `line` and a newline; hands on every full chunk. `false`: the reader left.
    async fn line(&mut self, line: &[u8]) -> bool {
        let mut rest = line;
        while !rest.is_empty() {
            let room = MAX_CHUNK_BYTES - self.buffer.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == MAX_CHUNK_BYTES && !self.send().await {
                return false;
            }
        }
        self.buffer.push(b'\n');
        if self.buffer.len() == MAX_CHUNK_BYTES {
            return self.send().await;
        }
        true
    }

    /// Hands on what is left.
    async fn flush(&mut self) -> bool {
        self.buffer.is_empty() || self.send().await
    }

    async fn send(&mut self) -> bool {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(MAX_CHUNK_BYTES));
        self.bytes += chunk.len() as u64;
        self.chunks += 1;
        self.sink.send(chunk).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_cut_into_chunks_of_at_most_256_kib_that_concatenate_back() {
        let mut sink: Vec<Vec<u8>> = Vec::new();
        let mut out = ChunkWriter::new(&mut sink);
        let long = vec![b'x'; MAX_CHUNK_BYTES + 10];
        let mut expected = Vec::new();
        for line in [&b"short"[..], &long, &b"tail"[..]] {
            assert!(out.line(line).await);
            expected.extend_from_slice(line);
            expected.push(b'\n');
        }
        assert!(out.flush().await);
        let (bytes, chunks) = (out.bytes, out.chunks);
        assert!(
            sink.iter()
                .all(|c| !c.is_empty() && c.len() <= MAX_CHUNK_BYTES)
        );
        assert_eq!(sink.len(), 2);
        assert_eq!(chunks, 2);
        assert_eq!(bytes, expected.len() as u64);
        assert_eq!(sink.concat(), expected);
    }
}
