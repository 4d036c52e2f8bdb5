//! One user with a stored Gemini key and a session, a ChatService wired to the test Gemini
//! peer, and helpers to send and to read back what was stored.

use std::sync::Arc;
use std::time::Duration;

use assistd_core::chat::{ChatConfig, ChatService, ExchangeEvent, SendRequest, ToolRegistry};
use assistd_core::{ApiKeyVault, PreferencesService, SecretSealer};
use assistd_crypto::{CachePolicy, DataKeyCache, Keyring, LocalKek, Secret};
use assistd_domain::apikey::Provider;
use assistd_domain::audit::RequestContext;
use assistd_domain::chat::{ChatMessage, ClientMessageId, FinishReason, NewSession, SessionId};
use assistd_domain::{Clock, ManualClock, Result, UserId};
use assistd_gemini::{GeminiClient, GeminiConfig};
use assistd_store::audit::{AuditChainKey, AuditLog};
use assistd_store::{NewUser, Store};
use assistd_testkit::GeminiServer;

use crate::support;

/// The key the user stores and the peer accepts.
pub(crate) const KEY: &str = "AIzaSyD-core-chat-0123456789abcdefghijk";

/// A chat engine for one user and one session.
pub(crate) struct Harness {
    pub(crate) chat: ChatService,
    pub(crate) store: Store,
    pub(crate) gemini: GeminiServer,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) user: UserId,
    pub(crate) session: SessionId,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The engine with the test settings: no generated titles (they would take scripted
    /// replies), short retry waits.
    pub(crate) async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// The engine after `adjust` changed the test settings.
    pub(crate) async fn with(adjust: impl FnOnce(&mut ChatConfig)) -> Self {
        let (store, dir) = support::fresh_store().await;
        let clock = support::manual_clock();
        let gemini = GeminiServer::start().await;
        gemini.allow_key(KEY);
        let client = GeminiClient::new(&GeminiConfig {
            base_url: gemini.base_url(),
            request_timeout: Duration::from_secs(2),
            ..GeminiConfig::default()
        })
        .unwrap();
        let audit = AuditLog::new(&store, AuditChainKey::from_bytes(&[7u8; 32]).unwrap());
        let keyring = Arc::new(Keyring::new(Arc::new(LocalKek::generate())));
        let cache = Arc::new(DataKeyCache::new(keyring.clone(), CachePolicy::default()));
        let sealer = SecretSealer::new(&store, keyring, cache);
        let vault = ApiKeyVault::new(&store, sealer, audit.clone(), client.clone(), clock.clone());
        let mut config = ChatConfig {
            generate_titles: false,
            retry_backoff: Duration::from_millis(10),
            ..ChatConfig::default()
        };
        adjust(&mut config);
        let chat = ChatService::new(
            &store,
            vault.clone(),
            PreferencesService::new(&store),
            client,
            audit,
            config,
            ToolRegistry::standard(),
            clock.clone(),
        );
        let user = store
            .users()
            .create(NewUser {
                display_name: Some("Chat User".into()),
                email: None,
            })
            .await
            .unwrap()
            .id;
        vault
            .set(
                user,
                &RequestContext::default(),
                Provider::Gemini,
                Secret::from(KEY.to_owned()),
                false,
            )
            .await
            .unwrap();
        let session = chat
            .create_session(user, &NewSession::default())
            .await
            .unwrap()
            .id;
        Self {
            chat,
            store,
            gemini,
            clock,
            user,
            session,
            _dir: dir,
        }
    }

    /// The request of a send of `text` with client id `id`.
    pub(crate) fn request(&self, id: &str, text: &str, streaming: bool) -> SendRequest {
        SendRequest {
            session: self.session,
            client_message_id: cid(id),
            text: text.to_owned(),
            streaming,
            context: RequestContext::default(),
        }
    }

    /// Sends and collects every event up to the end of the exchange.
    pub(crate) async fn send(
        &self,
        id: &str,
        text: &str,
        streaming: bool,
    ) -> Vec<Result<ExchangeEvent>> {
        let mut events = self.chat.send(self.user, self.request(id, text, streaming));
        let mut all = Vec::new();
        while let Some(event) = events.recv().await {
            all.push(event);
        }
        all
    }

    /// The session's stored messages, oldest first.
    pub(crate) async fn stored(&self) -> Vec<ChatMessage> {
        self.chat
            .messages(self.user, self.session, true, None, 100)
            .await
            .unwrap()
    }

    /// Tokens counted in the usage table for the clock's current day.
    pub(crate) async fn tokens_today(&self) -> i64 {
        let day = self.clock.now().date_naive();
        self.chat
            .usage(self.user, day, day, None)
            .await
            .unwrap()
            .iter()
            .map(|record| record.total_tokens)
            .sum()
    }

    /// Generate calls the peer received.
    pub(crate) fn model_calls(&self) -> usize {
        self.gemini.generate_requests().len()
    }

    /// Waits up to five seconds for the session to hold `n` messages.
    pub(crate) async fn wait_for_messages(&self, n: usize) -> Vec<ChatMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stored = self.stored().await;
            if stored.len() >= n || tokio::time::Instant::now() >= deadline {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A message's text, or "" for a function call or result.
pub(crate) fn text(message: &ChatMessage) -> &str {
    message.content.text().unwrap_or_default()
}

/// A stored message's finish reason.
pub(crate) fn finish(message: &ChatMessage) -> Option<FinishReason> {
    message.metadata.as_ref().and_then(|m| m.finish_reason)
}

/// The events of a successful exchange, unwrapped.
pub(crate) fn ok(events: Vec<Result<ExchangeEvent>>) -> Vec<ExchangeEvent> {
    events
        .into_iter()
        .map(|event| event.expect("no error event"))
        .collect()
}

/// The error an exchange ended with.
pub(crate) fn failure(events: Vec<Result<ExchangeEvent>>) -> assistd_domain::Error {
    events
        .into_iter()
        .find_map(Result::err)
        .expect("the exchange failed")
}

/// A client message id for a test send.
pub(crate) fn cid(id: &str) -> ClientMessageId {
    ClientMessageId::parse(id.to_owned()).unwrap()
}
