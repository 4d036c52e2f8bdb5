//! The chat migration rolls back and applies again, search index included.

use super::search::{corpus, hits};
use super::*;

#[tokio::test]
async fn the_chat_migration_rolls_back_and_applies_again() {
    use assistd_migration::{Migrator, MigratorTrait};
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    corpus(&chat, user).await;
    // The sign-in migration came after chat: roll back both.
    Migrator::down(store.connection(), Some(2)).await.unwrap();
    assert!(chat.get_session(user, SessionId::new()).await.is_err());
    store.migrate().await.unwrap();
    let c = corpus(&chat, user).await;
    assert_eq!(
        hits(&chat, user, "borrow", None, None, 10).await,
        [c.chess_answer.id, c.explanation.id, c.question.id]
    );
}
