//! The words a message can be found by, and how a search query is read: the rule is in the
//! crate documentation ("Search words").

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Words longer than this many characters are not indexed nor searched.
pub const MAX_WORD_CHARS: usize = 64;

/// At most this many distinct words are indexed per message (the first ones in text order).
pub const MAX_WORDS_PER_MESSAGE: usize = 20_000;

/// A parsed search query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Every distinct word a matching message must contain: the loose words and the words of
    /// every phrase, normalised as [`search_words`] does. This is what an index is asked for.
    pub words: Vec<String>,
    /// Phrases of two or more words (from `"double quotes"`), each to be found as a contiguous
    /// sequence with [`contains_phrase`] once the candidates are known. A quoted single word is
    /// just a word.
    pub phrases: Vec<Vec<String>>,
    /// True when the query holds a word longer than [`MAX_WORD_CHARS`] characters. Such words
    /// are never indexed, so no message can match: answer nothing (not everything, which is
    /// what an empty `words` would suggest). The word itself is not in `words`.
    #[serde(default)]
    pub unmatchable: bool,
}

impl Query {
    /// True when the query asks for nothing: no word survived normalisation (an empty query, or
    /// only punctuation) and none was too long. Such a query is no text filter.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.phrases.is_empty() && !self.unmatchable
    }
}

/// The distinct normalised words of `text`, in order of first appearance, at most
/// [`MAX_WORDS_PER_MESSAGE`] of them. See the module documentation for the rule.
#[must_use]
pub fn search_words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut words = Vec::new();
    for_each_token(text, |token| {
        if words.len() >= MAX_WORDS_PER_MESSAGE {
            return false;
        }
        if !seen.contains(token) {
            let token = token.to_owned();
            words.push(token.clone());
            seen.insert(token);
        }
        true
    });
    words
}

/// Reads a search query: text in `"double quotes"` is a phrase, everything else loose words.
/// Curly quotes (`“…”`, `„…“`) count as double quotes. A quote left open makes the rest of the
/// query loose words. Length limits are the caller's to enforce.
#[must_use]
pub fn query_terms(query: &str) -> Query {
    let mut words = Vec::new();
    let mut seen = HashSet::new();
    let mut phrases: Vec<Vec<String>> = Vec::new();
    let mut add_words = |tokens: &[String], words: &mut Vec<String>| {
        for token in tokens {
            if seen.insert(token.clone()) {
                words.push(token.clone());
            }
        }
    };

    let is_quote = |c: char| matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\u{201e}');
    let mut rest = query;
    while !rest.is_empty() {
        let Some(open) = rest.find(is_quote) else {
            add_words(&tokens(rest), &mut words);
            break;
        };
        add_words(&tokens(&rest[..open]), &mut words);
        let after_open = &rest[open..];
        let quote_len = after_open.chars().next().map_or(1, char::len_utf8);
        let inner_start = &after_open[quote_len..];
        match inner_start.find(is_quote) {
            Some(close) => {
                let phrase = tokens(&inner_start[..close]);
                add_words(&phrase, &mut words);
                if phrase.len() >= 2 && !phrases.contains(&phrase) {
                    phrases.push(phrase);
                }
                let close_len = inner_start[close..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
                rest = &inner_start[close + close_len..];
            }
            None => {
                add_words(&tokens(inner_start), &mut words);
                break;
            }
        }
    }
    Query {
        words,
        phrases,
        unmatchable: has_overlong_word(query),
    }
}

/// True when `phrase` (normalised words, as in [`Query::phrases`]) occurs in `text` as a
/// contiguous run of words. An empty phrase is found everywhere.
#[must_use]
pub fn contains_phrase(text: &str, phrase: &[String]) -> bool {
    if phrase.is_empty() {
        return true;
    }
    // A sliding window over the token stream: no allocation of the whole token list.
    let mut window: std::collections::VecDeque<String> =
        std::collections::VecDeque::with_capacity(phrase.len());
    let mut found = false;
    for_each_token(text, |token| {
        // Reuse the buffer of the token leaving the window.
        let mut slot = if window.len() == phrase.len() {
            window.pop_front().unwrap_or_default()
        } else {
            String::new()
        };
        slot.clear();
        slot.push_str(token);
        window.push_back(slot);
        if window.len() == phrase.len() && window.iter().zip(phrase).all(|(a, b)| a == b) {
            found = true;
            return false;
        }
        true
    });
    found
}

/// Whether `text` holds a word that [`for_each_token`] drops for its length.
fn has_overlong_word(text: &str) -> bool {
    text.split(|c: char| c.is_ascii_whitespace())
        .filter(|chunk| !chunk.is_empty())
        .any(|chunk| {
            let normalized: String = chunk.nfkc().flat_map(char::to_lowercase).collect();
            normalized.split(|c: char| !is_word_char(c)).any(|word| {
                // CJK runs become bigrams and are never too long; measure the rest.
                word.split(is_cjk)
                    .any(|run| run.chars().count() > MAX_WORD_CHARS)
            })
        })
}

/// Every token of `text` in order (not deduplicated).
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |token| {
        out.push(token.to_owned());
        true
    });
    out
}

/// Han (with the ideographic iteration marks), Hiragana, Katakana and Hangul: scripts written
/// without spaces between words, indexed by bigrams.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF         // Hangul Jamo
        | 0x3005..=0x3007       // 々 〆 〇
        | 0x3021..=0x3029       // Hangzhou numerals
        | 0x3038..=0x303C
        | 0x3040..=0x309F       // Hiragana
        | 0x30A0..=0x30FF       // Katakana
        | 0x3130..=0x318F       // Hangul compatibility Jamo
        | 0x31F0..=0x31FF       // Katakana phonetic extensions
        | 0x3400..=0x4DBF       // CJK extension A
        | 0x4E00..=0x9FFF       // CJK unified ideographs
        | 0xA960..=0xA97F       // Hangul Jamo extended A
        | 0xAC00..=0xD7AF       // Hangul syllables
        | 0xD7B0..=0xD7FF       // Hangul Jamo extended B
        | 0xF900..=0xFAFF       // CJK compatibility ideographs
        | 0xFF66..=0xFF9F       // half-width katakana (NFKC maps most away)
        | 0x20000..=0x3134F     // CJK extensions B–G
    )
}

fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    c.is_alphanumeric() || is_combining_mark(c)
}

/// Calls `emit` with each token of `text` in order until it returns false.
///
/// The text is normalised chunk by chunk, between ASCII whitespace: NFKC never composes across
/// a space, tab or line break, so the result is the same as normalising the whole text, and
/// the (common) all-ASCII chunks skip NFKC entirely.
fn for_each_token(text: &str, mut emit: impl FnMut(&str) -> bool) {
    let mut normalized = String::new();
    for chunk in text.split(|c: char| c.is_ascii_whitespace()) {
        if chunk.is_empty() {
            continue;
        }
        normalized.clear();
        if chunk.is_ascii() {
            normalized.push_str(chunk);
            normalized.make_ascii_lowercase();
        } else {
            normalized.extend(chunk.nfkc().flat_map(char::to_lowercase));
        }
        for word in normalized.split(|c: char| !is_word_char(c)) {
            if !word.is_empty() && !emit_word(word, &mut emit) {
                return;
            }
        }
    }
}

/// Splits one word into its CJK runs (bigrams) and other runs (kept whole, if not too long).
/// Returns false when `emit` asked to stop.
fn emit_word(word: &str, emit: &mut impl FnMut(&str) -> bool) -> bool {
    if word.is_ascii() {
        return word.len() > MAX_WORD_CHARS || emit(word);
    }
    let mut run_start = 0;
    let mut run_is_cjk: Option<bool> = None;
    for (index, c) in word.char_indices() {
        // A combining mark belongs to the run it follows.
        let cjk = if is_combining_mark(c) {
            run_is_cjk.unwrap_or(false)
        } else {
            is_cjk(c)
        };
        match run_is_cjk {
            Some(current) if current != cjk => {
                if !emit_run(&word[run_start..index], current, emit) {
                    return false;
                }
                run_start = index;
                run_is_cjk = Some(cjk);
            }
            None => run_is_cjk = Some(cjk),
            _ => {}
        }
    }
    match run_is_cjk {
        Some(current) => emit_run(&word[run_start..], current, emit),
        None => true,
    }
}

fn emit_run(run: &str, cjk: bool, emit: &mut impl FnMut(&str) -> bool) -> bool {
    if !cjk {
        if run.chars().count() > MAX_WORD_CHARS {
            return true;
        }
        return emit(run);
    }
    let boundaries: Vec<usize> = run
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(run.len()))
        .collect();
    let char_count = boundaries.len() - 1;
    if char_count == 1 {
        return emit(run);
    }
    for pair in boundaries.windows(3) {
        if !emit(&run[pair[0]..pair[2]]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn words_are_lowercased_nfkc_and_keep_diacritics() {
        assert_eq!(
            search_words("Café CAFE cafe ＡＢＣ ﬁle Straße naïve"),
            strings(&["café", "cafe", "abc", "file", "straße", "naïve"])
        );
    }

    #[test]
    fn punctuation_splits_and_duplicates_go() {
        assert_eq!(
            search_words("re: hello-world, hello! user@example.com 3.14"),
            strings(&["re", "hello", "world", "user", "example", "com", "3", "14"])
        );
    }

    #[test]
    fn combining_marks_stay_inside_words() {
        // Devanagari vowel signs and virama are combining marks.
        assert_eq!(search_words("नमस्ते दुनिया"), strings(&["नमस्ते", "दुनिया"]));
    }

    #[test]
    fn cjk_runs_become_bigrams() {
        assert_eq!(search_words("東京都"), strings(&["東京", "京都"]));
        assert_eq!(
            search_words("こんにちは世界"),
            strings(&["こん", "んに", "にち", "ちは", "は世", "世界"])
        );
        assert_eq!(search_words("사진 첨부"), strings(&["사진", "첨부"]));
        assert_eq!(search_words("東 tower"), strings(&["東", "tower"]));
        // Mixed scripts inside one word are cut at the script change.
        assert_eq!(
            search_words("iPhone用ケース"),
            strings(&["iphone", "用ケ", "ケー", "ース"])
        );
    }

    #[test]
    fn chunked_normalisation_matches_whole_text() {
        // A combining accent after a letter composes; after a space it stays a mark.
        let text = "cafe\u{301} \u{301}x ＦＵＬＬ\twidth\n\u{2460}\u{fb01}";
        let whole: String = text.nfkc().flat_map(char::to_lowercase).collect();
        let expected: Vec<String> = whole
            .split(|c: char| !is_word_char(c) || c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        assert_eq!(tokens(text), expected);
        assert_eq!(tokens(text)[0], "café");
    }

    #[test]
    fn half_width_katakana_matches_full_width() {
        assert_eq!(search_words("ｶﾀｶﾅ"), search_words("カタカナ"));
    }

    #[test]
    fn long_words_are_dropped() {
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        let max = "b".repeat(MAX_WORD_CHARS);
        assert_eq!(
            search_words(&format!("x {long} {max} y")),
            strings(&["x", &max, "y"])
        );
    }

    #[test]
    fn distinct_words_are_capped() {
        let text: String = (0..MAX_WORDS_PER_MESSAGE + 50)
            .map(|i| format!("w{i} "))
            .collect();
        let words = search_words(&text);
        assert_eq!(words.len(), MAX_WORDS_PER_MESSAGE);
        assert_eq!(words[0], "w0");
        assert_eq!(
            words.last().unwrap(),
            &format!("w{}", MAX_WORDS_PER_MESSAGE - 1)
        );
    }

    #[test]
    fn query_reads_words_and_phrases() {
        let query = query_terms(r#"Invoice "Quarterly Report" 2024 "solo" invoice"#);
        assert_eq!(
            query.words,
            strings(&["invoice", "quarterly", "report", "2024", "solo"])
        );
        assert_eq!(query.phrases, vec![strings(&["quarterly", "report"])]);
    }

    #[test]
    fn unbalanced_quote_is_words() {
        let query = query_terms(r#"alpha "beta gamma"#);
        assert_eq!(query.words, strings(&["alpha", "beta", "gamma"]));
        assert!(query.phrases.is_empty());
    }

    #[test]
    fn curly_quotes_and_cjk_phrases() {
        let query = query_terms("“東京都 庁舎” x");
        assert_eq!(query.words, strings(&["東京", "京都", "庁舎", "x"]));
        assert_eq!(query.phrases, vec![strings(&["東京", "京都", "庁舎"])]);
    }

    #[test]
    fn empty_queries() {
        assert!(query_terms("").is_empty());
        assert!(query_terms(r#" "" ... ""#).is_empty());
        assert!(!query_terms("a").is_empty());
        assert!(!query_terms("a").unmatchable);
    }

    #[test]
    fn a_word_too_long_to_index_matches_nothing() {
        let long = "x".repeat(MAX_WORD_CHARS + 1);
        let query = query_terms(&format!("invoice {long}"));
        assert_eq!(query.words, strings(&["invoice"]));
        assert!(query.unmatchable);
        let query = query_terms(&long);
        assert!(query.words.is_empty());
        assert!(query.unmatchable);
        assert!(!query.is_empty());
        // Long CJK text is cut into bigrams: nothing is too long.
        assert!(!query_terms(&"東京".repeat(50)).unmatchable);
        assert!(!query_terms(&"y".repeat(MAX_WORD_CHARS)).unmatchable);
    }

    #[test]
    fn phrases_must_be_contiguous() {
        let text = "The quarterly, report is late. Report quarterly!";
        assert!(contains_phrase(text, &strings(&["quarterly", "report"])));
        assert!(contains_phrase(text, &strings(&["report", "quarterly"])));
        assert!(!contains_phrase(text, &strings(&["quarterly", "late"])));
        assert!(contains_phrase(text, &[]));
        assert!(contains_phrase(
            "東京都庁舎",
            &query_terms("\"京都庁\"").phrases[0]
        ));
        assert!(!contains_phrase(
            "東京 都庁",
            &query_terms("\"京都庁\"").phrases[0]
        ));
    }
}
