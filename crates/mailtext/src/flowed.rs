//! `format=flowed` (RFC 3676): soft line breaks joined back into paragraphs.

/// Decodes `text/plain; format=flowed` text. A line ending in a space is "flowed": it continues
/// on the next line of the same quote depth. One leading space (space-stuffing) is removed;
/// with `delsp=yes` the trailing space of a flowed line was inserted by the sender and goes
/// too. The signature separator `-- ` is never flowed. Quoted paragraphs keep their depth as
/// `> ` prefixes.
pub(crate) fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    // The paragraph being joined: its quote depth and text so far.
    let mut paragraph: Option<(usize, String)> = None;

    fn emit(out: &mut String, depth: usize, content: &str) {
        for _ in 0..depth {
            out.push('>');
        }
        if depth > 0 && !content.is_empty() {
            out.push(' ');
        }
        out.push_str(content);
        out.push('\n');
    }

    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let depth = line.bytes().take_while(|&b| b == b'>').count();
        let mut content = &line[depth..];
        if let Some(unstuffed) = content.strip_prefix(' ') {
            content = unstuffed;
        }
        let is_signature = content == "-- ";
        let flowed = !is_signature && content.ends_with(' ');
        if flowed && delsp {
            content = &content[..content.len() - 1];
        }

        // A change of depth ends the paragraph being joined (RFC 3676 4.5).
        if let Some((open_depth, _)) = &paragraph
            && *open_depth != depth
            && let Some((open_depth, joined)) = paragraph.take()
        {
            emit(&mut out, open_depth, &joined);
        }

        let joined = match paragraph.take() {
            Some((_, mut joined)) => {
                joined.push_str(content);
                joined
            }
            None => content.to_owned(),
        };
        if flowed {
            paragraph = Some((depth, joined));
        } else {
            emit(&mut out, depth, &joined);
        }
    }
    if let Some((depth, joined)) = paragraph {
        emit(&mut out, depth, &joined);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unflow;

    #[test]
    fn soft_breaks_join_and_hard_breaks_stay() {
        let text = "This is a long \r\nparagraph that \r\nflows.\r\nNew line.\r\n";
        assert_eq!(
            unflow(text, false),
            "This is a long paragraph that flows.\nNew line.\n\n"
        );
    }

    #[test]
    fn delsp_removes_the_inserted_space() {
        assert_eq!(unflow("東京 \r\n都\r\n", true), "東京都\n\n");
    }

    #[test]
    fn quotes_join_within_their_depth_only() {
        let text = "> quoted \n> more\n>> deeper \n>> still\nplain\n";
        assert_eq!(
            unflow(text, false),
            "> quoted more\n>> deeper still\nplain\n\n"
        );
    }

    #[test]
    fn stuffed_space_and_signature_separator() {
        let text = " >not a quote\n-- \nSig\n";
        assert_eq!(unflow(text, false), ">not a quote\n-- \nSig\n\n");
    }
}
