//! The AI RPCs of GmailService (SummarizeMessage, SummarizeThread, TriageInbox): requests
//! read and checked, the core [`MailAssistant`] called, its answers written as protobuf.

use assistd_core::gmail::{
    AiUsage, MailAssistant, MailSummary, TriageCategory, TriagePriority, TriageResult,
    TriageSelection,
};
use assistd_domain::FieldViolation;
use assistd_domain::gmail::{MailMessage, check_gmail_id};
use chrono::{DateTime, Utc};
use tonic::Status;

use super::convert::message_to_proto;
use crate::proto::gmail::v1 as pb;
use crate::services::{Violations, from_timestamp, timestamp};
use crate::status::status;

/// TriageInbox's `max_messages` when 0, and the most it takes.
const DEFAULT_TRIAGE_MESSAGES: usize = 20;
const MAX_TRIAGE_MESSAGES: usize = 100;
/// How far back TriageInbox looks without a `start_time`.
const DEFAULT_TRIAGE_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// A Gmail id field, checked.
pub(super) fn gmail_id(field: &str, value: &str) -> Result<String, Violations> {
    check_gmail_id(value)
        .map(|()| value.to_owned())
        .map_err(|problem| vec![problem.at(field)])
}

/// A TriageInbox request read at `now`.
pub(super) fn triage_selection(
    request: &pb::TriageInboxRequest,
    now: DateTime<Utc>,
) -> Result<TriageSelection, Violations> {
    let mut violations = Vec::new();
    let max_messages = match usize::try_from(request.max_messages) {
        Ok(0) => DEFAULT_TRIAGE_MESSAGES,
        Ok(n) => n.min(MAX_TRIAGE_MESSAGES),
        Err(_) => {
            violations.push(FieldViolation::new(
                "max_messages",
                "must not be negative (0 means 20)",
            ));
            0
        }
    };
    let start = match &request.start_time {
        None => now - DEFAULT_TRIAGE_WINDOW,
        Some(ts) => match from_timestamp(ts) {
            Some(start) if start <= now => start,
            Some(_) => {
                violations.push(FieldViolation::new(
                    "start_time",
                    "must not be in the future",
                ));
                now
            }
            None => {
                violations.push(FieldViolation::new(
                    "start_time",
                    "is not a valid timestamp",
                ));
                now
            }
        },
    };
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(TriageSelection {
        max_messages,
        start,
        unread_only: request.unread_only,
        refresh: request.refresh,
    })
}

fn count(n: i64) -> i32 {
    i32::try_from(n.max(0)).unwrap_or(i32::MAX)
}

pub(super) fn usage_to_proto(usage: AiUsage) -> pb::Usage {
    pb::Usage {
        model_call_count: count(usage.model_calls),
        prompt_token_count: count(usage.prompt_tokens),
        output_token_count: count(usage.output_tokens),
        total_token_count: count(usage.total_tokens),
    }
}

pub(super) fn summary_to_proto(summary: MailSummary) -> pb::MailSummary {
    pb::MailSummary {
        summary: summary.summary,
        key_points: summary.key_points,
        action_items: summary.action_items,
        model: summary.model,
        create_time: Some(timestamp(summary.created_at)),
        cached: summary.cached,
    }
}

fn category_to_proto(category: TriageCategory) -> pb::TriageCategory {
    match category {
        TriageCategory::Personal => pb::TriageCategory::Personal,
        TriageCategory::Work => pb::TriageCategory::Work,
        TriageCategory::Finance => pb::TriageCategory::Finance,
        TriageCategory::Shopping => pb::TriageCategory::Shopping,
        TriageCategory::Travel => pb::TriageCategory::Travel,
        TriageCategory::Security => pb::TriageCategory::Security,
        TriageCategory::Notification => pb::TriageCategory::Notification,
        TriageCategory::Newsletter => pb::TriageCategory::Newsletter,
        TriageCategory::Promotion => pb::TriageCategory::Promotion,
        TriageCategory::Social => pb::TriageCategory::Social,
        TriageCategory::Other => pb::TriageCategory::Other,
    }
}

fn priority_to_proto(priority: TriagePriority) -> pb::TriagePriority {
    match priority {
        TriagePriority::Urgent => pb::TriagePriority::Urgent,
        TriagePriority::High => pb::TriagePriority::High,
        TriagePriority::Normal => pb::TriagePriority::Normal,
        TriagePriority::Low => pb::TriagePriority::Low,
    }
}

pub(super) fn triage_to_proto(result: TriageResult) -> pb::TriageResult {
    pb::TriageResult {
        message_id: result.message_id,
        thread_id: result.thread_id,
        category: category_to_proto(result.category).into(),
        priority: priority_to_proto(result.priority).into(),
        needs_reply: result.needs_reply,
        gist: result.gist,
        rationale: result.rationale,
        model: result.model,
        create_time: Some(timestamp(result.triaged_at)),
    }
}

/// A message as lists show it, with its triage.
pub(super) fn triaged_to_proto(
    message: MailMessage,
    triage: Option<TriageResult>,
) -> pb::MailMessage {
    let mut message = message_to_proto(message);
    message.triage = triage.map(triage_to_proto);
    message
}

/// `messages` as protobuf, each with its stored triage (ListMessages, GetMessage).
pub(super) async fn with_stored_triage(
    assistant: &MailAssistant,
    user: assistd_domain::UserId,
    messages: Vec<MailMessage>,
) -> Result<Vec<pb::MailMessage>, Status> {
    let mut triage = assistant
        .stored_triage(user, &messages)
        .await
        .map_err(status)?;
    Ok(messages
        .into_iter()
        .map(|message| {
            let result = triage.remove(&message.id);
            triaged_to_proto(message, result)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn triage_defaults_and_caps() {
        let default = triage_selection(&pb::TriageInboxRequest::default(), now()).unwrap();
        assert_eq!(default.max_messages, 20);
        assert_eq!(default.start, now() - chrono::Duration::days(7));
        let capped = triage_selection(
            &pb::TriageInboxRequest {
                max_messages: 500,
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        assert_eq!(capped.max_messages, 100);
    }

    #[test]
    fn bad_triage_fields_are_named() {
        let request = pb::TriageInboxRequest {
            max_messages: -1,
            start_time: Some(timestamp(now() + chrono::Duration::minutes(1))),
            ..Default::default()
        };
        let fields: Vec<String> = triage_selection(&request, now())
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["max_messages", "start_time"]);
    }
}
