//! Canary: a unique word in a synced message's subject and body is found by ListMessages,
//! yet appears in no database file (SQLite: the database, its -wal and -shm; PostgreSQL: a
//! `pg_dump` of the test database) and nowhere in the TRACE log of the `assistd serve`
//! process that synced it. After Disconnect and after DeleteAccount the mail rows are gone
//! and a sealed blob copied from the database before no longer opens with the user's keys.

use std::path::Path;

use assistd::proto::auth::v1 as authpb;
use assistd::proto::auth::v1::auth_service_client::AuthServiceClient;
use assistd::proto::gmail::v1 as pb;
use assistd::proto::gmail::v1::gmail_service_client::GmailServiceClient;
use assistd_crypto::WrappedDataKey;
use assistd_crypto::{MESSAGE_BODY_PURPOSE, MESSAGE_HEADER_PURPOSE, MailKey};
use assistd_testkit::gmail::NewMessage;
use sea_orm::{ConnectionTrait as _, Statement};

use crate::gmail_sync::mail::plain;
use crate::gmail_sync::setup::{
    GmailUser, GmailWorld, count, database_files, list_all, on_postgres, sync,
};
use crate::helpers::{TestApp, authed};

/// A sealed header and body copied out of the database.
struct CopiedBlobs {
    message_id: String,
    header: Vec<u8>,
    body: Vec<u8>,
}

/// Copies the sealed header and body of `message_id` out of the database.
async fn copy_blobs(app: &TestApp, user: &GmailUser, message_id: &str) -> CopiedBlobs {
    let db = app.store.connection();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "SELECT sealed_header, sealed_body FROM gmail_messages \
             WHERE user_id = $1 AND message_id = $2"
        }
        _ => {
            "SELECT sealed_header, sealed_body FROM gmail_messages \
             WHERE user_id = ? AND message_id = ?"
        }
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [user.id.as_uuid().into(), message_id.into()],
        ))
        .await
        .unwrap()
        .expect("the message's row");
    CopiedBlobs {
        message_id: message_id.to_owned(),
        header: row.try_get_by_index(0).unwrap(),
        body: row.try_get_by_index(1).unwrap(),
    }
}

/// Opens `blobs` with the keys the database holds for `user` now: their data key (unwrapped
/// by the key-encryption key) and the mail key sealed under it. The error says what is
/// missing or what failed.
async fn open_with_current_keys(
    app: &TestApp,
    user: &GmailUser,
    blobs: &CopiedBlobs,
) -> Result<(String, String), String> {
    let user = user.id;
    let stored = app
        .store
        .data_keys()
        .get(app.store.connection(), user)
        .await
        .unwrap()
        .ok_or("the user has no data key")?;
    let data_key = app
        .sealer
        .cache()
        .data_key(user, &WrappedDataKey::new(stored.kek_id, stored.wrapped))
        .await
        .map_err(|err| format!("the data key does not unwrap: {err}"))?;
    let connection = app
        .store
        .gmail()
        .connection(user)
        .await
        .unwrap()
        .ok_or("the user has no Gmail connection row")?;
    let sealed_key = connection.mail_key.ok_or("the user has no mail key")?;
    let mail_key = MailKey::unwrap(&data_key, user, sealed_key.key_version, &sealed_key.sealed)
        .map_err(|err| format!("the mail key does not unwrap: {err}"))?;
    let open = |purpose, sealed: &[u8]| {
        mail_key
            .open(user, purpose, &blobs.message_id, sealed)
            .map(|secret| String::from_utf8_lossy(secret.expose_secret()).into_owned())
            .map_err(|err| format!("the blob does not open with the current mail key: {err}"))
    };
    Ok((
        open(MESSAGE_HEADER_PURPOSE, &blobs.header)?,
        open(MESSAGE_BODY_PURPOSE, &blobs.body)?,
    ))
}

/// Mail rows of `user` left in the database: messages, search terms and labels.
async fn mail_rows(app: &TestApp, user: &GmailUser) -> i64 {
    let mut rows = 0;
    for table in [
        "gmail_messages",
        "gmail_search_terms",
        "gmail_message_labels",
    ] {
        rows += count(
            &app.store,
            &format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?"),
            user.id,
        )
        .await;
    }
    rows
}

/// Asserts that `word` is in no file of the database (SQLite) or in no line of its dump
/// (PostgreSQL), nor in the server log at `log`.
async fn assert_nowhere(app: &TestApp, word: &str, log: &Path) {
    if on_postgres() {
        let output = tokio::process::Command::new("pg_dump")
            .arg("--no-owner")
            .arg(&app.config.database.url)
            .output()
            .await
            .expect("pg_dump runs");
        assert!(
            output.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dump = String::from_utf8_lossy(&output.stdout);
        assert!(
            dump.contains("gmail_messages"),
            "the dump holds the mail tables"
        );
        assert!(!dump.contains(word), "the canary is in the pg_dump");
    } else {
        let files = database_files(&app.data_dir);
        assert!(
            files
                .iter()
                .any(|file| file.to_string_lossy().ends_with("-wal")),
            "the scan covers the write-ahead log: {files:?}"
        );
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !contains(&bytes, word.as_bytes()),
                "the canary is in {}",
                file.display()
            );
        }
    }
    let logged = std::fs::read(log).expect("the server's log");
    assert!(
        !contains(&logged, word.as_bytes()),
        "the canary is in the server's TRACE log"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_word_is_searchable_but_in_no_database_file_dump_or_trace_log_and_shredded_mail_does_not_open()
 {
    let world = GmailWorld::start(|_| {}).await;
    let user = world.sign_in_as("ada").await;
    // Letters and digits only, so search treats it as one word; random, so nothing else
    // could contain it.
    let word = format!("canary{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    world.add_generated(&user, 0, 20);
    let canary_id = world.gmail.add_message(
        &user.sub,
        NewMessage::new(plain(
            &format!("Payroll {word} update"),
            &format!("The code word for the transfer is {word}. Keep it to yourself."),
        )),
    );
    world.add_generated(&user, 20, 5);

    // The sync runs in a server process logging at TRACE; the test process serves sign-in
    // and reads keys, on the same database.
    let logs = tempfile::TempDir::new().unwrap();
    let log = logs.path().join("assistd-trace.log");
    let server = world.serve(&[("RUST_LOG", "trace")], Some(&log)).await;
    let mut client = GmailServiceClient::new(server.channel().await);
    let first = sync(&mut client, &user, false).await.expect("the sync");
    assert_eq!(first.messages_added_count, 26);

    let found = list_all(&mut client, &user, &word, 25).await;
    assert_eq!(found.len(), 1, "ListMessages finds the canary");
    assert_eq!(found[0].id, canary_id);
    assert!(found[0].subject.contains(&word));
    let phrase = list_all(&mut client, &user, &format!("\"transfer is {word}\""), 25).await;
    assert_eq!(phrase.len(), 1, "and the phrase around it");
    let message = client
        .get_message(authed(
            pb::GetMessageRequest {
                message_id: canary_id.clone(),
            },
            &user.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert!(message.body_text.contains(&word));

    let blobs = copy_blobs(&world.app, &user, &canary_id).await;
    let (header, body) = open_with_current_keys(&world.app, &user, &blobs)
        .await
        .expect("the copied blobs open with the user's keys while the mail is synced");
    assert!(header.contains(&word) && body.contains(&word));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("TRACE"),
        "the server logged at TRACE level"
    );
    assert_nowhere(&world.app, &word, &log).await;

    // Disconnect deletes the mail and destroys the mail key.
    client
        .disconnect(authed(pb::DisconnectRequest::default(), &user.token))
        .await
        .expect("Disconnect");
    assert_eq!(
        mail_rows(&world.app, &user).await,
        0,
        "the mail rows are gone"
    );
    let refused = open_with_current_keys(&world.app, &user, &blobs)
        .await
        .expect_err("the copied blobs no longer open after Disconnect");
    assert!(
        refused.contains("no Gmail connection row") || refused.contains("no mail key"),
        "{refused}"
    );
    assert!(list_all(&mut client, &user, &word, 25).await.is_empty());

    // Connected again, the new copy has a new mail key: the old blobs do not open with it.
    let user = world.sign_in_as("ada").await;
    let second = sync(&mut client, &user, false).await.expect("the new sync");
    assert!(second.full_sync);
    assert_eq!(second.messages_added_count, 26);
    assert_eq!(list_all(&mut client, &user, &word, 25).await.len(), 1);
    let refused = open_with_current_keys(&world.app, &user, &blobs)
        .await
        .expect_err("the blobs copied before Disconnect do not open with the new mail key");
    assert!(refused.contains("current mail key"), "{refused}");

    // DeleteAccount shreds the data key; the rows cascade.
    let blobs = copy_blobs(&world.app, &user, &canary_id).await;
    open_with_current_keys(&world.app, &user, &blobs)
        .await
        .expect("the new copy opens");
    AuthServiceClient::new(server.channel().await)
        .delete_account(authed(
            authpb::DeleteAccountRequest {
                confirm_email: user.email.clone(),
            },
            &user.token,
        ))
        .await
        .expect("DeleteAccount");
    assert_eq!(
        mail_rows(&world.app, &user).await,
        0,
        "the mail rows are gone"
    );
    assert_eq!(
        count(
            &world.app.store,
            "SELECT COUNT(*) FROM gmail_connections WHERE user_id = ?",
            user.id
        )
        .await,
        0
    );
    let refused = open_with_current_keys(&world.app, &user, &blobs)
        .await
        .expect_err("the copied blobs no longer open after DeleteAccount");
    assert!(refused.contains("no data key"), "{refused}");
    assert_nowhere(&world.app, &word, &log).await;
}
