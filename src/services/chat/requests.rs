//! ChatService requests read into domain input, once, at the edge. Every field is checked
//! before anything is refused, so a client learns of all its mistakes at once, each named by
//! its field path.

use assistd_core::chat::SendRequest;
use assistd_domain::FieldViolation;
use assistd_domain::audit::RequestContext;
use assistd_domain::chat::{
    self, ArchivedFilter, ClientMessageId, MemoryId, MessageId, NewSession, SearchQuery,
    SessionFilter, SessionId, SessionPatch,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::paging::{Cursor, KeysetCursor, PageLimits, PageRequest};
use crate::proto::chat::v1 as pb;
use crate::services::{Violations, collect, required_id};

/// Paths `UpdateSessionRequest.update_mask` may name.
const UPDATABLE_PATHS: [&str; 5] = ["title", "pinned", "archived", "system_instruction", "model"];

const SESSION_PAGES: PageLimits = PageLimits {
    default: 20,
    max: 100,
};
const MESSAGE_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 200,
};
const SEARCH_PAGES: PageLimits = PageLimits {
    default: 20,
    max: 100,
};
const MEMORY_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 200,
};
const MODEL_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 1000,
};

/// Where ListMessages resumes: the first sequence of the next page.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MessageCursor {
    sequence: i64,
}

impl Cursor for MessageCursor {
    const LIST: &'static str = "chat.messages";
    const RPC: &'static str = "ListMessages";
}

impl MessageCursor {
    pub(super) const fn at(sequence: i64) -> Self {
        Self { sequence }
    }
}

/// Where ListSessions resumes: the last session's activity time and id.
pub(super) type SessionCursor = KeysetCursor<SessionId>;

impl Cursor for SessionCursor {
    const LIST: &'static str = "chat.sessions";
    const RPC: &'static str = "ListSessions";
}

/// Where SearchMessages resumes: the last hit's creation time and message id.
pub(super) type SearchCursor = KeysetCursor<MessageId>;

impl Cursor for SearchCursor {
    const LIST: &'static str = "chat.search";
    const RPC: &'static str = "SearchMessages";
}

/// Where ListMemories resumes: the last memory's creation time and id.
pub(super) type MemoryCursor = KeysetCursor<MemoryId>;

impl Cursor for MemoryCursor {
    const LIST: &'static str = "chat.memories";
    const RPC: &'static str = "ListMemories";
}

/// Where ListModels resumes: Gemini's own page token, wrapped so that every list of ours
/// hands out the same token format.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ModelCursor {
    upstream: String,
}

impl Cursor for ModelCursor {
    const LIST: &'static str = "chat.models";
    const RPC: &'static str = "ListModels";
}

impl ModelCursor {
    pub(super) const fn upstream(token: String) -> Self {
        Self { upstream: token }
    }

    pub(super) fn token(&self) -> &str {
        &self.upstream
    }
}

impl TryFrom<pb::CreateSessionRequest> for NewSession {
    type Error = Violations;

    fn try_from(request: pb::CreateSessionRequest) -> Result<Self, Self::Error> {
        NewSession::new(request.title, request.system_instruction, request.model)
    }
}

/// A read ListSessions request.
#[derive(Debug)]
pub(super) struct ListSessions {
    pub(super) filter: SessionFilter,
    pub(super) page: PageRequest<SessionCursor>,
}

impl TryFrom<pb::ListSessionsRequest> for ListSessions {
    type Error = Violations;

    fn try_from(request: pb::ListSessionsRequest) -> Result<Self, Self::Error> {
        let archived = match pb::ArchivedFilter::try_from(request.archived) {
            Ok(pb::ArchivedFilter::Unspecified | pb::ArchivedFilter::Exclude) => {
                Ok(ArchivedFilter::Exclude)
            }
            Ok(pb::ArchivedFilter::Only) => Ok(ArchivedFilter::Only),
            Ok(pb::ArchivedFilter::Include) => Ok(ArchivedFilter::Include),
            Err(_) => Err(vec![FieldViolation::new(
                "archived",
                "not a known ArchivedFilter value",
            )]),
        };
        let scope = format!("{:?}/{:?}", archived.as_ref().ok(), request.pinned);
        let page = PageRequest::parse(
            request.page_size,
            &request.page_token,
            SESSION_PAGES,
            &scope,
        );
        let (archived, page) = collect(archived, page)?;
        Ok(Self {
            filter: SessionFilter {
                archived,
                pinned: request.pinned,
            },
            page,
        })
    }
}

/// A read UpdateSession request: which session, and what changes.
#[derive(Debug)]
pub(super) struct SessionUpdate {
    pub(super) id: SessionId,
    pub(super) patch: SessionPatch,
}

impl TryFrom<pb::UpdateSessionRequest> for SessionUpdate {
    type Error = Violations;

    fn try_from(request: pb::UpdateSessionRequest) -> Result<Self, Self::Error> {
        let Some(session) = request.session else {
            return Err(vec![FieldViolation::new("session", "is required")]);
        };
        let id = required_id::<SessionId>("session.id", &session.id);
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            let mut violations = id.err().unwrap_or_default();
            violations.push(FieldViolation::new(
                "update_mask",
                format!(
                    "name the fields to change, any of {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            ));
            return Err(violations);
        }
        let mut patch = SessionPatch::default();
        let mut violations = Vec::new();
        for path in &paths {
            match path.as_str() {
                "title" => patch.title = Some(session.title.clone()),
                "pinned" => patch.pinned = Some(session.pinned),
                "archived" => patch.archived = Some(session.archived),
                "system_instruction" => {
                    patch.system_instruction = Some(session.system_instruction.clone());
                }
                "model" => patch.model = Some(session.model.clone()),
                other => violations.push(FieldViolation::new(
                    "update_mask",
                    format!(
                        "{other:?} cannot be updated; use any of {}",
                        UPDATABLE_PATHS.join(", ")
                    ),
                )),
            }
        }
        let patch = patch
            .validated("session")
            .map_err(|mut invalid| {
                invalid.append(&mut violations);
                invalid
            })
            .and_then(|patch| {
                if violations.is_empty() {
                    Ok(patch)
                } else {
                    Err(violations)
                }
            });
        let (id, patch) = collect(id, patch)?;
        Ok(Self { id, patch })
    }
}

/// A read ListMessages request.
#[derive(Debug)]
pub(super) struct ListMessages {
    pub(super) session: SessionId,
    pub(super) forward: bool,
    /// The sequence to start at (inclusive), from the token or `start_sequence`.
    pub(super) start: Option<i64>,
    pub(super) page: PageRequest<MessageCursor>,
}

impl TryFrom<pb::ListMessagesRequest> for ListMessages {
    type Error = Violations;

    fn try_from(request: pb::ListMessagesRequest) -> Result<Self, Self::Error> {
        let session = required_id::<SessionId>("session_id", &request.session_id);
        let forward = match pb::ListMessagesDirection::try_from(request.direction) {
            Ok(pb::ListMessagesDirection::Forward) => Ok(true),
            Ok(pb::ListMessagesDirection::Backward | pb::ListMessagesDirection::Unspecified) => {
                Ok(false)
            }
            Err(_) => Err(vec![FieldViolation::new(
                "direction",
                "not a known ListMessagesDirection value",
            )]),
        };
        let start_sequence = if request.start_sequence < 0 {
            Err(vec![FieldViolation::new(
                "start_sequence",
                "must not be negative",
            )])
        } else {
            Ok(request.start_sequence)
        };
        // Tokens are bound to the session and direction they were made for (the parsed id, so
        // every spelling of one UUID is one session).
        let scope = format!("{:?}/{:?}", session.as_ref().ok(), forward.as_ref().ok());
        let page = PageRequest::<MessageCursor>::parse(
            request.page_size,
            &request.page_token,
            MESSAGE_PAGES,
            &scope,
        );
        let ((session, forward), (start_sequence, mut page)) =
            collect(collect(session, forward), collect(start_sequence, page))?;
        let start = match page.take_after() {
            Some(cursor) if cursor.sequence >= 0 => Some(cursor.sequence),
            Some(_) => {
                return Err(vec![FieldViolation::new(
                    "page_token",
                    "not a token from a previous ListMessages response",
                )]);
            }
            None => (start_sequence > 0).then_some(start_sequence),
        };
        Ok(Self {
            session,
            forward,
            start,
            page,
        })
    }
}

/// A read SendMessage or StreamMessage request.
#[derive(Debug)]
pub(super) struct SendInput {
    pub(super) session: SessionId,
    pub(super) client_message_id: ClientMessageId,
    pub(super) text: String,
}

impl SendInput {
    /// The send for the core: `streaming` when the reply is relayed as it is written.
    pub(super) fn request(self, streaming: bool, context: RequestContext) -> SendRequest {
        SendRequest {
            session: self.session,
            client_message_id: self.client_message_id,
            text: self.text,
            streaming,
            context,
        }
    }

    fn read(session_id: &str, client_message_id: String, text: String) -> Result<Self, Violations> {
        let session = required_id::<SessionId>("session_id", session_id);
        let id = ClientMessageId::parse(client_message_id)
            .map_err(|err| vec![err.at("client_message_id")]);
        let text = chat::validate_message_text(&text)
            .map(|()| text)
            .map_err(|err| vec![err.at("text")]);
        let (session, (client_message_id, text)) = collect(session, collect(id, text))?;
        Ok(Self {
            session,
            client_message_id,
            text,
        })
    }
}

impl TryFrom<pb::SendMessageRequest> for SendInput {
    type Error = Violations;

    fn try_from(request: pb::SendMessageRequest) -> Result<Self, Self::Error> {
        Self::read(&request.session_id, request.client_message_id, request.text)
    }
}

impl TryFrom<pb::StreamMessageRequest> for SendInput {
    type Error = Violations;

    fn try_from(request: pb::StreamMessageRequest) -> Result<Self, Self::Error> {
        Self::read(&request.session_id, request.client_message_id, request.text)
    }
}

/// A read SearchMessages request.
#[derive(Debug)]
pub(super) struct Search {
    pub(super) query: SearchQuery,
    pub(super) session: Option<SessionId>,
    pub(super) page: PageRequest<SearchCursor>,
}

impl TryFrom<pb::SearchMessagesRequest> for Search {
    type Error = Violations;

    fn try_from(request: pb::SearchMessagesRequest) -> Result<Self, Self::Error> {
        let query = request
            .query
            .parse::<SearchQuery>()
            .map_err(|err| vec![err.at("query")]);
        let session = if request.session_id.is_empty() {
            Ok(None)
        } else {
            required_id::<SessionId>("session_id", &request.session_id).map(Some)
        };
        // Tokens are bound to the query and the session they were made for.
        let scope = URL_SAFE_NO_PAD.encode(format!("{}|{}", request.session_id, request.query));
        let page = PageRequest::parse(request.page_size, &request.page_token, SEARCH_PAGES, &scope);
        let ((query, session), page) = collect(collect(query, session), page)?;
        Ok(Self {
            query,
            session,
            page,
        })
    }
}

/// A read ListMemories request.
#[derive(Debug)]
pub(super) struct ListMemories {
    pub(super) page: PageRequest<MemoryCursor>,
}

impl TryFrom<pb::ListMemoriesRequest> for ListMemories {
    type Error = Violations;

    fn try_from(request: pb::ListMemoriesRequest) -> Result<Self, Self::Error> {
        let page = PageRequest::parse(request.page_size, &request.page_token, MEMORY_PAGES, "")?;
        Ok(Self { page })
    }
}

/// A read ListModels request.
#[derive(Debug)]
pub(super) struct ListModels {
    pub(super) page: PageRequest<ModelCursor>,
}

impl TryFrom<pb::ListModelsRequest> for ListModels {
    type Error = Violations;

    fn try_from(request: pb::ListModelsRequest) -> Result<Self, Self::Error> {
        let page = PageRequest::parse(request.page_size, &request.page_token, MODEL_PAGES, "")?;
        Ok(Self { page })
    }
}
