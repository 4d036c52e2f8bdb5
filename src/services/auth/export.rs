//! ExportData: the user's data streamed as NDJSON chunks. A spawned task runs the export and
//! feeds the response stream through a small channel, so the export reads the next page only
//! once the client has taken the previous chunks; a failed send means the client left, and the
//! export stops there.

use std::pin::Pin;

use assistd_core::export::{ChunkSink, DataExport, Requester};
use assistd_domain::UserId;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::proto::auth::v1 as pb;
use crate::status::status;

/// The response stream of ExportData.
pub(super) type ExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportDataResponse, Status>> + Send + 'static>>;

/// Chunks waiting for the client: with chunks of up to 256 KiB this bounds what one export
/// holds in memory to about 0.5 MiB besides the page being read.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Hands chunks to the response stream.
struct ResponseSink(mpsc::Sender<Result<pb::ExportDataResponse, Status>>);

impl ChunkSink for ResponseSink {
    async fn send(&mut self, chunk: Vec<u8>) -> bool {
        self.0
            .send(Ok(pb::ExportDataResponse { chunk }))
            .await
            .is_ok()
    }
}

/// Starts `user`'s export and returns the stream that carries it.
pub(super) fn start(export: DataExport, user: UserId, requester: Requester) -> ExportStream {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        let mut sink = ResponseSink(sender.clone());
        match export.run(user, &requester, &mut sink).await {
            Ok(summary) => tracing::info!(
                records = summary.records,
                bytes = summary.bytes,
                chunks = summary.chunks,
                complete = summary.complete,
                "data export ended"
            ),
            Err(err) => {
                let _ = sender.send(Err(status(err))).await;
            }
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}
