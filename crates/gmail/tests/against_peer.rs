//! The client against the Gmail peer: every call's shapes, paging, and every error class.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use assistd_gmail::{GmailClient, GmailConfig, GmailError};
use assistd_testkit::gmail::{ErrorBody, Fault, FaultRule, NewMessage, Operation, RateLimitAnswer};
use common::{Env, mail};

#[tokio::test]
async fn profile_list_get_and_thread_speak_the_real_shapes() {
    let env = Env::start().await;
    let sub = env.sub();
    let first = env.gmail.add_message(
        sub,
        NewMessage::new(mail("first")).internal_date_ms(1_704_101_400_000),
    );
    let reply = env.gmail.add_message(
        sub,
        NewMessage::new(mail("Re: first"))
            .thread(first.clone())
            .labels(&["INBOX", "UNREAD"]),
    );
    let spam = env
        .gmail
        .add_message(sub, NewMessage::new(mail("spam")).labels(&["SPAM"]));
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);

    let profile = gmail.profile().await.unwrap();
    assert_eq!(profile.email_address, env.user.email);
    assert_eq!(profile.messages_total, 3);
    assert_eq!(profile.threads_total, 2);
    assert_eq!(profile.history_id, env.gmail.history_id(sub));
    assert!(!format!("{profile:?}").contains(&env.user.email));

    let page = gmail.list_messages(None, 100).await.unwrap();
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [reply.as_str(), first.as_str()],
        "newest first, SPAM left out"
    );
    assert!(!ids.contains(&spam.as_str()));
    assert_eq!(page.messages[0].thread_id, first);
    assert_eq!(page.next_page_token, None);

    let message = gmail.get_raw(&first).await.unwrap();
    assert_eq!(message.raw, mail("first"));
    assert_eq!(message.thread_id, first);
    assert_eq!(message.label_ids, ["INBOX"]);
    assert_eq!(message.internal_date.timestamp_millis(), 1_704_101_400_000);
    assert_eq!(message.snippet, "Body of first.");
    assert_eq!(message.size_estimate, mail("first").len() as i64);
    assert!(message.history_id > 1000);

    let thread = gmail.get_thread(&first).await.unwrap();
    let in_thread: Vec<&str> = thread.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(in_thread, [first.as_str(), reply.as_str()]);
    assert_eq!(thread.messages[1].label_ids, ["INBOX", "UNREAD"]);

    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 1);
    assert_eq!(env.gmail.calls(sub, Operation::ListMessages), 1);
    assert_eq!(env.gmail.calls(sub, Operation::GetMessage), 1);
    assert_eq!(env.gmail.calls(sub, Operation::GetThread), 1);
    let targets = env.gmail.request_targets();
    assert!(targets.iter().any(|t| t.contains("includeSpamTrash=false")));
    assert!(targets.iter().any(|t| t.ends_with("format=raw")));
    assert!(targets.iter().any(|t| t.ends_with("format=minimal")));
}

#[tokio::test]
async fn list_messages_pages_newest_first_to_the_end() {
    let env = Env::start().await;
    let sub = env.sub();
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);

    let empty = gmail.list_messages(None, 10).await.unwrap();
    assert!(empty.messages.is_empty() && empty.next_page_token.is_none());

    for n in 0..7 {
        env.gmail
            .add_message(sub, NewMessage::new(mail(&format!("m{n}"))));
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = gmail.list_messages(token.as_deref(), 3).await.unwrap();
        pages += 1;
        seen.extend(page.messages.into_iter().map(|m| m.id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, env.gmail.message_ids(sub));

    // maxResults is clamped to Gmail's 500.
    gmail.list_messages(None, 10_000).await.unwrap();
    assert!(
        env.gmail
            .request_targets()
            .last()
            .unwrap()
            .contains("maxResults=500")
    );
}

#[tokio::test]
async fn history_lists_every_change_type_pages_and_reports_too_old() {
    let env = Env::start().await;
    let sub = env.sub();
    let kept = env.gmail.add_message(sub, NewMessage::new(mail("kept")));
    let doomed = env.gmail.add_message(
        sub,
        NewMessage::new(mail("doomed")).labels(&["INBOX", "UNREAD"]),
    );
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    let start = gmail.profile().await.unwrap().history_id;

    let nothing = gmail.list_history(start, None).await.unwrap();
    assert!(nothing.records.is_empty());
    assert_eq!(nothing.history_id, start);

    let added = env.gmail.add_message(sub, NewMessage::new(mail("new")));
    env.gmail.modify_labels(sub, &kept, &["STARRED"], &[]);
    env.gmail.modify_labels(sub, &doomed, &[], &["UNREAD"]);
    env.gmail.delete_message(sub, &doomed);

    let page = gmail.list_history(start, None).await.unwrap();
    assert_eq!(page.history_id, env.gmail.history_id(sub));
    assert_eq!(page.records.len(), 4);
    assert!(page.records.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(page.records[0].messages_added[0].id, added);
    assert_eq!(page.records[0].messages_added[0].label_ids, ["INBOX"]);
    assert_eq!(page.records[1].labels_added[0].message.id, kept);
    assert_eq!(page.records[1].labels_added[0].label_ids, ["STARRED"]);
    assert_eq!(page.records[2].labels_removed[0].label_ids, ["UNREAD"]);
    assert_eq!(
        page.records[2].labels_removed[0].message.label_ids,
        ["INBOX"]
    );
    assert_eq!(page.records[3].messages_deleted[0].id, doomed);
    let target = env.gmail.request_targets().last().unwrap().clone();
    for kind in [
        "messageAdded",
        "messageDeleted",
        "labelAdded",
        "labelRemoved",
    ] {
        assert!(target.contains(&format!("historyTypes={kind}")), "{target}");
    }

    // More than a page (500 records): two pages, nothing lost.
    let start = page.history_id;
    for n in 0..503 {
        env.gmail
            .add_message(sub, NewMessage::new(mail(&format!("bulk {n}"))));
    }
    let first = gmail.list_history(start, None).await.unwrap();
    assert_eq!(first.records.len(), 500);
    let token = first.next_page_token.expect("a second page");
    let second = gmail.list_history(start, Some(&token)).await.unwrap();
    assert_eq!(second.records.len(), 3);
    assert_eq!(second.next_page_token, None);
    assert_eq!(second.history_id, env.gmail.history_id(sub));

    env.gmail.expire_history(sub);
    assert_eq!(
        gmail.list_history(start, None).await.unwrap_err(),
        GmailError::HistoryTooOld
    );
    // From the current history id on, history works again.
    let now = env.gmail.history_id(sub);
    assert!(
        gmail
            .list_history(now, None)
            .await
            .unwrap()
            .records
            .is_empty()
    );
}

#[tokio::test]
async fn a_deleted_message_or_unknown_thread_is_not_found() {
    let env = Env::start().await;
    let sub = env.sub();
    let id = env.gmail.add_message(sub, NewMessage::new(mail("gone")));
    env.gmail.delete_message(sub, &id);
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    assert_eq!(gmail.get_raw(&id).await.unwrap_err(), GmailError::NotFound);
    assert_eq!(
        gmail.get_thread(&id).await.unwrap_err(),
        GmailError::NotFound
    );
    // Not retried.
    assert_eq!(env.gmail.calls(sub, Operation::GetMessage), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_retried() {
    let env = Env::start().await;
    let sub = env.sub();
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    let before = env.tokens.current();
    env.oidc.expire_access_tokens();

    gmail.profile().await.unwrap();
    assert_eq!(env.tokens.refresh_count(), 1);
    assert_ne!(env.tokens.current(), before);
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 2);
    // The fresh token keeps working without more refreshes.
    gmail.list_messages(None, 10).await.unwrap();
    assert_eq!(env.tokens.refresh_count(), 1);
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_reauth_required() {
    let env = Env::start().await;
    let sub = env.sub();
    env.gmail.inject(FaultRule::always(ErrorBody::Unauthorized));
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    assert_eq!(
        gmail.profile().await.unwrap_err(),
        GmailError::ReauthRequired
    );
    assert_eq!(env.tokens.refresh_count(), 1);
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 2);
}

#[tokio::test]
async fn a_revoked_grant_is_reauth_required() {
    let env = Env::start().await;
    let sub = env.sub();
    // Revoked at Google's revocation endpoint, as Disconnect does.
    let response = reqwest::Client::new()
        .post(env.oidc.revocation_endpoint())
        .form(&[("token", env.tokens.refresh_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    assert_eq!(
        gmail.profile().await.unwrap_err(),
        GmailError::ReauthRequired
    );
    assert_eq!(
        env.tokens.refresh_count(),
        1,
        "refresh tried once, invalid_grant"
    );
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 1);
}

#[tokio::test]
async fn a_grant_without_the_gmail_scope_is_scope_missing() {
    let env = Env::with_scopes(&["openid", "email"]).await;
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    assert_eq!(
        gmail.list_messages(None, 10).await.unwrap_err(),
        GmailError::ScopeMissing
    );
    assert_eq!(env.tokens.refresh_count(), 0);
    assert_eq!(env.gmail.calls(env.sub(), Operation::ListMessages), 1);
}

#[tokio::test]
async fn rate_limit_answers_are_waited_out_honouring_retry_after() {
    let env = Env::start().await;
    let sub = env.sub();
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);

    // 429 with delay-seconds.
    env.gmail.fail_next(
        1,
        Fault::error_with_retry_after(ErrorBody::TooManyRequests, "1"),
    );
    let started = Instant::now();
    gmail.profile().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 honoured"
    );
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 2);

    // 403 userRateLimitExceeded with an HTTP date two seconds ahead (second resolution).
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    env.gmail.fail_next(
        1,
        Fault::error_with_retry_after(ErrorBody::UserRateLimit, at),
    );
    let started = Instant::now();
    gmail.profile().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After date honoured"
    );
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 4);

    // Without Retry-After: backoff, then success.
    env.gmail.fail_next(2, ErrorBody::TooManyRequests);
    gmail.profile().await.unwrap();
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 7);
}

#[tokio::test]
async fn rate_limits_beyond_the_budget_are_rate_limited_with_the_delay() {
    let env = Env::start().await;
    let sub = env.sub();
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);

    // Retry-After longer than the whole wait budget: no wait, the delay is handed up.
    env.gmail.fail_next(
        1,
        Fault::error_with_retry_after(ErrorBody::TooManyRequests, "3600"),
    );
    assert_eq!(
        gmail.profile().await.unwrap_err(),
        GmailError::RateLimited {
            retry_after: Duration::from_secs(3600)
        }
    );
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 1);

    // Rate limited on every attempt: max_retries waits, then RateLimited.
    env.gmail
        .inject(FaultRule::always(Fault::error_with_retry_after(
            ErrorBody::UserRateLimit,
            "0",
        )));
    let error = gmail.profile().await.unwrap_err();
    assert!(matches!(error, GmailError::RateLimited { .. }), "{error:?}");
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 1 + 4);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_unavailable() {
    let env = Env::start().await;
    let sub = env.sub();
    let id = env.gmail.add_message(sub, NewMessage::new(mail("x")));
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);

    env.gmail.fail_next(1, ErrorBody::BackendError);
    env.gmail.fail_next(1, ErrorBody::Unavailable);
    assert_eq!(gmail.get_raw(&id).await.unwrap().id, id);
    assert_eq!(env.gmail.calls(sub, Operation::GetMessage), 3);

    env.gmail
        .inject(FaultRule::always(ErrorBody::Unavailable).for_operation(Operation::GetMessage));
    let error = gmail.get_raw(&id).await.unwrap_err();
    assert!(matches!(error, GmailError::Unavailable(_)), "{error:?}");
    assert_eq!(
        env.gmail.calls(sub, Operation::GetMessage),
        3 + 4,
        "max_retries + 1 attempts"
    );
    // Other operations are unaffected.
    gmail.profile().await.unwrap();
}

#[tokio::test]
async fn stalls_and_dropped_connections_are_retried_then_unavailable() {
    let env = Env::start().await;
    let sub = env.sub();
    let client = GmailClient::new(&GmailConfig {
        timeout: Duration::from_millis(300),
        ..env.config()
    })
    .unwrap();
    let gmail = client.for_user("user-1", &env.tokens);

    env.gmail
        .fail_next(1, Fault::Stall(Duration::from_secs(30)));
    gmail.profile().await.unwrap();
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 2);

    env.gmail.fail_next(2, Fault::DropConnection);
    gmail.profile().await.unwrap();
    assert_eq!(env.gmail.calls(sub, Operation::GetProfile), 5);

    env.gmail.inject(FaultRule::always(Fault::DropConnection));
    let error = gmail.profile().await.unwrap_err();
    assert!(matches!(error, GmailError::Unavailable(_)), "{error:?}");
    env.gmail.clear_faults();

    env.gmail
        .inject(FaultRule::always(Fault::Stall(Duration::from_secs(30))));
    let error = gmail.profile().await.unwrap_err();
    assert!(
        matches!(&error, GmailError::Unavailable(what) if what.contains("timed out")),
        "{error:?}"
    );
}

#[tokio::test]
async fn one_user_never_exceeds_the_quota_even_from_concurrent_tasks() {
    let env = Env::start().await;
    let sub = env.sub().to_owned();
    let ids: Vec<String> = (0..120)
        .map(|n| {
            env.gmail
                .add_message(&sub, NewMessage::new(mail(&format!("q{n}"))))
        })
        .collect();
    let env = Arc::new(env);
    let client = env.client();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(30) {
        let (env, client, chunk) = (Arc::clone(&env), client.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            let gmail = client.for_user("user-1", &env.tokens);
            for id in chunk {
                gmail.get_raw(&id).await.unwrap();
            }
            gmail.list_history(1000, None).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // 120 × 5 + 4 × 2 = 608 units: more than two seconds' worth, all through.
    assert_eq!(env.gmail.calls(&sub, Operation::GetMessage), 120);
    assert_eq!(env.gmail.rate_limited_answers(&sub), 0);
    let max = env.gmail.max_units_in_one_second(&sub);
    assert!(max <= 250, "{max} units in one second");
}

#[tokio::test]
async fn the_peers_own_quota_answers_are_honoured() {
    let env = Env::start().await;
    let sub = env.sub();
    let ids: Vec<String> = (0..12)
        .map(|n| {
            env.gmail
                .add_message(sub, NewMessage::new(mail(&format!("r{n}"))))
        })
        .collect();
    // The client thinks it may spend far more than the peer allows.
    env.gmail.set_quota(20);
    env.gmail
        .set_rate_limit_answer(RateLimitAnswer::UserRateLimit403);
    env.gmail.set_rate_limit_retry_after(Some("1".to_owned()));
    let client = GmailClient::new(&GmailConfig {
        quota_units_per_second: 10_000,
        max_retries: 10,
        ..env.config()
    })
    .unwrap();
    let gmail = client.for_user("user-1", &env.tokens);
    for id in &ids {
        assert_eq!(&gmail.get_raw(id).await.unwrap().id, id);
    }
    assert!(env.gmail.rate_limited_answers(sub) > 0);
}

#[tokio::test]
async fn the_global_bound_limits_requests_in_flight() {
    let env = Env::start().await;
    let sub = env.sub().to_owned();
    let env = Arc::new(env);
    env.gmail
        .inject(FaultRule::always(Fault::Stall(Duration::from_millis(50))));
    let client = GmailClient::new(&GmailConfig {
        max_concurrent_requests: 2,
        ..env.config()
    })
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (env, client) = (Arc::clone(&env), client.clone());
        tasks.push(tokio::spawn(async move {
            client
                .for_user("user-1", &env.tokens)
                .profile()
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(env.gmail.calls(&sub, Operation::GetProfile), 8);
    let max = env.gmail.max_concurrent_requests(&sub);
    assert!((1..=2).contains(&max), "{max} in flight");
}

#[tokio::test]
async fn the_token_goes_only_in_the_authorization_header() {
    let env = Env::start().await;
    let client = env.client();
    let gmail = client.for_user("user-1", &env.tokens);
    gmail.profile().await.unwrap();
    env.gmail.fail_next(1, ErrorBody::InsufficientScope);
    let error = gmail.profile().await.unwrap_err();
    let token = env.tokens.current();
    assert!(!format!("{error} {error:?} {gmail:?} {client:?}").contains(&token));
    assert!(
        env.gmail
            .request_targets()
            .iter()
            .all(|target| !target.contains(&token))
    );
}
