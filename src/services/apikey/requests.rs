//! UserApiKeyService requests read into domain input, once, at the edge. Every field is
//! checked before anything is refused, each violation named by its field path.

use assistd_crypto::Secret;
use assistd_domain::FieldViolation;
use assistd_domain::apikey::{Provider, check_api_key_format, trim_api_key};
use assistd_domain::audit::AuditFilter;
use assistd_domain::chat::{MAX_MONTHLY_TOKEN_LIMIT, validate_model};
use chrono::{Datelike as _, NaiveDate};
use serde::{Deserialize, Serialize};

use super::convert::action_from_proto;
use crate::paging::{Cursor, PageLimits, PageRequest};
use crate::proto::apikey::v1 as pb;
use crate::services::{Violations, collect, from_timestamp};

/// Longest `GetUsage` range: `end_date` at most this many days after `start_date`.
const MAX_USAGE_DAYS: i64 = 366;

/// As ListAuditEventsRequest.page_size documents.
const AUDIT_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 200,
};

/// A user has at most one key per provider, so every key list fits on one page.
const API_KEY_PAGES: PageLimits = PageLimits {
    default: 100,
    max: 100,
};

/// The provider a request names.
pub(super) fn provider(value: i32) -> Result<Provider, Violations> {
    match pb::Provider::try_from(value) {
        Ok(pb::Provider::Gemini) => Ok(Provider::Gemini),
        Ok(pb::Provider::Unspecified) => Err(vec![FieldViolation::new(
            "provider",
            "choose a provider, e.g. PROVIDER_GEMINI",
        )]),
        Err(_) => Err(vec![FieldViolation::new(
            "provider",
            format!("unknown provider {value}; PROVIDER_GEMINI is supported"),
        )]),
    }
}

/// A read SetApiKey request. The key stays a [`Secret`] from the moment it is read.
pub(super) struct NewApiKey {
    pub(super) provider: Provider,
    pub(super) key: Secret,
    pub(super) allow_unverified: bool,
}

impl TryFrom<pb::SetApiKeyRequest> for NewApiKey {
    type Error = Violations;

    fn try_from(request: pb::SetApiKeyRequest) -> Result<Self, Self::Error> {
        let sent = Secret::from(request.api_key);
        // Surrounding whitespace is trimmed, as the contract says; the key stays a `Secret`
        // (the untrimmed copy is zeroed when `sent` drops).
        let trimmed = sent
            .expose_secret_str()
            .ok()
            .filter(|text| trim_api_key(text).len() != text.len())
            .map(|text| trim_api_key(text).to_owned());
        let key = trimmed.map_or(sent, Secret::from);
        let format = match key.expose_secret_str() {
            Ok(text) => check_api_key_format(text).map_err(|err| vec![err.at("api_key")]),
            Err(_) => Err(vec![FieldViolation::new(
                "api_key",
                "the API key must be ASCII text",
            )]),
        };
        let (provider, ()) = collect(provider(request.provider), format)?;
        Ok(Self {
            provider,
            key,
            allow_unverified: request.allow_unverified,
        })
    }
}

/// A ListApiKeys position. No token is ever issued (one page holds every key), so any
/// token a client sends is refused.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ApiKeyCursor {}

impl Cursor for ApiKeyCursor {
    const LIST: &'static str = "apikey.keys";
    const RPC: &'static str = "ListApiKeys";
}

/// Checks a ListApiKeys request: its page size, and that it carries no token.
pub(super) fn list_api_keys(request: &pb::ListApiKeysRequest) -> Result<(), Violations> {
    let page = PageRequest::<ApiKeyCursor>::parse(
        request.page_size,
        &request.page_token,
        API_KEY_PAGES,
        "",
    )?;
    match page.after() {
        None => Ok(()),
        Some(_) => Err(vec![FieldViolation::new(
            "page_token",
            "not a token from a previous ListApiKeys response",
        )]),
    }
}

/// A read GetUsage request: an inclusive range of UTC days, and an optional model.
#[derive(Debug)]
pub(super) struct UsageQuery {
    pub(super) start: NaiveDate,
    pub(super) end: NaiveDate,
    pub(super) model: Option<String>,
}

impl UsageQuery {
    /// Reads `request`; an empty start is the first of `today`'s month, an empty end `today`.
    pub(super) fn read(request: pb::GetUsageRequest, today: NaiveDate) -> Result<Self, Violations> {
        let date = |field: &str, value: &str, default: NaiveDate| {
            if value.is_empty() {
                return Ok(default);
            }
            NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
                vec![FieldViolation::new(
                    field,
                    format!("{value:?} is not a date like \"2026-11-25\""),
                )]
            })
        };
        let month_start = today.with_day(1).unwrap_or(today);
        let start = date("start_date", &request.start_date, month_start);
        let end = date("end_date", &request.end_date, today);
        let model = validate_model(&request.model).map_err(|err| vec![err.at("model")]);
        let range = collect(start, end).and_then(|(start, end)| {
            if end < start {
                Err(vec![FieldViolation::new(
                    "end_date",
                    "must not be before start_date",
                )])
            } else if (end - start).num_days() > MAX_USAGE_DAYS {
                Err(vec![FieldViolation::new(
                    "end_date",
                    format!("must be at most {MAX_USAGE_DAYS} days after start_date"),
                )])
            } else {
                Ok((start, end))
            }
        });
        let ((start, end), ()) = collect(range, model)?;
        Ok(Self {
            start,
            end,
            model: (!request.model.is_empty()).then_some(request.model),
        })
    }
}

/// The monthly limit of a SetTokenBudget request.
pub(super) fn monthly_limit(request: &pb::SetTokenBudgetRequest) -> Result<i64, Violations> {
    let limit = request.monthly_token_limit;
    if (1..=MAX_MONTHLY_TOKEN_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(vec![FieldViolation::new(
            "monthly_token_limit",
            format!("must be between 1 and {MAX_MONTHLY_TOKEN_LIMIT}, not {limit}"),
        )])
    }
}

/// Where ListAuditEvents resumes: below the last event's chain sequence number.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AuditCursor {
    seq: i64,
}

impl Cursor for AuditCursor {
    const LIST: &'static str = "apikey.audit";
    const RPC: &'static str = "ListAuditEvents";
}

impl AuditCursor {
    pub(super) const fn below(seq: i64) -> Self {
        Self { seq }
    }
}

/// A read ListAuditEvents request.
#[derive(Debug)]
pub(super) struct AuditQuery {
    pub(super) filter: AuditFilter,
    /// Some action was named, but none of them can match a row (see [`AuditQuery::empty`]).
    named_actions: bool,
    pub(super) page: PageRequest<AuditCursor>,
}

impl AuditQuery {
    /// The sequence number the page starts below.
    pub(super) fn before_seq(&self) -> Option<i64> {
        self.page.after().map(|cursor| cursor.seq)
    }

    /// Whether nothing can match: every named action is recorded under other names only in
    /// later versions.
    pub(super) fn empty(&self) -> bool {
        self.named_actions && self.filter.actions.is_empty()
    }
}

impl TryFrom<pb::ListAuditEventsRequest> for AuditQuery {
    type Error = Violations;

    fn try_from(request: pb::ListAuditEventsRequest) -> Result<Self, Self::Error> {
        let mut violations = Vec::new();
        let mut time = |field: &str, ts: Option<prost_types::Timestamp>| {
            let at = ts.as_ref().map(from_timestamp);
            if at == Some(None) {
                violations.push(FieldViolation::new(field, "not a valid timestamp"));
            }
            at.flatten()
        };
        let start = time("start_time", request.start_time);
        let end = time("end_time", request.end_time);
        let mut actions = Vec::new();
        for (index, value) in request.actions.iter().enumerate() {
            match pb::AuditAction::try_from(*value) {
                Ok(pb::AuditAction::Unspecified) | Err(_) => violations.push(FieldViolation::new(
                    format!("actions[{index}]"),
                    "not a known audit action",
                )),
                Ok(action) => actions.extend(action_from_proto(action)),
            }
        }
        let fields = if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        };
        // Tokens are bound to the filter they were made for.
        let scope = format!(
            "{:?}/{:?}/{:?}",
            request.start_time, request.end_time, request.actions
        );
        let page = PageRequest::parse(request.page_size, &request.page_token, AUDIT_PAGES, &scope);
        let ((), page) = collect(fields, page)?;
        Ok(Self {
            filter: AuditFilter {
                start,
                end,
                actions,
            },
            named_actions: !request.actions.is_empty(),
            page,
        })
    }
}
