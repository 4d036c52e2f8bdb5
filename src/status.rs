//! The one mapping from domain errors to gRPC statuses with google.rpc details.
//!
//! Messages are for people and name the fix; details are for programs: BadRequest field
//! violations, ErrorInfo reasons (domain `assistd`), RetryInfo. Internal causes go to the log
//! and never to the client.

use assistd_domain::{Error, ErrorReason};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `ErrorInfo.domain` of every error assistd reports.
pub const ERROR_DOMAIN: &str = "assistd";

/// Converts a domain error into the status the client sees.
pub fn status(err: Error) -> Status {
    match err {
        Error::InvalidArgument { violations, reason } => {
            let message = match violations.as_slice() {
                [one] => format!("invalid {}: {}", one.field, one.description),
                many => format!("{} invalid fields; see the BadRequest details", many.len()),
            };
            let mut details = ErrorDetails::new();
            if let Some(reason) = reason {
                details.set_error_info(reason.as_str(), ERROR_DOMAIN, []);
            }
            for violation in violations {
                details.add_bad_request_violation(violation.field, violation.description);
            }
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::Unauthenticated { reason, message } => {
            with_reason(Code::Unauthenticated, message, reason)
        }
        Error::NotFound { resource, id } => {
            let mut details = ErrorDetails::new();
            details.set_resource_info(resource, id.clone(), "", format!("no {resource} {id}"));
            Status::with_error_details(
                Code::NotFound,
                format!("{resource} {id} not found"),
                details,
            )
        }
        Error::PermissionDenied { reason, message } => {
            with_reason(Code::PermissionDenied, message, reason)
        }
        Error::FailedPrecondition { reason, message } => {
            with_reason(Code::FailedPrecondition, message, reason)
        }
        Error::Aborted { reason, message } => with_reason(Code::Aborted, message, reason),
        Error::ResourceExhausted {
            reason,
            message,
            retry_after,
        } => with_retry(Code::ResourceExhausted, message, reason, retry_after),
        Error::Unavailable {
            reason,
            message,
            retry_after,
        } => with_retry(Code::Unavailable, message, reason, retry_after),
        Error::Internal(cause) => {
            tracing::error!(error = %cause, cause = ?cause, "internal error");
            Status::internal("internal error; it has been logged, please retry later")
        }
    }
}

fn with_retry(
    code: Code,
    message: String,
    reason: ErrorReason,
    retry_after: Option<std::time::Duration>,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, []);
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, message, details)
}

fn with_reason(code: Code, message: String, reason: ErrorReason) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, []),
    )
}

/// Statuses for requests that are malformed before they reach the domain.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    status(Error::invalid_field(field, description))
}

#[cfg(test)]
mod tests {
    use super::*;
    use assistd_domain::FieldViolation;

    #[test]
    fn field_violations_travel_as_bad_request_details() {
        let status = status(Error::InvalidArgument {
            violations: vec![FieldViolation::new("preferences.timezone", "unknown")],
            reason: None,
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "preferences.timezone");
    }

    #[test]
    fn internal_causes_stay_out_of_the_message() {
        let status = status(Error::internal("connection string postgres://u:pw@db"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("pw"));
        assert!(status.details().is_empty());
    }

    #[test]
    fn every_kind_maps_to_its_code() {
        let cases = [
            (
                Error::Unauthenticated {
                    reason: ErrorReason::AccessTokenExpired,
                    message: "expired".into(),
                },
                Code::Unauthenticated,
            ),
            (
                Error::NotFound {
                    resource: "chat session",
                    id: "x".into(),
                },
                Code::NotFound,
            ),
            (
                Error::FailedPrecondition {
                    reason: ErrorReason::ApiKeyMissing,
                    message: "set a key".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                Error::ResourceExhausted {
                    reason: ErrorReason::ProviderRateLimited,
                    message: "slow down".into(),
                    retry_after: Some(std::time::Duration::from_secs(33)),
                },
                Code::ResourceExhausted,
            ),
            (
                Error::Unavailable {
                    reason: ErrorReason::ProviderUnavailable,
                    message: "down".into(),
                    retry_after: None,
                },
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            let status = status(err);
            assert_eq!(status.code(), code);
            let details = status.get_error_details();
            if code == Code::NotFound {
                assert_eq!(
                    details.resource_info().unwrap().resource_type,
                    "chat session"
                );
            } else {
                assert!(!details.error_info().unwrap().reason.is_empty());
            }
            if code == Code::ResourceExhausted {
                let delay = details.retry_info().unwrap().retry_delay.unwrap();
                assert_eq!(delay, std::time::Duration::from_secs(33));
            }
        }
    }

    #[test]
    fn a_server_shutting_down_answers_unavailable_with_its_reason_and_a_retry_delay() {
        let status = status(Error::Unavailable {
            reason: ErrorReason::ServerShuttingDown,
            message: "restarting; resend in a moment".into(),
            retry_after: Some(std::time::Duration::from_secs(1)),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "restarting; resend in a moment");
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "SERVER_SHUTTING_DOWN");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_secs(1))
        );
    }

    #[test]
    fn reasons_travel_as_error_info() {
        let status = status(Error::Aborted {
            reason: ErrorReason::EtagMismatch,
            message: "changed".into(),
        });
        assert_eq!(status.code(), Code::Aborted);
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "ETAG_MISMATCH");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }
}
