//! Mail for the synced mailboxes: raw RFC 2822 messages made from varied templates (plain
//! text, multipart/alternative, HTML only, attachments, encoded words, legacy charsets,
//! replies), each carrying a serial word that search can find, and a few real messages from
//! the MIME corpus (`corpus/`, each file's source repository, path and commit in
//! `corpus/SOURCES.md`).

use base64::Engine as _;

/// One generated message: its raw bytes and the labels it is filed under.
#[derive(Clone, Debug)]
pub(crate) struct Generated {
    /// The raw RFC 2822 message (CRLF line ends, as SMTP delivers it).
    pub(crate) raw: Vec<u8>,
    /// Gmail label ids it carries.
    pub(crate) labels: Vec<String>,
}

/// The serial word of message `index` (`serial00042`), in its subject and body.
pub(crate) fn serial(index: usize) -> String {
    format!("serial{index:05}")
}

const PEOPLE: [(&str, &str); 6] = [
    ("Grace Hopper", "grace@example.org"),
    ("Alan Turing", "alan@example.net"),
    ("Émilie du Châtelet", "emilie@example.fr"),
    ("Katherine Johnson", "kj@example.com"),
    ("Edsger Dijkstra", "ewd@example.nl"),
    ("", "noreply@shop.example"),
];

const TOPICS: [&str; 8] = [
    "Quarterly report",
    "Lunch on Friday",
    "Your order has shipped",
    "Invoice for November",
    "Flight itinerary",
    "Meeting notes",
    "Password reset requested",
    "Weekly newsletter",
];

/// Message `index` of a generated mailbox, built from one of seven templates in turn.
pub(crate) fn generated(index: usize) -> Generated {
    let serial = serial(index);
    let (name, address) = PEOPLE[index % PEOPLE.len()];
    let topic = TOPICS[index % TOPICS.len()];
    let from = if name.is_empty() {
        address.to_owned()
    } else if name.is_ascii() {
        format!("\"{name}\" <{address}>")
    } else {
        format!("{} <{address}>", encoded_word(name))
    };
    let subject = format!("{topic} {serial}");
    let date = format!(
        "Mon, {:02} Nov 2026 {:02}:{:02}:00 +0000",
        1 + index % 28,
        index % 24,
        index % 60
    );
    let head = format!(
        "From: {from}\r\nTo: Ada Lovelace <ada@example.com>\r\nDate: {date}\r\n\
         Message-ID: <{serial}@generated.example>\r\nMIME-Version: 1.0\r\n"
    );
    let body_words = format!(
        "Hello Ada,\r\n\r\nThis is about {topic} ({serial}). The figures are attached \
         where needed.\r\n\r\nBest regards,\r\n{}\r\n",
        if name.is_empty() { "The shop" } else { name }
    );
    let raw = match index % 7 {
        0 => format!(
            "{head}Subject: {subject}\r\nContent-Type: text/plain; charset=us-ascii\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n{body_words}"
        ),
        1 => format!(
            "{head}Subject: {subject}\r\nContent-Type: multipart/alternative; \
             boundary=\"alt-{serial}\"\r\n\r\n--alt-{serial}\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: \
             quoted-printable\r\n\r\n{}\r\n--alt-{serial}\r\nContent-Type: text/html; \
             charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n--alt-{serial}--\r\n",
            quoted_printable(&format!("{body_words}Caf\u{e9} cr\u{e8}me at noon.\r\n")),
            body_words.replace("\r\n", "<br>")
        ),
        2 => format!(
            "{head}Subject: {subject}\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            wrapped_base64(
                format!(
                    "<html><head><style>p {{ color: red }}</style></head><body>\
                     <table><tr><td><p>{}</p><a href=\"https://shop.example/track\">Track \
                     your parcel</a></td></tr></table></body></html>",
                    body_words.replace("\r\n", "<br>")
                )
                .as_bytes()
            )
        ),
        3 => format!(
            "{head}Subject: {subject}\r\nContent-Type: multipart/mixed; \
             boundary=\"mix-{serial}\"\r\n\r\n--mix-{serial}\r\nContent-Type: text/plain; \
             charset=us-ascii\r\n\r\n{body_words}\r\n--mix-{serial}\r\n\
             Content-Type: application/pdf; name=\"report-{serial}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"report-{serial}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--mix-{serial}--\r\n",
            wrapped_base64(format!("%PDF-1.4 {serial} figures").as_bytes())
        ),
        4 => format!(
            // ISO-8859-1 bytes, quoted-printable: "Grüße" is =FC=DF.
            "{head}Subject: {}\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus M=FCnchen!\r\n\
             \r\n{}",
            encoded_word(&format!("Gr\u{fc}\u{df}e aus M\u{fc}nchen {serial}")),
            body_words.replace('=', "=3D")
        ),
        5 => format!(
            "{head}Subject: Re: {subject}\r\nIn-Reply-To: <thread-{}@generated.example>\r\n\
             Content-Type: text/plain; charset=utf-8; format=flowed\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{body_words}\r\n> Earlier text that \
             was quoted.\r\n",
            index / 10
        ),
        _ => format!(
            "{head}Subject: {subject}\r\nContent-Type: multipart/mixed; \
             boundary=\"outer-{serial}\"\r\n\r\n--outer-{serial}\r\nContent-Type: \
             multipart/alternative; boundary=\"inner-{serial}\"\r\n\r\n--inner-{serial}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body_words}\r\n--inner-{serial}\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<p>{body_words}</p>\r\n\
             --inner-{serial}--\r\n--outer-{serial}\r\nContent-Type: image/png\r\n\
             Content-Disposition: attachment; filename=\"chart.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--outer-{serial}--\r\n"
        ),
    };
    let mut labels = vec!["INBOX".to_owned()];
    if index.is_multiple_of(3) {
        labels.push("UNREAD".to_owned());
    }
    if index.is_multiple_of(11) {
        labels.push("STARRED".to_owned());
    }
    if index.is_multiple_of(5) {
        labels.push("CATEGORY_UPDATES".to_owned());
    }
    Generated {
        raw: raw.into_bytes(),
        labels,
    }
}

/// A plain message with `subject` and `body` (UTF-8, 8bit).
pub(crate) fn plain(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: \"Canary Sender\" <canary@example.org>\r\nTo: ada@example.com\r\n\
         Subject: {subject}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {body}\r\n"
    )
    .into_bytes()
}

/// Real messages from the MIME corpus, with a word of each that search must find once the
/// message is synced and decoded.
pub(crate) fn corpus() -> Vec<(&'static str, &'static [u8], &'static str)> {
    vec![
        (
            "html_only_eudora_latin1.eml",
            include_bytes!("corpus/html_only_eudora_latin1.eml"),
            // The ISO-8859-1 Q-encoded subject "Die Hasen und die Frösche".
            "Frösche",
        ),
        (
            "iso2022jp_thunderbird.eml",
            include_bytes!("corpus/iso2022jp_thunderbird.eml"),
            // The ISO-2022-JP B-encoded subject ends "(testing Japanese emails)".
            "Japanese",
        ),
        (
            "qp_utf8_from_q_latin1_word.eml",
            include_bytes!("corpus/qp_utf8_from_q_latin1_word.eml"),
            "apparmor",
        ),
        (
            "rfc2231_filename_apple_mail.eml",
            include_bytes!("corpus/rfc2231_filename_apple_mail.eml"),
            "Lindsaar",
        ),
        (
            "malformed_bad_charset.eml",
            include_bytes!("corpus/malformed_bad_charset.eml"),
            "invalid",
        ),
    ]
}

/// `text` as one RFC 2047 UTF-8 B encoded word.
fn encoded_word(text: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

/// `bytes` in base64 lines of 76 characters.
fn wrapped_base64(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// `text` (UTF-8) quoted-printable, lines kept as they are (all short here).
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'\r' | b'\n' => out.push(byte as char),
            b'=' => out.push_str("=3D"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("={byte:02X}")),
        }
    }
    out
}
