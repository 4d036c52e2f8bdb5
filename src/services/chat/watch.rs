//! WatchChat: the user's chat feed as a server stream, and the cursor clients resume from.
//!
//! The stream polls the feed directly (no task or queue per watcher), so an idle watcher costs
//! its broadcast receiver and this state. When the client stops reading, HTTP/2 flow control
//! stops the polling, the watcher's place in its user's bounded broadcast falls behind, and
//! the next poll ends the stream with ABORTED (`WATCH_TOO_SLOW`): senders never wait.

use std::pin::Pin;

use assistd_core::chat::ExchangeEvent;
use assistd_domain::FieldViolation;
use assistd_domain::UserId;
use assistd_domain::chat::{MessageId, SessionId};
use assistd_store::chat_feed::{ChatChange, ChatFeed, ChatWatch, FeedEvent, ReplyDelta, WatchItem};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert::{message_to_proto, session_to_proto};
use crate::proto::chat::v1 as pb;
use crate::services::{Violations, timestamp};
use crate::status::status;

/// The stream of a WatchChat call.
pub(super) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchChatResponse, Status>> + Send + 'static>>;

/// The version prefix of cursors: `c1.<event number>`.
const CURSOR_PREFIX: &str = "c1.";

/// What a watch needs besides the request: the feed, and the server's shutdown.
#[derive(Clone, Debug)]
pub(super) struct Watching {
    pub(super) feed: ChatFeed,
    pub(super) shutdown: CancellationToken,
}

/// Hands the text deltas of one streamed send to the user's watchers, numbered from 0.
pub(super) struct DeltaPublisher {
    feed: ChatFeed,
    user: UserId,
    /// The send's session and USER message, from its first event.
    exchange: Option<(SessionId, MessageId)>,
    next_index: u32,
}

impl DeltaPublisher {
    pub(super) fn new(feed: ChatFeed, user: UserId) -> Self {
        Self {
            feed,
            user,
            exchange: None,
            next_index: 0,
        }
    }

    /// Notes the send's USER message, and publishes each text delta.
    pub(super) fn observe(&mut self, event: &ExchangeEvent) {
        match event {
            ExchangeEvent::UserMessage(message) => {
                self.exchange = Some((message.session_id, message.id));
            }
            ExchangeEvent::TextDelta(text) => {
                if let Some((session, exchange)) = self.exchange {
                    self.feed.publish_delta(
                        self.user,
                        ReplyDelta {
                            session,
                            exchange,
                            index: self.next_index,
                            text: text.clone(),
                        },
                    );
                    self.next_index += 1;
                }
            }
            _ => {}
        }
    }
}

/// The cursor after the event numbered `seq`.
fn cursor(seq: i64) -> String {
    format!("{CURSOR_PREFIX}{seq}")
}

/// Reads `WatchChatRequest.cursor`: `None` for empty (from now).
pub(super) fn parse_cursor(cursor: &str) -> Result<Option<i64>, Violations> {
    if cursor.is_empty() {
        return Ok(None);
    }
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(|seq| seq.parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .map(Some)
        .ok_or_else(|| {
            vec![FieldViolation::new(
                "cursor",
                "not a cursor from a WatchChat response; pass one unchanged, or empty to watch from now",
            )]
        })
}

/// Where a watch stream is.
struct State {
    user: UserId,
    watch: ChatWatch,
    shutdown: CancellationToken,
    /// Whether the stream ended (with an error status).
    ended: bool,
}

/// Starts a watch: replays from `after` and goes live.
pub(super) async fn watch_chat(
    watching: &Watching,
    user: UserId,
    after: Option<i64>,
) -> Result<WatchStream, Status> {
    let watch = watching.feed.watch(user, after).await.map_err(status)?;
    let state = State {
        user,
        watch,
        shutdown: watching.shutdown.clone(),
        ended: false,
    };
    Ok(Box::pin(futures::stream::unfold(state, next_response)))
}

/// The next response of the stream, or its end.
async fn next_response(mut state: State) -> Option<(Result<pb::WatchChatResponse, Status>, State)> {
    if state.ended {
        return None;
    }
    let next = tokio::select! {
        () = state.shutdown.cancelled() => {
            state.ended = true;
            let status = Status::unavailable(
                "the server is shutting down; watch again with the last cursor received",
            );
            return Some((Err(status), state));
        }
        next = state.watch.next() => next,
    };
    match next {
        Ok(WatchItem::Event(event)) => {
            let response = event_to_proto(&event);
            Some((Ok(response), state))
        }
        Ok(WatchItem::Live) => {
            let started = pb::WatchChatResponse {
                cursor: cursor(state.watch.last_seq()),
                event: Some(pb::watch_chat_response::Event::Started(pb::WatchStarted {})),
                commit_time: None,
            };
            Some((Ok(started), state))
        }
        Ok(WatchItem::Delta(delta)) => {
            let response = delta_to_proto(&delta, state.watch.last_seq());
            Some((Ok(response), state))
        }
        Err(err) => {
            tracing::debug!(user = %state.user, error = %err, "chat watch ended");
            state.ended = true;
            Some((Err(status(err)), state))
        }
    }
}

fn event_to_proto(event: &FeedEvent) -> pb::WatchChatResponse {
    use pb::watch_chat_response::Event;
    let kind = match &event.change {
        ChatChange::SessionCreated(session) => {
            Event::SessionCreated(session_to_proto(session.clone()))
        }
        ChatChange::SessionUpdated(session) => {
            Event::SessionUpdated(session_to_proto(session.clone()))
        }
        ChatChange::SessionDeleted(session) => Event::SessionDeleted(pb::SessionDeleted {
            session_id: session.to_string(),
        }),
        ChatChange::MessageCommitted(message) => {
            Event::MessageCommitted(message_to_proto(message.as_ref().clone()))
        }
        ChatChange::ExchangeFinished {
            session,
            exchange,
            failed,
        } => Event::ExchangeFinished(pb::ExchangeFinished {
            session_id: session.to_string(),
            exchange_id: exchange.to_string(),
            outcome: if *failed {
                pb::ExchangeOutcome::Failed
            } else {
                pb::ExchangeOutcome::Done
            }
            .into(),
        }),
    };
    pb::WatchChatResponse {
        cursor: cursor(event.seq),
        event: Some(kind),
        commit_time: Some(timestamp(event.at)),
    }
}

fn delta_to_proto(delta: &ReplyDelta, last_seq: i64) -> pb::WatchChatResponse {
    pb::WatchChatResponse {
        cursor: cursor(last_seq),
        event: Some(pb::watch_chat_response::Event::ReplyDelta(pb::ReplyDelta {
            session_id: delta.session.to_string(),
            exchange_id: delta.exchange.to_string(),
            index: delta.index,
            text: delta.text.clone(),
        })),
        commit_time: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        assert_eq!(parse_cursor(""), Ok(None));
        assert_eq!(parse_cursor(&cursor(0)), Ok(Some(0)));
        assert_eq!(parse_cursor(&cursor(42)), Ok(Some(42)));
        for bad in ["42", "c1.", "c1.-1", "c2.5", "c1.x", "c1.5 "] {
            let violations = parse_cursor(bad).unwrap_err();
            assert_eq!(violations[0].field, "cursor", "{bad}");
        }
    }
}
