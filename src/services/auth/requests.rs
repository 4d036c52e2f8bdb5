//! AuthService requests read into domain input, once, at the edge. The sign-in RPCs pass
//! their opaque strings (state, code, tokens) straight to the core, which owns their rules.

use assistd_domain::{AuthSessionId, FieldViolation};

use crate::paging::{Cursor, KeysetCursor, PageLimits, PageRequest};
use crate::proto::auth::v1 as pb;
use crate::services::Violations;

const SESSION_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 100,
};

/// Where ListSessions resumes: the last device session's creation time and id.
pub(super) type SessionCursor = KeysetCursor<AuthSessionId>;

impl Cursor for SessionCursor {
    const LIST: &'static str = "auth.sessions";
    const RPC: &'static str = "ListSessions";
}

/// A read ListSessions request.
#[derive(Debug)]
pub(super) struct ListSessions {
    pub(super) page: PageRequest<SessionCursor>,
}

impl TryFrom<pb::ListSessionsRequest> for ListSessions {
    type Error = Violations;

    fn try_from(request: pb::ListSessionsRequest) -> Result<Self, Self::Error> {
        let page = PageRequest::parse(request.page_size, &request.page_token, SESSION_PAGES, "")?;
        Ok(Self { page })
    }
}

/// A read UpdateProfile request: the one field a user may change. The name's own rules
/// (trimmed, bounded, no control characters) are checked by the core, which names the field
/// `user.display_name`.
#[derive(Debug)]
pub(super) struct ProfileUpdate {
    pub(super) display_name: String,
}

impl TryFrom<pb::UpdateProfileRequest> for ProfileUpdate {
    type Error = Violations;

    fn try_from(request: pb::UpdateProfileRequest) -> Result<Self, Self::Error> {
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(vec![FieldViolation::new(
                "update_mask",
                "is required and must name at least one path; allowed: display_name",
            )]);
        }
        if let Some(path) = paths.iter().find(|p| p.as_str() != "display_name") {
            return Err(vec![FieldViolation::new(
                "update_mask",
                format!("path {path:?} cannot be updated; allowed: display_name"),
            )]);
        }
        Ok(Self {
            display_name: request.user.map(|u| u.display_name).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    impl Cursor for KeysetCursor<uuid::Uuid> {
        const LIST: &'static str = "test.chat_sessions";
        const RPC: &'static str = "ListChatSessions";
    }

    fn list(page_token: &str) -> Result<ListSessions, Violations> {
        ListSessions::try_from(pb::ListSessionsRequest {
            page_size: 0,
            page_token: page_token.to_owned(),
        })
    }

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        let first = list("").unwrap();
        let at = chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = AuthSessionId::from_uuid(uuid::Uuid::nil());
        let token = first.page.token(SessionCursor::new(at, id));
        assert_eq!(
            list(&token).unwrap().page.position().unwrap(),
            Some((at, id))
        );
        assert!(list("not-base64!").is_err());
        // A token of another list, even with the same shape of cursor, is refused.
        let other = PageRequest::<KeysetCursor<uuid::Uuid>>::parse(0, "", SESSION_PAGES, "")
            .unwrap()
            .token(KeysetCursor::new(at, uuid::Uuid::nil()));
        let refused = list(&other).unwrap_err();
        assert_eq!(refused[0].field, "page_token");
    }
}
