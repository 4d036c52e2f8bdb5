//! The REST surface: routing, counting, faults, the token check, the quota, each method.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::drafts::{self, DraftRefusal, GMAIL_COMPOSE_SCOPES};
use super::fault::{ErrorBody, Fault};
use super::{GMAIL_READ_SCOPES, Operation, RateLimitAnswer, Shared};
use crate::serve::{Body, Hangup, full};
use assistd_devkit::oidc::protocol::bearer_token;

/// Most bytes of a request body read (a drafts.create with a 35 MB message is Gmail's limit;
/// tests send small ones).
const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// Page size of messages.list and history.list when none is asked for, and the most.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 500;

/// The methods this server knows.
enum Route {
    Profile,
    ListMessages,
    GetMessage(String),
    GetThread(String),
    ListHistory,
    CreateDraft,
}

impl Route {
    /// The route and the `userId` of a `/gmail/v1/users/{userId}/…` path.
    fn of(method: &Method, path: &str) -> Option<(Self, String)> {
        let rest = path.strip_prefix("/gmail/v1/users/")?;
        let (user_id, rest) = rest.split_once('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        if method == Method::POST && segments.as_slice() == ["drafts"] {
            return Some((Self::CreateDraft, user_id.to_owned()));
        }
        if method != Method::GET {
            return None;
        }
        let route = match segments.as_slice() {
            ["profile"] => Self::Profile,
            ["messages"] => Self::ListMessages,
            ["messages", id] if !id.is_empty() => Self::GetMessage((*id).to_owned()),
            ["threads", id] if !id.is_empty() => Self::GetThread((*id).to_owned()),
            ["history"] => Self::ListHistory,
            _ => return None,
        };
        Some((route, user_id.to_owned()))
    }

    const fn operation(&self) -> Operation {
        match self {
            Self::Profile => Operation::GetProfile,
            Self::ListMessages => Operation::ListMessages,
            Self::GetMessage(_) => Operation::GetMessage,
            Self::GetThread(_) => Operation::GetThread,
            Self::ListHistory => Operation::ListHistory,
            Self::CreateDraft => Operation::CreateDraft,
        }
    }
}

/// Lowers a user's in-flight count when the request ends, however it ends.
struct InFlight {
    shared: Arc<Shared>,
    user: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(usage) = self.shared.lock().users.get_mut(&self.user) {
            usage.in_flight = usage.in_flight.saturating_sub(1);
        }
    }
}

/// Serves one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    hangup: Hangup,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    if drafts::is_send_path(parts.uri.path()) {
        shared.lock().send_attempts += 1;
        return Ok(json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &drafts::send_refused(),
        ));
    }
    let body = if parts.method == Method::POST {
        match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(bad_request("Request body too large or broken off")),
        }
    } else {
        Bytes::new()
    };
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let route = Route::of(&parts.method, parts.uri.path());
    let token = bearer_token(&parts.headers).map(str::to_owned);
    let info = token
        .as_deref()
        .and_then(|token| shared.tokens.access_token_info(token));

    // Count the call and its concurrency against the token's owner, whatever follows.
    let (fault, _in_flight) = {
        let mut state = shared.lock();
        state.targets.push(
            parts
                .uri
                .path_and_query()
                .map_or_else(String::new, ToString::to_string),
        );
        let in_flight = info.as_ref().map(|info| {
            let usage = state.users.entry(info.user.sub.clone()).or_default();
            if let Some((route, _)) = &route {
                *usage.calls.entry(route.operation()).or_default() += 1;
            }
            usage.in_flight += 1;
            usage.max_in_flight = usage.max_in_flight.max(usage.in_flight);
            InFlight {
                shared: Arc::clone(&shared),
                user: info.user.sub.clone(),
            }
        });
        let operation = route.as_ref().map(|(route, _)| route.operation());
        (state.take_fault(operation), in_flight)
    };
    match fault {
        None => {}
        Some(Fault::Error { body, retry_after }) => {
            return Ok(error_answer(body, retry_after.as_deref()));
        }
        Some(Fault::Stall(duration)) => tokio::time::sleep(duration).await,
        Some(Fault::DropConnection) => match hangup.drop_connection().await {},
    }

    let Some((route, user_id)) = route else {
        return Ok(json_answer(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}),
        ));
    };
    let Some(info) = info.filter(crate::oidc::AccessTokenInfo::is_active) else {
        return Ok(error_answer(ErrorBody::Unauthorized, None));
    };
    let scopes: &[&str] = if matches!(route, Route::CreateDraft) {
        &GMAIL_COMPOSE_SCOPES
    } else {
        &GMAIL_READ_SCOPES
    };
    if !scopes.iter().any(|scope| info.has_scope(scope)) {
        return Ok(error_answer(ErrorBody::InsufficientScope, None));
    }
    if user_id != "me" && !user_id.eq_ignore_ascii_case(&info.user.email) {
        return Ok(json_answer(
            StatusCode::FORBIDDEN,
            &json!({"error": {"code": 403, "message": "Delegation denied", "errors": [{"message": "Delegation denied", "domain": "global", "reason": "forbidden"}], "status": "PERMISSION_DENIED"}}),
        ));
    }

    let mut state = shared.lock();
    let quota = state.quota;
    let admitted = state
        .users
        .entry(info.user.sub.clone())
        .or_default()
        .admit(route.operation().cost(), quota);
    if !admitted {
        let body = match state.rate_limit_answer {
            RateLimitAnswer::TooManyRequests => ErrorBody::TooManyRequests,
            RateLimitAnswer::UserRateLimit403 => ErrorBody::UserRateLimit,
        };
        return Ok(error_answer(body, state.rate_limit_retry_after.as_deref()));
    }
    let email = info.user.email.clone();
    let mailbox = state.mailbox(&info.user.sub);
    let param = |name: &str| {
        query
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    };
    let params = |name: &str| -> Vec<String> {
        query
            .iter()
            .filter(|(known, _)| known == name)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let page_size = match param("maxResults").map(str::parse::<usize>) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(size)) if size > 0 => size.min(MAX_PAGE_SIZE),
        Some(_) => return Ok(bad_request("Invalid maxResults")),
    };
    let offset = match param("pageToken").filter(|token| !token.is_empty()) {
        None => 0,
        Some(token) => match token.parse::<usize>() {
            Ok(offset) => offset,
            Err(_) => return Ok(bad_request("Invalid pageToken")),
        },
    };
    let format = param("format").unwrap_or("full");
    if !matches!(format, "minimal" | "full" | "raw" | "metadata") {
        return Ok(bad_request("Invalid format"));
    }
    let metadata_headers = params("metadataHeaders");
    let metadata_headers = (!metadata_headers.is_empty()).then_some(metadata_headers.as_slice());

    let answer = match route {
        Route::Profile => json!({
            "emailAddress": mailbox.address.clone().unwrap_or(email),
            "messagesTotal": mailbox.messages.len(),
            "threadsTotal": mailbox.threads_total(),
            "historyId": mailbox.history_id.to_string(),
        }),
        Route::ListMessages => {
            let include_spam_trash = param("includeSpamTrash") == Some("true");
            let listed = mailbox.listed(include_spam_trash, &params("labelIds"));
            let page: Vec<Value> = listed
                .iter()
                .skip(offset)
                .take(page_size)
                .map(|message| json!({ "id": message.id, "threadId": message.thread_id }))
                .collect();
            let mut answer = json!({ "resultSizeEstimate": listed.len() });
            if !page.is_empty() {
                answer["messages"] = page.into();
            }
            if offset + page_size < listed.len() {
                answer["nextPageToken"] = (offset + page_size).to_string().into();
            }
            answer
        }
        Route::GetMessage(id) => match mailbox.messages.get(&id) {
            Some(message) => message.resource(format, metadata_headers),
            None => return Ok(error_answer(ErrorBody::NotFound, None)),
        },
        Route::GetThread(id) => {
            let messages = mailbox.thread(&id);
            if messages.is_empty() {
                return Ok(error_answer(ErrorBody::NotFound, None));
            }
            let history_id = messages
                .iter()
                .map(|message| message.history_id)
                .max()
                .unwrap_or_default();
            let format = param("format").unwrap_or("full");
            json!({
                "id": id,
                "historyId": history_id.to_string(),
                "messages": messages
                    .iter()
                    .map(|message| message.resource(format, metadata_headers))
                    .collect::<Vec<_>>(),
            })
        }
        Route::CreateDraft => {
            return Ok(match drafts::create(&mut state, &info.user.sub, &body) {
                Ok(answer) => json_answer(StatusCode::OK, &answer),
                Err(DraftRefusal::BadRequest(message)) => bad_request(message),
                Err(DraftRefusal::NotFound) => error_answer(ErrorBody::NotFound, None),
            });
        }
        Route::ListHistory => {
            let Some(start) = param("startHistoryId").and_then(|start| start.parse::<u64>().ok())
            else {
                return Ok(bad_request("Invalid startHistoryId"));
            };
            if start < mailbox.oldest_start {
                return Ok(error_answer(ErrorBody::NotFound, None));
            }
            let types = params("historyTypes");
            let records: Vec<Value> = mailbox
                .history
                .iter()
                .filter(|record| record.id > start)
                .filter(|record| {
                    types.is_empty()
                        || types
                            .iter()
                            .any(|kind| kind == record.change.history_type())
                })
                .map(super::mailbox::Record::json)
                .collect();
            let page: Vec<Value> = records
                .iter()
                .skip(offset)
                .take(page_size)
                .cloned()
                .collect();
            let mut answer = json!({ "historyId": mailbox.history_id.to_string() });
            if !page.is_empty() {
                answer["history"] = page.into();
            }
            if offset + page_size < records.len() {
                answer["nextPageToken"] = (offset + page_size).to_string().into();
            }
            answer
        }
    };
    Ok(json_answer(StatusCode::OK, &answer))
}

fn json_answer(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(full(Bytes::from(body.to_string())))
        .expect("a valid JSON response")
}

fn error_answer(error: ErrorBody, retry_after: Option<&str>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(error.status())
        .header(CONTENT_TYPE, "application/json; charset=UTF-8");
    if let Some(retry_after) = retry_after {
        builder = builder.header(RETRY_AFTER, retry_after);
    }
    if error == ErrorBody::Unauthorized {
        builder = builder.header(
            http::header::WWW_AUTHENTICATE,
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        );
    }
    builder
        .body(full(Bytes::from_static(error.body().as_bytes())))
        .expect("a valid error response")
}

fn bad_request(message: &str) -> Response<Body> {
    json_answer(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"code": 400, "message": message, "errors": [{"message": message, "domain": "global", "reason": "invalidArgument"}], "status": "INVALID_ARGUMENT"}}),
    )
}
