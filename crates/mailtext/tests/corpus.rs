//! The MIME corpus (`tests/corpus/`, sources in `SOURCES.md`): every message must yield the
//! text a person reads. Each test states facts about one message, read from the message
//! itself: what must be there (subject, names, sentences with their accents, kanji and hangul,
//! forwarded headers, attachments) and what must not (markup, transfer encodings, encoded
//! words, base64, CSS, mojibake).

use std::path::PathBuf;

use assistd_mailtext::{Address, Attachment, ParsedMail, parse, query_terms, search_words};

/// Large enough for every corpus message but the one that tests the cap.
const GENEROUS_CAP: usize = 8 << 20;

fn corpus_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn raw(name: &str) -> Vec<u8> {
    std::fs::read(corpus_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load(name: &str) -> ParsedMail {
    let mail = parse(&raw(name), GENEROUS_CAP);
    assert!(!mail.body_truncated, "{name} should fit the cap");
    assert_readable(name, &mail);
    mail
}

fn address(display_name: &str, address: &str) -> Address {
    Address {
        display_name: display_name.to_owned(),
        address: address.to_owned(),
    }
}

fn attachment(filename: &str, mime_type: &str, size_bytes: i64) -> Attachment {
    Attachment {
        filename: filename.to_owned(),
        mime_type: mime_type.to_owned(),
        size_bytes,
    }
}

#[track_caller]
fn assert_has(mail: &ParsedMail, phrases: &[&str]) {
    for phrase in phrases {
        assert!(
            mail.body_text.contains(phrase),
            "missing {phrase:?} in body:\n{}",
            mail.body_text
        );
    }
}

#[track_caller]
fn assert_lacks(mail: &ParsedMail, phrases: &[&str]) {
    for phrase in phrases {
        assert!(
            !mail.body_text.contains(phrase),
            "unexpected {phrase:?} in body:\n{}",
            mail.body_text
        );
    }
}

/// Noise no reader should ever see, in any message.
#[track_caller]
fn assert_readable(name: &str, mail: &ParsedMail) {
    let mut fields = vec![mail.subject.clone(), mail.body_text.clone()];
    for a in mail.from.iter().chain(&mail.to).chain(&mail.cc) {
        fields.push(a.display_name.clone());
        fields.push(a.address.clone());
    }
    fields.extend(mail.attachments.iter().map(|a| a.filename.clone()));
    for field in &fields {
        let lower = field.to_lowercase();
        for noise in [
            "<div",
            "<p>",
            "<br",
            "<html",
            "<table",
            "<span",
            "<td",
            "</",
            "<!--",
            "&nbsp;",
            "&amp;",
            "&quot;",
            "=3d",
            "=20\n",
            "=?utf-8?",
            "=?iso-",
            "=?gb2312?",
            "=?ks_c",
            "font-family:",
            "{color",
            "mso-",
            "@media",
            "ã©",
            "ã¼",
            "â€",
            "\u{fffd}",
            "\r",
            "content-transfer-encoding",
            "content-type:",
        ] {
            assert!(
                !lower.contains(noise),
                "{name}: noise {noise:?} in {field:?}"
            );
        }
    }
    for line in mail.body_text.lines() {
        assert_eq!(line, line.trim_end(), "{name}: trailing spaces in {line:?}");
        let base64_like = line.len() >= 60
            && line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        assert!(!base64_like, "{name}: base64 run in body: {line}");
    }
    assert!(!mail.body_text.contains("\n\n\n"), "{name}: blank-line run");
    assert_eq!(
        mail.body_text,
        mail.body_text.trim(),
        "{name}: untrimmed body"
    );
}

#[test]
fn alt_text_html_utf8_qp() {
    let mail = load("alt_text_html_utf8_qp.eml");
    assert_eq!(mail.subject, "[apparmor] Questions about Contributing");
    assert_eq!(mail.from, Some(address("aenri", "aenri@lovehart.cc")));
    assert_eq!(mail.to, vec![address("", "apparmor@lists.ubuntu.com")]);
    assert_eq!(
        mail.date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2026-05-29T02:32:18+00:00")
    );
    assert_has(
        &mail,
        &[
            "Hi all,",
            // In the plain alternative "<hash>" is text, and it must stay.
            "where binaries live under /nix/store/<hash>/bin instead of the typical /usr/bin.",
            "Some questions about this process:",
            // The plain alternative's list marks ("- "), not the HTML one's ("* ").
            "- Does this approach seem sound?",
            "- When I have a patch, would you all prefer a GitLab PR or a patch sent to the list?",
            "Aenri Lovehart",
        ],
    );
    assert_lacks(&mail, &["* Does this approach"]);
    assert!(mail.attachments.is_empty());
}

#[test]
fn html_alternatives_of_the_corpus_read_cleanly() {
    // The HTML twins of plain alternatives, rendered on their own: the same sentences, none of
    // the markup.
    let cases: &[(&str, &[&str])] = &[
        (
            "alt_text_html_utf8_qp.eml",
            &["* Does this approach seem sound?", "Aenri Lovehart"],
        ),
        (
            "calendar_invite_google.eml",
            &[
                "AppArmor month IRC meeting",
                "Maxime Bélair",
                "Invitation from Google Calendar <https://calendar.google.com/calendar/>",
            ],
        ),
        (
            "inline_cid_outlook_iso8859_1.eml",
            &[
                "Ingénieur Recherche",
                "Orange logo <http://www.orange.com/>",
            ],
        ),
        (
            "gb2312_base64_subject_b_split.eml",
            &["发件人: Sam Reiter", "> Hi, all,"],
        ),
    ];
    for (name, phrases) in cases {
        let raw = raw(name);
        let message = mail_parser::MessageParser::new()
            .parse(&raw)
            .expect("corpus message parses");
        let html: Vec<String> = message
            .parts
            .iter()
            .filter_map(|part| match &part.body {
                mail_parser::PartType::Html(html) => Some(assistd_mailtext::html_to_text(html)),
                _ => None,
            })
            .collect();
        assert_eq!(html.len(), 1, "{name}: one HTML part");
        let rendered = ParsedMail {
            body_text: html[0].clone(),
            ..ParsedMail::default()
        };
        assert_readable(name, &rendered);
        assert_has(&rendered, phrases);
    }
}

#[test]
fn html_only_newsletter() {
    let mail = load("html_only_newsletter.eml");
    assert_eq!(mail.subject, "Up to $30 Off Multivitamins!");
    assert_eq!(
        mail.from,
        Some(address("Vitamart.ca", "service@vitamart.ca"))
    );
    assert_has(
        &mail,
        &[
            "Ever feel overwhelmed by the selection of multivitamins out there?",
            "Buy $75+ of Multivitamins & get $5 Off. Coupon code: 5multi",
            "Hurry Sale Ends Monday March 31, 2014 Midnight MST!",
            // List items of the layout, one per line.
            "* My top 2 multivitamin brands",
            // Links read as "text <target>"; image links by their alt text.
            "Click here to Shop for Multivitamins <https://healthmarketing.infusionsoft.com/app/linkClick/12668/1174558fdfd04f6b/4852414/3fd76deeb52f82ce>",
            "Vitamart.ca <https://healthmarketing.infusionsoft.com/app/linkClick/12674/8adb113c7450d5e9/4852414/3fd76deeb52f82ce> How To Pick a Multivitamin",
            "Mark Holowaychuk",
        ],
    );
    // The tracking pixel and layout images without alt text leave nothing behind.
    assert_lacks(&mail, &["cloudfront.net", ".gif", "[image", "width="]);
    assert!(mail.attachments.is_empty());
}

#[test]
fn html_only_eudora_latin1() {
    let mail = load("html_only_eudora_latin1.eml");
    assert_eq!(mail.subject, "Die Hasen und die Frösche");
    assert_eq!(
        mail.to,
        vec![address("Heinz Müller", "mueller@example.com")]
    );
    assert_eq!(
        mail.from,
        Some(address("Doug Sauder", "dwsauder@example.com"))
    );
    assert_has(
        &mail,
        &[
            "Die Hasen und die Frösche",
            // Soft line breaks of quoted-printable joined, entities decoded, ISO-8859-1 read.
            "Die Hasen klagten einst über ihre mißliche Lage; \"wir leben\", sprach ein Redner",
            "Unsere stete Angst ist ärger als der Tod selbst.",
            "erschreckte eine Menge Frösche, die am Ufer saßen, so sehr, daß sie aufs schnellste untertauchten.",
            "wie ihr seht, einige Tiere, welche also wohl noch unglücklicher sein müssen als wir.\"",
        ],
    );
    assert_lacks(&mail, &["<font", "Arial"]);
}

#[test]
fn qp_utf8_from_q_latin1_word() {
    let mail = load("qp_utf8_from_q_latin1_word.eml");
    // An ISO-8859-1 encoded word between plain words of the display name.
    assert_eq!(
        mail.from,
        Some(address("Jonas Große Sundrup", "jgs-apparmor@letopolis.de"))
    );
    assert_eq!(mail.subject, "[apparmor] generally allow mount options");
    assert_eq!(
        mail.to,
        vec![address("apparmor", "apparmor@lists.ubuntu.com")]
    );
    assert_eq!(
        mail.date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2023-06-04T00:25:15+00:00")
    );
    assert_has(
        &mail,
        &[
            "I'm currently trying to bind down some software that spawns processes",
            "apparmor=\"DENIED\" operation=\"pivotroot\" class=\"mount\" profile=\"/myapp\"",
            "just \"mount,\", as I have seen it with \"signal,\", doesn't seem to do the",
            "Thanks,\nJonas",
        ],
    );
}

#[test]
fn base64_utf8_subject_q_split() {
    let mail = load("base64_utf8_subject_q_split.eml");
    // Q encoded words folded over two lines join without a stray space.
    assert_eq!(
        mail.subject,
        "[USRP-users] B200mini vs B205mini - is there any performance difference?"
    );
    assert_eq!(
        mail.from,
        Some(address(
            "Vladimir via USRP-users",
            "usrp-users@lists.ettus.com"
        ))
    );
    assert_has(
        &mail,
        &[
            "Hello!",
            // base64 UTF-8 with a typographic apostrophe.
            "Is there any performance difference between subjects if we’re going to use stock fpga firmware?",
            "Vladimir Pavlenko",
            // The list footer, a second text/plain part of the mixed message.
            "USRP-users mailing list",
        ],
    );
}

#[test]
fn iso8859_1_outlook_reply_history() {
    let mail = load("iso8859_1_outlook_reply_history.eml");
    assert_eq!(
        mail.subject,
        "Re: [USRP-users] [USRP B210] Very High Noise power at receiver"
    );
    assert_eq!(
        mail.to,
        vec![
            address("'Marcus Müller'", "marcus.mueller@ettus.com"),
            address("", "usrp-users@lists.ettus.com"),
        ]
    );
    assert_eq!(
        mail.cc,
        vec![address("'Rao Yenamandra'", "yrao@trilcomm.com")]
    );
    assert_has(
        &mail,
        &[
            "Soft reminder!.",
            "-----Original Message-----\nFrom: Prasad [mailto:kpras@trilcomm.com]",
            "To: 'Prasad'; 'Marcus Müller'; 'usrp-users@lists.ettus.com'",
            "During our 5G-NR integration with USRP B210, we observe very high noise",
            "PBCH rsrp: -13.775554 dBm",
        ],
    );
}

#[test]
fn windows1252_smart_quotes_flowed() {
    let mail = load("windows1252_smart_quotes_flowed.eml");
    assert_eq!(
        mail.subject,
        "[USRP-users] Re: rfnoc radio transmit control"
    );
    assert_eq!(
        mail.from,
        Some(address("Marcus D. Leech", "patchvonbraun@gmail.com"))
    );
    assert_has(
        &mail,
        &[
            "On 06/29/2021 10:34 AM, rblack@swri.org wrote:",
            // 0x92 in windows-1252 is a right single quote; the flowed quoted lines join.
            "> 20 MSamp/sec. So if we, say, gate the signal on/off 10 microsec on/10 microsec off, then we’d have 200 samples on, 200 samples off.",
            "Right so you could do that in software by multiplying the actual signal by a 0/1 pattern that is as many samples as it needs to be.",
            // A space-stuffed line keeps its second space: it was typed.
            "There\n will be *some* residual carrier during the '0' period, which may or may not be a problem.",
        ],
    );
}

#[test]
fn iso2022jp_thunderbird() {
    let mail = load("iso2022jp_thunderbird.eml");
    // Two ISO-2022-JP B words folded: escape sequences decoded, the words joined.
    assert_eq!(mail.subject, "日本語メールテスト (testing Japanese emails)");
    assert_eq!(mail.from, Some(address("Atsushi Eno", "x@x.com")));
    assert_eq!(mail.to, vec![address("Jeffrey Stedfast", "x@x.com")]);
    assert_eq!(
        mail.body_text,
        "Let's see if both subject and body works fine...\n\n日本語が\n正常に\n送れているか\nテスト."
    );
    // A Japanese word typed in a search box finds it.
    let words = search_words(&mail.searchable_text());
    for query in ["日本語", "テスト", "送れて", "japanese"] {
        for word in query_terms(query).words {
            assert!(words.contains(&word), "{query}: {word} not indexed");
        }
    }
}

#[test]
fn gb2312_base64_subject_b_split() {
    let mail = load("gb2312_base64_subject_b_split.eml");
    assert_eq!(
        mail.subject,
        "[USRP-users] 答复: N310 \"Bad CHDR or packet fragment\" Problem"
    );
    // A UTF-8 B encoded display name.
    assert_eq!(
        mail.from,
        Some(address(
            "汤 飞 via USRP-users",
            "usrp-users@lists.ettus.com"
        ))
    );
    assert_eq!(mail.to, vec![address("Sam Reiter", "sam.reiter@ettus.com")]);
    assert_eq!(
        mail.cc,
        vec![address(
            "usrp-users@lists.ettus.com",
            "usrp-users@lists.ettus.com"
        )]
    );
    assert_has(
        &mail,
        &[
            "It’s a  1g SFP0 link. I set MTU  to 8000 according to the Application Note.",
            // The Chinese Outlook reply header, read from GB2312.
            "发件人: Sam Reiter <sam.reiter@ettus.com>",
            "发送时间: Wednesday, July 24, 2019 4:56:21 AM",
            "收件人: 汤 飞 <retina999@hotmail.com>",
            "主题: Re: [USRP-users] N310 \"Bad CHDR or packet fragment\" Problem",
            "If you're connected over a 10GbE link, make sure to set your host's MTU appropriately.",
        ],
    );
    let words = search_words(&mail.searchable_text());
    for word in ["答复", "发件", "件人", "n310", "chdr"] {
        assert!(words.contains(&word.to_owned()), "{word} not indexed");
    }
}

#[test]
fn rfc2231_filename_apple_mail() {
    let mail = load("rfc2231_filename_apple_mail.eml");
    // Four B words folded over four lines.
    assert_eq!(mail.subject, "まみむめも".repeat(10));
    assert_eq!(
        mail.from,
        Some(address("Mikel Lindsaar", "mikel@test.lindsaar.net"))
    );
    // filename*0*/filename*1* continued, percent-encoded UTF-8; the only part is this file.
    assert_eq!(
        mail.attachments,
        vec![attachment(
            &format!("{}.txt", "かきくけこ".repeat(5)),
            "text/plain",
            18
        )]
    );
    // An attachment's contents are not the body.
    assert_eq!(mail.body_text, "");
    assert!(!mail.body_truncated);
}

#[test]
fn ks_c_5601_korean_image_name() {
    let mail = load("ks_c_5601_korean_image_name.eml");
    assert_eq!(mail.subject, "[Korea] Name");
    assert_eq!(mail.from, Some(address("", "name@company.com")));
    assert_eq!(
        mail.body_text,
        "My traveling companions!\nMy friend, Le Pliage!"
    );
    // A ks_c_5601-1987 B encoded file name; the base64 in this sample is cut short, and the
    // size is what it decodes to. The ATT00001.txt trailer is an attachment, not body.
    assert_eq!(
        mail.attachments,
        vec![
            attachment("사진.JPG", "image/jpeg", 174),
            attachment("ATT00001.txt", "text/plain", 25),
        ]
    );
    assert_lacks(&mail, &["sent from my iPhone"]);
    let words = search_words(&mail.searchable_text());
    assert!(words.contains(&"사진".to_owned()));
}

#[test]
fn nested_mixed_pdf_inline_jpeg() {
    let mail = load("nested_mixed_pdf_inline_jpeg.eml");
    assert_eq!(
        mail.subject,
        "[USRP-users] Multi USRP TX configuration in GNURadio"
    );
    assert_eq!(mail.from, Some(address("Armin Ghani", "aghani@cttc.es")));
    // mixed > alternative > (plain, related > (html, jpeg)) + pdf: the plain text, the PDF
    // listed, the inline JPEG of the HTML neither text nor attachment.
    assert_eq!(
        mail.attachments,
        vec![attachment("octoclock_test.pdf", "application/pdf", 23750)]
    );
    assert_has(
        &mail,
        &[
            "I've been trying to make a fully synchronous multi USRP transmitter in GNURadio v3.8.2.0 and UHD v3.15.0.0.",
            "RuntimeError: Multiple sampling rates downstream of TX Terminator 0",
            "https://github.com/EttusResearch/uhd/issues/367",
            "Centre Tecnològic de Telecomunicacions de Catalunya (CTTC)",
            "Attached you can find the flowgraph that I run.",
            "To unsubscribe send an email to usrp-users-leave@lists.ettus.com",
        ],
    );
    assert_lacks(&mail, &["eklpdenfmmfcjmmi", "%PDF", "JFIF"]);
}

#[test]
fn forwarded_rfc822_pdf() {
    let mail = load("forwarded_rfc822_pdf.eml");
    assert_eq!(mail.subject, "testing");
    assert_eq!(mail.from, Some(address("", "foo@example.com")));
    // The forwarded message is shown as a mail client shows it: its headers, then its text.
    assert_has(
        &mail,
        &[
            "This is the first part.\n\n---------- Forwarded message ----------\n\
             From: Test Tester <xxxx@xxxx.com>\n\
             Date: Tue, 10 May 2005 11:26:39 -0600\n\
             Subject: Another PDF\n\
             To: xxxx@xxxx.com, xxxx@xxxx.com\n\n\
             Just attaching another PDF, here, to see what the message looks like,\n\
             and to see if I can figure out what is going wrong here.",
        ],
    );
    // The named .eml and the PDF inside it are both files the reader sees.
    assert_eq!(mail.attachments.len(), 2, "{:?}", mail.attachments);
    assert_eq!(mail.attachments[0].filename, "ForwardedMessage.eml");
    assert_eq!(mail.attachments[0].mime_type, "message/rfc822");
    assert!(mail.attachments[0].size_bytes > 3000);
    assert_eq!(
        mail.attachments[1],
        attachment("broken.pdf", "application/pdf", 1026)
    );
    assert_lacks(&mail, &["JVBERi0", "%PDF", "Received:", "DomainKey"]);
}

#[test]
fn forwarded_rfc822_inline_image() {
    let mail = load("forwarded_rfc822_inline_image.eml");
    assert_eq!(mail.subject, "test");
    assert_eq!(mail.to, vec![address("", "foo@example.com")]);
    // The HTML shows only an inline cid image: no text, no attachment. The forwarded
    // message's body is missing: its headers are all there is to read.
    assert_eq!(
        mail.body_text,
        "---------- Forwarded message ----------\n\
         From: Test Tester <xxxx@xxxx.com>\n\
         Date: Tue, 10 May 2005 11:26:39 -0600\n\
         Subject: Another PDF\n\
         To: xxxx@xxxx.com, xxxx@xxxx.com"
    );
    assert_eq!(mail.attachments.len(), 1, "{:?}", mail.attachments);
    assert_eq!(mail.attachments[0].filename, "Testmail.eml");
    assert_eq!(mail.attachments[0].mime_type, "message/rfc822");
    assert_lacks(&mail, &["img.png", "iVBORw0KGgo", "cid:"]);
}

#[test]
fn inline_cid_outlook_iso8859_1() {
    let mail = load("inline_cid_outlook_iso8859_1.eml");
    assert_eq!(
        mail.subject,
        "[USRP-users] Power consomption of B20Xmini series"
    );
    assert_eq!(
        mail.from,
        Some(address(
            "Louis-Adrien DUFRENE via USRP-users",
            "usrp-users@lists.ettus.com"
        ))
    );
    assert_has(
        &mail,
        &[
            "We would like to know what is the max power consumption of USRP B200mini, B200mini-i and B205mini-i?",
            "DUFRENE Louis-Adrien\nIngénieur Recherche",
            "Ce message et ses pieces jointes peuvent contenir des informations confidentielles",
        ],
    );
    // The logo is a resource of the HTML alternative: not an attachment.
    assert!(mail.attachments.is_empty(), "{:?}", mail.attachments);
    assert_lacks(&mail, &["image001.png"]);
}

#[test]
fn calendar_invite_google() {
    let mail = load("calendar_invite_google.eml");
    // A folded subject on one line.
    assert_eq!(
        mail.subject,
        "[apparmor] Synced invitation: AppArmor Meeting @ Monthly from 11am to 12pm on the second Tuesday (PDT) (apparmor@lists.ubuntu.com)"
    );
    assert_eq!(
        mail.from,
        Some(address("John Johansen", "john.johansen@canonical.com"))
    );
    // The plain alternative (base64, flowed delsp=yes), not the HTML nor the calendar data.
    assert_has(
        &mail,
        &[
            "This email keeps the event up to date in your calendar.",
            "AppArmor Meeting\nMonthly from 11am to 12pm on the second Tuesday\nPacific Time - Los Angeles",
            "AppArmor month IRC meeting",
            "Maxime Bélair",
            "Forwarding this invitation could allow any recipient to send a response to the organizer, be added to the guest list, invite others regardless of their own invitation status, or modify your RSVP.",
        ],
    );
    assert_lacks(&mail, &["BEGIN:VCALENDAR", "DTSTART", "METHOD:REQUEST"]);
    assert_eq!(
        mail.attachments,
        vec![attachment("invite.ics", "application/ics", 1790)]
    );
}

#[test]
fn empty_body_outlook_express() {
    let mail = load("empty_body_outlook_express.eml");
    assert_eq!(mail.subject, "REDACTED");
    assert_eq!(mail.from, Some(address("SCS_2", "redacted@attglobal.net")));
    assert_eq!(
        mail.date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2001-11-27T23:02:35+00:00")
    );
    assert_eq!(mail.body_text, "");
    assert!(mail.attachments.is_empty());
}

#[test]
fn large_body_over_1mb_is_capped() {
    let raw = raw("large_body_over_1mb.eml");
    let cap = 1 << 20;
    let mail = parse(&raw, cap);
    assert_readable("large_body_over_1mb.eml", &mail);
    assert!(mail.body_truncated);
    assert!(mail.body_text.len() <= cap);
    // Cut at a character boundary close to the cap (the text is mostly ASCII, with 2- and
    // 3-byte characters that the cut must not split).
    assert!(mail.body_text.len() > cap - 8, "{}", mail.body_text.len());
    assert_eq!(mail.subject, "Nightly build log – release/2.4 (3 failures)");
    assert_eq!(
        mail.from,
        Some(address(
            "CI Bot – Release Engineering",
            "ci-bot@builds.example.org"
        ))
    );
    assert_has(
        &mail,
        &[
            "The nightly build for branch release/2.4 finished with 3 failing tests. The full log follows",
            "Failing suites: Zürich-tz-conversion, café-menu-render, naïve-datetime.",
            "[000001] 2024-03-01T02:00:01Z INFO compile unit crate_01::module_1 ok in 37 ms — cache hit ratio 7%",
        ],
    );
    // The end of the log is past the cap.
    assert_lacks(
        &mail,
        &["END OF BUILD LOG 7f3a", "CI Bot, release engineering"],
    );

    // With room for all of it, nothing is cut: the whole log, its end and the signature.
    let whole = parse(&raw, GENEROUS_CAP);
    assert!(!whole.body_truncated);
    assert!(
        whole.body_text.len() > 1_250_000,
        "{}",
        whole.body_text.len()
    );
    assert!(whole.body_text.starts_with(&mail.body_text));
    assert_has(
        &whole,
        &[
            "[012986] 2024-03-01T03:36:26Z WARN test case t_077 retried (flaky=True) – élapsed 518 ms\nEND OF BUILD LOG 7f3a",
            // The signature separator "-- " loses its trailing space like every line.
            "--\nCI Bot, release engineering",
        ],
    );

    // Any cap, even one inside a multi-byte character, gives valid UTF-8 within the cap.
    let accented = whole.body_text.find("Zürich").expect("accent present") + 2;
    for cap in [0, 1, accented, accented + 1, 4096] {
        let capped = parse(&raw, cap);
        assert!(capped.body_truncated);
        assert!(capped.body_text.len() <= cap);
        assert!(whole.body_text.starts_with(&capped.body_text));
    }
}

#[test]
fn malformed_missing_close_boundary() {
    let mail = load("malformed_missing_close_boundary.eml");
    assert_eq!(mail.subject, "[USRP-users] RFNoc N310");
    assert_eq!(
        mail.from,
        Some(address(
            "Diogo Botelho Ribeiro Marinho via USRP-users",
            "usrp-users@lists.ettus.com"
        ))
    );
    // Neither multipart is closed: the plain alternative is still read, the cut HTML is not
    // appended to it.
    assert_eq!(
        mail.body_text,
        "Hi,\n\nRecently in our research group we acquired the USRP N310. I cannot find any \
         reference to N310 in the RFNOC documentation.\n\nHow long until RFNoC N310 images be \
         released?\n\nBest regards\nDiogo Marinho"
    );
}

#[test]
fn malformed_bad_charset() {
    let mail = load("malformed_bad_charset.eml");
    assert_eq!(mail.subject, "Test invalid charset");
    // Raw 8-bit ISO-8859-1 bytes in To: read as windows-1252 rather than lost.
    assert_eq!(
        mail.to,
        vec![address("Jürgen Schmürgen", "schmuergen@example.com")]
    );
    assert_eq!(mail.from, Some(address("Doug Sauder", "doug@example.com")));
    // charset="invalid-charset": the quoted-printable text is still read.
    assert_has(
        &mail,
        &[
            "The Hare and the Tortoise\n\nA HARE one day ridiculed the short feet and slow pace of the Tortoise, who replied, laughing:",
            "Slow but steady wins the race.",
        ],
    );
}

#[test]
fn malformed_unquoted_boundary_outlook_express() {
    let mail = load("malformed_unquoted_boundary_outlook_express.eml");
    assert_eq!(mail.subject, "Testing outlook");
    assert_eq!(
        mail.from,
        Some(address("Mikel Lindsaar", "email_test@me.nowhere"))
    );
    // boundary=----=_NextPart_… unquoted: the parts are still found, the plain one read.
    assert_eq!(
        mail.body_text,
        "Hello\nThis is an outlook test\n\nSo there.\n\nMe."
    );
    assert!(mail.attachments.is_empty());
}

#[test]
fn format_flowed_thunderbird_reply() {
    let mail = load("format_flowed_thunderbird_reply.eml");
    assert_eq!(mail.subject, "Re: [apparmor] Questions about Contributing");
    assert_has(
        &mail,
        &[
            "On 5/29/26 04:30, aenri wrote:",
            // A quoted flowed paragraph joined into one line, with its quote mark.
            "> The conflict between some /foo/*/bar and some /foo/**/bar would resolve to /foo/*/bar taking priority, as * is a direct subset of **.",
            "yep this is correct. As long as the conflict can be resolved with a subset of states, you are good. It gets trickier if you have multiple rules conflicting, but you can do just a pairwise comparison for each combination in the set.",
            "> Aenri Lovehart",
            // Runs of quoted blank lines read as one.
            "> Thank you for your question, Robin!\n>\n> The conflict between",
        ],
    );
}

#[test]
fn pgp_signed_base64_thunderbird() {
    let mail = load("pgp_signed_base64_thunderbird.eml");
    assert_eq!(mail.subject, "[apparmor] New co-maintainer");
    assert_eq!(
        mail.from,
        Some(address(
            "John Johansen via AppArmor",
            "apparmor@lists.ubuntu.com"
        ))
    );
    assert_eq!(
        mail.body_text,
        "Georgia Garcia <georgia.garcia@canonical.com> is now a co-maintainer of the apparmor \
         project, both in userspace, and more importantly in the kernel.\n\n\
         This should help alleviate some of the backlog problems we have had lately.\n\n\
         Thank you Georgia for stepping up and helping take on this responsibility.\n\njj"
    );
    // The signature is a file, never text.
    assert_eq!(
        mail.attachments,
        vec![attachment(
            "OpenPGP_signature.asc",
            "application/pgp-signature",
            840
        )]
    );
    assert_lacks(&mail, &["BEGIN PGP", "OpenPGP/MIME signed message"]);
}

#[test]
fn every_corpus_message_is_found_by_its_subject_and_sender() {
    for (name, subject_phrase) in [
        (
            "alt_text_html_utf8_qp.eml",
            "\"Questions about Contributing\"",
        ),
        ("html_only_eudora_latin1.eml", "\"die Frösche\" hasen"),
        ("iso2022jp_thunderbird.eml", "\"日本語メールテスト\""),
        (
            "gb2312_base64_subject_b_split.eml",
            "答复 \"packet fragment\"",
        ),
        ("rfc2231_filename_apple_mail.eml", "まみむめも かきくけこ"),
        ("ks_c_5601_korean_image_name.eml", "사진 \"Le Pliage\""),
        ("malformed_bad_charset.eml", "Jürgen \"Slow but steady\""),
        (
            "large_body_over_1mb.eml",
            "\"Zürich-tz-conversion\" nightly",
        ),
    ] {
        let mail = parse(&raw(name), 1 << 20);
        let text = mail.searchable_text();
        let indexed = search_words(&text);
        let query = query_terms(subject_phrase);
        assert!(!query.is_empty());
        for word in &query.words {
            assert!(indexed.contains(word), "{name}: {word:?} not indexed");
        }
        for phrase in &query.phrases {
            assert!(
                assistd_mailtext::contains_phrase(&text, phrase),
                "{name}: phrase {phrase:?} not found"
            );
        }
        // A word the message does not hold is not indexed.
        assert!(!indexed.contains(&"zyzzyva".to_owned()));
    }
}

#[test]
fn every_corpus_file_has_a_test_and_a_source() {
    let sources = std::fs::read_to_string(corpus_path("SOURCES.md")).expect("SOURCES.md");
    let this_file = include_str!("corpus.rs");
    let mut count = 0;
    for entry in std::fs::read_dir(corpus_path("")).expect("corpus dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        if !name.ends_with(".eml") {
            continue;
        }
        count += 1;
        assert!(
            sources.contains(&format!("| {name} |")),
            "{name} not in SOURCES.md"
        );
        assert!(
            this_file.contains(&format!("\"{name}\"")),
            "{name} has no test"
        );
    }
    assert_eq!(count, 23);
}
