//! Mail as a person reads it, and the words it can be found by.
//!
//! [`parse`] turns a raw RFC 5322 message (what Gmail's `format=raw` carries) into a
//! [`ParsedMail`]: decoded subject and addresses, the date, the body as plain text and the list
//! of attachments. It never fails: malformed mail keeps whatever could be read, and bytes that
//! are not mail at all come back as text. What "as a person reads it" means here:
//!
//! - `multipart/alternative` prefers `text/plain`; HTML-only mail becomes readable text (no
//!   tags, no CSS or script, links kept as `text <https://…>`, no hard wrapping);
//! - quoted-printable and base64 are decoded, legacy charsets (ISO-8859-x, windows-125x,
//!   ISO-2022-JP, GB2312/GBK, EUC-KR/ks_c_5601-1987 …) converted to UTF-8, and a part whose
//!   charset is missing, unknown, or says UTF-8 while its bytes are not, keeps its valid UTF-8
//!   and has its other bytes read as windows-1252 (what such mail nearly always is);
//! - RFC 2047 encoded words in the subject and display names (also those that split a
//!   character between two words, against the RFC), RFC 2231 attachment names, and header
//!   values sent as raw 8-bit bytes (read as windows-1252 when not UTF-8);
//! - `format=flowed` (RFC 3676) lines are joined back into paragraphs;
//! - a forwarded `message/rfc822` shows the way mail clients show it: a
//!   `---------- Forwarded message ----------` line, its From/Date/Subject/To/Cc, then its text;
//! - attachments are listed by name, MIME type and decoded size, never their contents; images
//!   embedded in an HTML body (`multipart/related`, `cid:`) are neither text nor attachments;
//! - whitespace is normalised (line ends, trailing spaces, no-break spaces, runs of blank lines
//!   and of quoted blank lines), and the body is capped at `max_body_bytes`, cut at a
//!   character boundary, with [`ParsedMail::body_truncated`] set.
//!
//! Hostile mail costs bounded time: text past the cap is not normalised, HTML source is read
//! up to 8 bytes per byte of room left in the body (at least 512 KiB), HTML nested deeper than
//! 400 elements is read by a linear tag stripper instead of the layout engine, and MIME trees
//! and forwarded messages are walked to a fixed depth. Should a parser panic all the same, the
//! message keeps its headers and loses its body; the caller never sees the panic. The 1.4 MB
//! text message of the corpus parses in about 11 ms of CPU in a release build, and its
//! search words take about 17 ms (`examples/parse_speed.rs` times any message).
//!
//! # Search words
//!
//! [`search_words`], [`query_terms`] and [`contains_phrase`] share one tokenizer, so a word
//! typed in a search box finds the message that contains it. The rule:
//!
//! 1. the text is normalised with Unicode NFKC (full-width `ＡＢＣ` is `abc`, `ﬁ` is `fi`,
//!    half-width katakana is full-width) and lowercased; diacritics are kept (`café` and
//!    `cafe` are different words);
//! 2. it is split into words on every character that is neither alphanumeric nor a combining
//!    mark (Unicode-aware: `naïve`, `Straße`, `Ελλάδα`, `नमस्ते` stay whole);
//! 3. inside a word, each run of Han, Hiragana, Katakana or Hangul characters — scripts written
//!    without spaces — becomes its overlapping character bigrams (`東京都` gives `東京`, `京都`);
//!    a run of one character is kept as that character. A query is cut the same way, so
//!    `京都` finds a message that says `東京都`, and a query word of three or more such
//!    characters needs all of its bigrams. A one-character query word only finds the character
//!    where it stands alone (between non-CJK characters), which keeps the index small;
//! 4. words longer than [`MAX_WORD_CHARS`] characters (base64 runs, hashes, long URLs) are
//!    dropped;
//! 5. [`search_words`] deduplicates, keeps the first [`MAX_WORDS_PER_MESSAGE`] distinct words
//!    in text order and drops the rest (a message that long is still found by its first
//!    twenty thousand distinct words, which bounds the index rows one message can take).
//!
//! A query ([`query_terms`]) is words and `"quoted phrases"`; its [`Query::words`] are every
//! word a match must contain (phrase words included), for an index lookup, and its
//! [`Query::phrases`] are checked on the candidates' text with [`contains_phrase`].

mod encoded_words;
mod flowed;
mod html;
mod mime;
mod search;
mod text;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use html::html_to_text;
pub use mime::parse;
pub use search::{
    MAX_WORD_CHARS, MAX_WORDS_PER_MESSAGE, Query, contains_phrase, query_terms, search_words,
};

/// A message reduced to what a person reads: headers decoded, body as plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedMail {
    /// The decoded subject on one line; empty when the message has none.
    pub subject: String,
    /// The first `From` address, if any.
    pub from: Option<Address>,
    /// Every `To` recipient (groups flattened).
    pub to: Vec<Address>,
    /// Every `Cc` recipient (groups flattened).
    pub cc: Vec<Address>,
    /// The `Date` header in UTC, when present and valid.
    pub date: Option<DateTime<Utc>>,
    /// The readable text of the body, at most `max_body_bytes` bytes of UTF-8.
    pub body_text: String,
    /// True when `body_text` was cut at `max_body_bytes`.
    pub body_truncated: bool,
    /// Attachments in message order, including those of forwarded messages.
    pub attachments: Vec<Attachment>,
}

impl ParsedMail {
    /// All the text a search should look into, one field per line: subject, sender,
    /// recipients, attachment names and body.
    #[must_use]
    pub fn searchable_text(&self) -> String {
        let mut out = String::with_capacity(self.body_text.len() + 256);
        out.push_str(&self.subject);
        out.push('\n');
        for address in self.from.iter().chain(&self.to).chain(&self.cc) {
            out.push_str(&address.to_string());
            out.push('\n');
        }
        for attachment in &self.attachments {
            out.push_str(&attachment.filename);
            out.push('\n');
        }
        out.push_str(&self.body_text);
        out
    }
}

/// A mailbox: display name (may be empty) and address (may be empty in broken mail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The decoded display name, e.g. `José Núñez`; empty when the header has none.
    pub display_name: String,
    /// The address, e.g. `jose@example.com`.
    pub address: String,
}

impl std::fmt::Display for Address {
    /// `Name <address>`, or whichever of the two is present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.display_name == self.address {
            return f.write_str(&self.address);
        }
        match (self.display_name.is_empty(), self.address.is_empty()) {
            (false, false) => write!(f, "{} <{}>", self.display_name, self.address),
            (false, true) => f.write_str(&self.display_name),
            (true, _) => f.write_str(&self.address),
        }
    }
}

/// An attachment as listed to the reader; its contents are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The decoded file name (RFC 2231 or RFC 2047); empty when the part names none.
    pub filename: String,
    /// The lowercase MIME type, e.g. `application/pdf`.
    pub mime_type: String,
    /// The size in bytes after transfer decoding (base64, quoted-printable).
    pub size_bytes: i64,
}
