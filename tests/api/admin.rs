//! The operator commands, run as the real binary against a test database: `admin rotate-kek`
//! (re-wraps every data key under a new key-encryption key, resumable after a kill or a KMS
//! outage, idempotent) and `admin verify-audit` (exit 0 on an intact chain, 2 naming the first
//! broken row).
//!
//! `seed_users_for_rotation_timing` is not a test but an ignored tool that fills a database
//! for timing `rotate-kek` by hand (see its documentation).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use assistd::config::{Config, KekConfig, KekProvider};
use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::apikey::v1::{self as pb, Provider};
use assistd::server::Application;
use assistd_core::SecretSealer;
use assistd_crypto::{
    CachePolicy, DataKeyCache, KeyEncryptionKey, Keyring, KmsKek, KmsSettings, LocalKek,
};
use assistd_domain::UserId;
use assistd_domain::apikey::Provider as DomainProvider;
use assistd_store::{NewUser, Store};
use assistd_testkit::kms::{Fault, KmsProxy, MotoKms};
use sea_orm::{ConnectionTrait, DatabaseBackend};
use tempfile::TempDir;

use crate::apikey::GOOD_KEY;
use crate::helpers::{TestApp, authed, fresh_database_url, spawn_app, spawn_app_with};

/// The purpose under which the tests seal their own secrets.
const PURPOSE: &str = "rotation_test";

/// Two local master keys, A (the one data keys start under) and B (the one rotated to).
struct MasterKeys {
    dir: TempDir,
    a: LocalKek,
    b: LocalKek,
}

impl MasterKeys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalKek::load_or_generate(&dir.path().join("a.key")).unwrap();
        let b = LocalKek::load_or_generate(&dir.path().join("b.key")).unwrap();
        Self { dir, a, b }
    }

    fn a_file(&self) -> PathBuf {
        self.dir.path().join("a.key")
    }

    fn b_file(&self) -> PathBuf {
        self.dir.path().join("b.key")
    }

    /// A TOML configuration naming A as a previous KEK (the current one comes from the
    /// environment, or from `current` when given).
    fn config_with_previous_a(&self, current: &str) -> PathBuf {
        let path = self.dir.path().join("rotate.toml");
        let text = format!(
            "{current}\n[[keys.previous]]\nmaster_key_file = {:?}\n",
            self.a_file().display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A local KEK configuration whose master key is the file at `path`.
fn local_kek(path: &Path) -> KekConfig {
    KekConfig {
        provider: KekProvider::Local,
        master_key_file: path.to_owned(),
        ..KekConfig::default()
    }
}

/// The `assistd` binary, pointed at `config`'s data directory and database, with nothing
/// inherited that could configure it otherwise (`DATABASE_URL`, the test's `ASSISTD_*`).
pub(crate) fn assistd(config: &Config) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_assistd"));
    command.env_remove("DATABASE_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ASSISTD_") {
            command.env_remove(name);
        }
    }
    command
        .env("ASSISTD_DATA_DIR", &config.data_dir)
        .env("ASSISTD_DATABASE__URL", &config.database.url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// Runs a command to its end off the async workers.
pub(crate) async fn run(mut command: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `output` is a successful rotation that re-wrapped `rewrapped` keys and found
/// `already` under `kek_id`.
fn assert_rotated(output: &Output, rewrapped: u64, already: u64, kek_id: &str) {
    assert!(output.status.success(), "{}", stderr(output));
    let line = stdout(output);
    assert!(
        line.starts_with(&format!("re-wrapped {rewrapped} data keys in "))
            && line.ends_with(&format!(" s ({already} already under {kek_id})")),
        "{line}"
    );
}

/// A store of its own on the app's database: the app's pool closes when the app stops.
async fn open_store(config: &Config) -> Store {
    Store::connect(&config.database_settings()).await.unwrap()
}

/// Keys not wrapped by `kek_id`.
async fn not_under(store: &Store, kek_id: &str) -> u64 {
    store
        .data_keys()
        .count_not_wrapped_by(kek_id)
        .await
        .unwrap()
}

/// [`not_under`] once it has stopped changing. On PostgreSQL a COMMIT the killed process
/// had already sent is still carried out by its server backend after the process is gone, so
/// the count read at once can miss the last batch.
async fn settled_not_under(store: &Store, kek_id: &str) -> u64 {
    let mut last = not_under(store, kek_id).await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = not_under(store, kek_id).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the count of re-wrapped keys kept changing after the rotation was killed");
}

/// Creates `count` users with a data key each (wrapped by `sealer`'s current KEK), several at
/// a time.
async fn seed_users(store: &Store, sealer: &SecretSealer, count: usize) -> Vec<UserId> {
    let mut users = Vec::with_capacity(count);
    let mut remaining = count;
    while remaining > 0 {
        let chunk = remaining.min(32);
        let created = futures::future::join_all((0..chunk).map(|_| async {
            let user = store
                .users()
                .create(NewUser::default())
                .await
                .expect("create user")
                .id;
            sealer.data_key(user).await.expect("create data key");
            user
        }))
        .await;
        users.extend(created);
        remaining -= chunk;
    }
    users
}

/// Seals a distinct secret for each user, bound to the user's id as its record.
async fn seal_secrets(sealer: &SecretSealer, users: &[UserId]) -> Vec<(UserId, Vec<u8>)> {
    let mut sealed = Vec::new();
    for &user in users {
        let key = sealer.data_key(user).await.unwrap();
        let value = sealer
            .seal(&key, PURPOSE, &user.to_string(), secret_of(user).as_bytes())
            .await
            .unwrap();
        sealed.push((user, value));
    }
    sealed
}

fn secret_of(user: UserId) -> String {
    format!("secret of {user}")
}

/// Opens every sealed secret through a sealer that knows only the KEKs of `keyring`.
async fn assert_secrets_open_with(store: &Store, keyring: Keyring, sealed: &[(UserId, Vec<u8>)]) {
    let keyring = Arc::new(keyring);
    let cache = Arc::new(DataKeyCache::new(keyring.clone(), CachePolicy::default()));
    let sealer = SecretSealer::new(store, keyring, cache);
    for (user, value) in sealed {
        let secret = sealer
            .open(*user, PURPOSE, &user.to_string(), value)
            .await
            .unwrap_or_else(|err| panic!("the secret of {user} does not open: {err:?}"));
        assert_eq!(secret.expose_secret_str().unwrap(), secret_of(*user));
    }
}

/// Sends SIGKILL to the child through the `kill` command: no chance to clean up.
fn kill_hard(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until at least `count` keys have left `old_kek_id`, failing the test if `child` exits
/// first or it takes too long.
async fn wait_until_rewrapped(
    child: &mut tokio::process::Child,
    store: &Store,
    old_kek_id: &str,
    count: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if not_under(store, old_kek_id).await >= count {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rotate-kek ended ({status}) before {count} keys were seen re-wrapped");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotate-kek did not re-wrap {count} keys within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts a server whose data keys are wrapped by the local master key at `key_file`.
async fn app_under(key_file: &Path) -> TestApp {
    let kek = local_kek(key_file);
    spawn_app_with(move |config| config.keys.kek = kek).await
}

#[tokio::test]
async fn rotate_kek_rewraps_every_data_key_and_stored_api_keys_still_open() {
    let keys = MasterKeys::new();
    let (a_id, b_id) = (keys.a.id().to_owned(), keys.b.id().to_owned());
    let mut app = app_under(&keys.a_file()).await;
    let mut client = UserApiKeyServiceClient::new(app.channel().await);
    let mut users = Vec::new();
    for i in 0..5 {
        let user = app.create_user().await;
        let api_key = format!("{}{i:04}", &GOOD_KEY[..GOOD_KEY.len() - 4]);
        app.gemini.allow_key(&api_key);
        client
            .set_api_key(authed(
                pb::SetApiKeyRequest {
                    provider: Provider::Gemini.into(),
                    api_key: api_key.clone(),
                    allow_unverified: false,
                },
                &app.token_for(user),
            ))
            .await
            .unwrap();
        users.push((user, api_key));
    }
    app.stop().await.unwrap();
    let store = open_store(&app.config).await;
    assert_eq!(not_under(&store, &a_id).await, 0, "all keys start under A");
    let sealed_before = sealed_api_keys(&store, &users).await;

    // B alone cannot open A's keys: the run stops at once, names A and says how to fix it.
    let mut only_b = assistd(&app.config);
    only_b
        .env("ASSISTD_KEYS__KEK__MASTER_KEY_FILE", keys.b_file())
        .args(["admin", "rotate-kek"]);
    let refused = run(only_b).await;
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains(&a_id) && message.contains("[[keys.previous]]"),
        "{message}"
    );
    assert_eq!(not_under(&store, &a_id).await, 0, "nothing was re-wrapped");

    // B current, A previous: every key moves to B.
    let config_file = keys.config_with_previous_a("");
    let rotate = || {
        let mut command = assistd(&app.config);
        command
            .env("ASSISTD_KEYS__KEK__MASTER_KEY_FILE", keys.b_file())
            .arg("--config")
            .arg(&config_file)
            .args(["admin", "rotate-kek"]);
        command
    };
    assert_rotated(&run(rotate()).await, 5, 0, &b_id);
    assert_eq!(not_under(&store, &b_id).await, 0, "every key is under B");
    assert_eq!(not_under(&store, &a_id).await, 5);
    assert_eq!(
        sealed_api_keys(&store, &users).await,
        sealed_before,
        "no sealed secret was touched"
    );

    // A second run has nothing to do.
    assert_rotated(&run(rotate()).await, 0, 5, &b_id);

    // A server that knows only B reveals every key as it was set.
    let mut config = app.config.clone();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.keys.kek = local_kek(&keys.b_file());
    config.keys.previous.clear();
    let server = Application::build(config).await.unwrap();
    for (user, api_key) in &users {
        let revealed = server
            .vault()
            .reveal(*user, DomainProvider::Gemini)
            .await
            .unwrap();
        assert_eq!(revealed.expose_secret_str().unwrap(), api_key);
    }
    server.shutdown().cancel();
    server.run_until_stopped().await.unwrap();
    store.close().await;
}

/// The sealed API key bytes of each user, as stored.
async fn sealed_api_keys(store: &Store, users: &[(UserId, String)]) -> Vec<Vec<u8>> {
    let mut sealed = Vec::new();
    for (user, _) in users {
        let stored = store
            .api_keys()
            .get(store.connection(), *user, DomainProvider::Gemini)
            .await
            .unwrap()
            .expect("the user's API key is stored");
        sealed.push(stored.sealed);
    }
    sealed
}

#[tokio::test]
async fn a_rotation_killed_halfway_completes_when_run_again() {
    const USERS: u64 = 3_000;
    let keys = MasterKeys::new();
    let (a_id, b_id) = (keys.a.id().to_owned(), keys.b.id().to_owned());
    let mut app = app_under(&keys.a_file()).await;
    let users = seed_users(&app.store, &app.sealer, USERS as usize).await;
    let sample: Vec<UserId> = users.iter().step_by(50).copied().collect();
    let sealed = seal_secrets(&app.sealer, &sample).await;
    app.stop().await.unwrap();
    let store = open_store(&app.config).await;

    let config_file = keys.config_with_previous_a("");
    let rotate = |batch_size: &str| {
        let mut command = assistd(&app.config);
        command
            .env("ASSISTD_KEYS__KEK__MASTER_KEY_FILE", keys.b_file())
            .arg("--config")
            .arg(&config_file)
            .args(["admin", "rotate-kek", "--batch-size", batch_size]);
        command
    };

    // Small batches keep the run long enough to be killed in the middle.
    let mut child = tokio::process::Command::from(rotate("10"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Killed once many batches (not just the first) are stored, with most still to do.
    wait_until_rewrapped(&mut child, &store, &a_id, USERS / 30).await;
    kill_hard(&child);
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed, not finished: {status}");
    let done = settled_not_under(&store, &a_id).await;
    assert!(
        0 < done && done < USERS,
        "{done} of {USERS} keys re-wrapped"
    );

    // Secrets are readable in between, by a server that knows both KEKs.
    let both = Keyring::new(Arc::new(LocalKek::load(&keys.b_file()).unwrap()))
        .with_previous(Arc::new(LocalKek::load(&keys.a_file()).unwrap()));
    assert_secrets_open_with(&store, both, &sealed).await;

    // Run again: it re-wraps exactly what the killed run left.
    assert_rotated(&run(rotate("500")).await, USERS - done, done, &b_id);
    assert_eq!(not_under(&store, &b_id).await, 0, "every key is under B");
    let only_b = Keyring::new(Arc::new(LocalKek::load(&keys.b_file()).unwrap()));
    assert_secrets_open_with(&store, only_b, &sealed).await;
    store.close().await;
}

#[tokio::test]
async fn a_kms_outage_stops_the_rotation_and_a_later_run_finishes_it() {
    const USERS: u64 = 120;
    let moto = MotoKms::shared().await;
    let kms_key_id = moto.create_key().await;
    // Every KMS request goes through a proxy that can start failing mid-run.
    let proxy = KmsProxy::start(Some(moto.endpoint())).await;
    let keys = MasterKeys::new();
    let a_id = keys.a.id().to_owned();
    let kms_id = format!("kms:{kms_key_id}");
    let mut app = app_under(&keys.a_file()).await;
    let users = seed_users(&app.store, &app.sealer, USERS as usize).await;
    let sealed = seal_secrets(&app.sealer, &users).await;
    app.stop().await.unwrap();
    let store = open_store(&app.config).await;

    let config_file = keys.config_with_previous_a(&format!(
        "[keys.kek]\nprovider = \"kms\"\nkms_key_id = {kms_key_id:?}\nkms_region = {:?}\nkms_endpoint = {:?}\n",
        assistd_testkit::kms::REGION,
        proxy.endpoint()
    ));
    let rotate = || {
        let mut command = assistd(&app.config);
        command
            .envs(assistd_testkit::kms::server_env(proxy.endpoint()))
            .arg("--config")
            .arg(&config_file)
            .args(["admin", "rotate-kek", "--batch-size", "5"]);
        command
    };

    let mut child = tokio::process::Command::from(rotate())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_rewrapped(&mut child, &store, &a_id, 1).await;
    proxy.fail(
        "Encrypt",
        Fault::kms(500, "KMSInternalException", "injected outage"),
    );
    let failed = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("rotate-kek stops when KMS fails")
        .unwrap();
    assert!(!failed.status.success());
    let message = stderr(&failed);
    assert!(
        message.contains("unavailable") && message.contains("run again"),
        "{message}"
    );
    let done = not_under(&store, &a_id).await;
    assert!(
        0 < done && done < USERS,
        "{done} of {USERS} keys re-wrapped"
    );
    assert!(
        message.contains(&format!("{done} data keys were re-wrapped before stopping")),
        "{message}"
    );

    proxy.heal_all();
    assert_rotated(&run(rotate()).await, USERS - done, done, &kms_id);
    assert_eq!(
        not_under(&store, &kms_id).await,
        0,
        "every key is under KMS"
    );
    let sdk = assistd_testkit::kms::sdk_config(proxy.endpoint()).await;
    let only_kms = Keyring::new(Arc::new(KmsKek::from_sdk_config(
        &sdk,
        &KmsSettings::new(kms_key_id),
    )));
    assert_secrets_open_with(&store, only_kms, &sealed).await;
    store.close().await;
}

/// Drops the triggers that make `audit_events` append-only, to play an attacker with write
/// access to the database.
async fn drop_append_only_guard(store: &Store) {
    let sql = match store.connection().get_database_backend() {
        DatabaseBackend::Postgres => "DROP TRIGGER audit_events_append_only ON audit_events",
        _ => "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;",
    };
    store.connection().execute_unprepared(sql).await.unwrap();
}

#[tokio::test]
async fn verify_audit_passes_an_untouched_log_and_names_an_edited_row() {
    let mut app = spawn_app().await;
    let mut client = UserApiKeyServiceClient::new(app.channel().await);
    let gemini: i32 = Provider::Gemini.into();
    for api_key in [
        GOOD_KEY.to_owned(),
        format!("{}wxyz", &GOOD_KEY[..GOOD_KEY.len() - 4]),
    ] {
        app.gemini.allow_key(&api_key);
        let token = app.token_for(app.create_user().await);
        client
            .set_api_key(authed(
                pb::SetApiKeyRequest {
                    provider: gemini,
                    api_key,
                    allow_unverified: false,
                },
                &token,
            ))
            .await
            .unwrap();
        client
            .validate_api_key(authed(
                pb::ValidateApiKeyRequest { provider: gemini },
                &token,
            ))
            .await
            .unwrap();
        client
            .delete_api_key(authed(pb::DeleteApiKeyRequest { provider: gemini }, &token))
            .await
            .unwrap();
    }
    let rows = app.audit.verify().await.unwrap().rows;
    assert!(rows >= 6, "set, validate and delete of two users: {rows}");
    app.stop().await.unwrap();
    let verify = || {
        let mut command = assistd(&app.config);
        command.args(["admin", "verify-audit"]);
        command
    };

    let intact = run(verify()).await;
    assert!(intact.status.success(), "{}", stderr(&intact));
    assert_eq!(stdout(&intact), format!("audit log intact: {rows} rows"));

    let store = open_store(&app.config).await;
    drop_append_only_guard(&store).await;
    store
        .connection()
        .execute_unprepared("UPDATE audit_events SET outcome = 'failure' WHERE seq = 3")
        .await
        .unwrap();
    let broken = run(verify()).await;
    assert_eq!(broken.status.code(), Some(2), "{}", stderr(&broken));
    let report = stdout(&broken);
    assert!(report.contains("row 3 was edited or inserted"), "{report}");
    store.close().await;
}

/// Not a test: fills a database for timing `admin rotate-kek` by hand. Creates `SEED_USERS`
/// users (default 10,000), each with a data key under a new local master key A, in an SQLite
/// file under `SEED_DIR` (or in a fresh PostgreSQL database with `ASSISTD_TEST_DATABASE_URL`),
/// and writes `SEED_DIR/rotate.toml`, which makes a second new key B current and A previous.
/// `SEED_DIR` should be empty.
///
/// ```text
/// SEED_DIR=/tmp/rotation cargo test --test api seed_users_for_rotation_timing -- --ignored
/// time target/release/assistd --config /tmp/rotation/rotate.toml admin rotate-kek
/// ```
#[tokio::test]
#[ignore = "a tool that prepares a database for timing rotate-kek by hand"]
async fn seed_users_for_rotation_timing() {
    let dir =
        PathBuf::from(std::env::var("SEED_DIR").expect("SEED_DIR names the directory to fill"));
    let users = std::env::var("SEED_USERS").map_or(10_000, |count| {
        count.parse().expect("SEED_USERS is a number of users")
    });
    std::fs::create_dir_all(&dir).unwrap();
    let (a_file, b_file) = (dir.join("a.key"), dir.join("b.key"));
    let a = LocalKek::load_or_generate(&a_file).unwrap();
    LocalKek::load_or_generate(&b_file).unwrap();
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.database.url = fresh_database_url().await;
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store = open_store(&config).await;
    store.migrate().await.unwrap();
    let keyring = Arc::new(Keyring::new(Arc::new(a)));
    let cache = Arc::new(DataKeyCache::new(keyring.clone(), CachePolicy::default()));
    let sealer = SecretSealer::new(&store, keyring, cache);
    seed_users(&store, &sealer, users).await;
    store.close().await;
    let config_file = dir.join("rotate.toml");
    let text = format!(
        "data_dir = {:?}\n\n[database]\nurl = {:?}\n\n[keys.kek]\nmaster_key_file = {:?}\n\n[[keys.previous]]\nmaster_key_file = {:?}\n",
        config.data_dir.display().to_string(),
        config.database.url,
        b_file.display().to_string(),
        a_file.display().to_string(),
    );
    std::fs::write(&config_file, text).unwrap();
    println!(
        "{users} users with data keys under A; time target/release/assistd --config {} admin rotate-kek",
        config_file.display()
    );
}
