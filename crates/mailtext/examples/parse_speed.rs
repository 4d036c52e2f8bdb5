//! Times `assistd_mailtext::parse` and `search_words` on message files (build with
//! `--release`): median and slowest of the runs, per file.
//!
//! `cargo run --release -p assistd-mailtext --example parse_speed -- [runs] message.eml …`

use std::time::{Duration, Instant};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let runs = match args.first().and_then(|a| a.parse::<usize>().ok()) {
        Some(runs) => {
            args.remove(0);
            runs.max(1)
        }
        None => 50,
    };
    let cap = 1 << 20;
    println!(
        "{:<50} {:>10} {:>12} {:>12} {:>14}",
        "file", "bytes", "parse p50", "parse max", "+words p50"
    );
    for path in args {
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(error) => {
                eprintln!("{path}: {error}");
                continue;
            }
        };
        let mut parse_times = Vec::with_capacity(runs);
        let mut word_times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let mail = assistd_mailtext::parse(&raw, cap);
            parse_times.push(start.elapsed());
            let start = Instant::now();
            let words = assistd_mailtext::search_words(&mail.searchable_text());
            word_times.push(start.elapsed());
            std::hint::black_box(words);
        }
        parse_times.sort();
        word_times.sort();
        let name = std::path::Path::new(&path)
            .file_name()
            .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
        println!(
            "{:<50} {:>10} {:>12} {:>12} {:>14}",
            name,
            raw.len(),
            ms(parse_times[runs / 2]),
            ms(parse_times[runs - 1]),
            ms(word_times[runs / 2]),
        );
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}
