//! Memories: kept, listed, found by their words and forgotten.

use super::*;

#[tokio::test]
async fn memories_are_kept_listed_found_and_forgotten() {
    let (store, _dir) = fresh_store().await;
    let chat = store.chat();
    let user = new_user(&store).await;
    let other = new_user(&store).await;
    let session = new_session(&chat, user, "", 0).await;
    let tea = chat
        .add_memory(user, "Likes green TEA", None, at(1))
        .await
        .unwrap();
    let coffee = chat
        .add_memory(user, "Hates coffee", Some(session.id), at(2))
        .await
        .unwrap();
    let munich = chat
        .add_memory(user, "Lives ÜBER dem Café in München", None, at(3))
        .await
        .unwrap();
    chat.add_memory(other, "also likes tea", None, at(4))
        .await
        .unwrap();
    assert_eq!(coffee.source_session_id, Some(session.id));
    assert_eq!(coffee.created_at, at(2));

    assert_eq!(
        chat.list_memories(user, None, 10).await.unwrap(),
        vec![munich.clone(), coffee.clone(), tea.clone()]
    );
    let page = chat.list_memories(user, None, 2).await.unwrap();
    let cursor = page.last().map(|m| (m.created_at, m.id));
    assert_eq!(
        chat.list_memories(user, cursor, 2).await.unwrap(),
        vec![tea.clone()]
    );
    assert_eq!(chat.count_memories(user).await.unwrap(), 3);

    let find = |words: &[&str], limit| {
        let chat = chat.clone();
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        async move {
            chat.find_memories(user, &words, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find(&["tea"], 10).await, [tea.id]);
    assert_eq!(find(&["COFFEE", "green"], 10).await, [coffee.id, tea.id]);
    assert_eq!(find(&["über", "münchen"], 10).await, [munich.id]);
    assert_eq!(find(&["es"], 1).await, [munich.id]);
    assert_eq!(find(&["nothing"], 10).await, Vec::<MemoryId>::new());
    assert_eq!(find(&[], 2).await, [munich.id, coffee.id]);
    assert_eq!(find(&["  "], 5).await.len(), 3);

    // The source is forgotten with its session; the memory stays.
    chat.delete_session(user, session.id).await.unwrap();
    let listed = chat.list_memories(user, None, 10).await.unwrap();
    assert_eq!(listed[1].id, coffee.id);
    assert_eq!(listed[1].source_session_id, None);

    chat.delete_memory(user, tea.id).await.unwrap();
    assert_not_found(chat.delete_memory(user, tea.id).await, "memory");
    assert_eq!(chat.count_memories(user).await.unwrap(), 2);
    assert_eq!(chat.count_memories(other).await.unwrap(), 1);
}
