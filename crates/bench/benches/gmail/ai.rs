//! Scenario 4: the AI RPCs over synced mail, with the testkit's Gemini peer answering every
//! model call at once (no latency), so the figures are assistd's own cost around the model.
//!
//! - **Triage**: `--triage-messages` (200) new INBOX messages (received in the last hours, a
//!   minute apart) are synced, then triaged. TriageInbox takes at most 100 of the newest
//!   messages per call and has no cursor, so the newest 100 are read and the older ones
//!   unread: one call takes the newest 100, a second with `unread_only` the rest. The peer
//!   answers each batch with a valid result for every message of it; the model calls are
//!   counted at the peer and must be ⌈messages / `gmail.triage_batch_size`⌉. The same two
//!   calls are then made again: every message has a stored result, so no model call.
//! - **Thread summary**: a `--thread-messages` (40) message thread of plain-text mail of 200
//!   to 400 words each is synced and summarised: the first SummarizeThread calls the model,
//!   then `--summary-runs` (5) times one with `refresh` (the model again) and one without
//!   (the stored summary, no model call).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use assistd::proto::gmail::v1 as pb;
use assistd_bench::format::{format_bytes, format_latency, thousands};
use assistd_bench::stats::Percentiles;
use assistd_testkit::gemini::{
    ScriptedReply, TriageAnswer, asks_for_json, schema_message_ids, triage_reply,
};
use assistd_testkit::gmail::NewMessage;
use serde_json::{Value, json};

use crate::Cli;
use crate::setup::{MailUser, Peers, Server};

/// TriageInbox's largest `max_messages`: one call selects at most this many of the newest
/// INBOX messages.
const TRIAGE_PAGE: usize = 100;
/// Most messages the triage scenario covers: the newest page, then the unread page below it.
pub(crate) const MAX_TRIAGE_MESSAGES: usize = 2 * TRIAGE_PAGE;
/// The server budgets a summary request at 4 characters per token
/// (`gmail.summary_context_tokens` × 4 characters).
const CHARS_PER_TOKEN: usize = 4;
/// The `gmail.summary_context_tokens` the bench gives the server (its default).
pub(crate) const SUMMARY_CONTEXT_TOKENS: usize = 24_000;
/// What the peer answers a summary request with (the summary's text).
const SUMMARY: &str = "The team is planning a spring offsite in Lisbon: hotel, venue, budget, \
                       travel, dinner and agenda are still open.";

/// When each generate call reached the Gemini peer, in order.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<Instant>>>);

impl Arrivals {
    fn push(&self, at: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(at);
    }

    /// The arrivals from `start` to `end`.
    fn between(&self, start: Instant, end: Instant) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .filter(|at| (start..=end).contains(at))
            .collect()
    }
}

/// Makes the Gemini peer answer at once: a triage request (JSON naming message ids) with a
/// valid result for every message of its batch, a summary request with summary JSON; and
/// records when each generate call arrived.
fn answer_at_once(peers: &Peers) -> Arrivals {
    let arrivals = Arrivals::default();
    let recorded = arrivals.clone();
    peers.gemini.respond_with(move |request| {
        recorded.push(Instant::now());
        if asks_for_json(request) && !schema_message_ids(request).is_empty() {
            triage_reply(request, TriageAnswer::Valid)
        } else if asks_for_json(request) {
            ScriptedReply::text(
                json!({
                    "summary": SUMMARY,
                    "key_points": [
                        "Twenty rooms are held at the hotel until the end of the month.",
                        "The budget is forty thousand euros, travel included.",
                    ],
                    "action_items": [
                        "Add dietary requirements to the shared sheet before Wednesday.",
                        "Decide the dates in Monday's call.",
                    ],
                })
                .to_string(),
            )
        } else {
            ScriptedReply::default()
        }
    });
    arrivals
}

/// Runs the triage, then the thread summary, each for a user of its own.
pub(crate) async fn ai_scenarios(cli: &Cli, server: &Server, peers: &Peers) -> anyhow::Result<()> {
    let arrivals = answer_at_once(peers);
    let result = async {
        triage_scenario(cli, server, peers, &arrivals).await?;
        summary_scenario(cli, server, peers).await
    }
    .await;
    peers.gemini.clear_responder();
    result
}

/// Milliseconds since the epoch, now.
fn now_ms() -> anyhow::Result<i64> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    Ok(i64::try_from(since.as_millis())?)
}

/// One TriageInbox call: its answer, its wall time, and when it started and ended.
struct TriageCall {
    response: pb::TriageInboxResponse,
    took: Duration,
    start: Instant,
    end: Instant,
}

/// TriageInbox over all the new mail: the newest page, then (with more mail than a page)
/// the unread page below it.
async fn triage_all(
    server: &Server,
    user: &MailUser,
    messages: usize,
) -> anyhow::Result<(Vec<TriageCall>, Duration)> {
    let pages: &[bool] = if messages > TRIAGE_PAGE {
        &[false, true]
    } else {
        &[false]
    };
    let started = Instant::now();
    let mut calls = Vec::with_capacity(pages.len());
    for &unread_only in pages {
        let start = Instant::now();
        let (response, took) = server
            .triage(user, i32::try_from(TRIAGE_PAGE)?, unread_only)
            .await?;
        calls.push(TriageCall {
            response,
            took,
            start,
            end: Instant::now(),
        });
    }
    Ok((calls, started.elapsed()))
}

/// Checks that the calls returned every one of `ids` exactly once, each with a result.
fn check_all_triaged(calls: &[TriageCall], ids: &[String]) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for call in calls {
        for message in &call.response.messages {
            ensure!(
                message.triage.is_some(),
                "message {} came back untriaged",
                message.id
            );
            ensure!(
                seen.insert(message.id.clone()),
                "message {} came back twice",
                message.id
            );
        }
    }
    let expected: HashSet<String> = ids.iter().cloned().collect();
    ensure!(
        seen == expected,
        "the calls returned {} messages, {} of them new",
        seen.len(),
        seen.intersection(&expected).count()
    );
    Ok(())
}

fn call_times(calls: &[TriageCall]) -> String {
    calls
        .iter()
        .map(|call| format_latency(Some(call.took)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn usage_of(calls: &[TriageCall]) -> pb::Usage {
    calls
        .iter()
        .filter_map(|call| call.response.usage.as_ref())
        .fold(pb::Usage::default(), |sum, usage| pb::Usage {
            model_call_count: sum.model_call_count + usage.model_call_count,
            prompt_token_count: sum.prompt_token_count + usage.prompt_token_count,
            output_token_count: sum.output_token_count + usage.output_token_count,
            total_token_count: sum.total_token_count + usage.total_token_count,
        })
}

/// Triage of `--triage-messages` new INBOX messages, then the same again from storage.
async fn triage_scenario(
    cli: &Cli,
    server: &Server,
    peers: &Peers,
    arrivals: &Arrivals,
) -> anyhow::Result<()> {
    let user = server.sign_in(peers, "hedy").await?;
    server.set_gemini_key(&user).await?;
    let count = cli.triage_messages;
    let read = count.min(TRIAGE_PAGE);
    let now = now_ms()?;
    // Oldest first, a minute apart, the newest a minute old; the newest page is read.
    let ids: Vec<String> = (0..count)
        .map(|index| {
            let labels: &[&str] = if index < count - read {
                &["INBOX", "UNREAD"]
            } else {
                &["INBOX"]
            };
            let age = 60_000 * i64::try_from(count - index).unwrap_or(i64::MAX);
            peers.gmail.add_message(
                &user.sub,
                NewMessage::new(crate::mail::generated(index))
                    .labels(labels)
                    .internal_date_ms(now - age),
            )
        })
        .collect();
    let (synced, _) = server.sync(&user).await?;
    ensure!(
        synced.messages_added_count == i32::try_from(count)?,
        "the sync added {} messages",
        synced.messages_added_count
    );

    peers.gemini.clear_requests();
    let (calls, wall) = triage_all(server, &user, count).await?;
    let model_calls = peers.gemini.triage_call_count();
    let batch = cli.triage_batch_size;
    let expected = count.div_ceil(batch);
    ensure!(
        model_calls == expected,
        "the peer counted {model_calls} triage calls, expected ⌈{count}/{batch}⌉ = {expected}"
    );
    let triaged: i32 = calls.iter().map(|call| call.response.triaged_count).sum();
    ensure!(
        triaged == i32::try_from(count)?,
        "{triaged} of {count} messages were triaged"
    );
    check_all_triaged(&calls, &ids)?;
    let usage = usage_of(&calls);
    ensure!(
        usage.model_call_count == i32::try_from(model_calls)?,
        "the responses report {} model calls, the peer counted {model_calls}",
        usage.model_call_count
    );

    // Per model call: from a batch's request reaching the peer to the next batch's (or to
    // the end of the TriageInbox call for its last batch). Before the first: selecting and
    // opening the page of messages.
    let mut per_model_call = Vec::with_capacity(model_calls);
    let mut before_first = Vec::with_capacity(calls.len());
    for call in &calls {
        let seen = arrivals.between(call.start, call.end);
        if let Some(first) = seen.first() {
            before_first.push(first.duration_since(call.start));
        }
        for (index, at) in seen.iter().enumerate() {
            let next = seen.get(index + 1).copied().unwrap_or(call.end);
            per_model_call.push(next.duration_since(*at));
        }
    }
    let per_call = Percentiles::of_durations(&per_model_call);
    let before = Percentiles::of_durations(&before_first);
    println!(
        "triage of {} new INBOX messages, gmail.triage_batch_size {batch}, the Gemini peer \
         answering at once: {} TriageInbox call{} (at most {TRIAGE_PAGE} of the newest per \
         call{}), {model_calls} model calls counted at the peer (⌈{count}/{batch}⌉ = \
         {expected}), {triaged} messages triaged; wall time {} (calls: {}); per model call \
         p50 {}, max {} (from a batch's request at the peer to the next one's or the end of \
         the call); before the first model call of a call p50 {}, max {}; prompt {} tokens, \
         output {} (the peer's word counts, summed from the responses' usage)",
        thousands(count),
        calls.len(),
        if calls.len() == 1 { "" } else { "s" },
        if calls.len() > 1 {
            ": the newest 100 are read, the second call takes the older unread ones"
        } else {
            ""
        },
        format_latency(Some(wall)),
        call_times(&calls),
        format_latency(per_call.at(0.5)),
        format_latency(per_call.max()),
        format_latency(before.at(0.5)),
        format_latency(before.max()),
        thousands(usize::try_from(usage.prompt_token_count)?),
        thousands(usize::try_from(usage.output_token_count)?),
    );

    peers.gemini.clear_requests();
    let (again, wall) = triage_all(server, &user, count).await?;
    let model_calls = peers.gemini.triage_call_count();
    ensure!(
        model_calls == 0,
        "triage of stored results made {model_calls} model calls"
    );
    let triaged: i32 = again.iter().map(|call| call.response.triaged_count).sum();
    ensure!(triaged == 0, "{triaged} messages were triaged again");
    ensure!(
        usage_of(&again).model_call_count == 0,
        "the responses report model calls"
    );
    check_all_triaged(&again, &ids)?;
    println!(
        "triage again of the same {} messages (stored results): {model_calls} model calls, \
         wall time {} (calls: {})",
        thousands(count),
        format_latency(Some(wall)),
        call_times(&again)
    );
    Ok(())
}

/// Characters of the text parts of a generate request: system instruction, then contents.
fn text_chars(request: &Value) -> (usize, usize) {
    let chars = |content: &Value| -> usize {
        content["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|part| part["text"].as_str())
            .map(|text| text.chars().count())
            .sum()
    };
    let contents = request["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(chars)
        .sum();
    (chars(&request["systemInstruction"]), contents)
}

/// Words of a raw message's body (after the header block).
fn body_words(raw: &[u8]) -> usize {
    let text = String::from_utf8_lossy(raw);
    text.split_once("\r\n\r\n")
        .map_or(0, |(_, body)| body.split_whitespace().count())
}

/// Checks a SummarizeThread answer: the peer's summary, from the model or stored.
fn check_summary(
    response: &pb::SummarizeThreadResponse,
    from_model: bool,
) -> anyhow::Result<pb::Usage> {
    let summary = response.summary.as_ref().context("no summary")?;
    ensure!(
        summary.summary == SUMMARY,
        "unexpected summary {:?}",
        summary.summary
    );
    let usage = response.usage.as_ref().cloned().unwrap_or_default();
    ensure!(
        summary.cached != from_model && usage.model_call_count == i32::from(from_model),
        "a summary {} the model made {} model calls (cached {})",
        if from_model { "from" } else { "without" },
        usage.model_call_count,
        summary.cached
    );
    Ok(usage)
}

/// SummarizeThread of a `--thread-messages` thread: prompt size, messages covered, latency
/// with and without a model call.
async fn summary_scenario(cli: &Cli, server: &Server, peers: &Peers) -> anyhow::Result<()> {
    let user = server.sign_in(peers, "barbara").await?;
    server.set_gemini_key(&user).await?;
    let count = cli.thread_messages;
    let now = now_ms()?;
    let mut thread_id = String::new();
    let (mut words, mut bytes) = (0, 0);
    for index in 0..count {
        let raw = crate::mail::thread_message(index);
        words += body_words(&raw);
        bytes += raw.len();
        // Half an hour apart, the newest half an hour old.
        let age = 1_800_000 * i64::try_from(count - index)?;
        let mut message = NewMessage::new(raw).internal_date_ms(now - age);
        if index > 0 {
            message = message.thread(thread_id.clone());
        }
        let id = peers.gmail.add_message(&user.sub, message);
        if index == 0 {
            // The peer names a new thread after its first message.
            thread_id = id;
        }
    }
    let (synced, _) = server.sync(&user).await?;
    ensure!(
        synced.messages_added_count == i32::try_from(count)?,
        "the sync added {} messages",
        synced.messages_added_count
    );

    peers.gemini.clear_requests();
    let (first, first_took) = server.summarize_thread(&user, &thread_id, false).await?;
    let usage = check_summary(&first, true)?;
    let requests = peers.gemini.requests();
    let request = requests
        .iter()
        .rev()
        .find(|request| request.path.contains(":generateContent"))
        .context("the peer received no generateContent call")?;
    let body = request.json().context("the request body is not JSON")?;
    let (system_chars, mail_chars) = text_chars(&body);
    let request_bytes = request.body.len();

    let mut with_model = Vec::with_capacity(cli.summary_runs);
    let mut reused = Vec::with_capacity(cli.summary_runs);
    for _ in 0..cli.summary_runs {
        let (response, took) = server.summarize_thread(&user, &thread_id, true).await?;
        let again = check_summary(&response, true)?;
        ensure!(
            again.prompt_token_count == usage.prompt_token_count
                && response.message_count == first.message_count,
            "a refreshed summary read another prompt"
        );
        with_model.push(took);
        let (response, took) = server.summarize_thread(&user, &thread_id, false).await?;
        check_summary(&response, false)?;
        reused.push(took);
    }
    let generate_calls = peers.gemini.generate_requests().len();
    ensure!(
        generate_calls == 1 + cli.summary_runs,
        "the peer received {generate_calls} generate calls, expected {}",
        1 + cli.summary_runs
    );
    let covered = usize::try_from(first.message_count)?;
    let chars = system_chars + mail_chars;
    let model = Percentiles::of_durations(&with_model);
    let stored = Percentiles::of_durations(&reused);
    println!(
        "summary of a {count}-message thread ({} words of bodies, {} raw): covers {covered} \
         messages, {} left out; prompt {} tokens as the response's usage reports them (the \
         peer counts the words of the request's text parts), {} characters sent ({} system \
         instruction + {} user turn) ≈ {} tokens at the server's 4 characters per token (its \
         budget: gmail.summary_context_tokens {} = {} characters), request body {}; latency: \
         first call (model) {}; with refresh (model) p50 {}, max {}; reused (no model call) \
         p50 {}, max {} ({} runs each)",
        thousands(words),
        format_bytes(u64::try_from(bytes)?),
        count.saturating_sub(covered),
        thousands(usize::try_from(usage.prompt_token_count)?),
        thousands(chars),
        thousands(system_chars),
        thousands(mail_chars),
        thousands(chars / CHARS_PER_TOKEN),
        thousands(SUMMARY_CONTEXT_TOKENS),
        thousands(SUMMARY_CONTEXT_TOKENS * CHARS_PER_TOKEN),
        format_bytes(u64::try_from(request_bytes)?),
        format_latency(Some(first_took)),
        format_latency(model.at(0.5)),
        format_latency(model.max()),
        format_latency(stored.at(0.5)),
        format_latency(stored.max()),
        cli.summary_runs,
    );
    Ok(())
}
