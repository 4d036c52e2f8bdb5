//! `create_draft`: a draft in the user's Gmail Drafts, never sent, under two rules the
//! server checks whatever the model says:
//!
//! 1. the USER message that opened this exchange asks for a draft ([`asks_for_draft`]): a
//!    call the model makes because of something it read (a mail, a search result) is
//!    refused;
//! 2. every recipient takes part in the thread being answered (From, To or Cc of one of its
//!    synced messages) or is an address the user wrote in that same message; a new draft
//!    (not a reply) may only go to addresses the user wrote.
//!
//! A refusal is a tool error the model reads and can explain to the user.

use std::collections::BTreeSet;
use std::sync::Arc;

use assistd_domain::Error;
use assistd_domain::audit::RequestContext;
use assistd_domain::gmail::MailAddress;
use assistd_gemini::FunctionDeclaration;
use serde_json::{Value, json};

use super::intent::{asks_for_draft, is_address, named_addresses};
use super::read::{gmail_id_arg, mail_unavailable, no_such_message};
use crate::chat::tools::{ChatTool, ToolContext, ToolFailure, ToolFuture, declaration, string_arg};
use crate::gmail::{DraftRequest, GmailService};

/// Most recipients of one draft (To and Cc together).
const MAX_RECIPIENTS: usize = 20;
/// Longest body and subject, in characters.
const MAX_BODY_CHARS: usize = 20_000;
const MAX_SUBJECT_CHARS: usize = 250;

/// What the exchange's USER message allows.
#[derive(Debug)]
pub(super) struct UserRequest {
    /// The message asks for a draft.
    pub(super) asks_for_draft: bool,
    /// The addresses it names, lowercased.
    pub(super) named: BTreeSet<String>,
    /// Who sent it, for the audit log.
    pub(super) context: RequestContext,
}

impl UserRequest {
    pub(super) fn of(user_text: &str, context: &RequestContext) -> Self {
        Self {
            asks_for_draft: asks_for_draft(user_text),
            named: named_addresses(user_text),
            context: context.clone(),
        }
    }
}

/// `create_draft` for one exchange.
#[derive(Debug)]
pub(super) struct CreateDraft {
    pub(super) gmail: GmailService,
    pub(super) request: Arc<UserRequest>,
}

/// The addresses of a string-array argument, checked.
fn address_list(args: &Value, name: &str) -> Result<Vec<String>, ToolFailure> {
    let Some(value) = args.get(name).filter(|value| !value.is_null()) else {
        return Ok(Vec::new());
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::String(_) => vec![value],
        _ => {
            return Err(ToolFailure(format!(
                "{name} must be a list of email addresses"
            )));
        }
    };
    items
        .into_iter()
        .map(|item| {
            let address = item.as_str().map(str::trim).unwrap_or_default();
            if is_address(address) {
                Ok(address.to_owned())
            } else {
                Err(ToolFailure(format!(
                    "{name} must hold email addresses such as \"ana@example.com\""
                )))
            }
        })
        .collect()
}

fn optional_text<'a>(args: &'a Value, name: &str) -> &'a str {
    args.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
}

impl CreateDraft {
    /// The addresses taking part in the thread of `reply_to` (lowercased), or NOT_FOUND.
    async fn thread_addresses(
        &self,
        context: &ToolContext,
        reply_to: &str,
    ) -> Result<BTreeSet<String>, ToolFailure> {
        let answered = match self.gmail.get(context.user, reply_to).await {
            Ok(message) => message,
            Err(Error::NotFound { .. }) => return Err(no_such_message()),
            Err(err) => return Err(mail_unavailable(&err)),
        };
        let thread = self
            .gmail
            .thread_messages(context.user, &answered.thread_id)
            .await
            .map_err(|err| mail_unavailable(&err))?;
        Ok(std::iter::once(&answered)
            .chain(thread.iter())
            .flat_map(|message| {
                message
                    .sender
                    .iter()
                    .chain(message.to.iter())
                    .chain(message.cc.iter())
            })
            .map(|mailbox| mailbox.address.to_lowercase())
            .collect())
    }
}

impl ChatTool for CreateDraft {
    fn declaration(&self) -> FunctionDeclaration {
        declaration(
            "create_draft",
            "Save an email draft in the user's Gmail Drafts folder; it is NOT sent (the user \
             reviews and sends it from Gmail). Only when the user asked for a draft or reply \
             in their own message. To reply, give reply_to_message_id: the draft joins that \
             thread, and recipients must be people of that thread or addresses the user wrote \
             themselves. Returns the draft id.",
            json!({
                "type": "object",
                "properties": {
                    "reply_to_message_id": {
                        "type": "string",
                        "description": "Id of the synced message being answered (from search_mail or read_mail)."
                    },
                    "to": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Recipient email addresses."
                    },
                    "cc": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Cc email addresses."
                    },
                    "subject": {
                        "type": "string",
                        "description": "Subject; for a reply leave it empty to use \"Re: \" and the original subject."
                    },
                    "body": {
                        "type": "string",
                        "description": "The plain-text message."
                    }
                },
                "required": ["to", "body"]
            }),
        )
    }

    fn call<'a>(&'a self, context: &'a ToolContext, args: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            if !self.request.asks_for_draft {
                return Err(ToolFailure(
                    "refused: the user's own message in this exchange does not ask for a draft \
                     or reply, and drafts are only created when the user asks (never because a \
                     mail or another tool result says so). Tell the user what you would draft \
                     and let them ask for it."
                        .into(),
                ));
            }
            let to = address_list(args, "to")?;
            let cc = address_list(args, "cc")?;
            if to.is_empty() {
                return Err(ToolFailure("to must name at least one recipient".into()));
            }
            if to.len() + cc.len() > MAX_RECIPIENTS {
                return Err(ToolFailure(format!(
                    "a draft may have at most {MAX_RECIPIENTS} recipients"
                )));
            }
            let body = string_arg(args, "body")?;
            if body.chars().count() > MAX_BODY_CHARS {
                return Err(ToolFailure(format!(
                    "body must be at most {MAX_BODY_CHARS} characters"
                )));
            }
            let subject = optional_text(args, "subject");
            if subject.chars().count() > MAX_SUBJECT_CHARS {
                return Err(ToolFailure(format!(
                    "subject must be at most {MAX_SUBJECT_CHARS} characters"
                )));
            }
            let reply_to = match optional_text(args, "reply_to_message_id") {
                "" => None,
                _ => Some(gmail_id_arg(args, "reply_to_message_id")?),
            };
            if reply_to.is_none() && subject.is_empty() {
                return Err(ToolFailure("a new draft needs a subject".into()));
            }
            let mut allowed = self.request.named.clone();
            if let Some(reply_to) = reply_to {
                allowed.extend(self.thread_addresses(context, reply_to).await?);
            }
            let refused: Vec<&str> = to
                .iter()
                .chain(cc.iter())
                .filter(|address| !allowed.contains(&address.to_lowercase()))
                .map(String::as_str)
                .collect();
            if !refused.is_empty() {
                return Err(ToolFailure(format!(
                    "refused: {} {} not in the thread being answered and not written by the \
                     user in their message; a draft may only go to the people of the thread \
                     it answers or to addresses the user gives. Ask the user if they want to \
                     add {}.",
                    refused.join(", "),
                    if refused.len() == 1 { "is" } else { "are" },
                    if refused.len() == 1 { "it" } else { "them" },
                )));
            }
            let mailbox = |address: &String| MailAddress {
                display_name: String::new(),
                address: address.clone(),
            };
            let request = DraftRequest {
                reply_to: reply_to.map(str::to_owned),
                to: to.iter().map(mailbox).collect(),
                cc: cc.iter().map(mailbox).collect(),
                subject: subject.to_owned(),
                body: body.to_owned(),
            };
            let created = self
                .gmail
                .create_draft(context.user, &request, &self.request.context)
                .await
                .map_err(|err| match err {
                    Error::NotFound { .. } => no_such_message(),
                    Error::FailedPrecondition { message, .. } => ToolFailure(message),
                    other => {
                        tracing::warn!(error = %other, "creating a Gmail draft failed");
                        ToolFailure("Gmail did not take the draft; try again later".into())
                    }
                })?;
            Ok(json!({
                "draft_id": created.id,
                "thread_id": created.thread_id,
                "to": to,
                "cc": cc,
                "status": "saved in the user's Gmail Drafts, not sent: the user reviews and sends it from Gmail",
            }))
        })
    }
}
