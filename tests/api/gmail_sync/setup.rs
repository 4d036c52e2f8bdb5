//! What the Gmail sync tests run on: a server (in the test process, or `assistd serve`
//! processes on its database) wired to the in-tree OpenID provider and the testkit Gmail
//! peer, users signed in with Gmail access through the real redirect flow, and helpers to
//! sync and read the synced copy over gRPC.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assistd::config::Config;
use assistd::proto::gmail::v1 as pb;
use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd_domain::UserId;
use assistd_testkit::gmail::NewMessage;
use assistd_testkit::oidc::{OidcProvider, TestUser};
use sea_orm::{ConnectionTrait as _, Statement};
use tonic::transport::Channel;

pub(crate) use crate::helpers::GmailUser;
use crate::helpers::{
    GmailTestApp, authed, connect, sign_in_through_google, spawn_google_app_with,
};
use crate::process::ServeProcess;
pub(crate) use crate::process::test_log;

/// Longest wait for a server to listen, a sync to finish or a lease to lapse before the test
/// gives up (not a speed check: it keeps a broken server from hanging the suite).
pub(crate) const PATIENCE: Duration = Duration::from_secs(300);

/// Whether the suite runs on PostgreSQL.
pub(crate) fn on_postgres() -> bool {
    std::env::var_os("ASSISTD_TEST_DATABASE_URL").is_some()
}

/// A server with the OpenID provider and the Gmail peer it talks to.
pub(crate) type GmailWorld = GmailTestApp;

impl GmailWorld {
    /// A server with background sync off (tests sync through SyncMailbox) and full syncs of
    /// up to 5,000 messages, after `adjust`.
    pub(crate) async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        spawn_google_app_with(move |config| {
            config.gmail.max_full_sync_messages = 5_000;
            adjust(config);
        })
        .await
    }

    /// Signs `name` in with Gmail access (see [`sign_in`]).
    pub(crate) async fn sign_in_as(&self, name: &str) -> GmailUser {
        sign_in(&self.app.address, &self.provider, name).await
    }

    /// Adds `count` generated messages (serials `first..first + count`) to `user`'s mailbox,
    /// returning their Gmail ids.
    pub(crate) fn add_generated(
        &self,
        user: &GmailUser,
        first: usize,
        count: usize,
    ) -> Vec<String> {
        (first..first + count)
            .map(|index| {
                let mail = crate::gmail_sync::mail::generated(index);
                let labels: Vec<&str> = mail.labels.iter().map(String::as_str).collect();
                self.gmail
                    .add_message(&user.sub, NewMessage::new(mail.raw).labels(&labels))
            })
            .collect()
    }

    /// The ids of the messages the peer holds for `user` outside SPAM and TRASH, sorted.
    pub(crate) fn peer_ids(&self, user: &GmailUser) -> Vec<String> {
        let mut ids: Vec<String> = self
            .gmail
            .message_ids(&user.sub)
            .into_iter()
            .filter(|id| {
                self.gmail.labels(&user.sub, id).is_some_and(|labels| {
                    !labels
                        .iter()
                        .any(|label| label == "SPAM" || label == "TRASH")
                })
            })
            .collect();
        ids.sort();
        ids
    }

    /// An `assistd serve` process on this server's database and peers, with `envs` added and
    /// its stderr written to `stderr` (see [`ServeProcess::start`]).
    pub(crate) async fn serve(&self, envs: &[(&str, &str)], stderr: Option<&Path>) -> ServeProcess {
        let issuer = self.provider.issuer();
        let gmail = self.gmail.base_url();
        let mut all = vec![
            ("ASSISTD_SIGN_IN__ISSUER", issuer.as_str()),
            ("ASSISTD_SIGN_IN__CLIENT_ID", OidcProvider::CLIENT_ID),
            (
                "ASSISTD_SIGN_IN__CLIENT_SECRET",
                OidcProvider::CLIENT_SECRET,
            ),
            ("ASSISTD_GMAIL__API_BASE_URL", gmail.as_str()),
            ("ASSISTD_GMAIL__BACKGROUND_SYNC", "false"),
            ("ASSISTD_GMAIL__MAX_FULL_SYNC_MESSAGES", "5000"),
        ];
        all.extend_from_slice(envs);
        ServeProcess::start(&self.app, &all, stderr, PATIENCE).await
    }
}

/// Signs `name` (`name@example.com`, subject `sub-name`) in with Gmail access on the server
/// at `address`.
pub(crate) async fn sign_in(address: &str, provider: &OidcProvider, name: &str) -> GmailUser {
    let email = format!("{name}@example.com");
    let sub = format!("sub-{name}");
    let signed = sign_in_through_google(
        connect(address).await,
        provider,
        TestUser::new(sub.clone(), email.clone()),
        &email,
        true,
        "gmail sync test",
    )
    .await;
    assert!(signed.gmail_access_granted, "Google granted Gmail access");
    GmailUser {
        id: signed
            .user
            .expect("the signed-in user")
            .id
            .parse()
            .expect("a user id"),
        token: signed.tokens.expect("session tokens").access_token,
        sub,
        email,
    }
}

/// SyncMailbox as `user`.
pub(crate) async fn sync(
    client: &mut GmailServiceClient<Channel>,
    user: &GmailUser,
    full: bool,
) -> Result<pb::SyncMailboxResponse, tonic::Status> {
    client
        .sync_mailbox(authed(
            pb::SyncMailboxRequest { full_sync: full },
            &user.token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// GetConnection as `user`.
pub(crate) async fn connection(
    client: &mut GmailServiceClient<Channel>,
    user: &GmailUser,
) -> pb::GmailConnection {
    client
        .get_connection(authed(pb::GetConnectionRequest {}, &user.token))
        .await
        .expect("GetConnection")
        .into_inner()
        .connection
        .expect("a connection")
}

/// Every message ListMessages returns for `query`, following `next_page_token` with pages of
/// `page_size`.
pub(crate) async fn list_all(
    client: &mut GmailServiceClient<Channel>,
    user: &GmailUser,
    query: &str,
    page_size: i32,
) -> Vec<pb::MailMessage> {
    let mut messages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_messages(authed(
                pb::ListMessagesRequest {
                    query: query.into(),
                    page_size,
                    page_token,
                    ..Default::default()
                },
                &user.token,
            ))
            .await
            .expect("ListMessages")
            .into_inner();
        assert!(
            page.messages.len() <= usize::try_from(page_size).unwrap(),
            "a page holds at most page_size messages"
        );
        messages.extend(page.messages);
        if page.next_page_token.is_empty() {
            return messages;
        }
        page_token = page.next_page_token;
    }
}

/// The ids of `messages`, sorted, after asserting that none appears twice and that they come
/// newest first.
pub(crate) fn unique_ids(messages: &[pb::MailMessage]) -> Vec<String> {
    let mut seen = HashSet::new();
    for message in messages {
        assert!(
            seen.insert(message.id.clone()),
            "message {} listed twice",
            message.id
        );
    }
    let times: Vec<_> = messages
        .iter()
        .map(|m| {
            let time = m.receive_time.expect("receive_time");
            (time.seconds, time.nanos)
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "listed newest first"
    );
    let mut ids: Vec<String> = seen.into_iter().collect();
    ids.sort();
    ids
}

/// One number from `sql` (a `COUNT(*)` or the like, with one `?` for `user`'s id).
pub(crate) async fn count(store: &assistd_store::Store, sql: &str, user: UserId) -> i64 {
    let db = store.connection();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => sql.replace('?', "$1"),
        _ => sql.to_owned(),
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [user.as_uuid().into()],
        ))
        .await
        .expect("the count query runs")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// The files of the SQLite database under `data_dir` (the database, its -wal and -shm).
pub(crate) fn database_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![data_dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the data directory") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Waits until `condition` holds, checking every 50 ms for at most [`PATIENCE`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
