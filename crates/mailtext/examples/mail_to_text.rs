//! Prints what `assistd_mailtext::parse` reads from message files: headers, attachments, body.
//!
//! `cargo run -p assistd-mailtext --example mail_to_text -- message.eml [more.eml …]`

fn main() {
    let max_body_bytes = 1 << 20;
    for path in std::env::args().skip(1) {
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(error) => {
                eprintln!("{path}: {error}");
                continue;
            }
        };
        let mail = assistd_mailtext::parse(&raw, max_body_bytes);
        println!("=== {path}");
        println!("Subject: {}", mail.subject);
        if let Some(from) = &mail.from {
            println!("From: {from}");
        }
        for to in &mail.to {
            println!("To: {to}");
        }
        for cc in &mail.cc {
            println!("Cc: {cc}");
        }
        if let Some(date) = mail.date {
            println!("Date: {}", date.to_rfc3339());
        }
        for attachment in &mail.attachments {
            println!(
                "Attachment: {:?} {} {} bytes",
                attachment.filename, attachment.mime_type, attachment.size_bytes
            );
        }
        println!(
            "Body ({} bytes{}):",
            mail.body_text.len(),
            if mail.body_truncated {
                ", truncated"
            } else {
                ""
            }
        );
        println!("{}", mail.body_text);
        println!();
    }
}
