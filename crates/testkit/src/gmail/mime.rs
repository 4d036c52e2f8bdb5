//! Just enough MIME to answer `format=full`, `format=metadata` and the `snippet` the way
//! Gmail shapes them: headers (unfolded, raw values), the part tree with part ids, and leaf
//! bodies decoded from base64 or quoted-printable. Charsets are not converted (bodies are
//! bytes; the snippet is read as UTF-8, lossily), `message/rfc822` is a leaf, and attachment
//! bodies are inlined as `data` instead of an `attachmentId`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE};
use serde_json::{Value, json};

/// Longest snippet, in characters (Gmail's are about this long).
const SNIPPET_CHARS: usize = 200;

/// One MIME part.
pub(super) struct Part {
    pub(super) headers: Vec<(String, String)>,
    mime_type: String,
    filename: String,
    /// The decoded body of a leaf; empty for a multipart.
    body: Vec<u8>,
    parts: Vec<Part>,
}

impl Part {
    /// Parses a whole message (or part). Never fails: what cannot be read is left out.
    pub(super) fn parse(raw: &[u8]) -> Self {
        let (head, body) = split_head(raw);
        let headers = parse_headers(head);
        let content_type = header(&headers, "content-type").unwrap_or("text/plain");
        let (mime_type, params) = split_params(content_type);
        let mime_type = mime_type.to_ascii_lowercase();
        let disposition_name = header(&headers, "content-disposition")
            .map(split_params)
            .and_then(|(_, params)| param(&params, "filename"));
        let filename = disposition_name
            .or_else(|| param(&params, "name"))
            .unwrap_or_default();
        if mime_type.starts_with("multipart/")
            && let Some(boundary) = param(&params, "boundary")
        {
            let parts = split_multipart(body, &boundary)
                .into_iter()
                .map(Self::parse)
                .collect();
            return Self {
                headers,
                mime_type,
                filename,
                body: Vec::new(),
                parts,
            };
        }
        let encoding = header(&headers, "content-transfer-encoding")
            .unwrap_or("7bit")
            .trim()
            .to_ascii_lowercase();
        let body = match encoding.as_str() {
            "base64" => decode_base64(body),
            "quoted-printable" => decode_quoted_printable(body),
            _ => body.to_vec(),
        };
        Self {
            headers,
            mime_type,
            filename,
            body,
            parts: Vec::new(),
        }
    }

    /// The `payload` of `format=full`, part ids from `part_id`.
    pub(super) fn payload(&self, part_id: &str) -> Value {
        let mut payload = json!({
            "partId": part_id,
            "mimeType": self.mime_type,
            "filename": self.filename,
            "headers": headers_json(&self.headers, None),
        });
        if self.parts.is_empty() {
            payload["body"] = json!({
                "size": self.body.len(),
                "data": URL_SAFE.encode(&self.body),
            });
        } else {
            payload["body"] = json!({ "size": 0 });
            let parts: Vec<Value> = self
                .parts
                .iter()
                .enumerate()
                .map(|(index, part)| {
                    let id = if part_id.is_empty() {
                        index.to_string()
                    } else {
                        format!("{part_id}.{index}")
                    };
                    part.payload(&id)
                })
                .collect();
            payload["parts"] = parts.into();
        }
        payload
    }

    /// The `payload` of `format=metadata`: the top part's headers only (those named in
    /// `only`, when given).
    pub(super) fn metadata_payload(&self, only: Option<&[String]>) -> Value {
        json!({
            "partId": "",
            "mimeType": self.mime_type,
            "filename": self.filename,
            "headers": headers_json(&self.headers, only),
            "body": { "size": 0 },
        })
    }

    /// The first readable text, whitespace collapsed, at most [`SNIPPET_CHARS`].
    pub(super) fn snippet(&self) -> String {
        let text = self
            .first_leaf("text/plain")
            .map(|part| String::from_utf8_lossy(&part.body).into_owned())
            .or_else(|| {
                self.first_leaf("text/html")
                    .map(|part| strip_tags(&String::from_utf8_lossy(&part.body)))
            })
            .unwrap_or_default();
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(SNIPPET_CHARS)
            .collect()
    }

    fn first_leaf(&self, mime_type: &str) -> Option<&Self> {
        if self.parts.is_empty() {
            return (self.mime_type == mime_type && self.filename.is_empty()).then_some(self);
        }
        self.parts
            .iter()
            .find_map(|part| part.first_leaf(mime_type))
    }
}

fn headers_json(headers: &[(String, String)], only: Option<&[String]>) -> Value {
    headers
        .iter()
        .filter(|(name, _)| {
            only.is_none_or(|only| only.iter().any(|wanted| wanted.eq_ignore_ascii_case(name)))
        })
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect::<Vec<_>>()
        .into()
}

/// The header block and the body (after the first empty line).
fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    for (index, window) in raw.windows(2).enumerate() {
        if window == b"\n\n" {
            return (&raw[..index], &raw[index + 2..]);
        }
        if raw[index..].starts_with(b"\r\n\r\n") {
            return (&raw[..index], &raw[index + 4..]);
        }
    }
    (raw, &[])
}

/// Header fields in order, folded lines joined.
fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    headers
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `type/subtype; a=b; c="d"` → (`type/subtype`, [(a, b), (c, d)]).
fn split_params(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let main = pieces.next().unwrap_or_default().trim().to_owned();
    let params = pieces
        .filter_map(|piece| piece.split_once('='))
        .map(|(name, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|value| value.strip_suffix('"'))
                .unwrap_or(value);
            (name.trim().to_ascii_lowercase(), value.to_owned())
        })
        .collect();
    (main, params)
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(known, _)| known == name)
        .map(|(_, value)| value.clone())
}

/// The bodies between `--boundary` lines, up to `--boundary--`.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut offset = 0;
    while offset < body.len() {
        let end = body[offset..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(body.len(), |position| offset + position + 1);
        let line = &body[offset..end];
        let trimmed = trim_line_end(line);
        if trimmed.starts_with(delimiter.as_bytes()) {
            let rest = &trimmed[delimiter.len()..];
            if let Some(start) = current {
                // The line break before a delimiter belongs to the delimiter.
                parts.push(trim_line_end(&body[start..offset]));
            }
            if rest.starts_with(b"--") {
                return parts;
            }
            current = Some(end);
        }
        offset = end;
    }
    if let Some(start) = current {
        parts.push(&body[start..]);
    }
    parts
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn decode_base64(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|byte| byte.is_ascii_alphanumeric() || *byte == b'+' || *byte == b'/')
        .collect();
    STANDARD_NO_PAD.decode(&clean).unwrap_or_default()
}

fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut index = 0;
    while index < body.len() {
        let byte = body[index];
        if byte == b'=' {
            let rest = &body[index + 1..];
            if rest.starts_with(b"\r\n") {
                index += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                index += 2;
                continue;
            }
            if let Some(hex) = rest.get(..2)
                && let Ok(text) = std::str::from_utf8(hex)
                && let Ok(value) = u8::from_str_radix(text, 16)
            {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(byte);
        index += 1;
    }
    out
}

fn strip_tags(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &[u8] = b"From: Bob <bob@example.com>\r\nSubject: Q3\r\n numbers\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCan you confirm =\r\nthe numbers? caf=C3=A9\r\n--b1\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+SGk8L2I+\r\n--b1--\r\n";

    #[test]
    fn full_payload_and_snippet() {
        let part = Part::parse(MAIL);
        assert_eq!(part.snippet(), "Can you confirm the numbers? café");
        let payload = part.payload("");
        assert_eq!(payload["mimeType"], "multipart/alternative");
        assert_eq!(payload["headers"][1]["value"], "Q3 numbers");
        assert_eq!(payload["parts"][1]["partId"], "1");
        let html = URL_SAFE
            .decode(payload["parts"][1]["body"]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(html, b"<b>Hi</b>");
        let only = ["Subject".to_owned()];
        let metadata = part.metadata_payload(Some(&only));
        assert_eq!(metadata["headers"].as_array().unwrap().len(), 1);
    }
}
