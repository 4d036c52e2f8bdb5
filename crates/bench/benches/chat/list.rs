//! Scenario 1, ListMessages: pages of 50, BACKWARD from the newest message and FORWARD from
//! the middle, in a short and a very long session seeded through the store; the ratio of the
//! p99s shows whether a page costs the same however long the session is.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use assistd::proto::chat::v1 as pb;
use assistd_bench::format::{format_latency, thousands};
use assistd_bench::stats::Percentiles;
use assistd_domain::chat::{MessageContent, MessageRole, NewMessage, SessionId};

use crate::setup::Bench;
use crate::{Cli, verdict};

/// Messages per `append_messages` call when seeding.
const SEED_BATCH: usize = 1_000;
/// ListMessages page size measured.
const PAGE_SIZE: usize = 50;
/// Target of the long/short p99 ratio, printed beside it (nothing is asserted).
const LIST_RATIO_TARGET: f64 = 1.5;

/// One session and direction.
struct ListCase {
    messages: usize,
    forward: bool,
    start_sequence: i64,
    /// Latencies of the measured calls that returned a full page.
    latencies: Vec<Duration>,
    /// Calls that failed or returned fewer than a page.
    errors: usize,
    first_error: Option<String>,
    /// Whether --time-limit ended the case before --list-calls calls.
    stopped_early: bool,
}

/// What the scenario measured.
pub(crate) struct ListResult {
    /// (messages, seeding time) per session.
    seeding: Vec<(usize, Duration)>,
    cases: Vec<ListCase>,
    warmup: usize,
}

/// Seeds the two sessions, then times ListMessages in each, both ways.
pub(crate) async fn measure(cli: &Cli, bench: &Bench) -> anyhow::Result<ListResult> {
    let mut chat = bench.chat();
    let mut seeding = Vec::new();
    let mut sessions = Vec::new();
    for messages in [cli.small_session, cli.large_session] {
        let session = bench.session(&mut chat).await?;
        let started = Instant::now();
        seed(bench, &session, messages).await?;
        let took = started.elapsed();
        eprintln!("  seeded {messages} messages in {took:.1?}");
        // The statistics autovacuum's ANALYZE gives a deployment after such a burst of
        // inserts; `--no-analyze` shows what the server's queries cost without them (as on a
        // PostgreSQL with autovacuum off).
        if !cli.no_analyze {
            use assistd_store::ConnectionTrait as _;
            bench
                .store
                .connection()
                .execute_unprepared("ANALYZE")
                .await
                .context("ANALYZE after seeding")?;
        }
        seeding.push((messages, took));
        sessions.push((messages, session));
    }
    let warmup = (cli.list_calls / 10).max(1);
    let mut cases = Vec::new();
    for (messages, session) in &sessions {
        for forward in [false, true] {
            // BACKWARD from the newest message (the page a client opens a session with);
            // FORWARD from the middle (a jump to a search hit, then reading on).
            let start_sequence = if forward {
                i64::try_from(messages / 2)?
            } else {
                0
            };
            let request = pb::ListMessagesRequest {
                session_id: session.clone(),
                page_size: i32::try_from(PAGE_SIZE)?,
                direction: if forward {
                    pb::ListMessagesDirection::Forward
                } else {
                    pb::ListMessagesDirection::Backward
                }
                .into(),
                start_sequence,
                ..Default::default()
            };
            let expected = PAGE_SIZE.min(if forward {
                messages - messages / 2 + 1
            } else {
                *messages
            });
            let mut case = ListCase {
                messages: *messages,
                forward,
                start_sequence,
                latencies: Vec::with_capacity(cli.list_calls),
                errors: 0,
                first_error: None,
                stopped_early: false,
            };
            let warmup_until = Instant::now() + cli.time_limit / 10;
            let mut measure_until = None;
            for call in 0..warmup + cli.list_calls {
                if call < warmup {
                    if Instant::now() >= warmup_until {
                        continue;
                    }
                } else {
                    let until =
                        *measure_until.get_or_insert_with(|| Instant::now() + cli.time_limit);
                    if Instant::now() >= until {
                        case.stopped_early = true;
                        break;
                    }
                }
                let started = Instant::now();
                let result = chat.list_messages(bench.request(request.clone())).await;
                let latency = started.elapsed();
                if call < warmup {
                    continue;
                }
                match result {
                    Ok(response) if response.get_ref().messages.len() == expected => {
                        case.latencies.push(latency);
                    }
                    Ok(response) => {
                        case.errors += 1;
                        case.first_error.get_or_insert_with(|| {
                            format!(
                                "{} messages instead of {expected}",
                                response.get_ref().messages.len()
                            )
                        });
                    }
                    Err(status) => {
                        case.errors += 1;
                        case.first_error.get_or_insert_with(|| status.to_string());
                    }
                }
            }
            cases.push(case);
        }
    }
    Ok(ListResult {
        seeding,
        cases,
        warmup,
    })
}

/// Appends `count` messages, USER and MODEL in turn, of about 200 characters each, directly
/// through the store in batches.
async fn seed(bench: &Bench, session: &str, count: usize) -> anyhow::Result<()> {
    let session: SessionId = session.parse().context("CreateSession returned a bad id")?;
    const FILLER: &str = "The quarterly figures were reviewed on Thursday; Bob will send the \
                          revised forecast, the hiring plan and the budget notes to everyone \
                          before the Friday meeting in room four.";
    let mut index = 0;
    while index < count {
        let batch: Vec<NewMessage> = (index..count.min(index + SEED_BATCH))
            .map(|i| NewMessage {
                role: if i % 2 == 0 {
                    MessageRole::User
                } else {
                    MessageRole::Model
                },
                content: MessageContent::Text(format!("#{i:06} {FILLER}")),
                exchange_id: None,
                parts: None,
                metadata: None,
            })
            .collect();
        index += batch.len();
        bench
            .store
            .chat()
            .append_messages(bench.user, session, batch, None, chrono::Utc::now())
            .await
            .with_context(|| format!("appending messages up to {index}"))?;
    }
    Ok(())
}

/// Prints the table of cases and seeding times; adds the p99 ratios to `summary`.
pub(crate) fn print(list: &ListResult, cli: &Cli, label: &str, summary: &mut Vec<String>) {
    println!();
    println!(
        "### ListMessages, page of {PAGE_SIZE}, c=1 (up to {} measured calls per case, at most \
         {:?}, after up to {} warm-up calls)",
        cli.list_calls, cli.time_limit, list.warmup
    );
    println!();
    println!(
        "| session | direction | start_sequence | calls | errors | calls/s | p50 | p99 | max |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in &list.cases {
        let total: Duration = case.latencies.iter().sum();
        let rate = if total.is_zero() {
            0.0
        } else {
            case.latencies.len() as f64 / total.as_secs_f64()
        };
        let latencies = Percentiles::of_durations(&case.latencies);
        println!(
            "| {} messages | {} | {} | {} | {} | {rate:.0} | {} | {} | {} |",
            thousands(case.messages),
            direction_name(case.forward),
            if case.forward {
                case.start_sequence.to_string()
            } else {
                "newest".to_owned()
            },
            case.latencies.len(),
            case.errors,
            format_latency(latencies.at(0.50)),
            format_latency(latencies.at(0.99)),
            format_latency(latencies.max()),
        );
        if let Some(error) = &case.first_error {
            println!(
                "  first error ({} messages, {}): {error}",
                case.messages,
                direction_name(case.forward)
            );
        }
        if case.stopped_early {
            println!(
                "  ({} messages, {}: stopped at --time-limit {:?})",
                thousands(case.messages),
                direction_name(case.forward),
                cli.time_limit
            );
        }
    }
    println!();
    let seeding: Vec<String> = list
        .seeding
        .iter()
        .map(|(messages, took)| {
            let rate = *messages as f64 / took.as_secs_f64().max(1e-9);
            format!(
                "{} messages in {} ({rate:.0} messages/s)",
                thousands(*messages),
                format_latency(Some(*took))
            )
        })
        .collect();
    println!(
        "seeding through the store (append_messages, {SEED_BATCH} per call, ~200 characters \
         each, USER and MODEL in turn): {}",
        seeding.join("; ")
    );
    for forward in [false, true] {
        let p99 = |messages: usize| {
            list.cases
                .iter()
                .find(|c| c.forward == forward && c.messages == messages)
                .and_then(|c| Percentiles::of_durations(&c.latencies).at(0.99))
        };
        let line = match (p99(cli.large_session), p99(cli.small_session)) {
            (Some(large), Some(small)) if !small.is_zero() => {
                let ratio = large.as_secs_f64() / small.as_secs_f64();
                format!(
                    "{label}: ListMessages {} p99 ratio {} / {} messages = {ratio:.2} \
                     ({} vs {}); target ≤ {LIST_RATIO_TARGET} — {}",
                    direction_name(forward),
                    thousands(cli.large_session),
                    thousands(cli.small_session),
                    format_latency(Some(large)),
                    format_latency(Some(small)),
                    verdict(ratio <= LIST_RATIO_TARGET),
                )
            }
            _ => format!(
                "{label}: ListMessages {} p99 ratio: not measured (no successful calls); \
                 target ≤ {LIST_RATIO_TARGET}",
                direction_name(forward)
            ),
        };
        summary.push(line);
    }
}

fn direction_name(forward: bool) -> &'static str {
    if forward { "FORWARD" } else { "BACKWARD" }
}
