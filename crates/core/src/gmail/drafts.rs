//! What the chat's mail tools may do with the user's Gmail, and the one write they can make:
//! a draft in the user's Drafts. Nothing here (or anywhere in assistd) sends mail.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditAction, AuditOutcome, RequestContext};
use assistd_domain::gmail::{ConnectionState, MailAddress, MailFilter, MailMessage};
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_gmail::{CreatedDraft, DraftAddress, GmailError, NewDraft};

use super::GmailService;
use super::connection::state_of;
use super::tokens::UserTokens;

/// Most messages of one thread read to learn who takes part in it.
const MAX_THREAD_MESSAGES: usize = 200;

/// What the user's Gmail grant lets the chat's mail tools do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailToolAccess {
    /// Gmail is connected: synced mail may be searched and read.
    pub connected: bool,
    /// The grant also holds `gmail.compose`: drafts may be created.
    pub can_draft: bool,
}

/// A draft the chat asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DraftRequest {
    /// The synced message this draft answers (the draft joins its thread).
    pub reply_to: Option<String>,
    /// `To`.
    pub to: Vec<MailAddress>,
    /// `Cc`.
    pub cc: Vec<MailAddress>,
    /// `Subject`; for a reply, empty means "Re: " and the answered subject.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

fn draft_address(mailbox: &MailAddress) -> DraftAddress {
    DraftAddress {
        name: mailbox.display_name.clone(),
        address: mailbox.address.clone(),
    }
}

/// The reply subject: the answered one with a single `Re: `.
fn reply_subject(answered: &str) -> String {
    let trimmed = answered.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("re:") {
        trimmed.to_owned()
    } else {
        format!("Re: {trimmed}")
    }
}

/// The domain error a failed drafts.create becomes: a grant without `gmail.compose` names
/// the consent that adds it.
fn draft_error(err: GmailError) -> Error {
    match err {
        GmailError::ScopeMissing => Error::FailedPrecondition {
            reason: ErrorReason::GmailScopeMissing,
            message: "the Google grant lacks gmail.compose; sign in with request_gmail_compose to let the assistant create drafts".into(),
        },
        GmailError::NotFound => Error::NotFound {
            resource: "thread",
            id: String::new(),
        },
        other => super::gmail_error(other),
    }
}

impl GmailService {
    /// What the chat's mail tools may do for `user` now.
    ///
    /// # Errors
    /// The database failed.
    pub async fn tool_access(&self, user: UserId) -> Result<MailToolAccess> {
        let grant = self.inner.auth.google_grant(user).await?;
        let row = self.inner.store.gmail().connection(user).await?;
        let connected = state_of(grant.as_ref(), row.as_ref()) == ConnectionState::Connected;
        Ok(MailToolAccess {
            connected,
            can_draft: connected && grant.is_some_and(|grant| grant.has_compose_scope()),
        })
    }

    /// The synced messages of one of the user's threads, newest first (bodies left out).
    ///
    /// # Errors
    /// The database or the key service failed.
    pub async fn thread_messages(&self, user: UserId, thread_id: &str) -> Result<Vec<MailMessage>> {
        let filter = MailFilter {
            thread_id: Some(thread_id.to_owned()),
            ..MailFilter::default()
        };
        self.list(user, &filter, None, MAX_THREAD_MESSAGES).await
    }

    /// Creates a draft in the user's Gmail Drafts, in the thread of `request.reply_to` when
    /// it answers a synced message (with `In-Reply-To`/`References` from Gmail), and audits
    /// it. The caller decides who may be addressed; this only writes the draft.
    ///
    /// # Errors
    /// NOT_FOUND for a `reply_to` that is not one of the user's synced messages;
    /// FAILED_PRECONDITION `GMAIL_SCOPE_MISSING` without `gmail.compose`,
    /// `GOOGLE_REAUTH_REQUIRED` for a broken grant; RESOURCE_EXHAUSTED, UNAVAILABLE from Gmail.
    pub async fn create_draft(
        &self,
        user: UserId,
        request: &DraftRequest,
        context: &RequestContext,
    ) -> Result<CreatedDraft> {
        let answered = match &request.reply_to {
            Some(id) => Some(self.get(user, id).await?),
            None => None,
        };
        let tokens = UserTokens {
            auth: self.inner.auth.clone(),
            user,
        };
        let quota_key = user.to_string();
        let api = self.inner.client.for_user(&quota_key, &tokens);
        let reply = match &answered {
            Some(message) => Some(api.reply_headers(&message.id).await.map_err(draft_error)?),
            None => None,
        };
        let subject = match (&answered, request.subject.trim()) {
            (Some(message), "") => reply_subject(&message.subject),
            (_, subject) => subject.to_owned(),
        };
        let draft = NewDraft {
            from: None,
            to: request.to.iter().map(draft_address).collect(),
            cc: request.cc.iter().map(draft_address).collect(),
            subject,
            body: request.body.clone(),
            reply,
        };
        let created = api.create_draft(&draft).await.map_err(draft_error);
        let mut metadata = BTreeMap::from([
            ("reply".to_owned(), answered.is_some().to_string()),
            (
                "recipients".to_owned(),
                (draft.to.len() + draft.cc.len()).to_string(),
            ),
        ]);
        let outcome = match &created {
            Ok(created) => {
                metadata.insert("draft_id".to_owned(), created.id.clone());
                AuditOutcome::Success
            }
            Err(_) => AuditOutcome::Failure,
        };
        self.inner
            .auth
            .record_google_event(
                user,
                AuditAction::GmailDraftCreated,
                outcome,
                context,
                metadata,
            )
            .await;
        created
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_subject_has_one_re() {
        assert_eq!(reply_subject("Dinner?"), "Re: Dinner?");
        assert_eq!(reply_subject("RE: Dinner?"), "RE: Dinner?");
        assert_eq!(reply_subject(" re: x "), "re: x");
    }
}
