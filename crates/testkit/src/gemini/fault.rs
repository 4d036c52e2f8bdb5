//! Failures a test makes the server produce.

/// One of the Gemini API's error answers, with the body from the peer examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorBody {
    /// 400, `ErrorInfo.reason` `API_KEY_INVALID` (what an unknown key gets).
    ApiKeyInvalid,
    /// 400 `INVALID_ARGUMENT` ("contents is not specified").
    InvalidArgument,
    /// 403 `PERMISSION_DENIED` (what a request without a key gets).
    PermissionDenied,
    /// 404 `NOT_FOUND` for `models/gemini-1.5-flash`.
    ModelNotFound,
    /// 429 `RESOURCE_EXHAUSTED` with `RetryInfo.retryDelay` `33s`.
    ResourceExhausted,
    /// 500 `INTERNAL`.
    Internal,
    /// 503 `UNAVAILABLE` ("The model is overloaded").
    Unavailable,
    /// 504 `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
}

impl ErrorBody {
    /// The HTTP status Google answers with.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            Self::ApiKeyInvalid | Self::InvalidArgument => 400,
            Self::PermissionDenied => 403,
            Self::ModelNotFound => 404,
            Self::ResourceExhausted => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
            Self::DeadlineExceeded => 504,
        }
    }

    /// The JSON body, exactly as in the peer examples.
    #[must_use]
    pub const fn body(self) -> &'static str {
        use super::bodies;
        match self {
            Self::ApiKeyInvalid => bodies::ERROR_400_API_KEY_INVALID,
            Self::InvalidArgument => bodies::ERROR_400_INVALID_ARGUMENT,
            Self::PermissionDenied => bodies::ERROR_403_NO_KEY,
            Self::ModelNotFound => bodies::ERROR_404_MODEL_NOT_FOUND,
            Self::ResourceExhausted => bodies::ERROR_429_RESOURCE_EXHAUSTED,
            Self::Internal => bodies::ERROR_500_INTERNAL,
            Self::Unavailable => bodies::ERROR_503_UNAVAILABLE,
            Self::DeadlineExceeded => bodies::ERROR_504_DEADLINE_EXCEEDED,
        }
    }
}

/// What the server does instead of answering normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with one of Google's error bodies.
    Error(ErrorBody),
    /// Answer with any status and body, e.g. an HTML page from a proxy in between.
    Raw {
        /// HTTP status.
        status: u16,
        /// `content-type` header.
        content_type: String,
        /// The body.
        body: String,
    },
    /// Read the request and never answer (until the client gives up or the server is dropped).
    Stall,
    /// Read the request and close the connection without answering.
    DropConnection,
    /// Stream the first `n` SSE events of the reply, then close the connection mid-body,
    /// without the event that carries `finishReason` (the chunked body never ends). On any
    /// other call it acts as [`Fault::DropConnection`].
    DisconnectAfter(usize),
    /// Stream the first `n` SSE events of the reply, then send nothing more until the client
    /// goes away (which [`GeminiServer::streams`](super::GeminiServer::streams) records). On
    /// any other call it acts as [`Fault::Stall`].
    StallAfter(usize),
}

impl From<ErrorBody> for Fault {
    fn from(body: ErrorBody) -> Self {
        Self::Error(body)
    }
}

/// When a [`Fault`] applies: to the next `n` matching requests or to all, from any key or one.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub(super) fault: Fault,
    /// `None`: every matching request until the rules are cleared.
    pub(super) remaining: Option<usize>,
    /// `None`: requests with any key (or none).
    pub(super) key: Option<String>,
}

impl FaultRule {
    /// The next `n` matching requests get `fault`.
    pub fn next(n: usize, fault: impl Into<Fault>) -> Self {
        Self {
            fault: fault.into(),
            remaining: Some(n),
            key: None,
        }
    }

    /// Every matching request gets `fault` until [`GeminiServer::clear_faults`](super::GeminiServer::clear_faults).
    pub fn always(fault: impl Into<Fault>) -> Self {
        Self {
            fault: fault.into(),
            remaining: None,
            key: None,
        }
    }

    /// Only requests carrying `key` (header or query) match.
    #[must_use]
    pub fn for_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub(super) fn matches(&self, key: Option<&str>) -> bool {
        self.remaining != Some(0) && self.key.as_deref().is_none_or(|wanted| Some(wanted) == key)
    }
}
