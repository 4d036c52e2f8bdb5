//! What every test against the peers needs: an OIDC provider, the Gmail peer, a user with a
//! Gmail grant, and a token source that refreshes at the provider's token endpoint.

#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use assistd_gmail::{AccessToken, AccessTokenSource, GmailClient, GmailConfig, GmailError};
use assistd_testkit::GmailServer;
use assistd_testkit::gmail::GMAIL_READONLY;
use assistd_testkit::oidc::{OidcProvider, TestUser};
use async_trait::async_trait;

pub struct Env {
    pub oidc: OidcProvider,
    pub gmail: GmailServer,
    pub user: TestUser,
    pub tokens: Refreshing,
}

impl Env {
    /// A provider, the peer, and Ada with `openid email gmail.readonly` granted offline.
    pub async fn start() -> Self {
        Self::with_scopes(&["openid", "email", GMAIL_READONLY]).await
    }

    pub async fn with_scopes(scopes: &[&str]) -> Self {
        let oidc = OidcProvider::start().await;
        let gmail = GmailServer::start(&oidc).await;
        let user = TestUser::default();
        let granted = oidc.grant(&user, scopes);
        let tokens = Refreshing::new(&oidc, granted.access_token, granted.refresh_token);
        Self {
            oidc,
            gmail,
            user,
            tokens,
        }
    }

    pub fn sub(&self) -> &str {
        &self.user.sub
    }

    /// Settings fast enough for tests: short backoffs and timeouts.
    pub fn config(&self) -> GmailConfig {
        GmailConfig {
            base_url: self.gmail.base_url(),
            timeout: Duration::from_secs(5),
            max_retries: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
            max_rate_limit_wait: Duration::from_secs(10),
            ..GmailConfig::default()
        }
    }

    pub fn client(&self) -> GmailClient {
        GmailClient::new(&self.config()).unwrap()
    }
}

/// The user's tokens as a sync engine would hold them: the current access token, refreshed
/// at the provider's token endpoint when asked to.
pub struct Refreshing {
    token_url: String,
    refresh_token: String,
    current: Mutex<String>,
    pub refreshes: AtomicUsize,
    http: reqwest::Client,
}

impl Refreshing {
    pub fn new(oidc: &OidcProvider, access_token: String, refresh_token: String) -> Self {
        Self {
            token_url: format!("{}/token", oidc.issuer()),
            refresh_token,
            current: Mutex::new(access_token),
            refreshes: AtomicUsize::new(0),
            http: reqwest::Client::new(),
        }
    }

    pub fn current(&self) -> String {
        self.current.lock().unwrap().clone()
    }

    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    pub fn refresh_count(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl AccessTokenSource for Refreshing {
    async fn access_token(&self, refresh: bool) -> Result<AccessToken, GmailError> {
        if refresh {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            let response = self
                .http
                .post(&self.token_url)
                .basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", self.refresh_token.as_str()),
                ])
                .send()
                .await
                .map_err(|_| GmailError::Unavailable("token endpoint unreachable".into()))?;
            let status = response.status();
            let body: serde_json::Value = response
                .json()
                .await
                .map_err(|_| GmailError::Unavailable("token endpoint answer unreadable".into()))?;
            if body["error"] == "invalid_grant" {
                return Err(GmailError::ReauthRequired);
            }
            let Some(token) = body["access_token"]
                .as_str()
                .filter(|_| status.is_success())
            else {
                return Err(GmailError::Unavailable(format!(
                    "token endpoint answered {status}"
                )));
            };
            *self.current.lock().unwrap() = token.to_owned();
        }
        Ok(AccessToken::new(self.current()))
    }
}

/// A plain message with a recognisable subject.
pub fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.com>\r\nTo: Ada <ada@example.com>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nBody of {subject}.\r\n"
    )
    .into_bytes()
}
