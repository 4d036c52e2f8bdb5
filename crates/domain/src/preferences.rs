//! Per-user preferences: the model, its defaults, and the validation of every field.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use language_tags::LanguageTag;

use crate::InvalidValue;

/// Colour scheme of the user's clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Theme {
    /// Light colours.
    Light,
    /// Dark colours.
    Dark,
    /// Follow the operating system.
    #[default]
    System,
}

impl Theme {
    /// Every theme, in the order clients list them.
    pub const ALL: [Theme; 3] = [Theme::Light, Theme::Dark, Theme::System];

    /// The stable name stored in the database.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Dark => "dark",
            Self::System => "system",
        }
    }

    /// English display name.
    #[must_use]
    pub const fn display_name(self) -> &'static str {
        match self {
            Self::Light => "Light",
            Self::Dark => "Dark",
            Self::System => "System",
        }
    }
}

impl FromStr for Theme {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|theme| theme.as_str() == s)
            .ok_or_else(|| InvalidValue(format!("unknown theme {s:?}")))
    }
}

/// A language assistd supports, identified by its canonical BCP-47 tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Language {
    /// Canonical BCP-47 tag, e.g. `pt-BR`.
    pub tag: &'static str,
    /// English display name.
    pub display_name: &'static str,
    /// The language's name for itself.
    pub native_name: &'static str,
}

/// Supported languages, ordered by tag.
pub const LANGUAGES: &[Language] = &[
    lang("ar", "Arabic", "العربية"),
    lang("bn", "Bengali", "বাংলা"),
    lang("cs", "Czech", "Čeština"),
    lang("da", "Danish", "Dansk"),
    lang("de", "German", "Deutsch"),
    lang("el", "Greek", "Ελληνικά"),
    lang("en", "English", "English"),
    lang(
        "en-GB",
        "English (United Kingdom)",
        "English (United Kingdom)",
    ),
    lang(
        "en-US",
        "English (United States)",
        "English (United States)",
    ),
    lang("es", "Spanish", "Español"),
    lang(
        "es-419",
        "Spanish (Latin America)",
        "Español (Latinoamérica)",
    ),
    lang("fa", "Persian", "فارسی"),
    lang("fi", "Finnish", "Suomi"),
    lang("fr", "French", "Français"),
    lang("fr-CA", "French (Canada)", "Français (Canada)"),
    lang("he", "Hebrew", "עברית"),
    lang("hi", "Hindi", "हिन्दी"),
    lang("hu", "Hungarian", "Magyar"),
    lang("id", "Indonesian", "Bahasa Indonesia"),
    lang("it", "Italian", "Italiano"),
    lang("ja", "Japanese", "日本語"),
    lang("ko", "Korean", "한국어"),
    lang("nb", "Norwegian Bokmål", "Norsk bokmål"),
    lang("nl", "Dutch", "Nederlands"),
    lang("pl", "Polish", "Polski"),
    lang("pt", "Portuguese", "Português"),
    lang("pt-BR", "Portuguese (Brazil)", "Português (Brasil)"),
    lang("ro", "Romanian", "Română"),
    lang("ru", "Russian", "Русский"),
    lang("sv", "Swedish", "Svenska"),
    lang("sw", "Swahili", "Kiswahili"),
    lang("th", "Thai", "ไทย"),
    lang("tr", "Turkish", "Türkçe"),
    lang("uk", "Ukrainian", "Українська"),
    lang("vi", "Vietnamese", "Tiếng Việt"),
    lang("zh-Hans", "Chinese (Simplified)", "简体中文"),
    lang("zh-Hant", "Chinese (Traditional)", "繁體中文"),
];

const fn lang(
    tag: &'static str,
    display_name: &'static str,
    native_name: &'static str,
) -> Language {
    Language {
        tag,
        display_name,
        native_name,
    }
}

impl Language {
    /// The default language, English.
    #[must_use]
    pub fn default_language() -> &'static Language {
        Self::find("en").expect("English is in LANGUAGES")
    }

    /// The supported language with exactly this canonical tag.
    #[must_use]
    pub fn find(tag: &str) -> Option<&'static Language> {
        LANGUAGES.iter().find(|language| language.tag == tag)
    }

    /// Parses a BCP-47 tag in any letter case (`EN-us` → `en-US`) and returns the supported
    /// language it names.
    ///
    /// # Errors
    /// The tag is not well-formed BCP-47, or names a language assistd does not support.
    pub fn parse(input: &str) -> Result<&'static Language, InvalidValue> {
        let tag = LanguageTag::parse(input).map_err(|e| {
            InvalidValue(format!(
                "{input:?} is not a well-formed BCP-47 language tag ({e}); use a tag such as \"en\" or \"pt-BR\""
            ))
        })?;
        let canonical = tag.canonicalize().unwrap_or(tag);
        Self::find(canonical.as_str())
            .or_else(|| {
                LANGUAGES
                    .iter()
                    .find(|language| language.tag.eq_ignore_ascii_case(canonical.as_str()))
            })
            .ok_or_else(|| {
                InvalidValue(format!(
                    "language {input:?} is not supported; ListLanguages returns the supported tags"
                ))
            })
    }
}

/// Parses an IANA timezone name such as `Europe/Berlin` (exact, case-sensitive as in the tz
/// database).
///
/// # Errors
/// The name is not in the tz database.
pub fn parse_timezone(input: &str) -> Result<Tz, InvalidValue> {
    Tz::from_str(input).map_err(|_| {
        InvalidValue(format!(
            "{input:?} is not an IANA timezone name; use a name such as \"Europe/Berlin\" (ListTimezones returns them all)"
        ))
    })
}

/// Every IANA timezone name, in lexicographic order.
#[must_use]
pub fn timezone_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> =
            chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        names.sort_unstable();
        names
    })
}

/// Longest accepted model name.
pub const MAX_MODEL_NAME_LEN: usize = 64;

/// Validates a Gemini model name such as `gemini-2.5-flash`.
///
/// # Errors
/// Empty, too long, or characters other than lowercase ASCII letters, digits, `.`, `-`, `_`.
pub fn parse_model_name(input: &str) -> Result<String, InvalidValue> {
    let valid_chars = input
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    let starts_alphanumeric = input
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if input.len() > MAX_MODEL_NAME_LEN || !valid_chars || !starts_alphanumeric {
        return Err(InvalidValue(format!(
            "model name must be 1 to {MAX_MODEL_NAME_LEN} lowercase letters, digits, '.', '-' or '_' starting with a letter or digit, e.g. \"gemini-2.5-flash\""
        )));
    }
    Ok(input.to_owned())
}

/// A user's preferences as stored, or the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preferences {
    /// Colour scheme.
    pub theme: Theme,
    /// Preferred language.
    pub language: &'static Language,
    /// Timezone used for times shown to and reasoned about by the assistant.
    pub timezone: Tz,
    /// Model for new chat sessions; `None` means the server default.
    pub default_model: Option<String>,
    /// Monotonic version; 0 while only defaults exist. The etag is derived from it.
    pub version: i64,
    /// When last changed; `None` while only defaults exist.
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            theme: Theme::System,
            language: Language::default_language(),
            timezone: Tz::UTC,
            default_model: None,
            version: 0,
            updated_at: None,
        }
    }
}

impl Preferences {
    /// The opaque etag clients send back for a conditional update.
    #[must_use]
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Applies the fields set in `update`.
    pub fn apply(&mut self, update: &PreferencesUpdate) {
        if let Some(theme) = update.theme {
            self.theme = theme;
        }
        if let Some(language) = update.language {
            self.language = language;
        }
        if let Some(timezone) = update.timezone {
            self.timezone = timezone;
        }
        if let Some(model) = &update.default_model {
            self.default_model.clone_from(model);
        }
    }
}

/// Parses an etag produced by [`Preferences::etag`] back into a version.
///
/// # Errors
/// The text is not an etag assistd issued.
pub fn parse_etag(etag: &str) -> Result<i64, InvalidValue> {
    etag.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<i64>().ok())
        .filter(|version| *version >= 0)
        .ok_or_else(|| {
            InvalidValue(format!(
                "{etag:?} is not an etag issued by assistd; send the etag of GetPreferences, or none"
            ))
        })
}

/// A validated partial update: `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreferencesUpdate {
    /// New theme.
    pub theme: Option<Theme>,
    /// New language.
    pub language: Option<&'static Language>,
    /// New timezone.
    pub timezone: Option<Tz>,
    /// New default model; `Some(None)` clears it.
    pub default_model: Option<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_sorted_unique_and_canonical() {
        for pair in LANGUAGES.windows(2) {
            assert!(
                pair[0].tag < pair[1].tag,
                "{} before {}",
                pair[0].tag,
                pair[1].tag
            );
        }
        for language in LANGUAGES {
            let parsed = LanguageTag::parse(language.tag).unwrap();
            assert_eq!(parsed.canonicalize().unwrap().as_str(), language.tag);
        }
    }

    #[test]
    fn language_parsing_normalises_case_and_rejects_bad_tags() {
        assert_eq!(Language::parse("PT-br").unwrap().tag, "pt-BR");
        assert_eq!(Language::parse("zh-hans").unwrap().tag, "zh-Hans");
        let malformed = Language::parse("xx-!!").unwrap_err();
        assert!(malformed.0.contains("well-formed"), "{malformed}");
        let unsupported = Language::parse("tlh").unwrap_err();
        assert!(unsupported.0.contains("not supported"), "{unsupported}");
    }

    #[test]
    fn timezones_parse_and_list() {
        assert_eq!(parse_timezone("Europe/Berlin").unwrap(), Tz::Europe__Berlin);
        assert!(parse_timezone("Mars/Olympus").is_err());
        let names = timezone_names();
        assert!(names.len() > 400);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(names.contains(&"UTC"));
    }

    #[test]
    fn model_names_are_restricted() {
        assert_eq!(
            parse_model_name("gemini-2.5-flash").unwrap(),
            "gemini-2.5-flash"
        );
        for bad in ["", "Gemini", "-x", "a b", &"a".repeat(65)] {
            assert!(parse_model_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn etags_round_trip() {
        let prefs = Preferences {
            version: 7,
            ..Preferences::default()
        };
        assert_eq!(parse_etag(&prefs.etag()).unwrap(), 7);
        assert!(parse_etag("7").is_err());
        assert!(parse_etag("\"-1\"").is_err());
    }

    #[test]
    fn apply_changes_only_named_fields() {
        let mut prefs = Preferences::default();
        prefs.apply(&PreferencesUpdate {
            theme: Some(Theme::Dark),
            default_model: Some(Some("gemini-2.5-pro".into())),
            ..PreferencesUpdate::default()
        });
        assert_eq!(prefs.theme, Theme::Dark);
        assert_eq!(prefs.language.tag, "en");
        assert_eq!(prefs.default_model.as_deref(), Some("gemini-2.5-pro"));
        prefs.apply(&PreferencesUpdate {
            default_model: Some(None),
            ..PreferencesUpdate::default()
        });
        assert_eq!(prefs.default_model, None);
    }
}
