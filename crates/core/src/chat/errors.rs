//! Which error a failure becomes: a Gemini failure as the error the RPC answers with (a
//! rejected key is marked INVALID on the way), any error as the note stored on the reply it
//! ended, and a stored key in the form the Gemini client takes.

use std::time::Duration;

use assistd_domain::audit::RequestContext;
use assistd_domain::chat::MessageError;
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_gemini::ApiKey;

use super::Inner;
use crate::ApiKeyVault;
use crate::api_keys::RevealedKey;

/// The message recorded for an error that ended an exchange.
pub(super) fn message_error(err: &Error) -> MessageError {
    let reason = match err {
        Error::FailedPrecondition { reason, .. }
        | Error::Aborted { reason, .. }
        | Error::ResourceExhausted { reason, .. }
        | Error::Unavailable { reason, .. }
        | Error::Unauthenticated { reason, .. }
        | Error::PermissionDenied { reason, .. } => reason.as_str(),
        Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
        Error::NotFound { .. } => "NOT_FOUND",
        Error::Internal(_) => "INTERNAL",
    };
    let message = match err {
        Error::Internal(_) => "the server failed while handling this message; try again".into(),
        other => other.to_string(),
    };
    MessageError {
        reason: reason.to_owned(),
        message,
    }
}

/// How soon a client should resend a send the server stopped while shutting down: by then
/// another replica, or this one restarted, answers it.
const SHUTDOWN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The error a send answers with when the server stopped it while shutting down. What was
/// written of the reply is stored first (CANCELLED): with `text_saved` a resend with the same
/// `client_message_id` returns it; without, a resend asks the model again.
pub(super) fn shutting_down(text_saved: bool) -> Error {
    let message = if text_saved {
        "the server is restarting and stopped this reply; what was written of it so far was \
         saved: resend the message with the same client_message_id in a moment to get it"
    } else {
        "the server is restarting and stopped this message before any reply was written; \
         resend it with the same client_message_id in a moment for an answer"
    };
    Error::Unavailable {
        reason: ErrorReason::ServerShuttingDown,
        message: message.into(),
        retry_after: Some(SHUTDOWN_RETRY_AFTER),
    }
}

impl Inner {
    /// The error to answer with for a failed Gemini call; a rejected key is marked INVALID.
    pub(super) async fn provider_error(
        &self,
        user: UserId,
        context: &RequestContext,
        key: &RevealedKey,
        err: assistd_gemini::Error,
        model: &str,
    ) -> Error {
        provider_error(&self.vault, user, context, key, err, model).await
    }
}

/// The error to answer with for a failed Gemini call made with `key`; a rejected key is
/// marked INVALID in `vault`. Shared by every engine that calls Gemini on the user's key
/// (chat, and the AI over synced mail), so a failure reads the same whichever RPC met it.
pub(crate) async fn provider_error(
    vault: &ApiKeyVault,
    user: UserId,
    context: &RequestContext,
    key: &RevealedKey,
    err: assistd_gemini::Error,
    model: &str,
) -> Error {
    use assistd_gemini::Error as Gemini;
    match err {
        err if err.rejects_key() => {
            match vault
                .mark_rejected(user, context, key, &err.to_string())
                .await
            {
                Ok(answer) | Err(answer) => answer,
            }
        }
        Gemini::RateLimited {
            retry_after,
            quota_id,
            ..
        } => Error::ResourceExhausted {
            reason: ErrorReason::ProviderRateLimited,
            message: format!(
                "Gemini answered that your API key's quota is exhausted{}; try again {}",
                quota_id.map(|id| format!(" ({id})")).unwrap_or_default(),
                retry_after.map_or_else(
                    || "later".to_owned(),
                    |delay| format!("in {} s", delay.as_secs().max(1))
                ),
            ),
            retry_after,
        },
        Gemini::NotFound { .. } => Error::FailedPrecondition {
            reason: ErrorReason::ModelNotFound,
            message: format!(
                "Gemini does not serve the model {model:?} to your key; choose another \
                     model for this session (ListModels shows the available ones)"
            ),
        },
        Gemini::InvalidArgument { message } => {
            tracing::error!(%message, "Gemini refused a request the server built");
            Error::internal(format!("Gemini refused the request: {message}"))
        }
        other => {
            tracing::warn!(error = %other, "Gemini failed");
            Error::Unavailable {
                reason: ErrorReason::ProviderUnavailable,
                message: "Gemini is unavailable or did not answer in time; try again in a \
                              moment"
                    .into(),
                retry_after: Some(Duration::from_secs(1)),
            }
        }
    }
}

/// The Gemini form of a revealed key.
pub(crate) fn api_key(key: &RevealedKey) -> Result<ApiKey> {
    let text = key
        .expose_secret()
        .expose_secret_str()
        .map_err(|_| Error::internal("a stored API key is not UTF-8"))?;
    ApiKey::new(text.to_owned()).map_err(|_| Error::FailedPrecondition {
        reason: ErrorReason::ApiKeyInvalid,
        message: "the stored API key is malformed; set a new one in settings (SetApiKey)".into(),
    })
}
