//! HTML bodies rendered as the text a person reads.
//!
//! `html2text` (on `html5ever`, the browser-grade HTML parser) drops tags, `<head>`, `<style>`
//! and `<script>`, decodes entities and keeps the block structure as lines. Mail HTML is mostly
//! layout tables, so tables are read in raw mode (one cell after another) rather than drawn.
//! Lines are not wrapped (the width is far beyond any paragraph), so no word or URL is ever cut
//! in two. Links stay readable: the link text followed by its target, `text <https://…>`,
//! unless the text already is the target.

use html2text::render::{TaggedLine, TextDecorator};

use crate::text::normalize_block;

/// Lines longer than this are wrapped at a space; no mail paragraph gets near it.
const RENDER_WIDTH: usize = 100_000;

/// Elements nested deeper than this are a document built to be slow, not mail: html2text's
/// layout takes time quadratic in the depth (30,000 nested `<div>`s take seconds), so such a
/// document is read by the simple tag stripper instead. Real mail stays far below (layout
/// tables nest a few dozen deep).
const MAX_NESTING: usize = 400;

/// Renders an HTML document or fragment as the plain text a person reads: no tags, no
/// `<head>`, `<style>` or `<script>` content, links as `text <target>`, tables cell by cell,
/// lines unwrapped, whitespace normalised.
#[must_use]
pub fn html_to_text(html: &str) -> String {
    if nesting_exceeds(html, MAX_NESTING) {
        return strip_tags(html);
    }
    let rendered = html2text::config::with_decorator(ReadingDecorator)
        .raw_mode(true)
        .allow_width_overflow()
        .no_link_wrapping()
        .lines_from_read(html.as_bytes(), RENDER_WIDTH);
    match rendered {
        Ok(lines) => normalize_block(&lines_to_text(&lines), true),
        // html2text refuses only pathological input; the tag stripper still gives the words.
        Err(_) => strip_tags(html),
    }
}

/// mail-parser's linear tag stripper (drops tags, `<style>`/`<script>` content, decodes
/// entities), without layout or link targets.
fn strip_tags(html: &str) -> String {
    normalize_block(&mail_parser::decoders::html::html_to_text(html), true)
}

/// Whether elements nest deeper than `limit`, counted roughly from the tags: void elements,
/// self-closing tags and elements whose end tag is usually left out (`<p>`, `<li>`, table
/// cells …) do not count.
fn nesting_exceeds(html: &str, limit: usize) -> bool {
    const NOT_NESTING: &[&str] = &[
        "area", "base", "br", "col", "dd", "dt", "embed", "hr", "img", "input", "li", "link",
        "meta", "option", "p", "param", "source", "td", "th", "tr", "track", "wbr",
    ];
    let bytes = html.as_bytes();
    let mut depth: usize = 0;
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'<') {
        let start = i + offset + 1;
        let closing = bytes.get(start) == Some(&b'/');
        let name_start = if closing { start + 1 } else { start };
        let name_len = bytes[name_start.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        i = name_start + name_len;
        if name_len == 0 || i > bytes.len() {
            i = start.min(bytes.len());
            continue;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        if NOT_NESTING.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else {
            let self_closing = bytes[i..]
                .iter()
                .position(|&b| b == b'>')
                .is_some_and(|end| end > 0 && bytes[i + end - 1] == b'/');
            if !self_closing {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
        }
    }
    false
}

/// What the renderer marks on a span of text: only links matter for reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Mark {
    #[default]
    Plain,
    Link(String),
}

/// Renders HTML as a reader sees it: no markdown-like decoration (`**`, `#`, `^{}`), images as
/// their alt text, quotes as `> `, list items as `* ` and `1. `, links marked for
/// [`lines_to_text`] to append their targets.
#[derive(Clone, Copy)]
struct ReadingDecorator;

impl TextDecorator for ReadingDecorator {
    type Annotation = Mark;

    fn decorate_link_start(&mut self, url: &str) -> (String, Mark) {
        (String::new(), Mark::Link(url.to_owned()))
    }
    fn decorate_link_end(&mut self) -> String {
        String::new()
    }
    fn decorate_em_start(&self) -> (String, Mark) {
        (String::new(), Mark::Plain)
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, Mark) {
        (String::new(), Mark::Plain)
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, Mark) {
        (String::new(), Mark::Plain)
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, Mark) {
        (String::new(), Mark::Plain)
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) -> Mark {
        Mark::Plain
    }
    fn decorate_preformat_cont(&self) -> Mark {
        Mark::Plain
    }
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, Mark) {
        (title.to_owned(), Mark::Plain)
    }
    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }
    fn quote_prefix(&self) -> String {
        "> ".to_owned()
    }
    fn unordered_item_prefix(&self) -> String {
        "* ".to_owned()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        *self
    }
    fn decorate_superscript_start(&self) -> (String, Mark) {
        (String::new(), Mark::Plain)
    }
    fn decorate_superscript_end(&self) -> String {
        String::new()
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<Mark>> {
        Vec::new()
    }
}

fn link_of(tags: &[Mark]) -> Option<&str> {
    tags.iter().rev().find_map(|tag| match tag {
        Mark::Link(url) => Some(url.as_str()),
        Mark::Plain => None,
    })
}

/// The target worth showing after a link's text, or `None` when it adds nothing: an anchor,
/// a script, an embedded image, or the text itself.
fn shown_target<'a>(url: &'a str, text: &str) -> Option<&'a str> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if url.is_empty()
        || url.starts_with('#')
        || lower.starts_with("javascript:")
        || lower.starts_with("cid:")
        || lower.starts_with("data:")
    {
        return None;
    }
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let shown = if lower.starts_with("mailto:") {
        &url["mailto:".len()..]
    } else {
        url
    };
    let bare = |s: &str| {
        let s = s.trim_end_matches('/');
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        s.strip_prefix("www.").unwrap_or(s).to_ascii_lowercase()
    };
    if bare(shown) == bare(text) {
        return None;
    }
    Some(shown)
}

fn lines_to_text(lines: &[TaggedLine<Vec<Mark>>]) -> String {
    let mut out = String::new();
    // The link whose text is being collected, carried across line ends so a link that spans
    // several lines shows its target once, after its last piece.
    let mut open: Option<(String, String)> = None;
    for (index, line) in lines.iter().enumerate() {
        let mut line_out = String::new();
        // A target was just appended: the next word needs a space before it.
        let mut need_space = false;
        for piece in line.tagged_strings() {
            let link = link_of(&piece.tag);
            if let Some((url, text)) = &open
                && link != Some(url.as_str())
            {
                if let Some(target) = shown_target(url, text) {
                    append_target(&mut line_out, &mut out, target);
                    need_space = true;
                }
                open = None;
            }
            if need_space && piece.s.starts_with(char::is_alphanumeric) {
                line_out.push(' ');
            }
            need_space = false;
            if let Some(url) = link {
                match &mut open {
                    Some((_, text)) => text.push_str(&piece.s),
                    None => open = Some((url.to_owned(), piece.s.clone())),
                }
            }
            line_out.push_str(&piece.s);
        }
        // A link ending with its line gets its target on that line.
        let continues = open.as_ref().is_some_and(|(url, _)| {
            lines
                .get(index + 1)
                .and_then(|next| next.tagged_strings().next())
                .is_some_and(|first| link_of(&first.tag) == Some(url.as_str()))
        });
        if !continues && let Some((url, text)) = open.take() {
            if let Some(target) = shown_target(&url, &text) {
                append_target(&mut line_out, &mut out, target);
            }
        } else if let Some((_, text)) = &mut open {
            text.push(' ');
        }
        out.push_str(&line_out);
        out.push('\n');
    }
    out
}

fn append_target(line_out: &mut String, out: &mut String, target: &str) {
    // Appended to the current line; when the link closed at the very start of this line,
    // the current line is still empty and the target belongs at the end of the previous one.
    if line_out.is_empty() && out.ends_with('\n') {
        out.pop();
        out.push_str(" <");
        out.push_str(target);
        out.push_str(">\n");
        return;
    }
    let trimmed = line_out.trim_end().len();
    line_out.truncate(trimmed);
    line_out.push_str(" <");
    line_out.push_str(target);
    line_out.push('>');
}

#[cfg(test)]
mod tests {
    use super::html_to_text;

    #[test]
    fn tags_styles_and_scripts_go() {
        let html = "<html><head><title>T</title><style>p { color: red; }</style></head>\
                    <body><script>var x = 1;</script><h2>Title</h2><p>Hello <b>there</b> &amp; \
                    <em>welcome</em> x<sup>2</sup></p><div>Second&nbsp;&nbsp;line</div>\
                    <ul><li>one</li></ul><blockquote>quoted</blockquote></body></html>";
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Title\n\nHello there & welcome x²\n\nSecond line\n* one\n\n> quoted"
        );
    }

    #[test]
    fn links_keep_their_target() {
        let html = r##"<p>Read <a href="https://example.com/post?id=1">the post</a> now.
            Or <a href="https://example.com/">example.com</a>,
            <a href="mailto:ann@example.com">Ann</a>, <a href="#top">top</a>.
            <a href="https://a.example/">A</a><a href="https://b.example/">B</a></p>"##;
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Read the post <https://example.com/post?id=1> now. Or example.com, \
             Ann <ann@example.com>, top. A <https://a.example/> B <https://b.example/>"
        );
    }

    #[test]
    fn a_link_over_several_lines_shows_its_target_once() {
        let html = r#"<a href="https://x.example/offer"><div>Line one</div><div>Line two</div></a><p>After</p>"#;
        assert_eq!(
            html_to_text(html),
            "Line one\nLine two <https://x.example/offer>\n\nAfter"
        );
    }

    #[test]
    fn layout_tables_read_cell_by_cell() {
        let html = "<table><tr><td>Left cell</td><td>Right cell</td></tr></table>";
        let text = html_to_text(html);
        assert!(text.contains("Left cell"), "{text}");
        assert!(text.contains("Right cell"), "{text}");
        assert!(!text.contains('|') && !text.contains('─'), "{text}");
    }

    #[test]
    fn deep_nesting_is_read_without_layout() {
        let deep = "<div>".repeat(5_000) + "deep <b>text</b>" + &"</div>".repeat(5_000);
        assert!(super::nesting_exceeds(&deep, super::MAX_NESTING));
        assert_eq!(html_to_text(&deep), "deep text");
        // Unclosed paragraphs and list items, void and self-closing tags do not nest.
        let flat = "<p>para<br><img src=x><li>item<hr/><span/>".repeat(2_000);
        assert!(!super::nesting_exceeds(&flat, super::MAX_NESTING));
        let ok = "<div>".repeat(50) + "x" + &"</div>".repeat(50);
        assert!(!super::nesting_exceeds(&ok, super::MAX_NESTING));
    }

    #[test]
    fn long_paragraphs_are_not_wrapped() {
        let sentence = "word ".repeat(200);
        let text = html_to_text(&format!("<p>{sentence}</p>"));
        assert_eq!(text.lines().count(), 1);
    }
}
