//! The MIME tree walked the way a mail client shows it.
//!
//! `mail-parser` does the byte-level work (header folding, RFC 2047/2231, transfer encodings,
//! charsets through `encoding_rs`, broken boundaries); this module decides what is read:
//!
//! - `multipart/alternative`: the first alternative that holds `text/plain`, else the richest
//!   HTML one (the last), else the last readable one; an empty plain alternative yields to HTML;
//! - `multipart/related`: its root (the `start` part, else the first); the other parts are
//!   resources of the HTML (inline images) unless they are marked as attachments;
//! - any other multipart (`mixed`, `signed`, `report`, unknown): every part in order;
//! - `text/plain` and `text/html` parts that are not marked as attachments are the body; every
//!   other leaf is an attachment, except images that are resources of an HTML body;
//! - `message/rfc822`: a forwarded message, shown with its headers and its own body.

use mail_parser::{
    Addr, Encoding, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
    PartType,
};

use crate::encoded_words::join_split_encoded_words;
use crate::flowed::unflow;
use crate::html::html_to_text;
use crate::text::{floor_char_boundary, normalize_block_within, one_line, utf8_or_windows_1252};
use crate::{Address, Attachment, ParsedMail};

/// Forwarded messages nested deeper than this are listed by their headers only.
const MAX_MESSAGE_DEPTH: usize = 8;

/// Multiparts nested deeper than this are not walked (no real mail comes near it).
const MAX_PART_DEPTH: usize = 64;

/// HTML source read per byte of room left in the body (newsletters run about 5 bytes of
/// markup per byte of text).
const HTML_SOURCE_PER_TEXT_BYTE: usize = 8;

/// HTML source always read, however little room is left.
const MIN_HTML_SOURCE: usize = 512 * 1024;

/// The line that opens a forwarded message, as Gmail writes it.
const FORWARDED_SEPARATOR: &str = "---------- Forwarded message ----------";

/// Parses a raw RFC 5322 message. Never fails: what cannot be read as MIME is kept as text.
/// `body_text` is at most `max_body_bytes` bytes long.
#[must_use]
pub fn parse(raw: &[u8], max_body_bytes: usize) -> ParsedMail {
    // Mail is hostile input and the parsers are third-party code: should one of them panic
    // on some message (none does on the corpus, random bytes or cut and corrupted mail, see
    // the robustness tests), that message keeps its headers and loses its body instead of
    // stopping whatever reads the mailbox.
    std::panic::catch_unwind(|| parse_message(raw, max_body_bytes))
        .unwrap_or_else(|_| std::panic::catch_unwind(|| headers_only(raw)).unwrap_or_default())
}

/// The headers of a message whose body could not be read.
fn headers_only(raw: &[u8]) -> ParsedMail {
    let Some(message) = MessageParser::new().parse_headers(raw) else {
        return ParsedMail::default();
    };
    let headers = Headers::of(&message);
    ParsedMail {
        subject: headers.subject,
        from: headers.from,
        to: headers.to,
        cc: headers.cc,
        date: message.date().and_then(to_utc),
        ..ParsedMail::default()
    }
}

fn parse_message(raw: &[u8], max_body_bytes: usize) -> ParsedMail {
    let parser = MessageParser::new();
    let Some(message) = parser.parse(raw) else {
        return unparsed(raw, max_body_bytes);
    };
    // Not a single header field (mail-parser takes any first line for a header name): these
    // bytes are not a message, only text.
    if message
        .parts
        .first()
        .is_none_or(|root| !root.headers.iter().any(|h| is_field_name(h.name.as_str())))
    {
        return unparsed(raw, max_body_bytes);
    }

    let mut walker = Walker {
        body: Body::new(max_body_bytes),
        attachments: Vec::new(),
    };
    walker.message(&message, 0);
    let (body_text, body_truncated) = walker.body.finish();

    let mut headers = Headers::of(&message);
    if headers.has_replacement_chars() {
        headers.repair_from_raw(raw, &message);
    }
    ParsedMail {
        subject: headers.subject,
        from: headers.from,
        to: headers.to,
        cc: headers.cc,
        date: message.date().and_then(to_utc),
        body_text,
        body_truncated,
        attachments: walker.attachments,
    }
}

/// The headers a reader sees.
struct Headers {
    subject: String,
    from: Option<Address>,
    to: Vec<Address>,
    cc: Vec<Address>,
}

impl Headers {
    fn of(message: &Message<'_>) -> Self {
        Self {
            subject: message.subject().map(one_line).unwrap_or_default(),
            from: first_address(message.from()),
            to: addresses(message.header_values(HeaderName::To)),
            cc: addresses(message.header_values(HeaderName::Cc)),
        }
    }

    fn has_replacement_chars(&self) -> bool {
        let bad =
            |a: &Address| a.display_name.contains('\u{fffd}') || a.address.contains('\u{fffd}');
        self.subject.contains('\u{fffd}')
            || self.from.as_ref().is_some_and(bad)
            || self.to.iter().any(bad)
            || self.cc.iter().any(bad)
    }

    /// Two kinds of broken headers come out of mail-parser with replacement characters: raw
    /// 8-bit bytes of a legacy charset (RFC 5322 forbids them, old clients sent them anyway)
    /// and encoded words that split a character between them. The header block is read again
    /// with every line that is not UTF-8 taken as windows-1252 and split encoded words joined,
    /// and each damaged field is replaced by its repaired reading.
    fn repair_from_raw(&mut self, raw: &[u8], message: &Message<'_>) {
        let Some(end) = message.parts.first().map(|p| p.offset_body as usize) else {
            return;
        };
        let Some(block) = raw.get(..end) else {
            return;
        };
        let mut transcoded = String::with_capacity(block.len() + 4);
        for line in block.split_inclusive(|&b| b == b'\n') {
            transcoded.push_str(&utf8_or_windows_1252(line));
        }
        let mut transcoded = join_split_encoded_words(&transcoded);
        transcoded.push_str("\r\n\r\n");
        let Some(reparsed) = MessageParser::new().parse_headers(transcoded.as_bytes()) else {
            return;
        };
        let repaired = Self::of(&reparsed);
        if self.subject.contains('\u{fffd}') {
            self.subject = repaired.subject;
        }
        let bad =
            |a: &Address| a.display_name.contains('\u{fffd}') || a.address.contains('\u{fffd}');
        if self.from.as_ref().is_some_and(bad) {
            self.from = repaired.from;
        }
        if self.to.iter().any(bad) {
            self.to = repaired.to;
        }
        if self.cc.iter().any(bad) {
            self.cc = repaired.cc;
        }
    }
}

/// An RFC 5322 field name: printable ASCII without spaces or colons.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Bytes that are not a message at all (no header could be read): kept as text.
fn unparsed(raw: &[u8], max_body_bytes: usize) -> ParsedMail {
    let mut body = Body::new(max_body_bytes);
    body.push_block(&normalize_block_within(
        &utf8_or_windows_1252(raw),
        false,
        max_body_bytes,
    ));
    let (body_text, body_truncated) = body.finish();
    ParsedMail {
        body_text,
        body_truncated,
        ..ParsedMail::default()
    }
}

fn to_utc(date: &mail_parser::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    if !date.is_valid() {
        return None;
    }
    chrono::DateTime::from_timestamp(date.to_timestamp(), 0)
}

fn to_address(addr: &Addr<'_>) -> Option<Address> {
    let display_name = addr.name().map(one_line).unwrap_or_default();
    let address = addr.address().map(one_line).unwrap_or_default();
    if display_name.is_empty() && address.is_empty() {
        return None;
    }
    Some(Address {
        display_name,
        address,
    })
}

fn first_address(header: Option<&mail_parser::Address<'_>>) -> Option<Address> {
    header.and_then(|a| a.iter().find_map(to_address))
}

fn addresses<'a>(values: impl Iterator<Item = &'a HeaderValue<'a>>) -> Vec<Address> {
    values
        .filter_map(HeaderValue::as_address)
        .flat_map(|a| a.iter())
        .filter_map(to_address)
        .collect()
}

/// The body being assembled, block by block, with its cap.
struct Body {
    text: String,
    cap: usize,
    truncated: bool,
}

impl Body {
    fn new(cap: usize) -> Self {
        Self {
            text: String::new(),
            cap,
            truncated: false,
        }
    }

    /// How many more bytes fit under the cap (a block longer than that is cut anyway).
    fn room(&self) -> usize {
        self.cap.saturating_sub(self.text.len())
    }

    /// True once the text is past the cap: later blocks would be cut anyway.
    fn is_full(&self) -> bool {
        self.text.len() > self.cap
    }

    /// Appends a normalised block, separated from the previous one by a blank line.
    fn push_block(&mut self, block: &str) {
        if block.is_empty() {
            return;
        }
        if self.is_full() {
            self.truncated = true;
            return;
        }
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        self.text.push_str(block);
    }

    fn finish(mut self) -> (String, bool) {
        if self.text.len() > self.cap {
            let end = floor_char_boundary(&self.text, self.cap);
            self.text.truncate(end);
            // The cut may fall after a space or line break; no trailing whitespace either way.
            let trimmed = self.text.trim_end().len();
            self.text.truncate(trimmed);
            self.truncated = true;
        }
        (self.text, self.truncated)
    }
}

/// Where a part sits, for deciding whether an image is a resource of an HTML body.
#[derive(Clone, Copy, Default)]
struct Context {
    /// Inside a `multipart/related`, but not its root.
    related_resource: bool,
}

struct Walker {
    body: Body,
    attachments: Vec<Attachment>,
}

/// The lowercase `type/subtype` of a part; `text/plain` when it has none (RFC 2045).
fn mime_type(part: &MessagePart<'_>) -> (String, String) {
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype()
                .map(str::to_ascii_lowercase)
                .unwrap_or_default(),
        ),
        None => ("text".to_owned(), "plain".to_owned()),
    }
}

fn is_marked_attachment(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.is_attachment())
}

fn content_type_attribute<'a>(part: &'a MessagePart<'_>, name: &str) -> Option<&'a str> {
    part.content_type().and_then(|ct| ct.attribute(name))
}

impl Walker {
    fn message(&mut self, message: &Message<'_>, depth: usize) {
        if !message.parts.is_empty() {
            self.part(message, 0, Context::default(), depth, 0);
        }
    }

    fn part(
        &mut self,
        message: &Message<'_>,
        id: usize,
        context: Context,
        message_depth: usize,
        part_depth: usize,
    ) {
        let Some(part) = message.parts.get(id) else {
            return;
        };
        match &part.body {
            PartType::Multipart(children) => {
                if part_depth < MAX_PART_DEPTH {
                    // Children always come after their parent; anything else is ignored so a
                    // corrupt tree cannot loop.
                    let children: Vec<usize> = children
                        .iter()
                        .map(|&c| c as usize)
                        .filter(|&c| c > id)
                        .collect();
                    self.multipart(message, part, &children, message_depth, part_depth + 1);
                }
            }
            PartType::Text(text) => self.text_leaf(message, part, text, false, context),
            PartType::Html(html) => self.text_leaf(message, part, html, true, context),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                self.binary_leaf(part, bytes.len(), context);
            }
            PartType::Message(nested) => {
                // A forwarded message sent as a file (named, or marked as an attachment) is
                // also listed, the way clients show an attached .eml.
                if is_marked_attachment(part) || part.attachment_name().is_some() {
                    let size = transfer_decoded(message, part).map_or(0, |b| b.len());
                    self.attach(part, size);
                }
                self.forwarded(nested, message_depth + 1);
            }
        }
    }

    fn multipart(
        &mut self,
        message: &Message<'_>,
        part: &MessagePart<'_>,
        children: &[usize],
        message_depth: usize,
        part_depth: usize,
    ) {
        let (_, subtype) = mime_type(part);
        match subtype.as_str() {
            "alternative" => {
                let chosen = choose_alternative(message, children);
                if let Some(chosen) = chosen {
                    self.part(
                        message,
                        chosen,
                        Context::default(),
                        message_depth,
                        part_depth,
                    );
                }
                // Some clients (Apple Mail) put a file only in the HTML branch; the reader
                // still sees it whichever branch is shown.
                for &other in children.iter().filter(|&&c| Some(c) != chosen) {
                    self.marked_attachments(message, other, part_depth);
                }
            }
            "related" => {
                let root = content_type_attribute(part, "start")
                    .and_then(|start| {
                        let start = start.trim_matches(['<', '>']);
                        children.iter().copied().find(|&c| {
                            message
                                .parts
                                .get(c)
                                .and_then(MimeHeaders::content_id)
                                .is_some_and(|id| id.trim_matches(['<', '>']) == start)
                        })
                    })
                    .or_else(|| children.first().copied());
                for &child in children {
                    let context = Context {
                        related_resource: Some(child) != root,
                    };
                    self.part(message, child, context, message_depth, part_depth);
                }
            }
            _ => {
                for &child in children {
                    self.part(
                        message,
                        child,
                        Context::default(),
                        message_depth,
                        part_depth,
                    );
                }
            }
        }
    }

    /// Lists the parts under `id` that are marked as attachments, reading no text: for the
    /// alternatives not shown.
    fn marked_attachments(&mut self, message: &Message<'_>, id: usize, part_depth: usize) {
        let Some(part) = message.parts.get(id) else {
            return;
        };
        match &part.body {
            PartType::Multipart(children) if part_depth < MAX_PART_DEPTH => {
                for child in children.iter().map(|&c| c as usize).filter(|&c| c > id) {
                    self.marked_attachments(message, child, part_depth + 1);
                }
            }
            PartType::Multipart(_) => {}
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                if is_marked_attachment(part) {
                    self.attach(part, bytes.len());
                }
            }
            PartType::Text(text) | PartType::Html(text) => {
                if is_marked_attachment(part) {
                    let size = transfer_decoded(message, part).map_or(text.len(), |b| b.len());
                    self.attach(part, size);
                }
            }
            PartType::Message(_) => {
                if is_marked_attachment(part) {
                    let size = transfer_decoded(message, part).map_or(0, |b| b.len());
                    self.attach(part, size);
                }
            }
        }
    }

    fn text_leaf(
        &mut self,
        message: &Message<'_>,
        part: &MessagePart<'_>,
        text: &str,
        is_html: bool,
        context: Context,
    ) {
        let (ctype, subtype) = mime_type(part);
        let readable = match ctype.as_str() {
            "text" => matches!(subtype.as_str(), "plain" | "html"),
            // A multipart whose boundary never occurs, or a message/rfc822 that holds no
            // message: mail-parser keeps their content as text, which is what can be read.
            "multipart" | "message" => true,
            _ => false,
        };
        if is_marked_attachment(part) || !readable || context.related_resource {
            let size = transfer_decoded(message, part).map_or(text.len(), |b| b.len());
            self.attach(part, size);
            return;
        }
        if self.body.is_full() {
            self.body.truncated = true;
            return;
        }
        let repaired = repair_charset(message, part, text);
        let text = repaired.as_deref().unwrap_or(text);
        let block = if is_html {
            // HTML is mostly markup: a source many times the room left cannot all show, and
            // rendering it costs time. Past that, it is cut (at a character) and the body
            // counts as truncated.
            let limit = self
                .body
                .room()
                .saturating_mul(HTML_SOURCE_PER_TEXT_BYTE)
                .max(MIN_HTML_SOURCE);
            if text.len() > limit {
                self.body.truncated = true;
                html_to_text(&text[..floor_char_boundary(text, limit)])
            } else {
                html_to_text(text)
            }
        } else if content_type_attribute(part, "format")
            .is_some_and(|f| f.eq_ignore_ascii_case("flowed"))
        {
            let delsp = content_type_attribute(part, "delsp")
                .is_some_and(|d| d.eq_ignore_ascii_case("yes"));
            normalize_block_within(&unflow(text, delsp), false, self.body.room())
        } else {
            normalize_block_within(text, false, self.body.room())
        };
        self.body.push_block(&block);
    }

    fn binary_leaf(&mut self, part: &MessagePart<'_>, size: usize, context: Context) {
        let (ctype, _) = mime_type(part);
        let inline_image = ctype == "image"
            && !is_marked_attachment(part)
            && (context.related_resource
                || (part.content_id().is_some() && part.attachment_name().is_none()));
        if inline_image {
            return;
        }
        self.attach(part, size);
    }

    fn attach(&mut self, part: &MessagePart<'_>, size: usize) {
        let (ctype, subtype) = mime_type(part);
        let mime_type = if subtype.is_empty() {
            ctype
        } else {
            format!("{ctype}/{subtype}")
        };
        self.attachments.push(Attachment {
            filename: part.attachment_name().map(one_line).unwrap_or_default(),
            mime_type,
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        });
    }

    fn forwarded(&mut self, nested: &Message<'_>, depth: usize) {
        let mut header = String::from(FORWARDED_SEPARATOR);
        let mut line = |name: &str, value: String| {
            if !value.is_empty() {
                header.push('\n');
                header.push_str(name);
                header.push_str(": ");
                header.push_str(&value);
            }
        };
        let join = |list: Vec<Address>| {
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(
            "From",
            first_address(nested.from())
                .map(|a| a.to_string())
                .unwrap_or_default(),
        );
        line(
            "Date",
            nested
                .date()
                .filter(|d| d.is_valid())
                .map(mail_parser::DateTime::to_rfc822)
                .unwrap_or_default(),
        );
        line(
            "Subject",
            nested.subject().map(one_line).unwrap_or_default(),
        );
        line("To", join(addresses(nested.header_values(HeaderName::To))));
        line("Cc", join(addresses(nested.header_values(HeaderName::Cc))));
        self.body.push_block(&header);
        if depth <= MAX_MESSAGE_DEPTH {
            self.message(nested, depth);
        }
    }
}

/// Picks the alternative a person reads: plain text first (unless it is empty), then the
/// last (richest) HTML one, else the last one.
fn choose_alternative(message: &Message<'_>, children: &[usize]) -> Option<usize> {
    let plain = children
        .iter()
        .copied()
        .find(|&c| holds(message, c, "plain", 0));
    let html = children
        .iter()
        .rev()
        .copied()
        .find(|&c| holds(message, c, "html", 0));
    match (plain, html) {
        (Some(plain), Some(html)) if plain_is_empty(message, plain) => Some(html),
        (Some(plain), _) => Some(plain),
        (None, Some(html)) => Some(html),
        (None, None) => children.last().copied(),
    }
}

/// Whether part `id` is, or contains as body, a `text/<subtype>` part.
fn holds(message: &Message<'_>, id: usize, subtype: &str, depth: usize) -> bool {
    let Some(part) = message.parts.get(id) else {
        return false;
    };
    match &part.body {
        PartType::Multipart(children) => {
            depth < MAX_PART_DEPTH
                && children
                    .iter()
                    .map(|&c| c as usize)
                    .filter(|&c| c > id)
                    .any(|c| holds(message, c, subtype, depth + 1))
        }
        PartType::Text(_) | PartType::Html(_) => {
            let (ctype, sub) = mime_type(part);
            ctype == "text" && sub == subtype && !is_marked_attachment(part)
        }
        _ => false,
    }
}

/// True when a plain alternative has no visible text (some senders put an empty one beside
/// the real HTML).
fn plain_is_empty(message: &Message<'_>, id: usize) -> bool {
    match message.parts.get(id).map(|p| &p.body) {
        Some(PartType::Text(text)) => text.trim().is_empty(),
        _ => false,
    }
}

/// The part's body after transfer decoding, before any charset conversion, read again from
/// the raw message.
fn transfer_decoded(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let raw = message
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)?;
    match part.encoding {
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(raw)
        }
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(raw),
        Encoding::None => Some(raw.to_vec()),
    }
}

/// A text part whose charset is missing, unknown or says UTF-8 while its bytes are not, was
/// read by mail-parser with replacement characters; read it again keeping its valid UTF-8 and
/// taking the other bytes as windows-1252.
fn repair_charset(message: &Message<'_>, part: &MessagePart<'_>, text: &str) -> Option<String> {
    if !text.contains('\u{fffd}') {
        return None;
    }
    let repairable = match content_type_attribute(part, "charset") {
        None => true,
        Some(label) => {
            let label = label.trim().to_ascii_lowercase();
            matches!(label.as_str(), "utf-8" | "utf8")
                || mail_parser::decoders::charsets::map::charset_decoder(label.as_bytes()).is_none()
        }
    };
    if !repairable {
        return None;
    }
    let bytes = transfer_decoded(message, part)?;
    Some(utf8_or_windows_1252(&bytes))
}
