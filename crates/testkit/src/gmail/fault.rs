//! Failures a test makes the Gmail server produce.

use std::time::Duration;

use super::Operation;

/// One of Gmail's error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorBody {
    /// 401 `authError`.
    Unauthorized,
    /// 403 `insufficientPermissions`.
    InsufficientScope,
    /// 403 `userRateLimitExceeded`.
    UserRateLimit,
    /// 404 `notFound`.
    NotFound,
    /// 429 `rateLimitExceeded`.
    TooManyRequests,
    /// 500 `backendError`.
    BackendError,
    /// 503 `backendError` / `UNAVAILABLE`.
    Unavailable,
}

impl ErrorBody {
    /// The HTTP status Gmail answers with.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::InsufficientScope | Self::UserRateLimit => 403,
            Self::NotFound => 404,
            Self::TooManyRequests => 429,
            Self::BackendError => 500,
            Self::Unavailable => 503,
        }
    }

    /// The JSON body.
    #[must_use]
    pub const fn body(self) -> &'static str {
        use super::bodies;
        match self {
            Self::Unauthorized => bodies::ERROR_401_INVALID_CREDENTIALS,
            Self::InsufficientScope => bodies::ERROR_403_INSUFFICIENT_SCOPE,
            Self::UserRateLimit => bodies::ERROR_403_USER_RATE_LIMIT,
            Self::NotFound => bodies::ERROR_404_NOT_FOUND,
            Self::TooManyRequests => bodies::ERROR_429_TOO_MANY_REQUESTS,
            Self::BackendError => bodies::ERROR_500_BACKEND_ERROR,
            Self::Unavailable => bodies::ERROR_503_UNAVAILABLE,
        }
    }
}

/// What the server does instead of (or before) answering normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with one of Gmail's error bodies and, if given, this `Retry-After` header
    /// value (delay-seconds like `"2"` or an HTTP date).
    Error {
        /// The answer.
        body: ErrorBody,
        /// The `Retry-After` header, if any.
        retry_after: Option<String>,
    },
    /// Hold the request for this long, then answer it normally (a client with a shorter
    /// timeout gives up first).
    Stall(Duration),
    /// Read the request and close the connection without answering.
    DropConnection,
}

impl Fault {
    /// The error answer `body` without `Retry-After`.
    #[must_use]
    pub const fn error(body: ErrorBody) -> Self {
        Self::Error {
            body,
            retry_after: None,
        }
    }

    /// The error answer `body` with `Retry-After: retry_after`.
    #[must_use]
    pub fn error_with_retry_after(body: ErrorBody, retry_after: impl Into<String>) -> Self {
        Self::Error {
            body,
            retry_after: Some(retry_after.into()),
        }
    }
}

impl From<ErrorBody> for Fault {
    fn from(body: ErrorBody) -> Self {
        Self::error(body)
    }
}

/// When a [`Fault`] applies: to the next `n` matching requests or to all, of any operation
/// or one.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub(super) fault: Fault,
    /// `None`: every matching request until the rules are cleared.
    pub(super) remaining: Option<usize>,
    /// `None`: any operation.
    pub(super) operation: Option<Operation>,
}

impl FaultRule {
    /// The next `n` matching requests get `fault`.
    pub fn next(n: usize, fault: impl Into<Fault>) -> Self {
        Self {
            fault: fault.into(),
            remaining: Some(n),
            operation: None,
        }
    }

    /// Every matching request gets `fault` until the rules are cleared.
    pub fn always(fault: impl Into<Fault>) -> Self {
        Self {
            fault: fault.into(),
            remaining: None,
            operation: None,
        }
    }

    /// Only requests of `operation` match.
    #[must_use]
    pub fn for_operation(mut self, operation: Operation) -> Self {
        self.operation = Some(operation);
        self
    }

    pub(super) fn matches(&self, operation: Option<Operation>) -> bool {
        self.remaining != Some(0)
            && self
                .operation
                .is_none_or(|wanted| Some(wanted) == operation)
    }
}
