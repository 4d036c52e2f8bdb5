//! Secrets at rest and in transit: a canary key set through the API is found nowhere but in
//! the vault's ciphertext; sealed keys do not open when moved or altered.

use std::process::Stdio;
use std::time::Duration;

use assistd::proto::apikey::v1::user_api_key_service_client::UserApiKeyServiceClient;
use assistd::proto::apikey::v1::{self as pb, Provider};
use assistd_domain::apikey::Provider as DomainProvider;
use assistd_store::NewApiKey;
use assistd_testkit::GeminiServer;
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::apikey::GOOD_KEY;
use crate::helpers::{authed, fresh_database_url, spawn_app};

pub(crate) fn count(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[tokio::test]
async fn a_canary_key_appears_nowhere_in_the_clear() {
    let canary = "AIzaSyCANARY-7f3e9a1b2c4d5e6f708192a3b4";
    let gemini = GeminiServer::start().await;
    gemini.allow_key(canary);
    let mut server = TraceServer::new(vec![("ASSISTD_GEMINI__BASE_URL", gemini.base_url())]).await;
    let user = server.admin(&["admin", "create-user"]);
    let token = server.admin(&["admin", "issue-token", "--user-id", &user]);
    let channel = server.serve().await;
    let mut keys = UserApiKeyServiceClient::new(channel);
    let gemini_provider: i32 = Provider::Gemini.into();
    let mut responses = Vec::new();
    let set = keys
        .set_api_key(authed(
            pb::SetApiKeyRequest {
                provider: gemini_provider,
                api_key: canary.into(),
                allow_unverified: false,
            },
            &token,
        ))
        .await
        .unwrap();
    responses.push(format!("{:?} {:?}", set.metadata(), set.get_ref()));
    let got = keys
        .get_api_key(authed(
            pb::GetApiKeyRequest {
                provider: gemini_provider,
            },
            &token,
        ))
        .await
        .unwrap();
    responses.push(format!("{:?} {:?}", got.metadata(), got.get_ref()));
    let listed = keys
        .list_api_keys(authed(pb::ListApiKeysRequest::default(), &token))
        .await
        .unwrap();
    responses.push(format!("{:?} {:?}", listed.metadata(), listed.get_ref()));
    let validated = keys
        .validate_api_key(authed(
            pb::ValidateApiKeyRequest {
                provider: gemini_provider,
            },
            &token,
        ))
        .await
        .unwrap();
    responses.push(format!(
        "{:?} {:?}",
        validated.metadata(),
        validated.get_ref()
    ));
    let events = keys
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &token))
        .await
        .unwrap();
    responses.push(format!("{:?} {:?}", events.metadata(), events.get_ref()));
    // A rejected key's error must not echo it either.
    gemini.revoke_key(canary);
    let rejected = keys
        .set_api_key(authed(
            pb::SetApiKeyRequest {
                provider: gemini_provider,
                api_key: canary.into(),
                allow_unverified: false,
            },
            &token,
        ))
        .await
        .unwrap_err();
    responses.push(format!("{rejected:?}"));
    gemini.allow_key(canary);
    for response in &responses {
        assert_eq!(
            count(response.as_bytes(), canary),
            0,
            "the key is in a response: {response}"
        );
    }
    assert_eq!(
        events.get_ref().events.len(),
        2,
        "set and validate are audited"
    );

    // Stop the server so the log and the database files are complete.
    let (log, at_rest) = server.stop().await;
    assert!(count(&log, "TRACE") > 0, "the server logged at TRACE");
    assert!(count(&log, "rpc finished") >= 6, "the calls were logged");
    assert_eq!(count(&log, canary), 0, "the key is in the server log");

    // The Gemini peer did receive it, in the header: the canary is a real key in use.
    assert!(
        gemini
            .requests()
            .iter()
            .any(|r| r.header("x-goog-api-key").is_some())
    );

    if server.on_postgres() {
        assert!(
            count(&at_rest, "api_keys") > 0,
            "the dump holds the api_keys table"
        );
    }
    assert!(!at_rest.is_empty());
    assert_eq!(
        count(&at_rest, canary),
        0,
        "the key is in the database in the clear"
    );
    // Nor its base64 or hex forms.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(canary);
    assert_eq!(count(&at_rest, &b64[..b64.len() - 4]), 0);
    let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(count(&at_rest, &hex), 0);
}

/// Sends SIGTERM to the child (graceful shutdown) through the `kill` command.
fn nix_term(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sealed_keys_swapped_between_users_do_not_open() {
    let app = spawn_app().await;
    let alice_key = "AIzaSyD-alice-0123456789abcdefghijklmn";
    let bob_key = "AIzaSyD-bob-0123456789abcdefghijklmnop";
    app.gemini.allow_key(alice_key);
    app.gemini.allow_key(bob_key);
    let alice = app.create_user().await;
    let bob = app.create_user().await;
    let mut keys = UserApiKeyServiceClient::new(app.channel().await);
    for (user, key) in [(alice, alice_key), (bob, bob_key)] {
        keys.set_api_key(authed(
            pb::SetApiKeyRequest {
                provider: Provider::Gemini.into(),
                api_key: key.into(),
                allow_unverified: false,
            },
            &app.token_for(user),
        ))
        .await
        .unwrap();
    }
    // Swap the ciphertexts, as someone with write access to the table might.
    let txn = app.store.connection().begin().await.unwrap();
    for sql in [
        "CREATE TEMPORARY TABLE swapped AS SELECT id, sealed_key FROM api_keys",
        "UPDATE api_keys SET sealed_key = (SELECT s.sealed_key FROM swapped s WHERE s.id <> api_keys.id)",
        "DROP TABLE swapped",
    ] {
        txn.execute_unprepared(sql).await.unwrap();
    }
    txn.commit().await.unwrap();
    for user in [alice, bob] {
        let err = app
            .vault
            .reveal(user, DomainProvider::Gemini)
            .await
            .unwrap_err();
        assert!(matches!(err, assistd_domain::Error::Internal(_)), "{err:?}");
        assert!(!format!("{err:?}").contains("AIza"));
    }
    // Over the API, validation of a key that does not open is INTERNAL and says nothing more.
    let status = keys
        .validate_api_key(authed(
            pb::ValidateApiKeyRequest {
                provider: Provider::Gemini.into(),
            },
            &app.token_for(alice),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert!(!status.message().contains("AIza"));
}

#[tokio::test]
async fn altered_ciphertext_or_wrapped_data_key_does_not_open() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let user = app.create_user().await;
    UserApiKeyServiceClient::new(app.channel().await)
        .set_api_key(authed(
            pb::SetApiKeyRequest {
                provider: Provider::Gemini.into(),
                api_key: GOOD_KEY.into(),
                allow_unverified: false,
            },
            &app.token_for(user),
        ))
        .await
        .unwrap();
    let repository = app.store.api_keys();
    let stored = repository
        .get(app.store.connection(), user, DomainProvider::Gemini)
        .await
        .unwrap()
        .unwrap();
    let rewrite = |sealed: Vec<u8>| NewApiKey {
        id: stored.id,
        provider: DomainProvider::Gemini,
        sealed,
        hint: stored.info.hint.clone(),
        status: stored.info.status,
        status_detail: None,
        validated_at: None,
    };
    // One flipped byte in the nonce, the ciphertext and the tag.
    for position in [1, 14, stored.sealed.len() - 1] {
        let mut altered = stored.sealed.clone();
        altered[position] ^= 0x01;
        repository
            .put(app.store.connection(), user, rewrite(altered))
            .await
            .unwrap();
        assert!(
            app.vault
                .reveal(user, DomainProvider::Gemini)
                .await
                .is_err(),
            "byte {position}"
        );
    }
    repository
        .put(app.store.connection(), user, rewrite(stored.sealed.clone()))
        .await
        .unwrap();
    assert!(app.vault.reveal(user, DomainProvider::Gemini).await.is_ok());

    // One flipped byte in the wrapped data key (with the cached copy forgotten).
    let data_keys = app.store.data_keys();
    let wrapped = data_keys
        .get(app.store.connection(), user)
        .await
        .unwrap()
        .unwrap();
    let mut altered = wrapped.wrapped.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x01;
    assert!(
        data_keys
            .rewrap(&wrapped, &wrapped.kek_id, altered, chrono::Utc::now())
            .await
            .unwrap()
    );
    app.sealer.cache().clear();
    assert!(
        app.vault
            .reveal(user, DomainProvider::Gemini)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_thousand_reveals_with_a_warm_cache_make_at_most_one_kms_decrypt() {
    use std::sync::Arc;

    use assistd_core::{ApiKeyVault, SecretSealer};
    use assistd_crypto::{CachePolicy, DataKeyCache, Keyring, KmsKek, KmsSettings};
    use assistd_testkit::kms::{KmsProxy, MotoKms};

    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let moto = MotoKms::shared().await;
    let key_id = moto.create_key().await;
    // A counting endpoint in front of moto sees every KMS request the vault makes.
    let proxy = KmsProxy::start(Some(moto.endpoint())).await;
    let sdk = assistd_testkit::kms::sdk_config(proxy.endpoint()).await;
    let mut settings = KmsSettings::new(key_id);
    settings.endpoint_url = Some(proxy.endpoint().to_owned());
    let kms = Arc::new(KmsKek::from_sdk_config(&sdk, &settings));
    let keyring = Arc::new(Keyring::new(kms));
    let cache = Arc::new(DataKeyCache::new(keyring.clone(), CachePolicy::default()));
    let sealer = SecretSealer::new(&app.store, keyring, cache);
    let gemini = assistd_gemini::GeminiClient::new(&app.config.gemini).unwrap();
    let vault = ApiKeyVault::new(
        &app.store,
        sealer.clone(),
        app.audit.clone(),
        gemini,
        std::sync::Arc::new(assistd_domain::SystemClock),
    );
    let user = app.create_user().await;
    let context = assistd_domain::audit::RequestContext::default();
    vault
        .set(
            user,
            &context,
            DomainProvider::Gemini,
            assistd_crypto::Secret::from(GOOD_KEY.to_owned()),
            false,
        )
        .await
        .unwrap();
    assert_eq!(proxy.count("GenerateDataKey"), 1);
    // Cold start: forget the key made when it was stored, then reveal 1,000 times at once.
    sealer.cache().clear();
    let reveals: Vec<_> = (0..1000)
        .map(|_| {
            let vault = vault.clone();
            tokio::spawn(async move { vault.reveal(user, DomainProvider::Gemini).await })
        })
        .collect();
    for reveal in reveals {
        assert_eq!(
            reveal.await.unwrap().unwrap().expose_secret_str().unwrap(),
            GOOD_KEY
        );
    }
    assert_eq!(
        proxy.count("Decrypt"),
        1,
        "1,000 concurrent reveals, one KMS Decrypt"
    );
    for _ in 0..1000 {
        vault.reveal(user, DomainProvider::Gemini).await.unwrap();
    }
    assert_eq!(
        proxy.count("Decrypt"),
        1,
        "1,000 more with a warm cache, no further Decrypt"
    );
}

#[tokio::test]
async fn destroying_the_data_key_makes_every_secret_unreadable() {
    let app = spawn_app().await;
    app.gemini.allow_key(GOOD_KEY);
    let user = app.create_user().await;
    let bystander = app.create_user().await;
    let mut keys = UserApiKeyServiceClient::new(app.channel().await);
    for who in [user, bystander] {
        keys.set_api_key(authed(
            pb::SetApiKeyRequest {
                provider: Provider::Gemini.into(),
                api_key: GOOD_KEY.into(),
                allow_unverified: false,
            },
            &app.token_for(who),
        ))
        .await
        .unwrap();
    }
    // Warm the cache, then shred: the unwrapped copy is dropped from memory too.
    for who in [user, bystander] {
        app.vault.reveal(who, DomainProvider::Gemini).await.unwrap();
    }
    let cached_before = app.sealer.cache().stats().entries;
    app.sealer
        .shred(app.store.connection(), user)
        .await
        .unwrap();
    assert_eq!(app.sealer.cache().stats().entries, cached_before - 1);
    assert!(
        app.vault
            .reveal(user, DomainProvider::Gemini)
            .await
            .is_err()
    );
    assert!(
        app.store
            .data_keys()
            .get(app.store.connection(), user)
            .await
            .unwrap()
            .is_none()
    );
    // The ciphertext is still stored, and useless.
    assert!(
        app.store
            .api_keys()
            .get(app.store.connection(), user, DomainProvider::Gemini)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        app.vault
            .reveal(bystander, DomainProvider::Gemini)
            .await
            .unwrap()
            .expose_secret_str()
            .unwrap(),
        GOOD_KEY,
        "other users are unaffected"
    );
}

/// A real `assistd serve` child process logging at TRACE, on a fresh database, for the canary
/// tests: they read its log and its database (files or `pg_dump`) after stopping it.
pub(crate) struct TraceServer {
    dir: tempfile::TempDir,
    database_url: String,
    port: u16,
    envs: Vec<(&'static str, String)>,
    log_path: std::path::PathBuf,
    server: Option<tokio::process::Child>,
}

impl TraceServer {
    /// Prepares (does not start) a server with `envs` added to its configuration.
    pub(crate) async fn new(envs: Vec<(&'static str, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database_url().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut all = vec![
            (
                "ASSISTD_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            ("ASSISTD_SERVER__LISTEN", format!("127.0.0.1:{port}")),
            ("ASSISTD_DATABASE__URL", database_url.clone()),
            ("RUST_LOG", "trace".to_owned()),
        ];
        all.extend(envs);
        let log_path = dir.path().join("server.log");
        Self {
            dir,
            database_url,
            port,
            envs: all,
            log_path,
            server: None,
        }
    }

    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_assistd"));
        command
            .envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("DATABASE_URL");
        command
    }

    /// Runs an `assistd admin …` command with the server's configuration; its stdout.
    pub(crate) fn admin(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Starts `assistd serve` and connects to it.
    pub(crate) async fn serve(&mut self) -> tonic::transport::Channel {
        let log = std::fs::File::create(&self.log_path).unwrap();
        let mut command = tokio::process::Command::from(self.command());
        self.server = Some(
            command
                .arg("serve")
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
        let address = format!("http://127.0.0.1:{}", self.port);
        loop {
            if let Ok(channel) = tonic::transport::Channel::from_shared(address.clone())
                .unwrap()
                .connect()
                .await
            {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server runs on PostgreSQL.
    pub(crate) fn on_postgres(&self) -> bool {
        !self.database_url.is_empty()
    }

    /// Stops the server (SIGTERM; it must exit cleanly) so its log and database files are
    /// complete, and returns the log and the database at rest: the SQLite files, or a
    /// `pg_dump`.
    pub(crate) async fn stop(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut server = self.server.take().expect("the server was started");
        nix_term(&server);
        let status = tokio::time::timeout(Duration::from_secs(15), server.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        let log = std::fs::read(&self.log_path).unwrap();
        let at_rest = if self.on_postgres() {
            let dump = std::process::Command::new("pg_dump")
                .arg(&self.database_url)
                .output()
                .unwrap();
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            dump.stdout
        } else {
            let data = self.dir.path().join("data");
            ["assistd.db", "assistd.db-wal", "assistd.db-shm"]
                .iter()
                .filter_map(|name| std::fs::read(data.join(name)).ok())
                .flatten()
                .collect()
        };
        (log, at_rest)
    }
}
