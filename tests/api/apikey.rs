//! UserApiKeyService end to end: keys validated with the Gemini peer, sealed, never shown,
//! audited; every error case; isolation between users.

use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::apikey::v1::{self as pb, ApiKeyStatus, Provider};
use assistd_domain::apikey::Provider as DomainProvider;
use assistd_testkit::gemini::{ErrorBody, Fault};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, authed, reason, spawn_app};

/// A well-formed key the Gemini peer accepts once allowed.
pub(crate) const GOOD_KEY: &str = "AIzaSyD-canary-0123456789abcdefghijklm";

async fn client(app: &TestApp) -> UserApiKeyServiceClient<Channel> {
    UserApiKeyServiceClient::new(app.channel().await)
}

fn set(key: &str) -> pb::SetApiKeyRequest {
    pb::SetApiKeyRequest {
        provider: Provider::Gemini.into(),
        api_key: key.to_owned(),
        allow_unverified: false,
    }
}

fn gemini() -> i32 {
    Provider::Gemini.into()
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn set_get_list_validate_delete() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let token = app.token_for(app.create_user().await);
    let mut keys = client(&app).await;

    let first = keys
        .set_api_key(authed(set(GOOD_KEY), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.replaced);
    let stored = first.api_key.unwrap();
    assert_eq!(stored.masked_hint, "…jklm");
    assert_eq!(stored.status(), ApiKeyStatus::Valid);
    assert!(stored.last_validate_time.is_some());

    // Validation used the free model listing with the key in the header only.
    let requests = app.gemini.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert!(
        requests[0].path.ends_with("/models"),
        "{}",
        requests[0].path
    );
    assert!(requests[0].header("x-goog-api-key").is_some());
    assert!(!requests[0].uri().contains("key="));

    let got = keys
        .get_api_key(authed(pb::GetApiKeyRequest { provider: gemini() }, &token))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(got.masked_hint, stored.masked_hint);
    let listed = keys
        .list_api_keys(authed(pb::ListApiKeysRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 1);
    assert!(listed.next_page_token.is_empty());

    // Server code can reveal it; it opens to the same key.
    let user = app.tokens.verify(&token).unwrap().user;
    let revealed = app
        .vault
        .reveal(user, DomainProvider::Gemini)
        .await
        .unwrap();
    assert_eq!(revealed.expose_secret_str().unwrap(), GOOD_KEY);
    let used = keys
        .get_api_key(authed(pb::GetApiKeyRequest { provider: gemini() }, &token))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(used.last_use_time.is_some(), "reveal stamps last use");

    // Revoked upstream: ValidateApiKey records INVALID (not an error).
    app.gemini.revoke_key(GOOD_KEY);
    let validated = keys
        .validate_api_key(authed(
            pb::ValidateApiKeyRequest { provider: gemini() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(validated.status(), ApiKeyStatus::Invalid);
    assert!(
        validated.status_detail.contains("rejected"),
        "{}",
        validated.status_detail
    );

    // Replacing keeps one key and says so.
    let second = "AIzaSyD-second-0123456789abcdefghijwxyz";
    app.gemini.allow_key(second);
    let replaced = keys
        .set_api_key(authed(set(second), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(replaced.replaced);
    assert_eq!(replaced.api_key.unwrap().masked_hint, "…wxyz");
    let revealed = app
        .vault
        .reveal(user, DomainProvider::Gemini)
        .await
        .unwrap();
    assert_eq!(revealed.expose_secret_str().unwrap(), second);

    keys.delete_api_key(authed(
        pb::DeleteApiKeyRequest { provider: gemini() },
        &token,
    ))
    .await
    .unwrap();
    let gone = keys
        .get_api_key(authed(pb::GetApiKeyRequest { provider: gemini() }, &token))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let missing = app
        .vault
        .reveal(user, DomainProvider::Gemini)
        .await
        .unwrap_err();
    assert!(matches!(
        missing,
        assistd_domain::Error::FailedPrecondition {
            reason: assistd_domain::ErrorReason::ApiKeyMissing,
            ..
        }
    ));

    // The user's own audit trail shows each step, newest first, without the key.
    let events = keys
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<pb::AuditAction> = events.iter().map(pb::AuditEvent::action).collect();
    assert_eq!(
        actions,
        [
            pb::AuditAction::ApiKeyDeleted,
            pb::AuditAction::ApiKeySet,
            pb::AuditAction::ApiKeyValidated,
            pb::AuditAction::ApiKeySet,
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| !e.request_id.is_empty() && e.ip_address == "127.0.0.1")
    );
    assert_eq!(app.audit.verify().await.unwrap().first_break, None);
}

#[tokio::test]
async fn api_keys_work_over_grpc_web() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let token = app.token_for(app.create_user().await);
    let mut web =
        UserApiKeyServiceClient::with_origin(app.grpc_web(), app.address.parse().unwrap());
    let stored = web
        .set_api_key(authed(set(GOOD_KEY), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.api_key.unwrap().status(), ApiKeyStatus::Valid);
    let got = web
        .get_api_key(authed(pb::GetApiKeyRequest { provider: gemini() }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.api_key.unwrap().masked_hint, "…jklm");
    let validated = web
        .validate_api_key(authed(
            pb::ValidateApiKeyRequest { provider: gemini() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.api_key.unwrap().status(), ApiKeyStatus::Valid);
    assert_eq!(
        web.list_api_keys(authed(pb::ListApiKeysRequest::default(), &token))
            .await
            .unwrap()
            .into_inner()
            .api_keys
            .len(),
        1
    );
    web.delete_api_key(authed(
        pb::DeleteApiKeyRequest { provider: gemini() },
        &token,
    ))
    .await
    .unwrap();
    let rejected = web
        .set_api_key(authed(set("AIzaSyD-unknown-0123456789abcdefghijk"), &token))
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), Code::InvalidArgument);
    assert_eq!(reason(&rejected), "API_KEY_INVALID");
}

#[tokio::test]
async fn a_rejected_key_is_invalid_argument_and_nothing_is_stored() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut keys = client(&app).await;
    let status = keys
        .set_api_key(authed(set(GOOD_KEY), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "API_KEY_INVALID");
    assert_eq!(violated_fields(&status), ["api_key"]);
    assert!(!status.message().contains(GOOD_KEY));
    // Also for a key Gemini refuses with 403.
    app.gemini.allow_key(GOOD_KEY);
    app.gemini.fail_next(1, ErrorBody::PermissionDenied);
    let status = keys
        .set_api_key(authed(set(GOOD_KEY), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(app.store.api_keys().list(user).await.unwrap().is_empty());
    assert!(
        app.store
            .data_keys()
            .get(app.store.connection(), user)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn gemini_down_is_unavailable_unless_unverified_storage_is_asked_for() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut keys = client(&app).await;
    for fault in [
        Fault::from(ErrorBody::Unavailable),
        ErrorBody::Internal.into(),
        Fault::DropConnection,
        Fault::Stall,
    ] {
        app.gemini.fail_next(1, fault);
        let status = keys
            .set_api_key(authed(set(GOOD_KEY), &token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(reason(&status), "PROVIDER_UNAVAILABLE");
    }
    assert!(
        app.store.api_keys().list(user).await.unwrap().is_empty(),
        "nothing stored"
    );

    app.gemini.fail_next(1, ErrorBody::ResourceExhausted);
    let status = keys
        .set_api_key(authed(set(GOOD_KEY), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "PROVIDER_RATE_LIMITED");
    let retry = status.get_error_details().retry_info().cloned().unwrap();
    assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(33)));

    app.gemini.fail_next(1, ErrorBody::Unavailable);
    let mut request = set(GOOD_KEY);
    request.allow_unverified = true;
    let stored = keys
        .set_api_key(authed(request, &token))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(stored.status(), ApiKeyStatus::Unverified);
    assert!(stored.last_validate_time.is_none());

    // Gemini back: validation upgrades it.
    let validated = keys
        .validate_api_key(authed(
            pb::ValidateApiKeyRequest { provider: gemini() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(validated.status(), ApiKeyStatus::Valid);
}

#[tokio::test]
async fn malformed_input_is_invalid_argument_on_its_field() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut keys = client(&app).await;
    let huge = "A".repeat(10 * 1024);
    let cases: Vec<(pb::SetApiKeyRequest, Vec<&str>)> = vec![
        (set(""), vec!["api_key"]),
        (set(&huge), vec!["api_key"]),
        (
            set("AIzaSyD-ключ-0123456789abcdefghijklmn"),
            vec!["api_key"],
        ),
        (set("AIza SyD 0123456789 abcdefghijklmn"), vec!["api_key"]),
        (
            pb::SetApiKeyRequest {
                provider: 0,
                ..set(GOOD_KEY)
            },
            vec!["provider"],
        ),
        (
            pb::SetApiKeyRequest {
                provider: 42,
                ..set(GOOD_KEY)
            },
            vec!["provider"],
        ),
        (
            pb::SetApiKeyRequest {
                provider: 42,
                ..set("")
            },
            vec!["provider", "api_key"],
        ),
    ];
    for (request, fields) in cases {
        let status = keys.set_api_key(authed(request, &token)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), fields);
        assert!(!status.message().contains(&huge[..64]));
    }
    for provider in [0, 42] {
        let status = keys
            .get_api_key(authed(pb::GetApiKeyRequest { provider }, &token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["provider"]);
    }
    assert_eq!(
        app.gemini.request_count(),
        0,
        "malformed keys never reach Gemini"
    );
    let bad_page = keys
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                page_token: "nope".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_page), ["page_token"]);
}

#[tokio::test]
async fn another_users_key_is_not_found_and_untouched() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let alice = app.create_user().await;
    let alice_token = app.token_for(alice);
    let bob_token = app.token_for(app.create_user().await);
    let mut keys = client(&app).await;
    keys.set_api_key(authed(set(GOOD_KEY), &alice_token))
        .await
        .unwrap();

    let get = keys
        .get_api_key(authed(
            pb::GetApiKeyRequest { provider: gemini() },
            &bob_token,
        ))
        .await
        .unwrap_err();
    let validate = keys
        .validate_api_key(authed(
            pb::ValidateApiKeyRequest { provider: gemini() },
            &bob_token,
        ))
        .await
        .unwrap_err();
    let delete = keys
        .delete_api_key(authed(
            pb::DeleteApiKeyRequest { provider: gemini() },
            &bob_token,
        ))
        .await
        .unwrap_err();
    for status in [get, validate, delete] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let listed = keys
        .list_api_keys(authed(pb::ListApiKeysRequest::default(), &bob_token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.api_keys.is_empty());
    let bobs_events = keys
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &bob_token))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        bobs_events.is_empty(),
        "Bob sees none of Alice's audit events"
    );
    assert_eq!(
        app.store.api_keys().list(alice).await.unwrap().len(),
        1,
        "Alice's key is untouched"
    );
}

#[tokio::test]
async fn audit_events_page_by_keyset() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let token = app.token_for(app.create_user().await);
    let mut keys = client(&app).await;
    keys.set_api_key(authed(set(GOOD_KEY), &token))
        .await
        .unwrap();
    for _ in 0..4 {
        keys.validate_api_key(authed(
            pb::ValidateApiKeyRequest { provider: gemini() },
            &token,
        ))
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = keys
            .list_audit_events(authed(
                pb::ListAuditEventsRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.events.len() <= 2);
        seen.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.last().unwrap().action(), pb::AuditAction::ApiKeySet);
    let only_set = keys
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                actions: vec![pb::AuditAction::ApiKeySet.into()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(only_set.len(), 1);
}

#[tokio::test]
async fn usage_and_budgets_check_their_arguments() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut keys = client(&app).await;
    let usage = keys
        .get_usage(authed(pb::GetUsageRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(usage.records.is_empty());
    assert_eq!(usage.total_token_count, 0);
    assert!(usage.start_date.ends_with("-01"), "{}", usage.start_date);
    for (request, field) in [
        (
            pb::GetUsageRequest {
                start_date: "2026-13-01".into(),
                ..Default::default()
            },
            "start_date",
        ),
        (
            pb::GetUsageRequest {
                start_date: "2026-05-02".into(),
                end_date: "2026-05-01".into(),
                ..Default::default()
            },
            "end_date",
        ),
        (
            pb::GetUsageRequest {
                start_date: "2024-01-01".into(),
                end_date: "2026-01-01".into(),
                ..Default::default()
            },
            "end_date",
        ),
        (
            pb::GetUsageRequest {
                model: "models/Gemini".into(),
                ..Default::default()
            },
            "model",
        ),
    ] {
        let status = keys.get_usage(authed(request, &token)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
    let budget = keys
        .get_token_budget(authed(pb::GetTokenBudgetRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(budget.monthly_token_limit, 0);
    assert!(!budget.exhausted);
    assert!(budget.update_time.is_none());
    let status = keys
        .set_token_budget(authed(
            pb::SetTokenBudgetRequest {
                monthly_token_limit: 1_000_000_000_001,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["monthly_token_limit"]);
    let set = keys
        .set_token_budget(authed(
            pb::SetTokenBudgetRequest {
                monthly_token_limit: 5_000,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(set.monthly_token_limit, 5_000);
    assert!(set.update_time.is_some());
    // Both changes are in the user's audit trail.
    keys.clear_token_budget(authed(pb::ClearTokenBudgetRequest {}, &token))
        .await
        .unwrap();
    let actions: Vec<pb::AuditAction> = keys
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .map(pb::AuditEvent::action)
        .collect();
    assert_eq!(
        actions,
        [
            pb::AuditAction::TokenBudgetCleared,
            pb::AuditAction::TokenBudgetSet
        ]
    );
}

/// A key pasted with surrounding whitespace (a trailing newline, a leading space) is stored
/// and checked without it, as the contract says; whitespace inside a key is still refused.
#[tokio::test]
async fn surrounding_whitespace_of_a_key_is_trimmed() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut keys = client(&app).await;
    let stored = keys
        .set_api_key(authed(set(&format!(" \t{GOOD_KEY}\r\n")), &token))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(stored.status(), ApiKeyStatus::Valid);
    assert_eq!(stored.masked_hint, "…jklm");
    // Gemini accepted it (it knows the trimmed key only), and the stored key opens to it.
    assert_eq!(app.gemini.request_count(), 1);
    let revealed = app
        .vault
        .reveal(user, DomainProvider::Gemini)
        .await
        .unwrap();
    assert_eq!(revealed.expose_secret_str().unwrap(), GOOD_KEY);
    let status = keys
        .set_api_key(authed(set(&format!("{GOOD_KEY} x")), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["api_key"]);
}

/// ListAuditEvents returns at most 200 events per page, as its contract says, however many
/// are asked for.
#[tokio::test]
async fn audit_pages_hold_at_most_200_events() {
    use assistd_domain::audit::{AuditAction, AuditEvent, AuditOutcome};
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let txn = app.store.begin_write().await.unwrap();
    for _ in 0..201 {
        let event = AuditEvent {
            actor: Some(user),
            action: AuditAction::ApiKeyValidated,
            target: "api_key/gemini".into(),
            outcome: AuditOutcome::Success,
            context: Default::default(),
            metadata: Default::default(),
        };
        app.audit.append(&txn, &event).await.unwrap();
    }
    txn.commit().await.unwrap();
    let mut keys = client(&app).await;
    let first = keys
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                page_size: 500,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.len(), 200);
    assert!(!first.next_page_token.is_empty());
    let rest = keys
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                page_size: 500,
                page_token: first.next_page_token,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.events.len(), 1);
    assert!(rest.next_page_token.is_empty());
}
