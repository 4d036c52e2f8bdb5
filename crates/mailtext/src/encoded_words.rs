//! Repair of RFC 2047 encoded words that split a character between them.
//!
//! RFC 2047 requires every encoded word to hold whole characters, but senders cut long
//! subjects and names by bytes, so `=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=` is common in real mail.
//! Decoding each word on its own (as `mail-parser` does) turns both halves into replacement
//! characters. Here a run of adjacent encoded words (separated by whitespace only, folding
//! included) in the same charset is merged into one UTF-8 word of the joined bytes, so the
//! header can be parsed again with its structure (quotes, commas, angle brackets) untouched.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// One encoded word found in a header: where it is, its charset and its decoded bytes.
struct EncodedWord {
    start: usize,
    end: usize,
    charset: String,
    bytes: Vec<u8>,
}

/// Finds the next well-formed encoded word in `text` (`=?charset?B|Q?text?=`).
fn next_encoded_word(text: &str, from: usize) -> Option<EncodedWord> {
    let mut search = from;
    while let Some(offset) = text[search..].find("=?") {
        let start = search + offset;
        if let Some(word) = parse_word_at(text, start) {
            return Some(word);
        }
        search = start + 2;
    }
    None
}

fn parse_word_at(text: &str, start: usize) -> Option<EncodedWord> {
    let rest = &text[start + 2..];
    let charset_end = rest.find('?')?;
    let charset = &rest[..charset_end];
    if charset.is_empty() || charset.contains(char::is_whitespace) {
        return None;
    }
    let rest = &rest[charset_end + 1..];
    let mut chars = rest.chars();
    let encoding = chars.next()?.to_ascii_uppercase();
    if chars.next()? != '?' {
        return None;
    }
    let payload_and_rest = &rest[2..];
    let payload_end = payload_and_rest.find("?=")?;
    let payload = &payload_and_rest[..payload_end];
    if payload.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        'B' => mail_parser::decoders::base64::base64_decode(payload.as_bytes())?,
        'Q' => decode_q(payload.as_bytes()),
        _ => return None,
    };
    let end = start + 2 + charset_end + 1 + 2 + payload_end + 2;
    // RFC 2231 allows a language after the charset: `utf-8*en`.
    let charset = charset
        .split('*')
        .next()
        .unwrap_or(charset)
        .to_ascii_lowercase();
    Some(EncodedWord {
        start,
        end,
        charset,
        bytes,
    })
}

fn decode_q(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        match payload[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < payload.len() => {
                match mail_parser::decoders::quoted_printable::quoted_printable_decode_char(
                    payload[i + 1],
                    payload[i + 2],
                ) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'='),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// Text of `bytes` in `charset`; unknown charsets are read as UTF-8, else windows-1252.
fn decode_charset(charset: &str, bytes: &[u8]) -> String {
    match mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()) {
        Some(decoder) => decoder(bytes),
        None => crate::text::utf8_or_windows_1252(bytes),
    }
}

/// `text` with every run of adjacent same-charset encoded words merged into one UTF-8
/// B-encoded word holding the joined bytes.
pub(crate) fn join_split_encoded_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied_to = 0;
    let mut run: Option<(usize, String, Vec<u8>)> = None; // (run start, charset, bytes)
    let mut run_end = 0;
    let mut search = 0;

    let flush = |out: &mut String, charset: &str, bytes: &[u8]| {
        let decoded = decode_charset(charset, bytes);
        out.push_str("=?utf-8?B?");
        out.push_str(&STANDARD.encode(decoded.as_bytes()));
        out.push_str("?=");
    };

    while let Some(word) = next_encoded_word(text, search) {
        search = word.end;
        let adjacent = run.as_ref().is_some_and(|(_, charset, _)| {
            *charset == word.charset && text[run_end..word.start].chars().all(char::is_whitespace)
        });
        if adjacent {
            if let Some((_, _, bytes)) = run.as_mut() {
                bytes.extend_from_slice(&word.bytes);
            }
        } else {
            if let Some((start, charset, bytes)) = run.take() {
                out.push_str(&text[copied_to..start]);
                flush(&mut out, &charset, &bytes);
                copied_to = run_end;
            }
            run = Some((word.start, word.charset, word.bytes));
        }
        run_end = word.end;
    }
    if let Some((start, charset, bytes)) = run {
        out.push_str(&text[copied_to..start]);
        flush(&mut out, &charset, &bytes);
        copied_to = run_end;
    }
    out.push_str(&text[copied_to..]);
    out
}

#[cfg(test)]
mod tests {
    use super::join_split_encoded_words;

    fn subject_of(header_value: &str) -> String {
        let raw = format!(
            "Subject: {}\r\n\r\n",
            join_split_encoded_words(header_value)
        );
        mail_parser::MessageParser::new()
            .parse_headers(raw.as_bytes())
            .and_then(|m| m.subject().map(str::to_owned))
            .unwrap_or_default()
    }

    #[test]
    fn split_characters_are_joined() {
        assert_eq!(
            subject_of("=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?= ok"),
            "café ok"
        );
        assert_eq!(
            subject_of("Re: =?utf-8?B?5pel5pys?=\r\n =?utf-8?B?6Kqe?= end"),
            "Re: 日本語 end"
        );
    }

    #[test]
    fn different_charsets_and_plain_text_stay_apart() {
        assert_eq!(
            subject_of("=?iso-8859-1?Q?Gr=FC=DFe?= aus =?utf-8?Q?K=C3=B6ln?="),
            "Grüße aus Köln"
        );
        assert_eq!(
            subject_of("no words here =? ?= =?x?Z?y?="),
            "no words here =? ?= =?x?Z?y?="
        );
    }
}
