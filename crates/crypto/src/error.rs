//! The one error type of this crate, classified so the edge can pick a status code without
//! matching on provider details.

use assistd_domain::ErrorReason;

/// Why a KEK refused an operation that an operator (not the user, not a retry) has to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KekRefusal {
    /// Our credentials may not use the key (IAM / key policy / grants, or bad credentials).
    AccessDenied,
    /// The key is disabled.
    KeyDisabled,
    /// The key is scheduled for deletion.
    KeyPendingDeletion,
    /// The key is in a state that forbids the operation (e.g. pending import, unavailable
    /// custom key store).
    InvalidKeyState,
    /// The key does not exist (or the id/alias is wrong).
    KeyNotFound,
    /// The wrapped data key was made by a different KEK than the one asked to open it.
    WrongKey,
    /// The key exists but cannot encrypt/decrypt (e.g. a signing key).
    InvalidKeyUsage,
}

impl KekRefusal {
    /// A short, human description.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access denied",
            Self::KeyDisabled => "key disabled",
            Self::KeyPendingDeletion => "key pending deletion",
            Self::InvalidKeyState => "invalid key state",
            Self::KeyNotFound => "key not found",
            Self::WrongKey => "wrong key",
            Self::InvalidKeyUsage => "invalid key usage",
        }
    }
}

impl std::fmt::Display for KekRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Coarse class of a [`CryptoError`]: what the caller should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The KEK service is unreachable, throttled or failing; retrying later may succeed
    /// (gRPC UNAVAILABLE).
    Unavailable,
    /// The KEK refuses (access denied, disabled, pending deletion, invalid state, wrong or
    /// unknown key); an operator must act (gRPC FAILED_PRECONDITION).
    FailedPrecondition,
    /// The sealed value or wrapped key does not authenticate: tampered, truncated, copied to
    /// another owner/purpose/record/version, or wrapped under another owner.
    InvalidCiphertext,
    /// A bug, a malformed answer from the KEK service, or bad local configuration.
    Internal,
}

/// Why an encryption operation failed. Every failure fails closed: no variant carries key
/// material or plaintext, and no operation returns data it could not protect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The sealed value or wrapped data key cannot be opened (see
    /// [`ErrorClass::InvalidCiphertext`]).
    #[error("ciphertext cannot be opened: {0}")]
    InvalidCiphertext(&'static str),
    /// The KEK service is unavailable or throttling; retryable.
    #[error("key-encryption key {kek_id} is unavailable: {message}")]
    KekUnavailable {
        /// The KEK that was asked.
        kek_id: String,
        /// What failed (operation, error code, service message), for the log.
        message: String,
    },
    /// The KEK refuses for a reason an operator must fix.
    #[error("key-encryption key {kek_id} refused ({reason}): {message}")]
    KekRefused {
        /// The KEK that refused.
        kek_id: String,
        /// Why, classified.
        reason: KekRefusal,
        /// What the service said, for the log.
        message: String,
    },
    /// A stored data key names a KEK this process is not configured with.
    #[error(
        "no key-encryption key {kek_id} is configured; add it as a previous KEK to open keys it wrapped"
    )]
    UnknownKek {
        /// The KEK id stored with the wrapped key.
        kek_id: String,
    },
    /// The master key file could not be read or written.
    #[error("master key file {path}: {source}")]
    MasterKeyFile {
        /// The file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The master key text is not a base64-encoded 256-bit key.
    #[error("master key is malformed: {0}")]
    MalformedMasterKey(&'static str),
    /// Anything else; a bug or a malformed answer from the KEK service.
    #[error("internal encryption error: {0}")]
    Internal(String),
}

impl CryptoError {
    /// The class of this failure, which decides the status code at the edge.
    #[must_use]
    pub const fn class(&self) -> ErrorClass {
        match self {
            Self::KekUnavailable { .. } => ErrorClass::Unavailable,
            Self::KekRefused { .. } | Self::UnknownKek { .. } => ErrorClass::FailedPrecondition,
            Self::InvalidCiphertext(_) => ErrorClass::InvalidCiphertext,
            Self::MasterKeyFile { .. } | Self::MalformedMasterKey(_) | Self::Internal(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// Whether retrying the same operation later may succeed.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(self.class(), ErrorClass::Unavailable)
    }
}

/// Maps to the domain error by class: `KEY_SERVICE_UNAVAILABLE` (retry later) or
/// `KEY_SERVICE_REJECTED` (an operator must act). An invalid ciphertext is internal: stored
/// data was corrupted or moved, which the user cannot fix.
impl From<CryptoError> for assistd_domain::Error {
    fn from(error: CryptoError) -> Self {
        match error.class() {
            ErrorClass::Unavailable => Self::Unavailable {
                reason: ErrorReason::KeyServiceUnavailable,
                message: "the key service that protects stored secrets is unavailable; try again shortly"
                    .to_owned(),
                retry_after: None,
            },
            ErrorClass::FailedPrecondition => Self::FailedPrecondition {
                reason: ErrorReason::KeyServiceRejected,
                message: "the key that protects stored secrets cannot be used; an operator must check the key-encryption key configuration"
                    .to_owned(),
            },
            ErrorClass::InvalidCiphertext | ErrorClass::Internal => Self::internal(error),
        }
    }
}
