//! What the server saw: every request, with API keys replaced by comparable markers.

/// The marker that stands for `key` in [`RecordedRequest`]s: `<api-key:` + a 64-bit FNV-1a
/// hash in hex + `>`. Equal keys give equal markers, so tests compare without the key itself
/// appearing in recordings or assertion output.
#[must_use]
pub fn key_marker(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("<api-key:{hash:016x}>")
}

/// One request as the server received it. Every occurrence of an API key — the one sent in
/// `x-goog-api-key`, one sent as `?key=`, and every key the server was told to accept — is
/// replaced by its [`key_marker`] in the path, query, header values and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The HTTP version the request came in: [`http::Version::HTTP_11`], or
    /// [`http::Version::HTTP_2`] from a client that speaks HTTP/2 (h2c).
    pub version: http::Version,
    /// The path, e.g. `/v1beta/models/gemini-2.5-flash:generateContent`.
    pub path: String,
    /// The raw query string without `?`, if any.
    pub query: Option<String>,
    /// Header names (lower case) and values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The decoded value of query parameter `name`.
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(param, _)| param == name)
            .map(|(_, value)| value.into_owned())
    }

    /// Path and query as they appeared in the request line.
    #[must_use]
    pub fn uri(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The body parsed as JSON, if it is JSON.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// Every place `needle` (typically a [`key_marker`]) occurs: `"path"`, `"query"`,
    /// `"header <name>"`, `"body"`. A key sent properly shows up as exactly
    /// `["header x-goog-api-key"]`.
    #[must_use]
    pub fn places_of(&self, needle: &str) -> Vec<String> {
        let mut places = Vec::new();
        if self.path.contains(needle) {
            places.push("path".to_owned());
        }
        if self.query.as_deref().is_some_and(|q| q.contains(needle)) {
            places.push("query".to_owned());
        }
        for (name, value) in &self.headers {
            if value.contains(needle) {
                places.push(format!("header {name}"));
            }
        }
        if self.body.contains(needle) {
            places.push("body".to_owned());
        }
        places
    }

    /// Builds a record, replacing each of `secrets` with its marker everywhere.
    pub(super) fn new(parts: &http::request::Parts, body: &[u8], secrets: &[String]) -> Self {
        let mut secrets: Vec<&str> = secrets
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a key that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let redact = |text: &str| {
            secrets.iter().fold(text.to_owned(), |text, secret| {
                text.replace(secret, &key_marker(secret))
            })
        };
        Self {
            method: parts.method.as_str().to_owned(),
            version: parts.version,
            path: redact(parts.uri.path()),
            query: parts.uri.query().map(redact),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        redact(&String::from_utf8_lossy(value.as_bytes())),
                    )
                })
                .collect(),
            body: redact(&String::from_utf8_lossy(body)),
        }
    }
}
