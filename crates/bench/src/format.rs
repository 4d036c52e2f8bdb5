//! How the benches print figures: latencies with a unit that suits them, signed delays, byte
//! sizes and counts with thousands separators.

use std::time::Duration;

/// A latency as `850 µs`, `12.34 ms` or `1.50 s`; `-` when there is none.
#[must_use]
pub fn format_latency(latency: Option<Duration>) -> String {
    let Some(latency) = latency else {
        return "-".to_owned();
    };
    let micros = latency.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// A signed delay in nanoseconds like [`format_latency`], with `−` in front when negative.
#[must_use]
pub fn format_signed(nanos: Option<i64>) -> String {
    match nanos {
        None => "-".to_owned(),
        Some(nanos) => {
            let magnitude = format_latency(Some(Duration::from_nanos(nanos.unsigned_abs())));
            if nanos < 0 {
                format!("−{magnitude}")
            } else {
                magnitude
            }
        }
    }
}

/// A size as `59.5 MiB`, or in KiB below one MiB.
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// `100000` → `100,000`.
#[must_use]
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_with_fitting_units() {
        assert_eq!(format_latency(None), "-");
        assert_eq!(format_latency(Some(Duration::from_micros(850))), "850 µs");
        assert_eq!(
            format_latency(Some(Duration::from_micros(12_340))),
            "12.34 ms"
        );
        assert_eq!(format_latency(Some(Duration::from_millis(1_500))), "1.50 s");
        assert_eq!(format_signed(Some(-2_000)), "−2 µs");
        assert_eq!(format_signed(Some(2_000)), "2 µs");
        assert_eq!(format_bytes(512 * 1024), "512 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
    }
}
