//! AI over the synced mail with the user's own Gemini key: summaries of a message or a
//! thread, and triage of recent inbox mail. Results are sealed with the user's mail key,
//! stored, and reused until what they describe changes (or the caller asks for a fresh one).
//!
//! Model calls count like chat's: the same key (a rejected one is marked INVALID), the same
//! monthly token budget, the same usage records, the same error mapping.
//!
//! Mail is untrusted: it reaches the model only inside the wrapped, labelled blocks of
//! [`prompt`], in the `user` turn; the system instruction holds the task alone, and no
//! request declares tools.
//!
//! | question | module |
//! | --- | --- |
//! | how mail is put before the model | `prompt` |
//! | one model call: key, budget, retries, usage, errors | `model` |
//! | SummarizeMessage and SummarizeThread | `summarize` |
//! | TriageInbox, the stored results, what needs a reply | `triage` |

mod model;
pub mod prompt;
mod summarize;
mod triage;

use std::sync::Arc;
use std::time::Duration;

use assistd_gemini::GeminiClient;

pub use model::AiUsage;
pub use summarize::{MailSummary, MessageSummary, ThreadSummary};
pub use triage::{
    TriageCategory, TriagePriority, TriageReport, TriageResult, TriageSelection, TriagedMessage,
};

use super::GmailService;
use crate::chat::ChatConfig;
use crate::{ApiKeyVault, PreferencesService};

/// Purpose of a sealed message summary (record = the message id).
const MESSAGE_SUMMARY_PURPOSE: &str = "gmail_message_summary";
/// Purpose of a sealed thread summary (record = the thread id).
const THREAD_SUMMARY_PURPOSE: &str = "gmail_thread_summary";
/// Purpose of a sealed triage gist and rationale (record = the message id).
const TRIAGE_NOTE_PURPOSE: &str = "gmail_triage_note";

/// Summaries and triage of the user's synced mail. Cheap to clone.
#[derive(Clone)]
pub struct MailAssistant {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MailAssistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailAssistant").finish_non_exhaustive()
    }
}

struct Inner {
    gmail: GmailService,
    vault: ApiKeyVault,
    preferences: PreferencesService,
    gemini: GeminiClient,
    /// The model when the user prefers none (chat's default).
    default_model: String,
    /// Retries of a call that failed with an outage, and the first wait (doubled after).
    max_retries: u32,
    retry_backoff: Duration,
}

impl Inner {
    /// Now, at the precision the database keeps (microseconds), so a result reads back from
    /// storage exactly as it was first returned.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use chrono::Timelike as _;
        let now = self.gmail.now();
        now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }
}

impl MailAssistant {
    /// The assistant over `gmail`'s synced copy, calling Gemini through `gemini` with keys
    /// from `vault`, in the language and model of the user's `preferences`; chat's default
    /// model and retry settings apply.
    #[must_use]
    pub fn new(
        gmail: GmailService,
        vault: ApiKeyVault,
        preferences: PreferencesService,
        gemini: GeminiClient,
        chat: &ChatConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                gmail,
                vault,
                preferences,
                gemini,
                default_model: chat.default_model.clone(),
                max_retries: chat.max_retries,
                retry_backoff: chat.retry_backoff,
            }),
        }
    }
}
