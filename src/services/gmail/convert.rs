//! Domain Gmail types into protobuf.

use assistd_domain::gmail::{
    ConnectionState, GmailConnection, MailAddress, MailAttachment, MailMessage, SyncReport,
};

use crate::proto::gmail::v1 as pb;
use crate::services::timestamp;

pub(super) fn connection_to_proto(connection: GmailConnection) -> pb::GmailConnection {
    pb::GmailConnection {
        state: match connection.state {
            ConnectionState::NotConnected => pb::GmailConnectionState::NotConnected,
            ConnectionState::Connected => pb::GmailConnectionState::Connected,
            ConnectionState::ReauthRequired => pb::GmailConnectionState::ReauthRequired,
        }
        .into(),
        email_address: connection.email_address,
        scopes: connection.scopes,
        connect_time: connection.connected_at.map(timestamp),
        last_sync_time: connection.last_sync_at.map(timestamp),
        history_id: connection
            .history_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        synced_message_count: i64::try_from(connection.synced_message_count).unwrap_or(i64::MAX),
        sync_in_progress: connection.sync_in_progress,
        last_sync_error: connection.last_sync_error.map(|error| pb::SyncError {
            reason: error.reason,
            message: error.message,
            time: Some(timestamp(error.at)),
        }),
    }
}

pub(super) fn sync_to_proto(report: SyncReport) -> pb::SyncMailboxResponse {
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    pb::SyncMailboxResponse {
        full_sync: report.full_sync,
        messages_added_count: count(report.added),
        messages_updated_count: count(report.updated),
        messages_deleted_count: count(report.deleted),
        start_time: Some(timestamp(report.started_at)),
        end_time: Some(timestamp(report.finished_at)),
        connection: Some(connection_to_proto(report.connection)),
    }
}

fn address_to_proto(address: MailAddress) -> pb::EmailAddress {
    pb::EmailAddress {
        display_name: address.display_name,
        address: address.address,
    }
}

fn attachment_to_proto(attachment: MailAttachment) -> pb::Attachment {
    pb::Attachment {
        filename: attachment.filename,
        mime_type: attachment.mime_type,
        size_bytes: attachment.size_bytes,
    }
}

pub(super) fn message_to_proto(message: MailMessage) -> pb::MailMessage {
    let unread = message.label_ids.iter().any(|l| l == "UNREAD");
    let starred = message.label_ids.iter().any(|l| l == "STARRED");
    pb::MailMessage {
        id: message.id,
        thread_id: message.thread_id,
        label_ids: message.label_ids,
        subject: message.subject,
        sender: message.sender.map(address_to_proto),
        to: message.to.into_iter().map(address_to_proto).collect(),
        cc: message.cc.into_iter().map(address_to_proto).collect(),
        snippet: message.snippet,
        receive_time: Some(timestamp(message.received_at)),
        size_estimate: message.size_estimate,
        unread,
        starred,
        attachments: message
            .attachments
            .into_iter()
            .map(attachment_to_proto)
            .collect(),
        body_text: message.body_text.unwrap_or_default(),
        body_truncated: message.body_truncated,
        triage: None,
    }
}
