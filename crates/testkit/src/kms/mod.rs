//! AWS KMS for tests: moto's server and a fault-injecting endpoint in front of it.
//!
//! - [`MotoKms`] is moto's KMS server (the real KMS JSON 1.1 protocol; it enforces the
//!   encryption context): the one named by [`ENDPOINT_ENV`], or else a `moto_server` from
//!   PATH started once per test binary and stopped when the binary exits. With neither, tests
//!   that ask for it panic with the install hint.
//! - [`KmsProxy`] plays what moto does not (disabled keys, key states, access denied,
//!   throttling, 5xx, malformed or hanging answers): it counts every request by operation,
//!   answers the operations told to fail with a [`Fault`], and forwards the rest to an
//!   upstream KMS (moto) when it has one.
//!
//! Clients are configured with [`sdk_config`] (or [`client`]): region [`REGION`], the static
//! credentials [`ACCESS_KEY_ID`]/[`SECRET_ACCESS_KEY`], the endpoint given. A test that spawns
//! a server binary passes it [`server_env`] instead.

mod moto;
mod proxy;

pub use moto::MotoKms;
pub use proxy::{Fault, KmsProxy};

/// The variable naming a running moto server (e.g. `http://127.0.0.1:5055`) for
/// [`MotoKms::shared`] to use instead of starting one.
pub const ENDPOINT_ENV: &str = "ASSISTD_TEST_KMS_ENDPOINT";

/// The region every test client and spawned server uses.
pub const REGION: &str = "us-east-1";

/// The access key id of the static test credentials (moto accepts any).
pub const ACCESS_KEY_ID: &str = "testing";

/// The secret access key of the static test credentials.
pub const SECRET_ACCESS_KEY: &str = "testing";

/// AWS configuration for the KMS at `endpoint`: region [`REGION`], the static test
/// credentials, that endpoint. Region and credentials are not looked up (so no instance
/// metadata service is asked), and the tests do not depend on how they are started.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "assistd-testkit",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A KMS client for the KMS at `endpoint`, configured by [`sdk_config`].
pub async fn client(endpoint: &str) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config(endpoint).await)
}

/// Creates a fresh symmetric encryption key (`SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT`) in the
/// KMS at `endpoint` with CreateKey and returns its id.
///
/// # Panics
/// CreateKey fails or returns no key metadata.
pub async fn create_key(endpoint: &str) -> String {
    let created = client(endpoint)
        .await
        .create_key()
        .description("assistd test key")
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateKey on the test KMS at {endpoint}: {err:?}"));
    created
        .key_metadata()
        .expect("CreateKey returns key metadata")
        .key_id()
        .to_owned()
}

/// The environment a spawned process needs to reach the KMS at `endpoint` through the AWS
/// SDK's default chain: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_EC2_METADATA_DISABLED=true`, ready for
/// [`Command::envs`](std::process::Command::envs).
#[must_use]
pub fn server_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}
