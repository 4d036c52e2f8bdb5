//! Streamed answers: how the SSE events of a reply are written, and what the server saw of
//! each stream (when each event went out, whether the client stayed to the end).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::Shared;
use crate::serve::{Body, streamed};

/// What happened to one streamed answer (`streamGenerateContent?alt=sse`), as
/// [`GeminiServer::streams`](super::GeminiServer::streams) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamLog {
    /// Index of the request in [`GeminiServer::requests`](super::GeminiServer::requests)
    /// (unless they were cleared since).
    pub request: usize,
    /// When the answer's headers were handed to the connection.
    pub started: Instant,
    /// When each event was written: the instant the server, after handing the event's last
    /// byte to the connection, let it flush and came back for the next one. Events not
    /// written (cut off by a fault or a departed client) have no entry.
    pub written: Vec<Instant>,
    /// How the stream ended, if it did.
    pub end: StreamEnd,
}

/// How a streamed answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Still being written (or stalled on purpose).
    Open,
    /// Every event was written and the body ended.
    Complete {
        /// When the body ended.
        at: Instant,
    },
    /// The connection went away before the body ended: the client closed it, or a write to it
    /// failed. `at` is when the server noticed.
    ClientGone {
        /// When the server noticed.
        at: Instant,
    },
    /// The server cut the body on purpose ([`Fault::DisconnectAfter`](super::Fault::DisconnectAfter)).
    ServerClosed {
        /// When the connection was cut.
        at: Instant,
    },
}

/// How events are written: in how many pieces, with what pauses.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// TCP writes per event; 1 writes each event whole.
    pub(super) pieces: usize,
    /// Pause between the pieces of one event.
    pub(super) piece_gap: Duration,
    /// Pause before every event but the first.
    pub(super) interval: Duration,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            pieces: 1,
            piece_gap: Duration::from_millis(1),
            interval: Duration::ZERO,
        }
    }
}

/// Where a mid-stream fault cuts the answer: after how many events, and how.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cut {
    Disconnect(usize),
    Stall(usize),
}

enum Step {
    Piece {
        bytes: Bytes,
        /// Pause before writing it.
        delay: Duration,
        /// The event this piece completes, if it is its last.
        completes: Option<usize>,
    },
    Stall,
    Disconnect,
}

/// The SSE body of `events`, each `data: <json>\r\n\r\n`, written as `shape` says and cut as
/// `cut` says; records a [`StreamLog`] for request `request`.
pub(super) fn sse_body(
    shared: Arc<Shared>,
    request: usize,
    events: &[Value],
    shape: Shape,
    cut: Option<Cut>,
) -> Body {
    let sent = match cut {
        Some(Cut::Disconnect(n) | Cut::Stall(n)) => n.min(events.len()),
        None => events.len(),
    };
    let mut steps = VecDeque::new();
    for (index, event) in events[..sent].iter().enumerate() {
        let frame = format!("data: {event}\r\n\r\n").into_bytes();
        let pieces = split(&frame, shape.pieces);
        let last = pieces.len() - 1;
        for (number, piece) in pieces.into_iter().enumerate() {
            let delay = match (index, number) {
                (0, 0) => Duration::ZERO,
                (_, 0) => shape.interval,
                _ => shape.piece_gap,
            };
            steps.push_back(Step::Piece {
                bytes: Bytes::copy_from_slice(piece),
                delay,
                completes: (number == last).then_some(index),
            });
        }
    }
    match cut {
        Some(Cut::Disconnect(_)) => steps.push_back(Step::Disconnect),
        Some(Cut::Stall(_)) => steps.push_back(Step::Stall),
        None => {}
    }
    let log = Log::open(shared, request);
    let writer = Writer {
        steps,
        log,
        unflushed: None,
    };
    streamed(futures::stream::unfold(writer, Writer::step))
}

/// Splits an event into `pieces` writes: the last is the final `\n` alone (so a client sees
/// the event only when its blank line is complete), the rest share the other bytes evenly.
/// The cuts fall anywhere, inside `data:`, the JSON or a UTF-8 character.
fn split(frame: &[u8], pieces: usize) -> Vec<&[u8]> {
    if pieces <= 1 || frame.len() < 2 {
        return vec![frame];
    }
    let (body, tail) = frame.split_at(frame.len() - 1);
    let size = body.len().div_ceil(pieces - 1).max(1);
    let mut out: Vec<&[u8]> = body.chunks(size).collect();
    out.push(tail);
    out
}

/// The body's state between two writes.
struct Writer {
    steps: VecDeque<Step>,
    log: Log,
    /// The event whose last piece was just handed over and is not yet known to be flushed.
    unflushed: Option<usize>,
}

impl Writer {
    async fn step(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if let Some(event) = self.unflushed.take() {
            // Returning Pending once makes hyper flush what it buffered before polling the
            // body again: when this resumes, the event went to the socket.
            tokio::task::yield_now().await;
            self.log.written(event);
        }
        match self.steps.pop_front() {
            None => {
                self.log.end(StreamEnd::Complete { at: Instant::now() });
                None
            }
            Some(Step::Piece {
                bytes,
                delay,
                completes,
            }) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.unflushed = completes;
                Some((Ok(bytes), self))
            }
            Some(Step::Stall) => std::future::pending().await,
            Some(Step::Disconnect) => {
                // Let the headers out too when no event was sent.
                tokio::task::yield_now().await;
                self.log.end(StreamEnd::ServerClosed { at: Instant::now() });
                // A body error makes hyper close the connection without the last chunk.
                Some((Err(std::io::Error::other("scripted disconnect")), self))
            }
        }
    }
}

/// One stream's entry in the server's [`StreamLog`]s. Dropped before the stream ended — hyper
/// drops the body when the connection closes or a write fails — it records the client gone.
struct Log {
    shared: Arc<Shared>,
    index: usize,
    ended: bool,
}

impl Log {
    fn open(shared: Arc<Shared>, request: usize) -> Self {
        let index = {
            let mut state = shared.lock();
            state.streams.push(StreamLog {
                request,
                started: Instant::now(),
                written: Vec::new(),
                end: StreamEnd::Open,
            });
            state.streams.len() - 1
        };
        Self {
            shared,
            index,
            ended: false,
        }
    }

    fn written(&self, event: usize) {
        let at = Instant::now();
        if let Some(log) = self.shared.lock().streams.get_mut(self.index) {
            debug_assert_eq!(log.written.len(), event);
            log.written.push(at);
        }
    }

    fn end(&mut self, end: StreamEnd) {
        self.ended = true;
        if let Some(log) = self.shared.lock().streams.get_mut(self.index) {
            log.end = end;
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let at = Instant::now();
        // Not `lock()`: no second panic if the state was poisoned.
        if let Ok(mut state) = self.shared.state.lock()
            && let Some(log) = state.streams.get_mut(self.index)
        {
            log.end = StreamEnd::ClientGone { at };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_into_pieces_with_the_last_newline_alone() {
        let frame = b"data: {\"a\":1}\r\n\r\n";
        assert_eq!(split(frame, 1), vec![&frame[..]]);
        let pieces = split(frame, 3);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), frame);
        assert_eq!(pieces[2], b"\n");
        assert_eq!(split(b"x\n", 5), vec![&b"x"[..], b"\n"]);
    }
}
