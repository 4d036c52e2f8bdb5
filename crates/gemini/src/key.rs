//! The user's Gemini API key as this crate holds it.

use zeroize::Zeroizing;

/// A Gemini API key.
///
/// The key is a bearer credential for the user's Google Cloud project: it is zeroized on drop,
/// has no `Clone`, `Display` or `Serialize`, its `Debug` prints `ApiKey([redacted])`, and it
/// is read only through [`ApiKey::expose_secret`]. Build one from the secret the vault revealed
/// right before the call and drop it after: `ApiKey::new(secret.expose().to_owned())`.
///
/// [`ApiKey::new`] guarantees the key can travel in an HTTP header (visible ASCII, at most
/// [`ApiKey::MAX_LEN`] bytes); whether Google accepts it is what
/// [`GeminiClient::list_models`](crate::GeminiClient::list_models) finds out.
pub struct ApiKey(Zeroizing<String>);

/// Why a string cannot be an API key. Never contains the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedApiKey {
    /// The key is empty (or only whitespace).
    #[error("the API key is empty")]
    Empty,
    /// The key is longer than any Gemini key.
    #[error("the API key is longer than {max} characters", max = ApiKey::MAX_LEN)]
    TooLong,
    /// The key holds whitespace, control or non-ASCII characters.
    #[error("the API key may contain only visible ASCII characters (no spaces)")]
    InvalidCharacter,
}

impl ApiKey {
    /// The longest key accepted. Gemini keys are 39 characters; the margin leaves room for
    /// other formats without letting a pasted document through.
    pub const MAX_LEN: usize = 256;

    /// Wraps `key`, trimmed of surrounding whitespace (keys are often pasted with a newline).
    ///
    /// # Errors
    /// The key is empty, longer than [`ApiKey::MAX_LEN`], or not visible ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self, MalformedApiKey> {
        let raw = Zeroizing::new(key.into());
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(MalformedApiKey::Empty);
        }
        if trimmed.len() > Self::MAX_LEN {
            return Err(MalformedApiKey::TooLong);
        }
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MalformedApiKey::InvalidCharacter);
        }
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    /// The key itself. Only for putting it into the request header or into the vault.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_input_is_checked() {
        let key = ApiKey::new(" AIzaSyExample-Key_0123456789abcdefghijk\n").unwrap();
        assert_eq!(
            key.expose_secret(),
            "AIzaSyExample-Key_0123456789abcdefghijk"
        );
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");

        assert_eq!(ApiKey::new("  ").unwrap_err(), MalformedApiKey::Empty);
        assert_eq!(
            ApiKey::new("a".repeat(10_000)).unwrap_err(),
            MalformedApiKey::TooLong
        );
        assert_eq!(
            ApiKey::new("AIza key").unwrap_err(),
            MalformedApiKey::InvalidCharacter
        );
        assert_eq!(
            ApiKey::new("AIzaé").unwrap_err(),
            MalformedApiKey::InvalidCharacter
        );
        assert!(
            !MalformedApiKey::InvalidCharacter
                .to_string()
                .contains("AIza")
        );
    }
}
