//! Plaintext secrets in memory.

use zeroize::Zeroizing;

/// A plaintext secret: an API key, an OAuth token, any bytes a user entrusted to us.
///
/// Deliberately not `Clone`, not `Serialize`, and `Debug`/`Display` print `[redacted]`, so it
/// cannot reach a log line, an error or a response by accident. The bytes are zeroized when it
/// is dropped. The only way to read them is [`Secret::expose_secret`] (or its `&str`
/// variant), whose name makes every use stand out in review.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of `bytes` (no copy is left behind by this call).
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The plaintext bytes. Every call site is a place where the secret leaves this type:
    /// keep the borrow short and never log or return it.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The plaintext as UTF-8 text, for secrets that are text (API keys, tokens).
    ///
    /// # Errors
    /// The bytes are not UTF-8. The error names a byte offset only, never the content.
    pub fn expose_secret_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// Length of the plaintext in bytes (not secret: ciphertexts reveal it too).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the plaintext is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self::new(text.into_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let secret = Secret::from(String::from("AIzaSy-canary-1234"));
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:#?}"), "Secret([redacted])");
        assert_eq!(secret.expose_secret_str().unwrap(), "AIzaSy-canary-1234");
        assert_eq!(secret.len(), 18);
        assert!(Secret::new(vec![0xff]).expose_secret_str().is_err());
    }
}
