//! An [`AuthService`] wired to a fresh store, the testkit's OpenID provider and a manual
//! clock, and the one way the tests sign in.

use std::sync::Arc;
use std::time::Duration;

use assistd_core::SecretSealer;
use assistd_core::auth::{AuthService, ClientInfo, SignInConfig, SignedIn};
use assistd_crypto::{CachePolicy, DataKeyCache, Keyring, LocalKek};
use assistd_domain::ManualClock;
use assistd_identity::{AccessTokenSettings, AccessTokens, DerivedSecrets, SigningKey};
use assistd_store::Store;
use assistd_store::audit::{AuditChainKey, AuditLog};
use assistd_testkit::oidc::OidcProvider;
use sea_orm::ConnectionTrait;

use crate::support;

/// The grace window the tests run with.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

/// A sign-in service and everything it stands on.
pub(crate) struct Fixture {
    pub(crate) auth: AuthService,
    pub(crate) store: Store,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) provider: OidcProvider,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A service on a fresh database, trusting a freshly started provider.
    pub(crate) async fn start() -> Self {
        let (store, dir) = support::fresh_store().await;
        let clock = support::manual_clock();
        let provider = OidcProvider::start().await;
        let kek = Arc::new(Keyring::new(Arc::new(LocalKek::generate())));
        let cache = Arc::new(DataKeyCache::new(kek.clone(), CachePolicy::default()));
        let sealer = SecretSealer::new(&store, kek, cache);
        let audit = AuditLog::new(&store, AuditChainKey::from_bytes(&[7; 32]).unwrap());
        let key = SigningKey::generate();
        let secrets = DerivedSecrets::new(&key, &[]);
        let tokens = AccessTokens::new(
            AccessTokenSettings {
                issuer: "assistd-test".into(),
                audience: "assistd".into(),
                ttl: Duration::from_secs(600),
            },
            key,
            Vec::new(),
            clock.clone(),
        );
        let config = SignInConfig {
            issuer: provider.issuer(),
            client_id: OidcProvider::CLIENT_ID.into(),
            client_secret: OidcProvider::CLIENT_SECRET.into(),
            allowed_redirect_uris: vec![OidcProvider::REDIRECT_URI.into()],
            refresh_grace: GRACE,
            sign_in_per_ip_per_minute: 10_000,
            sign_in_per_user_per_minute: 10_000,
            ..SignInConfig::default()
        };
        let auth = AuthService::new(
            store.clone(),
            audit,
            sealer,
            tokens,
            secrets,
            clock.clone(),
            config,
        )
        .unwrap();
        Self {
            auth,
            store,
            clock,
            provider,
            _dir: dir,
        }
    }

    /// Signs the provider's current user in with a fresh ID token.
    pub(crate) async fn sign_in(&self) -> SignedIn {
        let mut claims = self.provider.default_claims(OidcProvider::CLIENT_ID, None);
        // Each ID token signs in once; a unique id keeps tokens minted in one second apart.
        claims["jti"] = uuid::Uuid::now_v7().to_string().into();
        let id_token = self.provider.mint(&claims);
        self.auth
            .sign_in_with_id_token(&id_token, "", &client())
            .await
            .unwrap()
    }

    /// The single number `sql` selects.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        let db = self.store.connection();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }
}

/// A client as the edge would describe it.
pub(crate) fn client() -> ClientInfo {
    ClientInfo {
        device_name: "laptop".into(),
        ..ClientInfo::default()
    }
}
