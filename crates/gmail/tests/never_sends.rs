//! assistd never sends mail: the Gmail client has no call to users.messages.send or
//! users.drafts.send. This test reads the crate's source and fails if any file names a send
//! path or puts a `send` segment into a path, so such a call cannot be added unnoticed.

use std::path::Path;

/// Substrings that would build a send endpoint: a `/send` path, or `send` as a path segment
/// in a segment list.
const FORBIDDEN: [&str; 3] = ["/send", "\"send\"]", "\"send\","];

fn sources(dir: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("the source directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("a UTF-8 source file");
            found.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn the_client_has_no_send_call() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(
        files.iter().any(|(path, _)| path.ends_with("drafts.rs")),
        "the scan must see the crate's sources"
    );
    let mut offending = Vec::new();
    for (path, text) in &files {
        for (number, line) in text.lines().enumerate() {
            if FORBIDDEN.iter().any(|needle| line.contains(needle)) {
                offending.push(format!("{path}:{}: {line}", number + 1));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "the Gmail client must not call a send method:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_scan_would_see_a_send_path() {
    let line = r#"let url = self.endpoint(&["messages", "send"]);"#;
    assert!(FORBIDDEN.iter().any(|needle| line.contains(needle)));
    let line = r#"let url = format!("{base}users/me/drafts/send");"#;
    assert!(FORBIDDEN.iter().any(|needle| line.contains(needle)));
}
