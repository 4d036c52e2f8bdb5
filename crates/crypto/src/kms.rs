//! The AWS KMS key-encryption key.

use std::time::Duration;

use assistd_domain::UserId;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, EncryptionAlgorithmSpec};
use zeroize::Zeroizing;

use crate::kek::ensure_wrapped_by;
use crate::{CryptoError, DataKey, KekRefusal, KeyEncryptionKey, WrappedDataKey};

/// The EncryptionContext key under which the owner's id is bound in every KMS call.
const CONTEXT_USER_ID: &str = "user_id";

/// Where the KMS key is and how patiently to talk to it.
#[derive(Clone, Debug)]
pub struct KmsSettings {
    /// Key id, key ARN, alias name (`alias/assistd`) or alias ARN of a symmetric
    /// ENCRYPT_DECRYPT key. It is part of the KEK id stored with every wrapped key, so keep
    /// the same spelling for the same key.
    pub key_id: String,
    /// AWS region; `None` takes it from the standard chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint URL (a VPC endpoint, or a local KMS in tests); `None` uses the standard
    /// endpoint (or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Attempts per call, the first included (1 disables retries). Default 3, the SDK's
    /// standard mode: throttling and 5xx are retried with jittered backoff.
    pub max_attempts: u32,
    /// Time to establish a connection. Default 3 s.
    pub connect_timeout: Duration,
    /// Time for one whole call, retries included. Default 10 s: a request waiting on its
    /// data key should fail with UNAVAILABLE rather than hang.
    pub operation_timeout: Duration,
}

impl KmsSettings {
    /// Settings for `key_id` with the defaults above.
    pub fn new(key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            region: None,
            endpoint_url: None,
            max_attempts: 3,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
        }
    }
}

/// A key-encryption key in AWS KMS: data keys come from `GenerateDataKey` (AES_256), are
/// re-wrapped with `Encrypt` and opened with `Decrypt`, always with the encryption context
/// `{"user_id": <owner>}` and the configured key id, so KMS itself refuses to open one user's
/// key for another and CloudTrail shows whose key was used.
///
/// The wrapped bytes are KMS's ciphertext blob. The SDK's own buffers for a response hold a
/// copy of the plaintext key that this crate cannot zeroize; the copy handed out is.
pub struct KmsKek {
    id: String,
    key_id: String,
    client: Client,
}

impl std::fmt::Debug for KmsKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KmsKek {
    /// Connects with the standard AWS credential chain (environment, profile, web identity,
    /// ECS, EC2 instance metadata), overriding region and endpoint when the settings give them.
    /// Credentials are resolved lazily: a missing credential shows up as an error on the first
    /// call, not here.
    pub async fn connect(settings: KmsSettings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk_config = loader.load().await;
        Self::from_sdk_config(&sdk_config, &settings)
    }

    /// Builds the client from an already loaded AWS configuration (its credentials, region
    /// and endpoint), with the key, retry and timeout settings applied on top.
    #[must_use]
    pub fn from_sdk_config(sdk_config: &aws_config::SdkConfig, settings: &KmsSettings) -> Self {
        let mut builder = aws_sdk_kms::config::Builder::from(sdk_config)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.connect_timeout)
                    .operation_timeout(settings.operation_timeout)
                    .build(),
            );
        if let Some(region) = &settings.region {
            builder = builder.region(aws_sdk_kms::config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint_url {
            builder = builder.endpoint_url(endpoint.clone());
        }
        Self {
            id: format!("kms:{}", settings.key_id),
            key_id: settings.key_id.clone(),
            client: Client::from_conf(builder.build()),
        }
    }

    /// The configured KMS key id, ARN or alias.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn classify<E>(&self, operation: &'static str, error: &SdkError<E, HttpResponse>) -> CryptoError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(&self.id, operation, error)
    }
}

/// Takes the plaintext key out of a KMS answer into a zeroizing [`DataKey`].
fn data_key_from(plaintext: Option<Blob>, operation: &str) -> Result<DataKey, CryptoError> {
    let plaintext = Zeroizing::new(
        plaintext
            .ok_or_else(|| {
                CryptoError::Internal(format!("KMS {operation} answered without a plaintext"))
            })?
            .into_inner(),
    );
    DataKey::from_slice(&plaintext)
}

#[async_trait::async_trait]
impl KeyEncryptionKey for KmsKek {
    fn id(&self) -> &str {
        &self.id
    }

    async fn generate_data_key(
        &self,
        owner: UserId,
    ) -> Result<(DataKey, WrappedDataKey), CryptoError> {
        let mut output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT_USER_ID, owner.to_string())
            .send()
            .await
            .map_err(|e| self.classify("GenerateDataKey", &e))?;
        let plaintext = output.plaintext.take();
        // Fail closed: a key we could not store wrapped must not be used at all.
        let ciphertext = output
            .ciphertext_blob
            .take()
            .filter(|blob| !blob.as_ref().is_empty())
            .ok_or_else(|| {
                CryptoError::Internal("KMS GenerateDataKey answered without a ciphertext".into())
            })?;
        let key = data_key_from(plaintext, "GenerateDataKey")?;
        Ok((
            key,
            WrappedDataKey::new(self.id.clone(), ciphertext.into_inner()),
        ))
    }

    async fn wrap(&self, owner: UserId, key: &DataKey) -> Result<WrappedDataKey, CryptoError> {
        let output = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.expose_bytes().to_vec()))
            .encryption_context(CONTEXT_USER_ID, owner.to_string())
            .send()
            .await
            .map_err(|e| self.classify("Encrypt", &e))?;
        let ciphertext = output
            .ciphertext_blob
            .filter(|blob| !blob.as_ref().is_empty())
            .ok_or_else(|| {
                CryptoError::Internal("KMS Encrypt answered without a ciphertext".into())
            })?;
        Ok(WrappedDataKey::new(
            self.id.clone(),
            ciphertext.into_inner(),
        ))
    }

    async fn unwrap(
        &self,
        owner: UserId,
        wrapped: &WrappedDataKey,
    ) -> Result<DataKey, CryptoError> {
        ensure_wrapped_by(&self.id, wrapped)?;
        let output = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.ciphertext().to_vec()))
            .encryption_context(CONTEXT_USER_ID, owner.to_string())
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .send()
            .await
            .map_err(|e| self.classify("Decrypt", &e))?;
        data_key_from(output.plaintext, "Decrypt")
    }
}

/// Sorts an SDK failure into the crate's classes. KMS error codes are matched by name (the
/// same for modelled and unmodelled errors); an unknown code falls back on the HTTP status.
fn classify<E>(
    kek_id: &str,
    operation: &'static str,
    error: &SdkError<E, HttpResponse>,
) -> CryptoError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let unavailable = |message: String| CryptoError::KekUnavailable {
        kek_id: kek_id.to_owned(),
        message,
    };
    let service = match error {
        SdkError::ServiceError(service) => service,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return unavailable(format!("KMS {operation}: {}", DisplayErrorContext(error)));
        }
        _ => {
            return CryptoError::Internal(format!(
                "KMS {operation}: {}",
                DisplayErrorContext(error)
            ));
        }
    };
    let code = service.err().code().unwrap_or("");
    let message = service.err().message().unwrap_or("");
    let status = service.raw().status().as_u16();
    let described = format!("KMS {operation}: {code} (HTTP {status}): {message}");
    let refused = |reason| CryptoError::KekRefused {
        kek_id: kek_id.to_owned(),
        reason,
        message: described.clone(),
    };
    match code {
        "InvalidCiphertextException" => CryptoError::InvalidCiphertext(
            "KMS rejected the wrapped data key (altered, or another owner's encryption context)",
        ),
        "DisabledException" => refused(KekRefusal::KeyDisabled),
        "KMSInvalidStateException" if message.contains("pending deletion") => {
            refused(KekRefusal::KeyPendingDeletion)
        }
        "KMSInvalidStateException" => refused(KekRefusal::InvalidKeyState),
        "NotFoundException" => refused(KekRefusal::KeyNotFound),
        "IncorrectKeyException" => refused(KekRefusal::WrongKey),
        "InvalidKeyUsageException" => refused(KekRefusal::InvalidKeyUsage),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "InvalidClientTokenId" => refused(KekRefusal::AccessDenied),
        "ThrottlingException"
        | "Throttling"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ServiceUnavailable"
        | "InternalFailure" => unavailable(described),
        _ if status == 429 || status >= 500 => unavailable(described),
        _ => CryptoError::Internal(described),
    }
}
