//! drafts.create against the Gmail peer: a reply draft in the answered thread with its
//! threading headers, the scope it needs, and no retry of a create Gmail may have done.

mod common;

use assistd_gmail::{DraftAddress, GmailError, NewDraft};
use assistd_testkit::gmail::{
    ErrorBody, Fault, FaultRule, GMAIL_COMPOSE, GMAIL_READONLY, NewMessage, Operation,
};
use common::Env;

fn answered_mail() -> Vec<u8> {
    b"From: Bob <bob@example.com>\r\nTo: Ada <ada@example.com>\r\nSubject: Lunch?\r\nMessage-ID: <lunch-2@example.com>\r\nReferences: <lunch-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nLunch on Monday?\r\n"
        .to_vec()
}

fn draft_to_bob() -> NewDraft {
    NewDraft {
        to: vec![DraftAddress {
            name: "Bob".into(),
            address: "bob@example.com".into(),
        }],
        subject: "Re: Lunch?".into(),
        body: "Monday suits me.".into(),
        ..NewDraft::default()
    }
}

#[tokio::test]
async fn a_reply_draft_joins_the_thread_with_its_headers() {
    let env = Env::with_scopes(&["openid", "email", GMAIL_READONLY, GMAIL_COMPOSE]).await;
    let sub = env.sub();
    let id = env.gmail.add_message(sub, NewMessage::new(answered_mail()));
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);

    let reply = gmail.reply_headers(&id).await.unwrap();
    assert_eq!(reply.thread_id, id);
    assert_eq!(reply.message_id.as_deref(), Some("lunch-2@example.com"));
    assert_eq!(reply.references, ["lunch-1@example.com"]);
    assert_eq!(reply.subject, "Lunch?");

    let created = gmail
        .create_draft(&NewDraft {
            reply: Some(reply),
            ..draft_to_bob()
        })
        .await
        .unwrap();
    let drafts = env.gmail.drafts(sub);
    assert_eq!(drafts.len(), 1);
    let draft = &drafts[0];
    assert_eq!(created.id, draft.id);
    assert_eq!(created.thread_id, id);
    assert_eq!(draft.requested_thread_id.as_deref(), Some(id.as_str()));
    assert_eq!(draft.to, ["bob@example.com"]);
    assert_eq!(draft.in_reply_to.as_deref(), Some("lunch-2@example.com"));
    assert_eq!(
        draft.references,
        ["lunch-1@example.com", "lunch-2@example.com"]
    );
    assert_eq!(draft.body_text.trim(), "Monday suits me.");
    assert_eq!(env.gmail.calls(sub, Operation::CreateDraft), 1);
    assert_eq!(env.gmail.send_attempts(), 0);
}

#[tokio::test]
async fn a_grant_without_compose_is_scope_missing() {
    let env = Env::start().await;
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    assert_eq!(
        gmail.create_draft(&draft_to_bob()).await,
        Err(GmailError::ScopeMissing)
    );
    assert!(env.gmail.drafts(env.sub()).is_empty());
}

#[tokio::test]
async fn a_failed_create_is_not_retried() {
    let env = Env::with_scopes(&["openid", "email", GMAIL_READONLY, GMAIL_COMPOSE]).await;
    env.gmail.inject(
        FaultRule::next(1, Fault::from(ErrorBody::BackendError))
            .for_operation(Operation::CreateDraft),
    );
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    assert!(matches!(
        gmail.create_draft(&draft_to_bob()).await,
        Err(GmailError::Unavailable(_))
    ));
    assert_eq!(env.gmail.calls(env.sub(), Operation::CreateDraft), 1);
    assert!(env.gmail.drafts(env.sub()).is_empty());
}
