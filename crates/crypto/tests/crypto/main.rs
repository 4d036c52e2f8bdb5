//! Integration tests of assistd-crypto: sealing, the local and KMS key-encryption keys, the
//! keyring and the data-key cache.
//!
//! KMS is played by moto's server (real AWS protocol, enforces the encryption context) and,
//! for what moto does not enforce (disabled keys, key state, access denied, throttling, 5xx),
//! by the fault-injecting KMS endpoint `assistd_testkit::kms::KmsProxy`, which forwards
//! everything else to moto. Both come from `assistd_testkit::kms`: `ASSISTD_TEST_KMS_ENDPOINT`
//! names a running moto; without it the tests start `moto_server` from PATH, and fail with
//! instructions when there is none.

mod cache;
mod keyring;
mod kms_faults;
mod kms_moto;
mod local;
mod seal;
mod support;
