//! Users' own API keys for AI providers: which providers, what state a key is in, what may be
//! shown of it, and what a well-formed key looks like.

use chrono::{DateTime, Utc};

use crate::InvalidValue;

/// An AI provider whose API key a user can store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Google's Gemini API.
    Gemini,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 1] = [Provider::Gemini];

    /// The stable name stored in the database and used in audit targets.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gemini => "gemini",
        }
    }

    /// The provider stored under `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The purpose bound into the ciphertext of this provider's key.
    #[must_use]
    pub const fn seal_purpose(self) -> &'static str {
        match self {
            Self::Gemini => "api_key:gemini",
        }
    }
}

/// What is known about a stored key's validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyStatus {
    /// The provider accepted it at the last check.
    Valid,
    /// The provider rejected it at the last check.
    Invalid,
    /// Stored without a successful check (the provider was unreachable).
    Unverified,
}

impl ApiKeyStatus {
    /// The stable name stored in the database.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unverified => "unverified",
        }
    }

    /// The status stored under `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Valid, Self::Invalid, Self::Unverified]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// Everything about a stored key that may be shown: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Whose key it is for.
    pub provider: Provider,
    /// `…` and the last four characters.
    pub hint: String,
    /// Validity as of the last check.
    pub status: ApiKeyStatus,
    /// Why the last check failed, in the provider's words, if it did.
    pub status_detail: Option<String>,
    /// When the key was first stored.
    pub created_at: DateTime<Utc>,
    /// When the key was last replaced or re-checked.
    pub updated_at: DateTime<Utc>,
    /// When the provider last confirmed it.
    pub last_validated_at: Option<DateTime<Utc>>,
    /// When the server last used it on the user's behalf.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Longest key accepted, in bytes.
pub const MAX_API_KEY_LEN: usize = 256;
/// Shortest key accepted.
pub const MIN_API_KEY_LEN: usize = 16;

/// The key a user meant: what they sent without surrounding whitespace, which copying a key
/// from a web page or a terminal often adds (a trailing newline, a leading space). Whitespace
/// inside the key is not removed: [`check_api_key_format`] refuses it.
#[must_use]
pub fn trim_api_key(key: &str) -> &str {
    key.trim()
}

/// Checks the shape of a key (already [trimmed](trim_api_key)) before anything else is done
/// with it: 16 to 256 visible ASCII characters, no spaces. Descriptions never include the key.
///
/// # Errors
/// The key is empty, too short, too long, or contains other characters.
pub fn check_api_key_format(key: &str) -> Result<(), InvalidValue> {
    if key.is_empty() {
        return Err(InvalidValue(
            "the API key is empty; paste the key from Google AI Studio".into(),
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidValue(
            "the API key may contain only visible ASCII characters without spaces; check that it was copied whole".into(),
        ));
    }
    if key.len() > MAX_API_KEY_LEN {
        return Err(InvalidValue(format!(
            "the API key is {} characters long; keys are at most {MAX_API_KEY_LEN}",
            key.len()
        )));
    }
    if key.len() < MIN_API_KEY_LEN {
        return Err(InvalidValue(format!(
            "the API key is too short; keys are at least {MIN_API_KEY_LEN} characters"
        )));
    }
    Ok(())
}

/// The part of a key that may be shown: `…` and its last four characters.
#[must_use]
pub fn key_hint(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format_rules() {
        assert!(check_api_key_format("AIzaSyD-0123456789abcdefghijklmnopqrstu").is_ok());
        for bad in [
            "",
            "abc123",
            "AIza key with spaces 0123456789",
            "AIzaSyD-012345678\u{e9}abcdefghij",
        ] {
            let err = check_api_key_format(bad).unwrap_err();
            assert!(
                bad.is_empty() || !err.0.contains(bad),
                "the description echoes the key"
            );
        }
        assert!(check_api_key_format(&"a".repeat(10 * 1024)).is_err());
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_and_inner_whitespace_refused() {
        let key = "AIzaSyD-0123456789abcdefghijklmnopqrstu";
        for pasted in [
            format!("{key}\n"),
            format!("  {key}"),
            format!("\t{key} \r\n"),
        ] {
            assert_eq!(trim_api_key(&pasted), key);
            assert!(check_api_key_format(trim_api_key(&pasted)).is_ok());
        }
        assert!(check_api_key_format(trim_api_key("AIzaSyD-0123 456789abcdefghij")).is_err());
        assert!(check_api_key_format(trim_api_key(" \n ")).is_err());
    }

    #[test]
    fn hints_show_only_the_last_four() {
        assert_eq!(key_hint("AIzaSyD-0123456789abcdefghijklmnopqrstu"), "…rstu");
    }
}
