//! Reading GmailService requests into domain input, with every bad field reported.

use assistd_domain::FieldViolation;
use assistd_domain::gmail::{
    MAX_LABEL_FILTERS, MAX_QUERY_CHARS, MailFilter, check_gmail_id, check_label_id,
};
use chrono::{DateTime, Utc};

use crate::paging::{Cursor, PageLimits, PageRequest};
use crate::proto::gmail::v1 as pb;

/// Default and largest `ListMessagesRequest.page_size`.
pub(super) const MESSAGE_PAGES: PageLimits = PageLimits {
    default: 25,
    max: 100,
};

/// Where ListMessages resumes: after the message received at `at` (microseconds) with id
/// `id`, newest first.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct MailCursor {
    at: i64,
    id: String,
}

impl Cursor for MailCursor {
    const LIST: &'static str = "gmail.messages";
    const RPC: &'static str = "ListMessages";
}

impl MailCursor {
    /// The cursor after a message received at `at` with id `id`.
    pub(super) fn new(at: DateTime<Utc>, id: &str) -> Self {
        Self {
            at: at.timestamp_micros(),
            id: id.to_owned(),
        }
    }
}

/// A validated ListMessages request.
#[derive(Debug)]
pub(super) struct MessageListing {
    /// The filters.
    pub(super) filter: MailFilter,
    /// The page.
    pub(super) page: PageRequest<MailCursor>,
    /// Where the page starts.
    pub(super) after: Option<(DateTime<Utc>, String)>,
}

impl TryFrom<pb::ListMessagesRequest> for MessageListing {
    type Error = Vec<FieldViolation>;

    fn try_from(request: pb::ListMessagesRequest) -> Result<Self, Self::Error> {
        let mut violations = Vec::new();
        if request.query.chars().count() > MAX_QUERY_CHARS {
            violations.push(FieldViolation::new(
                "query",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        } else if request.query.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                "query",
                "must not contain control characters",
            ));
        }
        if request.label_ids.len() > MAX_LABEL_FILTERS {
            violations.push(FieldViolation::new(
                "label_ids",
                format!("at most {MAX_LABEL_FILTERS} label ids"),
            ));
        } else {
            for (index, label) in request.label_ids.iter().enumerate() {
                if let Err(problem) = check_label_id(label) {
                    violations.push(problem.at(format!("label_ids[{index}]")));
                }
            }
        }
        if !request.thread_id.is_empty()
            && let Err(problem) = check_gmail_id(&request.thread_id)
        {
            violations.push(problem.at("thread_id"));
        }
        let mut labels = request.label_ids.clone();
        labels.sort();
        labels.dedup();
        // Tokens are bound to the filters: a token of another query or label set is refused.
        let scope = serde_json::json!([request.query, labels, request.thread_id]).to_string();
        let page = PageRequest::<MailCursor>::parse(
            request.page_size,
            &request.page_token,
            MESSAGE_PAGES,
            &scope,
        );
        let (page, after) = match page {
            Ok(page) => {
                let after = match page.after() {
                    None => Some(None),
                    Some(cursor) => DateTime::from_timestamp_micros(cursor.at)
                        .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))
                        .filter(|_| check_gmail_id(&cursor.id).is_ok())
                        .map(|at| Some((at, cursor.id.clone()))),
                };
                match after {
                    Some(after) => (Some(page), after),
                    None => {
                        violations.push(FieldViolation::new(
                            "page_token",
                            "not a token from a previous ListMessages response",
                        ));
                        (None, None)
                    }
                }
            }
            Err(problems) => {
                violations.extend(problems);
                (None, None)
            }
        };
        match page {
            Some(page) if violations.is_empty() => Ok(Self {
                filter: MailFilter {
                    query: request.query,
                    label_ids: labels,
                    thread_id: (!request.thread_id.is_empty()).then_some(request.thread_id),
                },
                page,
                after,
            }),
            _ => Err(violations),
        }
    }
}

/// The message id of a GetMessage request.
pub(super) fn message_id(value: &str) -> Result<String, Vec<FieldViolation>> {
    check_gmail_id(value)
        .map(|()| value.to_owned())
        .map_err(|problem| vec![problem.at("message_id")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(request: pb::ListMessagesRequest) -> Vec<String> {
        MessageListing::try_from(request)
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn every_bad_field_is_named() {
        let request = pb::ListMessagesRequest {
            query: "x".repeat(257),
            label_ids: vec!["INBOX".into(), "bad label".into()],
            thread_id: "../etc".into(),
            page_size: -1,
            page_token: "garbage!".into(),
        };
        let named = fields(request);
        for field in [
            "query",
            "label_ids[1]",
            "thread_id",
            "page_size",
            "page_token",
        ] {
            assert!(named.iter().any(|f| f == field), "{field} in {named:?}");
        }
        let too_many = pb::ListMessagesRequest {
            label_ids: (0..11).map(|i| format!("Label_{i}")).collect(),
            ..Default::default()
        };
        assert_eq!(fields(too_many), ["label_ids"]);
    }

    #[test]
    fn a_token_is_bound_to_its_filters() {
        let first = MessageListing::try_from(pb::ListMessagesRequest {
            query: "invoice".into(),
            page_size: 2,
            ..Default::default()
        })
        .unwrap();
        let token = first
            .page
            .token(MailCursor::new(Utc::now(), "18f3c2a1b4d5e6f7"));
        let same = MessageListing::try_from(pb::ListMessagesRequest {
            query: "invoice".into(),
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(same.after.unwrap().1, "18f3c2a1b4d5e6f7");
        let other = pb::ListMessagesRequest {
            query: "receipt".into(),
            page_token: token,
            ..Default::default()
        };
        assert_eq!(fields(other), ["page_token"]);
    }

    #[test]
    fn a_query_of_256_characters_and_ten_labels_are_accepted() {
        let listing = MessageListing::try_from(pb::ListMessagesRequest {
            query: "é".repeat(256),
            label_ids: (0..10).map(|i| format!("Label_{i}")).collect(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(listing.page.size().get(), 25);
    }
}
