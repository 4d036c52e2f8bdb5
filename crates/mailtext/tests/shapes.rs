//! MIME shapes the corpus does not hold, built byte by byte: each test says which rule of
//! `parse` it pins down.

use assistd_mailtext::{Address, Attachment, ParsedMail, parse};

const CAP: usize = 1 << 20;

fn mail(raw: &[u8]) -> ParsedMail {
    parse(raw, CAP)
}

fn attachment(filename: &str, mime_type: &str, size_bytes: i64) -> Attachment {
    Attachment {
        filename: filename.to_owned(),
        mime_type: mime_type.to_owned(),
        size_bytes,
    }
}

#[test]
fn unlabelled_eight_bit_text_reads_as_windows_1252() {
    let mut raw =
        b"From: a@example.com\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    raw.extend_from_slice(b"Gr\xfc\xdfe aus K\xf6ln \x96 bis bald\r\n");
    assert_eq!(mail(&raw).body_text, "Grüße aus Köln – bis bald");
    // Labelled UTF-8 but written in Latin-1: the valid UTF-8 stays, the stray bytes are read
    // as windows-1252 rather than lost.
    let mut raw = b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
    raw.extend_from_slice("Grüße, ".as_bytes());
    raw.extend_from_slice(b"na\xefve\r\n");
    assert_eq!(mail(&raw).body_text, "Grüße, naïve");
    // Valid UTF-8 without a label stays UTF-8.
    let raw = "Subject: hi\r\n\r\nGrüße aus Köln\r\n".as_bytes();
    assert_eq!(mail(raw).body_text, "Grüße aus Köln");
}

#[test]
fn legacy_single_byte_charsets() {
    let mut raw =
        b"Subject: =?windows-1251?B?z/Do4uXy?=\r\nContent-Type: text/plain; charset=windows-1251\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(b"\xcf\xf0\xe8\xe2\xe5\xf2, \xec\xe8\xf0\r\n");
    let parsed = mail(&raw);
    assert_eq!(parsed.subject, "Привет");
    assert_eq!(parsed.body_text, "Привет, мир");

    let mut raw =
        b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-2\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(b"Za\xbf\xf3\xb3\xe6 g\xea\xb6l\xb1 ja\xbc\xf1\r\n");
    assert_eq!(mail(&raw).body_text, "Zażółć gęślą jaźń");
}

#[test]
fn encoded_words_split_inside_a_character_join() {
    // The two bytes of "é" in two adjacent encoded words (clients do this, RFC 2047 says not
    // to): adjacent encoded words join without the space between them.
    let raw = b"Subject: =?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9_cr=C3=A8me?=\r\n\r\nx\r\n";
    assert_eq!(mail(raw).subject, "café crème");
    let raw =
        b"From: =?utf-8?B?Sm9zw6k=?= =?utf-8?B?IE7DusOxZXo=?= <jose@example.com>\r\n\r\nx\r\n";
    assert_eq!(
        mail(raw).from,
        Some(Address {
            display_name: "José Núñez".into(),
            address: "jose@example.com".into()
        })
    );
}

#[test]
fn a_file_only_in_the_html_alternative_is_still_listed() {
    let raw = b"Subject: report\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
--alt\r\nContent-Type: text/plain\r\n\r\nThe report is attached.\r\n\
--alt\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
--mix\r\nContent-Type: text/html\r\n\r\n<p>The <b>report</b> is attached.</p>\r\n\
--mix\r\nContent-Type: application/pdf; name=\"q3.pdf\"\r\nContent-Disposition: attachment; filename=\"q3.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
--mix--\r\n--alt--\r\n";
    let parsed = mail(raw);
    assert_eq!(parsed.body_text, "The report is attached.");
    assert_eq!(
        parsed.attachments,
        vec![attachment("q3.pdf", "application/pdf", 9)]
    );
}

#[test]
fn an_empty_plain_alternative_yields_to_html() {
    let raw = b"Subject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\n \r\n\
--b\r\nContent-Type: text/html\r\n\r\n<div>Only the <i>HTML</i> says it</div>\r\n--b--\r\n";
    assert_eq!(mail(raw).body_text, "Only the HTML says it");
}

#[test]
fn related_root_follows_the_start_parameter() {
    let raw = b"Subject: x\r\nContent-Type: multipart/related; boundary=b; start=\"<root@x>\"\r\n\r\n\
--b\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--b\r\nContent-Type: text/html\r\nContent-ID: <root@x>\r\n\r\n<p>Root text <img src=\"cid:logo@x\"></p>\r\n--b--\r\n";
    let parsed = mail(raw);
    assert_eq!(parsed.body_text, "Root text");
    // The logo is the HTML's own resource.
    assert!(parsed.attachments.is_empty(), "{:?}", parsed.attachments);
}

#[test]
fn what_is_an_attachment() {
    let raw = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nBody text.\r\n\
--b\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\nsecret notes\r\n\
--b\r\nContent-Type: text/csv\r\n\r\na,b\r\n1,2\r\n\
--b\r\nContent-Type: image/png\r\nContent-ID: <sig@x>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--b\r\nContent-Type: image/jpeg; name=photo.jpg\r\nContent-ID: <p@x>\r\nContent-Disposition: inline; filename=photo.jpg\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nMore body text.\r\n--b--\r\n";
    let parsed = mail(raw);
    // Text parts not marked as attachments are the body, in order; files never are.
    assert_eq!(parsed.body_text, "Body text.\n\nMore body text.");
    assert_eq!(
        parsed.attachments,
        vec![
            attachment("notes.txt", "text/plain", 12),
            // Other text types are files, even unnamed.
            attachment("", "text/csv", 8),
            // A named inline photo is a file the reader sees; an unnamed cid image is not.
            attachment("photo.jpg", "image/jpeg", 6),
        ]
    );
}

#[test]
fn forwarded_inline_and_base64_encoded() {
    let inner = "From: =?utf-8?Q?Ren=C3=A9e?= <renee@example.com>\r\nTo: team@example.com\r\nCc: boss@example.com\r\nDate: Mon, 2 Jun 2025 09:30:00 +0200\r\nSubject: Budget\r\nContent-Type: text/html\r\n\r\n<p>Numbers are <b>final</b>.</p>\r\n";
    let raw = format!(
        "Subject: Fwd: Budget\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\n{inner}\
--b--\r\n"
    );
    let parsed = mail(raw.as_bytes());
    assert_eq!(
        parsed.body_text,
        "See below.\n\n---------- Forwarded message ----------\n\
         From: Renée <renee@example.com>\n\
         Date: Mon, 2 Jun 2025 09:30:00 +0200\n\
         Subject: Budget\n\
         To: team@example.com\n\
         Cc: boss@example.com\n\n\
         Numbers are final."
    );
    // Unnamed and not marked as an attachment: only shown, not listed.
    assert!(parsed.attachments.is_empty());

    let encoded = base64_encode(inner.as_bytes());
    let raw = format!(
        "Subject: Fwd\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: message/rfc822; name=budget.eml\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b--\r\n"
    );
    let parsed = mail(raw.as_bytes());
    assert!(
        parsed
            .body_text
            .contains("Subject: Budget\nTo: team@example.com"),
        "{}",
        parsed.body_text
    );
    assert!(parsed.body_text.ends_with("Numbers are final."));
    assert_eq!(
        parsed.attachments,
        vec![attachment(
            "budget.eml",
            "message/rfc822",
            inner.len() as i64
        )]
    );
}

#[test]
fn the_cap_cuts_text_but_every_attachment_is_still_listed() {
    let long = "word ".repeat(1_000);
    let raw = format!(
        "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\n{long}\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n\
--b\r\nContent-Type: application/zip; name=a.zip\r\n\r\nPK\r\n--b--\r\n"
    );
    let parsed = parse(raw.as_bytes(), 100);
    assert!(parsed.body_truncated);
    assert_eq!(parsed.body_text.len(), 99);
    assert!(parsed.body_text.starts_with("word word"));
    assert_eq!(
        parsed.attachments,
        vec![attachment("a.zip", "application/zip", 2)]
    );
    // Exactly at the cap: not truncated.
    let raw = b"Subject: x\r\n\r\n0123456789\r\n";
    let parsed = parse(raw, 10);
    assert_eq!(parsed.body_text, "0123456789");
    assert!(!parsed.body_truncated);
}

#[test]
fn flowed_delsp_and_html_noise() {
    let raw =
        b"Subject: x\r\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n\
A sentence that was wrap \r\nped by the sender.\r\n";
    assert_eq!(
        mail(raw).body_text,
        "A sentence that was wrapped by the sender."
    );

    let raw = b"Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><style>.x{color:red}</style><script>alert(1)</script></head>\
<body><!-- comment --><p>Visit <a href=\"https://example.com/a?b=1&amp;c=2\">our site</a>&nbsp;today</p></body></html>\r\n";
    assert_eq!(
        mail(raw).body_text,
        "Visit our site <https://example.com/a?b=1&c=2> today"
    );
}

#[test]
fn dates_and_address_groups() {
    let raw = b"Subject: x\r\nDate: not a date\r\nTo: undisclosed-recipients:;\r\n\r\nx\r\n";
    let parsed = mail(raw);
    assert_eq!(parsed.date, None);
    assert!(parsed.to.is_empty(), "{:?}", parsed.to);

    let raw = b"Subject: x\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
To: Team: Ann <ann@example.com>, bob@example.com;, carol@example.com\r\n\r\nx\r\n";
    let parsed = mail(raw);
    assert_eq!(
        parsed.date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2003-07-01T08:52:37+00:00")
    );
    let to: Vec<String> = parsed.to.iter().map(ToString::to_string).collect();
    assert_eq!(
        to,
        [
            "Ann <ann@example.com>",
            "bob@example.com",
            "carol@example.com"
        ]
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * j) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn huge_html_is_cut_before_rendering() {
    // 600 KiB of markup that shows nothing, then one sentence.
    let html = format!(
        "<html><head><style>{}</style></head><body><p>The only sentence.</p></body></html>",
        ".c{color:red}\n".repeat(600 * 1024 / 14)
    );
    let raw = format!("Subject: x\r\nContent-Type: text/html\r\n\r\n{html}");
    // Little room: only the first 512 KiB of source are rendered, the sentence is past it.
    let parsed = parse(raw.as_bytes(), 100);
    assert!(parsed.body_truncated);
    assert_eq!(parsed.body_text, "");
    // Room for 100 KiB of text reads 800 KiB of source: all of it.
    let parsed = parse(raw.as_bytes(), 100 * 1024);
    assert!(!parsed.body_truncated);
    assert_eq!(parsed.body_text, "The only sentence.");
}

#[test]
fn rfc2231_file_names_in_other_charsets_and_plain_continuations() {
    let raw = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=iso-8859-1''%E9t%E9%202024.pdf\r\n\r\nx\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*0=\"a very long file \"; filename*1=\"name.pdf\"\r\n\r\nx\r\n\
--b\r\nContent-Type: application/pdf; name=\"=?utf-8?Q?r=C3=A9sum=C3=A9.pdf?=\"\r\n\r\nx\r\n--b--\r\n";
    let names: Vec<String> = mail(raw)
        .attachments
        .into_iter()
        .map(|a| a.filename)
        .collect();
    assert_eq!(
        names,
        ["été 2024.pdf", "a very long file name.pdf", "résumé.pdf"]
    );
}
