//! The rules of what a client may send about chat: lengths, character sets, the client
//! message id, and constructors that check every field of a new session or a patch at once.

use super::{
    MAX_CLIENT_MESSAGE_ID_CHARS, MAX_MEMORY_CHARS, MAX_MESSAGE_CHARS, MAX_MODEL_CHARS,
    MAX_SYSTEM_INSTRUCTION_CHARS, MAX_TITLE_CHARS, NewSession, SessionPatch,
};
use crate::{FieldViolation, InvalidValue};

/// Largest monthly budget accepted.
pub const MAX_MONTHLY_TOKEN_LIMIT: i64 = 1_000_000_000_000;

fn check_len(value: &str, max: usize) -> Result<(), InvalidValue> {
    let chars = value.chars().count();
    if chars > max {
        return Err(InvalidValue(format!(
            "must be at most {max} characters, not {chars}"
        )));
    }
    Ok(())
}

/// Checks a session title.
///
/// # Errors
/// Longer than [`MAX_TITLE_CHARS`] or containing a line break or control character.
pub fn validate_title(title: &str) -> Result<(), InvalidValue> {
    check_len(title, MAX_TITLE_CHARS)?;
    if title.chars().any(char::is_control) {
        return Err(InvalidValue(
            "must be one line without control characters".into(),
        ));
    }
    Ok(())
}

/// Checks a system instruction.
///
/// # Errors
/// Longer than [`MAX_SYSTEM_INSTRUCTION_CHARS`].
pub fn validate_system_instruction(text: &str) -> Result<(), InvalidValue> {
    check_len(text, MAX_SYSTEM_INSTRUCTION_CHARS)
}

/// Checks a model name (empty allowed: the default model).
///
/// # Errors
/// Not lowercase letters, digits, `.`, `-` and `_`, or longer than [`MAX_MODEL_CHARS`].
pub fn validate_model(model: &str) -> Result<(), InvalidValue> {
    check_len(model, MAX_MODEL_CHARS)?;
    if !model
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    {
        return Err(InvalidValue(format!(
            "{model:?} is not a model name: use lowercase letters, digits, '.', '-' and '_' \
             without the \"models/\" prefix, e.g. \"gemini-2.5-flash\""
        )));
    }
    Ok(())
}

/// The id a client gives a send, so that a resend of the same message is recognised and
/// answered with the stored outcome: 1 to [`MAX_CLIENT_MESSAGE_ID_CHARS`] of
/// `A-Z a-z 0-9 - _`, unique per user. Parsed once at the edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    /// Checks `id` (see [`validate_client_message_id`]).
    ///
    /// # Errors
    /// Empty, too long, or with other characters.
    pub fn parse(id: String) -> Result<Self, InvalidValue> {
        validate_client_message_id(&id)?;
        Ok(Self(id))
    }

    /// An id read back from storage, where only parsed ids are ever written.
    #[must_use]
    pub const fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ClientMessageId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClientMessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ClientMessageId> for String {
    fn from(id: ClientMessageId) -> Self {
        id.0
    }
}

/// Checks a client message id.
///
/// # Errors
/// Empty, longer than [`MAX_CLIENT_MESSAGE_ID_CHARS`], or other than `A-Z a-z 0-9 - _`.
pub fn validate_client_message_id(id: &str) -> Result<(), InvalidValue> {
    if id.is_empty() {
        return Err(InvalidValue(
            "is required: a client-chosen id of this send, such as a fresh UUID".into(),
        ));
    }
    check_len(id, MAX_CLIENT_MESSAGE_ID_CHARS)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(InvalidValue(
            "may only contain A-Z, a-z, 0-9, '-' and '_'".into(),
        ));
    }
    Ok(())
}

/// Checks the text of a user message.
///
/// # Errors
/// Empty, only whitespace, or longer than [`MAX_MESSAGE_CHARS`].
pub fn validate_message_text(text: &str) -> Result<(), InvalidValue> {
    if text.trim().is_empty() {
        return Err(InvalidValue("must not be empty or only whitespace".into()));
    }
    check_len(text, MAX_MESSAGE_CHARS)
}

/// Checks a fact to remember.
///
/// # Errors
/// Empty or longer than [`MAX_MEMORY_CHARS`].
pub fn validate_memory(content: &str) -> Result<(), InvalidValue> {
    if content.trim().is_empty() {
        return Err(InvalidValue("must not be empty".into()));
    }
    check_len(content, MAX_MEMORY_CHARS)
}

impl NewSession {
    /// A new session's fields, each checked; the violations name the fields `title`,
    /// `system_instruction` and `model`.
    ///
    /// # Errors
    /// Every field that breaks its rule.
    pub fn new(
        title: String,
        system_instruction: String,
        model: String,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        collect_violation(&mut violations, "title", validate_title(&title));
        collect_violation(
            &mut violations,
            "system_instruction",
            validate_system_instruction(&system_instruction),
        );
        collect_violation(&mut violations, "model", validate_model(&model));
        if violations.is_empty() {
            Ok(Self {
                title,
                system_instruction,
                model,
            })
        } else {
            Err(violations)
        }
    }
}

impl SessionPatch {
    /// The patch, if every field it sets keeps its rule; violations name the fields under
    /// `prefix` (e.g. `session.title`).
    ///
    /// # Errors
    /// Every set field that breaks its rule.
    pub fn validated(self, prefix: &str) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        if let Some(title) = &self.title {
            collect_violation(
                &mut violations,
                &format!("{prefix}.title"),
                validate_title(title),
            );
        }
        if let Some(text) = &self.system_instruction {
            collect_violation(
                &mut violations,
                &format!("{prefix}.system_instruction"),
                validate_system_instruction(text),
            );
        }
        if let Some(model) = &self.model {
            collect_violation(
                &mut violations,
                &format!("{prefix}.model"),
                validate_model(model),
            );
        }
        if violations.is_empty() {
            Ok(self)
        } else {
            Err(violations)
        }
    }
}

fn collect_violation(
    violations: &mut Vec<FieldViolation>,
    field: &str,
    result: Result<(), InvalidValue>,
) {
    if let Err(err) = result {
        violations.push(err.at(field));
    }
}
