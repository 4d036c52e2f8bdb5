//! Gmail's error bodies, byte for byte as in `peers/gmail/` (copied from the shared peer
//! description; see its README for their provenance), and the two 5xx bodies built on the
//! same Google JSON error envelope.

/// 401 `UNAUTHENTICATED` / `authError`: a missing, unknown, expired or revoked token.
pub const ERROR_401_INVALID_CREDENTIALS: &str =
    include_str!("../../peers/gmail/error_401_invalid_credentials.json");
/// 403 `insufficientPermissions` / `ACCESS_TOKEN_SCOPE_INSUFFICIENT`: no Gmail scope.
pub const ERROR_403_INSUFFICIENT_SCOPE: &str =
    include_str!("../../peers/gmail/error_403_insufficient_scope.json");
/// 403 `userRateLimitExceeded`.
pub const ERROR_403_USER_RATE_LIMIT: &str =
    include_str!("../../peers/gmail/error_403_user_rate_limit.json");
/// 404 `notFound`: a deleted message, an unknown thread, a start history id too old.
pub const ERROR_404_NOT_FOUND: &str =
    include_str!("../../peers/gmail/error_404_history_id_too_old.json");
/// 429 `rateLimitExceeded` / `RESOURCE_EXHAUSTED`.
pub const ERROR_429_TOO_MANY_REQUESTS: &str =
    include_str!("../../peers/gmail/error_429_too_many_requests.json");
/// 500 `backendError` (the envelope filled with the handle-errors guide's reason).
pub const ERROR_500_BACKEND_ERROR: &str = r#"{
  "error": {
    "code": 500,
    "message": "Backend Error",
    "errors": [
      {
        "message": "Backend Error",
        "domain": "global",
        "reason": "backendError"
      }
    ],
    "status": "INTERNAL"
  }
}
"#;
/// 503 `backendError` / `UNAVAILABLE`.
pub const ERROR_503_UNAVAILABLE: &str = r#"{
  "error": {
    "code": 503,
    "message": "The service is currently unavailable.",
    "errors": [
      {
        "message": "The service is currently unavailable.",
        "domain": "global",
        "reason": "backendError"
      }
    ],
    "status": "UNAVAILABLE"
  }
}
"#;
