//! `parse` never fails and never panics: random bytes, every corpus message cut short at many
//! places or with bytes flipped, and pathological MIME trees all come back as a `ParsedMail`
//! that keeps its promises (body within the cap, normalised text). The search functions take
//! any string.
//!
//! `parse` catches a panic of its parsers (a message then keeps only its headers), so these
//! tests count panics with a hook instead of waiting for one to reach them: any panic in this
//! test binary fails every test that checks the count.

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use assistd_mailtext::{
    MAX_WORD_CHARS, ParsedMail, contains_phrase, parse, query_terms, search_words,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in this process (and still prints it).
fn count_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));
    });
}

#[track_caller]
fn assert_no_panics() {
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a parser panicked (caught by parse)"
    );
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[track_caller]
fn assert_promises(what: &str, mail: &ParsedMail, cap: usize) {
    assert!(mail.body_text.len() <= cap, "{what}: body over the cap");
    assert!(!mail.body_text.contains('\r'), "{what}: CR in body");
    assert!(!mail.body_text.contains("\n\n\n"), "{what}: blank-line run");
    assert!(
        !mail.subject.contains('\n') && !mail.subject.contains('\r'),
        "{what}: multi-line subject"
    );
    for attachment in &mail.attachments {
        assert!(attachment.size_bytes >= 0, "{what}: negative size");
    }
}

#[test]
fn random_bytes_never_panic() {
    count_panics();
    let mut rng = StdRng::seed_from_u64(0x6d61_696c);
    for round in 0..2_000 {
        let len = rng.random_range(0..4_096);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        let cap = rng.random_range(0..2_048);
        let mail = parse(&bytes, cap);
        assert_promises(&format!("random round {round}"), &mail, cap);
    }
    assert_no_panics();
}

#[test]
fn random_mail_shaped_bytes_never_panic() {
    count_panics();
    // Random sequences of the tokens MIME parsers trip over.
    const TOKENS: &[&str] = &[
        "\r\n",
        "\n",
        ": ",
        "Content-Type: multipart/mixed; boundary=b\r\n",
        "Content-Type: multipart/alternative; boundary=\"b\"\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: text/html; charset=gb2312\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Content-Disposition: attachment; filename*0*=utf-8''%E3%81; filename*1*=%8B\r\n",
        "--b\r\n",
        "--b--\r\n",
        "=?utf-8?B?",
        "?=",
        "=?iso-2022-jp?q?",
        "=3D",
        "=\r\n",
        "=E3",
        "<html><body>",
        "<a href=\"x\">",
        "</a>",
        "<style>",
        "<table><tr><td>",
        "&amp;",
        "Subject: ",
        "From: \"",
        "To: <",
        ">",
        "\"",
        "aGVsbG8=",
        "\u{1b}$B",
        "\u{1b}(B",
        "\t",
        " ",
        "é",
        "漢",
        "\0",
        "\u{feff}",
    ];
    let mut rng = StdRng::seed_from_u64(42);
    for round in 0..3_000 {
        let mut message = String::new();
        for _ in 0..rng.random_range(0..200) {
            message.push_str(TOKENS[rng.random_range(0..TOKENS.len())]);
        }
        let cap = rng.random_range(0..4_096);
        let mail = parse(message.as_bytes(), cap);
        assert_promises(&format!("token round {round}"), &mail, cap);
    }
    assert_no_panics();
}

#[test]
fn truncated_corpus_messages_never_panic() {
    count_panics();
    for (name, raw) in corpus() {
        // About 400 cut points per message; 8 for the one over a megabyte (a debug build
        // takes a fraction of a second for each, times 400 would be minutes).
        let cuts = if raw.len() > 1 << 20 { 8 } else { 400 };
        let step = (raw.len() / cuts).max(1);
        let mut cut = 0;
        while cut <= raw.len() {
            let mail = parse(&raw[..cut], 1 << 16);
            assert_promises(&format!("{name} cut at {cut}"), &mail, 1 << 16);
            cut += step;
        }
    }
    assert_no_panics();
}

#[test]
fn corrupted_corpus_messages_never_panic() {
    count_panics();
    let mut rng = StdRng::seed_from_u64(7);
    for (name, raw) in corpus() {
        if raw.len() > 100_000 {
            continue;
        }
        for round in 0..40 {
            let mut bytes = raw.clone();
            for _ in 0..rng.random_range(1..20) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            let mail = parse(&bytes, 1 << 16);
            assert_promises(&format!("{name} corrupted round {round}"), &mail, 1 << 16);
        }
    }
    assert_no_panics();
}

#[test]
fn degenerate_inputs() {
    count_panics();
    for input in [
        &b""[..],
        b"\r\n",
        b"\r\n\r\n",
        b"Subject:",
        b"no headers at all, just words",
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n----\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: text/plain; charset=utf-16\r\n\r\nabc",
    ] {
        let mail = parse(input, 1024);
        assert_promises(&format!("{input:?}"), &mail, 1024);
    }
    // Bytes that are not mail at all are kept as text (windows-1252 when not UTF-8).
    let mail = parse(b"caf\xe9 au lait", 1024);
    assert!(
        mail.body_text.contains("café au lait"),
        "{:?}",
        mail.body_text
    );
    assert_no_panics();
}

#[test]
fn deep_and_wide_trees_never_panic() {
    count_panics();
    // 2,000 nested multiparts.
    let mut deep = String::from("Subject: deep\r\n");
    for level in 0..2_000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\ninnermost words\r\n");
    let mail = parse(deep.as_bytes(), 1 << 16);
    assert_promises("deep", &mail, 1 << 16);
    assert_eq!(mail.subject, "deep");

    // 200 forwarded messages inside each other.
    let mut nested = String::from("innermost forwarded text\r\n");
    for level in 0..200 {
        nested = format!("Subject: level {level}\r\nContent-Type: message/rfc822\r\n\r\n{nested}");
    }
    let mail = parse(nested.as_bytes(), 1 << 16);
    assert_promises("nested messages", &mail, 1 << 16);

    // 5,000 sibling parts.
    let mut wide =
        String::from("Subject: wide\r\nContent-Type: multipart/mixed; boundary=\"w\"\r\n\r\n");
    for i in 0..5_000 {
        wide.push_str(&format!(
            "--w\r\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\r\n\r\nxx\r\n"
        ));
    }
    wide.push_str("--w--\r\n");
    let mail = parse(wide.as_bytes(), 1 << 16);
    assert_promises("wide", &mail, 1 << 16);
    assert_eq!(mail.attachments.len(), 5_000);
    assert_eq!(mail.attachments[4_999].filename, "f4999.bin");
    assert_no_panics();
}

#[test]
fn search_functions_take_any_text() {
    count_panics();
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..2_000 {
        let len = rng.random_range(0..300);
        let text: String = (0..len)
            .map(|_| {
                // Mostly plausible characters, some from anywhere in Unicode.
                match rng.random_range(0..4) {
                    0 => char::from(rng.random_range(b' '..=b'~')),
                    1 => ['"', '“', '”', ' ', '東', 'é', 'ß', '\u{301}'][rng.random_range(0..8)],
                    _ => char::from_u32(rng.random_range(0..0x3_0000)).unwrap_or('x'),
                }
            })
            .collect();
        let words = search_words(&text);
        assert!(
            words
                .iter()
                .all(|w| !w.is_empty() && w.chars().count() <= MAX_WORD_CHARS)
        );
        let query = query_terms(&text);
        // Every phrase word is also a required word.
        for phrase in &query.phrases {
            assert!(phrase.len() >= 2);
            assert!(phrase.iter().all(|w| query.words.contains(w)));
            // Text always contains its own phrases, and its words are indexed.
            assert!(contains_phrase(&text, phrase));
        }
        for word in &query.words {
            assert!(words.contains(word), "{word:?} of {text:?} not indexed");
        }
    }
    assert_no_panics();
}
