//! Percentiles of measured latencies and signed delays, read from an HDR histogram.
//!
//! The histogram keeps three significant digits (0.1 % of the value), far finer than the
//! printed figures; minimum and maximum are kept exactly beside it. Delays may be negative
//! (one clock, two processes' notions of "done"), which a histogram of unsigned values cannot
//! hold, so values are recorded shifted up by the smallest negative one.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Significant decimal digits the histogram keeps.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The distribution of a set of values in nanoseconds.
#[derive(Debug)]
pub struct Percentiles {
    histogram: Histogram<u64>,
    /// Subtracted from every value before recording (the smallest value when negative, else 0).
    offset: i64,
    min: Option<i64>,
    max: Option<i64>,
}

impl Percentiles {
    /// The distribution of `nanos`, which may be negative.
    #[must_use]
    pub fn of_nanos(nanos: &[i64]) -> Self {
        let min = nanos.iter().copied().min();
        let max = nanos.iter().copied().max();
        let offset = min.unwrap_or(0).min(0);
        // Auto-resizing, so no upper bound needs guessing; creation only fails for a precision
        // outside 0..=5.
        let mut histogram =
            Histogram::<u64>::new(SIGNIFICANT_DIGITS).expect("3 significant digits are valid");
        for &value in nanos {
            let shifted = u64::try_from(i128::from(value) - i128::from(offset))
                .expect("no value is below the smallest value");
            histogram
                .record(shifted)
                .expect("an auto-resizing histogram records any value");
        }
        Self {
            histogram,
            offset,
            min,
            max,
        }
    }

    /// The distribution of `durations`.
    #[must_use]
    pub fn of_durations(durations: &[Duration]) -> Self {
        let nanos: Vec<i64> = durations.iter().map(|d| duration_nanos(*d)).collect();
        Self::of_nanos(&nanos)
    }

    /// How many values there are.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The value at `quantile` (0.5 for the median, 0.99 for p99) in nanoseconds; `None` when
    /// there are no values.
    #[must_use]
    pub fn nanos_at(&self, quantile: f64) -> Option<i64> {
        if self.is_empty() {
            return None;
        }
        let shifted = self.histogram.value_at_quantile(quantile);
        let value = i128::from(shifted) + i128::from(self.offset);
        // The histogram answers the highest value of the bucket; never beyond what was seen.
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        Some(self.max.map_or(value, |max| value.min(max)))
    }

    /// The value at `quantile` as a duration (negative values count as zero).
    #[must_use]
    pub fn at(&self, quantile: f64) -> Option<Duration> {
        self.nanos_at(quantile).map(nanos_duration)
    }

    /// The smallest value in nanoseconds, exactly.
    #[must_use]
    pub fn min_nanos(&self) -> Option<i64> {
        self.min
    }

    /// The largest value in nanoseconds, exactly.
    #[must_use]
    pub fn max_nanos(&self) -> Option<i64> {
        self.max
    }

    /// The largest value as a duration, exactly.
    #[must_use]
    pub fn max(&self) -> Option<Duration> {
        self.max.map(nanos_duration)
    }
}

fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn nanos_duration(nanos: i64) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_values_within_the_histograms_precision() {
        let values: Vec<Duration> = (1..=1_000).map(Duration::from_micros).collect();
        let percentiles = Percentiles::of_durations(&values);
        assert_eq!(percentiles.len(), 1_000);
        let p50 = percentiles.at(0.50).unwrap().as_secs_f64();
        let p99 = percentiles.at(0.99).unwrap().as_secs_f64();
        assert!((p50 - 500e-6).abs() <= 500e-6 * 1e-3, "{p50}");
        assert!((p99 - 990e-6).abs() <= 990e-6 * 1e-3, "{p99}");
        assert_eq!(percentiles.max(), Some(Duration::from_millis(1)));
    }

    #[test]
    fn negative_delays_keep_their_sign() {
        let percentiles = Percentiles::of_nanos(&[-5_000, -1_000, 2_000, 3_000]);
        assert_eq!(percentiles.min_nanos(), Some(-5_000));
        assert_eq!(percentiles.max_nanos(), Some(3_000));
        let p25 = percentiles.nanos_at(0.25).unwrap();
        assert!((-5_005..=-4_995).contains(&p25), "{p25}");
        assert_eq!(percentiles.nanos_at(1.0), Some(3_000));
    }

    #[test]
    fn no_values_have_no_percentiles() {
        let percentiles = Percentiles::of_nanos(&[]);
        assert!(percentiles.is_empty());
        assert_eq!(percentiles.at(0.5), None);
        assert_eq!(percentiles.max(), None);
    }
}
