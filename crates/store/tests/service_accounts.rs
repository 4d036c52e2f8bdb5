//! Service accounts on a real database (SQLite file, or PostgreSQL when
//! `ASSISTD_TEST_DATABASE_URL` is set): the one lookup a service call makes, for an account
//! with a user list, one that may act for anyone, and a revoked one.

mod common;

use common::fresh_store;

use assistd_domain::service_account::{NewServiceAccount, UserScope};
use assistd_domain::{ServiceAccountId, UserId};
use assistd_store::{NewUser, Store};
use chrono::{TimeDelta, Utc};

const LIST_SESSIONS: &str = "/assistd.chat.v1.ChatService/ListSessions";

async fn user(store: &Store) -> UserId {
    store.users().create(NewUser::default()).await.unwrap().id
}

async fn account(store: &Store, name: &str, users: UserScope) -> ServiceAccountId {
    let new = NewServiceAccount {
        name: name.to_owned(),
        allowed_methods: vec![LIST_SESSIONS.to_owned()],
        users,
    };
    store
        .service_accounts()
        .create(store.connection(), &new, &[7u8; 32], Utc::now())
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn a_listed_account_allows_exactly_its_users() {
    let (store, _dir) = fresh_store().await;
    let listed = user(&store).await;
    let also_listed = user(&store).await;
    let other = user(&store).await;
    let id = account(
        &store,
        "digest",
        UserScope::Listed(vec![listed, also_listed]),
    )
    .await;
    let accounts = store.service_accounts();

    let found = accounts
        .get_acting_for(id, Some(listed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.name, "digest");
    assert_eq!(found.public_key, [7u8; 32]);
    assert_eq!(found.allowed_methods, [LIST_SESSIONS]);
    assert!(found.is_active());
    assert!(found.allows_method(LIST_SESSIONS));
    assert!(!found.allows_method("/assistd.chat.v1.ChatService/DeleteSession"));
    assert!(found.user_allowed && found.user_exists);

    let found = accounts
        .get_acting_for(id, Some(other))
        .await
        .unwrap()
        .unwrap();
    assert!(!found.user_allowed, "a user off the list is not allowed");
    assert!(found.user_exists);

    let nobody = UserId::new();
    let found = accounts
        .get_acting_for(id, Some(nobody))
        .await
        .unwrap()
        .unwrap();
    assert!(!found.user_allowed && !found.user_exists);

    let found = accounts.get_acting_for(id, None).await.unwrap().unwrap();
    assert_eq!(found.name, "digest");
    assert!(!found.user_allowed && !found.user_exists);

    // Another account's list does not count for this one.
    let second = account(&store, "second", UserScope::Listed(vec![other])).await;
    assert!(
        !accounts
            .get_acting_for(id, Some(other))
            .await
            .unwrap()
            .unwrap()
            .user_allowed
    );
    assert!(
        accounts
            .get_acting_for(second, Some(other))
            .await
            .unwrap()
            .unwrap()
            .user_allowed
    );
}

#[tokio::test]
async fn an_any_user_account_allows_everyone_and_says_who_exists() {
    let (store, _dir) = fresh_store().await;
    let someone = user(&store).await;
    let id = account(&store, "anyone", UserScope::Any).await;
    let accounts = store.service_accounts();

    let found = accounts
        .get_acting_for(id, Some(someone))
        .await
        .unwrap()
        .unwrap();
    assert!(found.user_allowed && found.user_exists);

    let found = accounts
        .get_acting_for(id, Some(UserId::new()))
        .await
        .unwrap()
        .unwrap();
    assert!(found.user_allowed, "any user is allowed");
    assert!(
        !found.user_exists,
        "but one without an account does not exist"
    );

    store.users().delete(someone).await.unwrap();
    let found = accounts
        .get_acting_for(id, Some(someone))
        .await
        .unwrap()
        .unwrap();
    assert!(!found.user_exists, "a deleted user no longer exists");
}

#[tokio::test]
async fn a_revoked_account_is_still_found_with_its_revocation() {
    let (store, _dir) = fresh_store().await;
    let listed = user(&store).await;
    let id = account(&store, "revoked", UserScope::Listed(vec![listed])).await;
    let accounts = store.service_accounts();
    let at = Utc::now() + TimeDelta::seconds(5);
    accounts.revoke(store.connection(), id, at).await.unwrap();

    let found = accounts
        .get_acting_for(id, Some(listed))
        .await
        .unwrap()
        .unwrap();
    assert!(!found.is_active());
    let revoked_at = found.revoked_at.unwrap();
    assert!(
        (revoked_at - at).num_milliseconds().abs() < 1,
        "{revoked_at} != {at}"
    );
    assert!(found.user_allowed && found.user_exists);
}

#[tokio::test]
async fn an_unknown_account_is_none() {
    let (store, _dir) = fresh_store().await;
    let someone = user(&store).await;
    let accounts = store.service_accounts();
    assert_eq!(
        accounts
            .get_acting_for(ServiceAccountId::new(), Some(someone))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        accounts
            .get_acting_for(ServiceAccountId::new(), None)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_listed_users_deletion_takes_them_off_the_list() {
    let (store, _dir) = fresh_store().await;
    let listed = user(&store).await;
    let id = account(&store, "listed", UserScope::Listed(vec![listed])).await;
    store.users().delete(listed).await.unwrap();
    let found = store
        .service_accounts()
        .get_acting_for(id, Some(listed))
        .await
        .unwrap()
        .unwrap();
    assert!(!found.user_allowed && !found.user_exists);
}
