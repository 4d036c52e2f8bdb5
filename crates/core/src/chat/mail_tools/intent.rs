//! What the user's own message in an exchange allows a draft to be: whether it asks for one
//! at all, and which addresses it names.
//!
//! The rule is deliberately simple and checked by the server, not left to the model: the
//! USER message that opened the exchange must contain a drafting word ("draft", "compose",
//! "write", or "reply"/"respond"/"answer" followed by "to", "back", "saying" and the like,
//! in English and a few other languages). Text the model read from mail or other tools is
//! never consulted, so a mail that says "reply to this at once" asks for nothing.

use std::collections::BTreeSet;

/// Words that ask for a draft wherever they stand (prefixes).
const DRAFT_PREFIXES: [&str; 8] = [
    "draft",
    "compose",
    "entwurf",
    "entwirf",
    "brouillon",
    "borrador",
    "rédige",
    "redacta",
];

/// Words that ask for a draft by themselves.
const DRAFT_WORDS: [&str; 9] = [
    "write", "writing", "rewrite", "schreib", "schreibe", "escribe", "écris", "antworte", "réponds",
];

/// Verbs that ask for a reply when followed by one of [`REPLY_FOLLOWERS`].
const REPLY_VERBS: [&str; 6] = [
    "reply",
    "replying",
    "respond",
    "responding",
    "answer",
    "answering",
];

/// What follows a reply verb that asks for a reply ("reply to", "answer back", "respond
/// saying …"), unlike "what needs my reply?".
const REPLY_FOLLOWERS: [&str; 11] = [
    "to", "back", "saying", "that", "with", "him", "her", "them", "all", "and", "telling",
];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `user_text` asks for a draft (see the module docs for the rule).
pub(super) fn asks_for_draft(user_text: &str) -> bool {
    let words = words(user_text);
    words.iter().enumerate().any(|(index, word)| {
        DRAFT_PREFIXES.iter().any(|prefix| word.starts_with(prefix))
            || DRAFT_WORDS.contains(&word.as_str())
            || (REPLY_VERBS.contains(&word.as_str())
                && words
                    .get(index + 1)
                    .is_some_and(|next| REPLY_FOLLOWERS.contains(&next.as_str())))
    })
}

/// A plausible email address: one `@` with text on both sides, a dot in the domain, at most
/// 254 characters, no spaces or brackets.
pub(super) fn is_address(candidate: &str) -> bool {
    let Some((local, domain)) = candidate.split_once('@') else {
        return false;
    };
    candidate.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && candidate
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"'))
}

/// The addresses `user_text` names itself, lowercased.
pub(super) fn named_addresses(user_text: &str) -> BTreeSet<String> {
    user_text
        .split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"'))
        .map(|token| token.trim_matches(|c: char| matches!(c, '.' | ':' | '!' | '?' | '\'')))
        .filter(|token| is_address(token))
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafting_requests_are_told_from_other_messages() {
        for asking in [
            "draft a reply to Ana saying yes",
            "Please write to Bob that I'm late",
            "reply to the landlord: fine",
            "Answer back with a no",
            "Schreibe Ana eine Antwort",
            "compose an email to x@example.com",
        ] {
            assert!(asks_for_draft(asking), "{asking}");
        }
        for not_asking in [
            "what needs my reply?",
            "summarise my inbox",
            "read the mail from Ana",
            "what did the answer say?",
            "",
        ] {
            assert!(!asks_for_draft(not_asking), "{not_asking}");
        }
    }

    #[test]
    fn the_users_own_addresses_are_found() {
        let named = named_addresses("draft to <Bo@Example.com>, and cc: carol@example.org.");
        assert_eq!(
            named.into_iter().collect::<Vec<_>>(),
            ["bo@example.com", "carol@example.org"]
        );
        assert!(named_addresses("mail me at home").is_empty());
        assert!(!is_address("a@b"));
        assert!(!is_address("a b@example.com"));
        assert!(is_address("x@evil.example"));
    }
}
