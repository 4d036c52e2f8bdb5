//! Paging for every list RPC (AIP-158): a typed page size and one opaque, versioned page-token
//! format.
//!
//! A token is `base64url(JSON)` of `{"v": 1, "l": list, "s": scope, "c": cursor}`:
//! - `v` is the format version, so the format can change without misreading old tokens (a
//!   token of another version is refused with INVALID_ARGUMENT, and the client starts over);
//! - `l` names the list ([`Cursor::LIST`]), so a token of one list is refused by another;
//! - `s` is a digest of the request fields that must not change between pages (a filter, a
//!   query, a session): a token used with other fields is refused rather than silently mixing
//!   two listings;
//! - `c` is the list's own keyset cursor — never an offset.
//!
//! Tokens are opaque to clients, not secret: they hold ids and times the caller has already
//! seen. Every list checks ownership on each page, so a forged token reveals nothing.

use assistd_domain::FieldViolation;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

/// The page-token format version this server writes and reads.
const TOKEN_VERSION: u32 = 1;

/// The longest token accepted; anything longer was not written by this server.
const MAX_TOKEN_LEN: usize = 4096;

/// The page sizes of one list: what 0 means and the most one page may hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageLimits {
    /// The size of a page when the request asks for 0 (unset).
    pub(crate) default: u64,
    /// The largest page; larger requests are clamped to it (AIP-158).
    pub(crate) max: u64,
}

/// A validated page size: never 0, never above the list's maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageSize(u64);

impl PageSize {
    /// Reads `page_size`: 0 means the default, above the maximum means the maximum, negative
    /// is refused.
    pub(crate) fn parse(value: i32, limits: PageLimits) -> Result<Self, FieldViolation> {
        match u64::try_from(value) {
            Ok(0) => Ok(Self(limits.default)),
            Ok(size) => Ok(Self(size.min(limits.max))),
            Err(_) => Err(FieldViolation::new("page_size", "must not be negative")),
        }
    }

    /// The number of items on a page.
    pub(crate) const fn get(self) -> u64 {
        self.0
    }

    /// How many items to fetch: one more than a page, to learn whether another page follows.
    pub(crate) const fn fetch(self) -> u64 {
        self.0.saturating_add(1)
    }
}

/// The position a list resumes from, carried inside a page token.
pub(crate) trait Cursor: Serialize + DeserializeOwned {
    /// The list this cursor belongs to, e.g. `chat.sessions`.
    const LIST: &'static str;
    /// The RPC that hands out these tokens, named in error messages.
    const RPC: &'static str;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<C> {
    v: u32,
    l: String,
    s: String,
    c: C,
}

/// A digest of the request fields a token is bound to (empty when there are none).
fn scope_digest(scope: &str) -> String {
    if scope.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(scope.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// One page request of a list: its size, where it resumes, and what its tokens are bound to.
#[derive(Debug)]
pub(crate) struct PageRequest<C> {
    size: PageSize,
    after: Option<C>,
    scope: String,
}

impl<C: Cursor> PageRequest<C> {
    /// Reads `page_size` and `page_token` of a request whose other fields, rendered as
    /// `scope`, must be the same on every page. Both fields are checked, so a request with
    /// both wrong learns of both.
    pub(crate) fn parse(
        page_size: i32,
        page_token: &str,
        limits: PageLimits,
        scope: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let size = PageSize::parse(page_size, limits);
        let after = Self::decode(page_token, scope);
        match (size, after) {
            (Ok(size), Ok(after)) => Ok(Self {
                size,
                after,
                scope: scope.to_owned(),
            }),
            (size, after) => Err([size.err(), after.err()].into_iter().flatten().collect()),
        }
    }

    fn decode(token: &str, scope: &str) -> Result<Option<C>, FieldViolation> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || {
            FieldViolation::new(
                "page_token",
                format!(
                    "not a token from a previous {} response with the same request fields; \
                     leave it empty to start from the first page",
                    C::RPC
                ),
            )
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let envelope: Envelope<C> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if envelope.v != TOKEN_VERSION || envelope.l != C::LIST || envelope.s != scope_digest(scope)
        {
            return Err(bad());
        }
        Ok(Some(envelope.c))
    }

    /// The page size.
    pub(crate) const fn size(&self) -> PageSize {
        self.size
    }

    /// Where this page starts: after the cursor, or at the beginning.
    pub(crate) const fn after(&self) -> Option<&C> {
        self.after.as_ref()
    }

    /// Takes the cursor out, for lists whose query wants it by value.
    pub(crate) fn take_after(&mut self) -> Option<C> {
        self.after.take()
    }

    /// The token that resumes after `cursor`.
    pub(crate) fn token(&self, cursor: C) -> String {
        let envelope = Envelope {
            v: TOKEN_VERSION,
            l: C::LIST.to_owned(),
            s: scope_digest(&self.scope),
            c: cursor,
        };
        let json = serde_json::to_vec(&envelope).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Cuts `items` (fetched with [`PageSize::fetch`]) to the page and returns the token of
    /// the next page, made from the page's last item, or "" when this is the last page.
    pub(crate) fn finish<T>(&self, items: &mut Vec<T>, cursor: impl FnOnce(&T) -> C) -> String {
        if items.len() as u64 <= self.size.get() {
            return String::new();
        }
        items.truncate(usize::try_from(self.size.get()).unwrap_or(usize::MAX));
        items
            .last()
            .map(|last| self.token(cursor(last)))
            .unwrap_or_default()
    }

    /// Like [`PageRequest::finish`] for lists that resume *at* an item: the token is made
    /// from the first item of the next page.
    pub(crate) fn finish_at_next<T>(
        &self,
        items: &mut Vec<T>,
        cursor: impl FnOnce(&T) -> C,
    ) -> String {
        if items.len() as u64 <= self.size.get() {
            return String::new();
        }
        items.truncate(usize::try_from(self.size.get()).unwrap_or(usize::MAX) + 1);
        let next = items.pop();
        next.map(|next| self.token(cursor(&next)))
            .unwrap_or_default()
    }
}

/// The cursor of a list ordered by a time and then an id (newest first): the last item's
/// time, in microseconds since the epoch, and its id. Each list names its own id type, so
/// the cursor of one list cannot resume another.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeysetCursor<I> {
    at: i64,
    id: I,
}

impl<I> KeysetCursor<I> {
    /// The cursor after an item created or active at `at` with id `id`.
    pub(crate) fn new(at: DateTime<Utc>, id: I) -> Self {
        Self {
            at: at.timestamp_micros(),
            id,
        }
    }
}

impl<I: Copy> PageRequest<KeysetCursor<I>>
where
    KeysetCursor<I>: Cursor,
{
    /// The position the keyset query resumes after; a time out of range was never written
    /// by this server and is refused.
    pub(crate) fn position(&self) -> Result<Option<(DateTime<Utc>, I)>, Vec<FieldViolation>> {
        let Some(cursor) = self.after() else {
            return Ok(None);
        };
        // Years 1 to 9999 cover every time this server writes, and stay inside the range both
        // engines store, so a forged far-off time is the client's error, not the database's.
        match DateTime::from_timestamp_micros(cursor.at)
            .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))
        {
            Some(at) => Ok(Some((at, cursor.id))),
            None => Err(vec![FieldViolation::new(
                "page_token",
                format!(
                    "not a token from a previous {} response",
                    <KeysetCursor<I> as Cursor>::RPC
                ),
            )]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Numbers {
        after: i64,
    }

    impl Cursor for Numbers {
        const LIST: &'static str = "test.numbers";
        const RPC: &'static str = "ListNumbers";
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Letters {
        after: i64,
    }

    impl Cursor for Letters {
        const LIST: &'static str = "test.letters";
        const RPC: &'static str = "ListLetters";
    }

    const LIMITS: PageLimits = PageLimits { default: 3, max: 5 };

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn sizes_default_clamp_and_refuse_negatives() {
        assert_eq!(PageSize::parse(0, LIMITS).unwrap().get(), 3);
        assert_eq!(PageSize::parse(4, LIMITS).unwrap().get(), 4);
        assert_eq!(PageSize::parse(99, LIMITS).unwrap().get(), 5);
        assert_eq!(PageSize::parse(4, LIMITS).unwrap().fetch(), 5);
        assert_eq!(PageSize::parse(-1, LIMITS).unwrap_err().field, "page_size");
    }

    #[test]
    fn pages_walk_every_item_once() {
        let all: Vec<i64> = (1..=8).collect();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = PageRequest::<Numbers>::parse(3, &token, LIMITS, "scope").unwrap();
            let start = page.after().map_or(0, |c| c.after);
            let mut items: Vec<i64> = all
                .iter()
                .copied()
                .filter(|n| *n > start)
                .take(usize::try_from(page.size().fetch()).unwrap())
                .collect();
            token = page.finish(&mut items, |last| Numbers { after: *last });
            seen.extend(items);
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn a_page_resuming_at_the_next_item_keeps_it_out_of_this_page() {
        let page = PageRequest::<Numbers>::parse(2, "", LIMITS, "").unwrap();
        let mut items = vec![10, 11, 12];
        let token = page.finish_at_next(&mut items, |next| Numbers { after: *next });
        assert_eq!(items, [10, 11]);
        let next = PageRequest::<Numbers>::parse(2, &token, LIMITS, "").unwrap();
        assert_eq!(next.after(), Some(&Numbers { after: 12 }));
    }

    #[test]
    fn foreign_stale_and_garbled_tokens_are_refused() {
        let page = PageRequest::<Numbers>::parse(0, "", LIMITS, "filter=a").unwrap();
        let token = page.token(Numbers { after: 7 });
        // Round trip with the same scope.
        let again = PageRequest::<Numbers>::parse(0, &token, LIMITS, "filter=a").unwrap();
        assert_eq!(again.after(), Some(&Numbers { after: 7 }));
        // Another scope, another list, garbage, an over-long token, another version.
        for (token, scope) in [
            (token.clone(), "filter=b"),
            ("garbage!".to_owned(), "filter=a"),
            ("A".repeat(MAX_TOKEN_LEN + 1), "filter=a"),
            (
                URL_SAFE_NO_PAD.encode(br#"{"v":0,"l":"test.numbers","s":"","c":{"after":1}}"#),
                "",
            ),
        ] {
            let err = PageRequest::<Numbers>::parse(0, &token, LIMITS, scope).unwrap_err();
            assert_eq!(fields(&err), ["page_token"], "{token}");
        }
        let err = PageRequest::<Letters>::parse(0, &token, LIMITS, "filter=a").unwrap_err();
        assert_eq!(fields(&err), ["page_token"]);
        assert!(err[0].description.contains("ListLetters"));
    }

    impl Cursor for KeysetCursor<i64> {
        const LIST: &'static str = "test.keyset";
        const RPC: &'static str = "ListKeyset";
    }

    #[test]
    fn keyset_positions_round_trip_and_far_off_times_are_refused() {
        let page = PageRequest::<KeysetCursor<i64>>::parse(0, "", LIMITS, "").unwrap();
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let token = page.token(KeysetCursor::new(at, 7));
        let again = PageRequest::<KeysetCursor<i64>>::parse(0, &token, LIMITS, "").unwrap();
        assert_eq!(again.position().unwrap(), Some((at, 7)));
        // A forged token far before year 1 (which PostgreSQL could not even bind).
        let forged = page.token(KeysetCursor {
            at: -250_000_000_000_000_000,
            id: 7,
        });
        let forged = PageRequest::<KeysetCursor<i64>>::parse(0, &forged, LIMITS, "").unwrap();
        assert_eq!(fields(&forged.position().unwrap_err()), ["page_token"]);
    }

    #[test]
    fn both_bad_fields_are_reported() {
        let err = PageRequest::<Numbers>::parse(-1, "%%", LIMITS, "").unwrap_err();
        assert_eq!(fields(&err), ["page_size", "page_token"]);
    }
}
