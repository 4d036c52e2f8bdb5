//! An incremental parser of `text/event-stream` (the WHATWG server-sent events format), fed
//! with the body's chunks as they arrive.
//!
//! Lines end with `\r\n`, `\n` or `\r` (Google sends `\r\n`), and a terminator may be split
//! across chunks; a blank line ends an event. `data:` lines make the event's data (several
//! joined by `\n`, one space after the colon dropped); comments (`:`) and other fields
//! (`event`, `id`, `retry`) are ignored, and an event without data is not dispatched. An
//! event is returned as soon as its blank line is complete, never held for the next chunk.

/// The event being read grew past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventTooLarge;

/// The parser's state between chunks.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// Bytes received and not yet parsed start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// `buf[pos..pos + scanned]` holds no line terminator.
    scanned: usize,
    /// The current event's data so far, each line followed by `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The last line ended with a `\r` at the end of a chunk: a `\n` first in the next chunk
    /// belongs to it.
    skip_lf: bool,
    /// Nothing parsed yet: a leading byte order mark is dropped.
    at_start: bool,
    max_event: usize,
}

impl SseParser {
    /// A parser refusing events (data plus the unfinished line) over `max_event` bytes.
    pub(crate) fn new(max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            skip_lf: false,
            at_start: true,
            max_event,
        }
    }

    /// Appends the next chunk of the body.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The data of the next complete event, if the bytes pushed so far finish one.
    pub(crate) fn next_event(&mut self) -> Result<Option<Vec<u8>>, EventTooLarge> {
        loop {
            if self.at_start {
                const BOM: &[u8] = b"\xEF\xBB\xBF";
                let pending = &self.buf[self.pos..];
                if pending.len() < BOM.len() && BOM.starts_with(pending) {
                    return Ok(None);
                }
                if pending.starts_with(BOM) {
                    self.pos += BOM.len();
                }
                self.at_start = false;
            }
            if self.skip_lf {
                match self.buf.get(self.pos) {
                    None => return Ok(None),
                    Some(b'\n') => self.pos += 1,
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let pending = &self.buf[self.pos..];
            let Some(offset) = pending[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            else {
                self.scanned = pending.len();
                if pending.len() + self.data.len() > self.max_event {
                    return Err(EventTooLarge);
                }
                return Ok(None);
            };
            let end = self.scanned + offset;
            let consumed = match (pending[end], pending.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                (b'\r', None) => {
                    self.skip_lf = true;
                    end + 1
                }
                _ => end + 1,
            };
            let start = self.pos;
            self.pos += consumed;
            self.scanned = 0;
            if let Some(event) = self.line(start, start + end)? {
                return Ok(Some(event));
            }
        }
    }

    /// Whether the body ended in the middle of an event (unfinished line or data without its
    /// blank line). Such an event is dropped, as the format says.
    pub(crate) fn has_partial_event(&self) -> bool {
        self.has_data || self.buf.len() > self.pos
    }

    /// Handles the line `buf[start..end]`; returns the event a blank line completes.
    fn line(&mut self, start: usize, end: usize) -> Result<Option<Vec<u8>>, EventTooLarge> {
        let line = &self.buf[start..end];
        if line.is_empty() {
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the `\n` after the last line
            return Ok(Some(data));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            if self.data.len() + value.len() + 1 > self.max_event {
                return Err(EventTooLarge);
            }
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
            self.has_data = true;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Feeds `chunks` one by one, collecting every event as soon as it is complete, and
    /// records after which chunk each came.
    fn feed(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<(usize, String)> {
        let mut events = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            parser.push(chunk);
            while let Some(event) = parser.next_event().unwrap() {
                events.push((index, String::from_utf8(event).unwrap()));
            }
        }
        events
    }

    fn events_of(chunks: &[&[u8]]) -> Vec<String> {
        feed(&mut SseParser::new(MAX), chunks)
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    #[test]
    fn crlf_and_lf_framing() {
        let crlf = b"data: {\"a\":1}\r\n\r\ndata: {\"a\":2}\r\n\r\n";
        let lf = b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\n";
        let cr = b"data: {\"a\":1}\r\rdata: {\"a\":2}\r\r";
        for body in [&crlf[..], &lf[..], &cr[..]] {
            assert_eq!(events_of(&[body]), [r#"{"a":1}"#, r#"{"a":2}"#]);
        }
    }

    #[test]
    fn the_example_stream_split_byte_by_byte() {
        let body = assistd_testkit::gemini::bodies::STREAM_GENERATE_CONTENT_SSE.as_bytes();
        let whole = events_of(&[body]);
        assert_eq!(whole.len(), 3);
        assert!(
            whole
                .iter()
                .all(|event| event.starts_with("{\"candidates\""))
        );

        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let mut parser = SseParser::new(MAX);
        let events = feed(&mut parser, &bytes);
        assert_eq!(
            events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            whole
        );
        // Each event is out on the byte that makes its blank line (the second `\r`: a `\r`
        // alone ends a line too), not later.
        let ends: Vec<usize> = body
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"\r\n\r\n")
            .map(|(i, _)| i + 2)
            .collect();
        assert_eq!(events.iter().map(|(i, _)| *i).collect::<Vec<_>>(), ends);
        assert!(!parser.has_partial_event());
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_pairs_with_the_next_lf() {
        let chunks: [&[u8]; 5] = [b"data: one\r", b"\n\r", b"\ndata: two\r", b"\n", b"\r\n"];
        let mut parser = SseParser::new(MAX);
        assert_eq!(
            feed(&mut parser, &chunks),
            [(1, "one".to_owned()), (4, "two".to_owned())]
        );
    }

    #[test]
    fn several_events_in_one_chunk_and_one_event_in_many() {
        let mut parser = SseParser::new(MAX);
        let events = feed(
            &mut parser,
            &[b"data: 1\r\n\r\ndata: 2\r\n\r\ndata: ", b"3\r", b"\n\r\n"],
        );
        assert_eq!(
            events,
            [
                (0, "1".to_owned()),
                (0, "2".to_owned()),
                (2, "3".to_owned())
            ]
        );
    }

    #[test]
    fn comments_other_fields_and_multi_line_data() {
        let body = b"\xEF\xBB\xBF: keep-alive\n\nevent: message\nid: 7\nretry: 100\ndata:first\ndata: second\ndata\ndata:  spaced\n\n: only a comment\n\n";
        assert_eq!(events_of(&[body]), ["first\nsecond\n\n spaced"]);
        // An empty data line still makes an event.
        assert_eq!(events_of(&[b"data:\n\n"]), [""]);
    }

    #[test]
    fn an_unfinished_event_is_reported_at_the_end() {
        let mut parser = SseParser::new(MAX);
        assert!(feed(&mut parser, &[b"data: {\"a\":1}\r\n"]).is_empty());
        assert!(parser.has_partial_event());
        let mut parser = SseParser::new(MAX);
        assert!(feed(&mut parser, &[b"data: {\"a\""]).is_empty());
        assert!(parser.has_partial_event());
        let mut parser = SseParser::new(MAX);
        assert_eq!(feed(&mut parser, &[b": hi\r\n\r\n"]), []);
        assert!(!parser.has_partial_event());
    }

    #[test]
    fn oversized_events_are_refused_but_many_small_ones_in_a_chunk_are_not() {
        let mut parser = SseParser::new(16);
        parser.push(b"data: 0123456789");
        assert_eq!(parser.next_event(), Ok(None));
        parser.push(b"0123456789");
        assert_eq!(parser.next_event(), Err(EventTooLarge));

        let mut parser = SseParser::new(16);
        parser.push(b"data: 0123456789\ndata: 0123456789\n\n");
        assert_eq!(parser.next_event(), Err(EventTooLarge));

        let many = b"data: 0123456789\n\n".repeat(10);
        assert_eq!(feed(&mut SseParser::new(16), &[&many]).len(), 10);
    }
}
