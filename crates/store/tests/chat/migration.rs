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
    // Roll back every migration from chat on (the ones after it first).
    let after_chat = Migrator::migrations()
        .iter()
        .rev()
        .take_while(|migration| migration.name() != "m20261126_000003_chat")
        .count();
    let steps = u32::try_from(after_chat + 1).unwrap();
    Migrator::down(store.connection(), Some(steps))
        .await
        .unwrap();
    assert!(chat.get_session(user, SessionId::new()).await.is_err());
    store.migrate().await.unwrap();
    let c = corpus(&chat, user).await;
    assert_eq!(
        hits(&chat, user, "borrow", None, None, 10).await,
        [c.chess_answer.id, c.explanation.id, c.question.id]
    );
}
