//! Whitespace normalisation and the byte cap shared by every body part.

/// Characters that carry no visible text and only get in the way of search and reading:
/// byte-order marks, zero-width spaces, soft hyphens, the combining grapheme joiner and word
/// joiner that newsletters pad their preheaders with.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{feff}' | '\u{200b}' | '\u{00ad}' | '\u{034f}' | '\u{2060}'
    )
}

/// Text of unknown charset: its valid UTF-8 as such, every other byte as windows-1252, which
/// is what unlabelled or mislabelled 8-bit mail nearly always is (and which decodes every
/// byte, so nothing becomes a replacement character).
pub(crate) fn utf8_or_windows_1252(bytes: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.push_str(
            &encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(chunk.invalid())
                .0,
        );
    }
    out
}

/// A line that shows nothing: only whitespace and zero-width joiners.
fn is_blank(line: &str) -> bool {
    line.chars()
        .all(|c| c.is_whitespace() || matches!(c, '\u{200c}' | '\u{200d}'))
}

/// Normalises a block of text: line ends to `\n`, control characters (other than tab) and
/// invisible characters removed, no-break spaces made plain spaces, trailing spaces trimmed, at most one blank line in a row, no
/// leading or trailing blank lines. With `collapse_spaces`, runs of spaces inside a line become
/// one space (for text rendered from HTML, where runs of `&nbsp;` are layout, not content).
pub(crate) fn normalize_block(input: &str, collapse_spaces: bool) -> String {
    normalize_block_within(input, collapse_spaces, usize::MAX)
}

/// [`normalize_block`] that stops once the output is longer than `limit` bytes: the caller
/// cuts at `limit` anyway, and a huge body need not be normalised to the end to know that.
pub(crate) fn normalize_block_within(input: &str, collapse_spaces: bool, limit: usize) -> String {
    let mut lines = Lines {
        out: String::with_capacity(input.len().min(limit.saturating_add(1))),
        pending_blank: false,
        last_start: 0,
    };
    let mut line = String::new();
    for raw_line in input.split('\n') {
        if lines.out.len() > limit {
            break;
        }
        // Fast path: a line of printable ASCII needs no filtering, only trimming.
        if !collapse_spaces
            && raw_line
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) || b == b'\t' || b == b'\r')
        {
            let trimmed = raw_line.trim_end();
            if !trimmed.contains('\r') {
                lines.push(trimmed);
                continue;
            }
        }
        line.clear();
        let mut previous_space = false;
        for c in raw_line.chars() {
            if c == '\r' || is_invisible(c) || (c.is_control() && c != '\t') {
                continue;
            }
            // A no-break space reads as a space; as text it only trips up copy and search.
            let c = if c == '\u{a0}' { ' ' } else { c };
            if collapse_spaces && (c == ' ' || c == '\t') {
                if previous_space {
                    continue;
                }
                previous_space = true;
                line.push(' ');
                continue;
            }
            previous_space = false;
            line.push(c);
        }
        lines.push(line.trim_end());
    }
    lines.out
}

/// The normalised text being built, line by line.
struct Lines {
    out: String,
    /// A blank line was seen since the last line written.
    pending_blank: bool,
    /// Where the last line written starts in `out`.
    last_start: usize,
}

impl Lines {
    /// Appends one line (already trimmed at its end).
    fn push(&mut self, line: &str) {
        if is_blank(line) {
            self.pending_blank = !self.out.is_empty();
            return;
        }
        // A quoted blank line (only `>` marks) right after the same one adds nothing: replies
        // quoted a few times over pile them up.
        let quote_only = line.contains('>') && line.chars().all(|c| c == '>' || c == ' ');
        if quote_only && !self.pending_blank && self.out[self.last_start..] == *line {
            return;
        }
        if !self.out.is_empty() {
            self.out.push('\n');
            if self.pending_blank {
                self.out.push('\n');
            }
        }
        self.pending_blank = false;
        self.last_start = self.out.len();
        self.out.push_str(line);
    }
}

/// Collapses every run of whitespace (line breaks included) to one space and trims: for
/// header values such as the subject and display names.
pub(crate) fn one_line(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for word in input
        .split(|c: char| c.is_whitespace() || c.is_control() || is_invisible(c))
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
pub(crate) fn floor_char_boundary(text: &str, max_bytes: usize) -> usize {
    if max_bytes >= text.len() {
        return text.len();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_runs_collapse_and_trailing_spaces_go() {
        let input = "\r\n\r\nHello   \r\n\r\n\r\n \t\r\nworld\u{200b}!\t \n\n";
        assert_eq!(normalize_block(input, false), "Hello\n\nworld!");
    }

    #[test]
    fn repeated_quoted_blank_lines_collapse() {
        let input = "> a\n>\n>\n>\n> b\n>>\n>>\n>\nc";
        assert_eq!(normalize_block(input, false), "> a\n>\n> b\n>>\n>\nc");
    }

    #[test]
    fn collapse_spaces_only_when_asked() {
        assert_eq!(normalize_block("a  \u{a0} b", true), "a b");
        assert_eq!(normalize_block("a    b", false), "a    b");
        assert_eq!(normalize_block("a\u{a0}b", false), "a b");
    }

    #[test]
    fn invalid_utf8_bytes_read_as_windows_1252() {
        assert_eq!(utf8_or_windows_1252("Grüße".as_bytes()), "Grüße");
        assert_eq!(utf8_or_windows_1252(b"Gr\xfc\xdfe \x93x\x94"), "Grüße “x”");
        // Mixed: valid UTF-8 kept, the stray Latin-1 byte read alone.
        assert_eq!(
            utf8_or_windows_1252(
                "caf\u{e9} "
                    .as_bytes()
                    .iter()
                    .copied()
                    .chain(*b"na\xefve")
                    .collect::<Vec<_>>()
                    .as_slice()
            ),
            "café naïve"
        );
    }

    #[test]
    fn one_line_joins_folded_headers() {
        assert_eq!(
            one_line("  Re:\r\n\tsomething   odd \u{feff}"),
            "Re: something odd"
        );
    }

    #[test]
    fn floor_boundary_never_splits_a_char() {
        let text = "aé漢";
        assert_eq!(floor_char_boundary(text, 2), 1);
        assert_eq!(floor_char_boundary(text, 3), 3);
        assert_eq!(floor_char_boundary(text, 5), 3);
        assert_eq!(floor_char_boundary(text, 6), 6);
        assert_eq!(floor_char_boundary(text, 60), 6);
    }
}
