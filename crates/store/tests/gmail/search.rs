//! Search is exact: every term, every label and the thread, newest first, and keyset pages
//! that neither skip nor repeat — checked against a brute-force answer.

use std::collections::HashSet;

use assistd_store::MessageFilter;

use super::*;

/// One stored message as the test knows it.
struct Known {
    id: String,
    thread: String,
    labels: HashSet<String>,
    terms: HashSet<SearchTerm>,
    date: DateTime<Utc>,
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const LABELS: [&str; 4] = ["INBOX", "UNREAD", "IMPORTANT", "Label_3"];

fn expected(known: &[Known], filter: &MessageFilter) -> Vec<String> {
    let mut hits: Vec<&Known> = known
        .iter()
        .filter(|m| filter.terms.iter().all(|t| m.terms.contains(t)))
        .filter(|m| filter.label_ids.iter().all(|l| m.labels.contains(l)))
        .filter(|m| filter.thread_id.as_ref().is_none_or(|t| *t == m.thread))
        .collect();
    hits.sort_by(|a, b| (b.date, &b.id).cmp(&(a.date, &a.id)));
    hits.into_iter().map(|m| m.id.clone()).collect()
}

/// Every page of `filter`, `page` at a time, following the keyset cursor.
async fn all_pages(
    gmail: &GmailStore,
    user: UserId,
    filter: &MessageFilter,
    page: u64,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let got = gmail
            .list_messages(user, filter, after.clone(), page)
            .await
            .unwrap();
        assert!(got.len() as u64 <= page);
        for message in &got {
            assert_eq!(message.sealed_body.is_some(), filter.include_bodies);
        }
        ids.extend(got.iter().map(|m| m.message_id.clone()));
        match got.last() {
            Some(last) if got.len() as u64 == page => {
                after = Some((last.internal_date, last.message_id.clone()));
            }
            _ => return ids,
        }
    }
}

#[tokio::test]
async fn searches_match_a_brute_force_answer_page_by_page() {
    let (store, _dir) = fresh_store().await;
    let gmail = store.gmail();
    let user = connected_user(&store).await;
    let other = connected_user(&store).await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut known = Vec::new();
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    // Enough messages that the commonest words' postings are long: both plans of a list
    // (driven by a short posting, or walking the messages newest first) are exercised.
    for n in 0..240u32 {
        let id = format!("18c{n:013x}");
        // Several messages share a date, so the id breaks ties.
        let date = at(i64::from(n / 3) * 60);
        let thread = format!("t{}", rng.below(6));
        let labels: HashSet<String> = LABELS
            .iter()
            .filter(|_| rng.below(2) == 0)
            .map(|l| (*l).to_owned())
            .collect();
        // Word w appears with probability about 1/(w+1): common and rare words.
        let terms: HashSet<SearchTerm> = (0..12u32)
            .filter(|w| rng.below(u64::from(*w) + 1) == 0)
            .map(term)
            .collect();
        let labels_vec: Vec<&str> = labels.iter().map(String::as_str).collect();
        let terms_vec: Vec<SearchTerm> = terms.iter().copied().collect();
        mine.push((message(&id, &thread, &labels_vec, date), terms_vec.clone()));
        // The other mailbox holds look-alikes that must never appear.
        theirs.push((
            message(&format!("x{id}"), &thread, &labels_vec, date),
            terms_vec,
        ));
        known.push(Known {
            id,
            thread,
            labels,
            terms,
            date,
        });
    }
    for chunk in mine.chunks(60) {
        assert!(gmail.upsert_messages(user, chunk, at(1)).await.unwrap());
    }
    for chunk in theirs.chunks(60) {
        assert!(gmail.upsert_messages(other, chunk, at(1)).await.unwrap());
    }

    let mut filters = vec![MessageFilter::default()];
    for words in [
        vec![0],
        vec![1],
        vec![0, 1],
        vec![1, 2],
        vec![2, 3, 5],
        vec![11],
        vec![40],
        vec![0, 40],
    ] {
        for labels in [vec![], vec!["INBOX"], vec!["INBOX", "UNREAD"]] {
            for thread in [None, Some("t2")] {
                filters.push(MessageFilter {
                    terms: words.iter().map(|w| term(*w)).collect(),
                    label_ids: labels.iter().map(|l| (*l).to_owned()).collect(),
                    thread_id: thread.map(str::to_owned),
                    include_bodies: words.len() == 2,
                });
            }
        }
    }
    let mut non_empty = 0;
    for filter in &filters {
        let want = expected(&known, filter);
        non_empty += usize::from(!want.is_empty());
        for page in [1, 7, 25, 100] {
            assert_eq!(
                all_pages(&gmail, user, filter, page).await,
                want,
                "{filter:?}, page {page}"
            );
        }
    }
    // The filters are not all trivially empty.
    assert!(
        non_empty > filters.len() / 3,
        "{non_empty} of {}",
        filters.len()
    );
    assert!(
        gmail
            .list_messages(user, &MessageFilter::default(), None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}
