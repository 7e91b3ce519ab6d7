//! Latency distributions: nearest-rank percentiles and the summary a report row shows.

use std::time::Duration;

/// Nearest-rank percentile of sorted values (`p` in 0..=100); zero for no values.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds of a duration, as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One measured run: every latency of a successful request, every error, the wall time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Run {
    /// Latencies of the successful requests (unsorted).
    pub(crate) latencies: Vec<Duration>,
    /// Error messages of the failed requests.
    pub(crate) errors: Vec<String>,
    /// Time from the first request sent to the last answer.
    pub(crate) wall: Duration,
}

impl Run {
    /// Requests answered (successfully or not) per second of wall time.
    pub(crate) fn throughput(&self) -> f64 {
        let n = self.latencies.len() + self.errors.len();
        if self.wall.is_zero() {
            0.0
        } else {
            n as f64 / self.wall.as_secs_f64()
        }
    }

    /// The distribution of this run.
    pub(crate) fn summary(&self) -> Summary {
        Summary::of(std::slice::from_ref(self))
    }
}

/// The distribution of one or more runs of the same workload, pooled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Successful requests.
    pub(crate) n: usize,
    /// Failed requests.
    pub(crate) errors: usize,
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    /// Mean over the runs of each run's requests per second.
    pub(crate) throughput: f64,
    /// Lowest and highest median of the single runs (run-to-run noise).
    pub(crate) p50_range: (Duration, Duration),
    /// First error message, if any.
    pub(crate) first_error: Option<String>,
}

impl Summary {
    /// Pools the runs' latencies.
    pub(crate) fn of(runs: &[Run]) -> Self {
        let mut all: Vec<Duration> = runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        let medians: Vec<Duration> = runs
            .iter()
            .map(|r| {
                let mut l = r.latencies.clone();
                l.sort_unstable();
                percentile(&l, 50.0)
            })
            .collect();
        let n = all.len();
        Self {
            n,
            errors: runs.iter().map(|r| r.errors.len()).sum(),
            p50: percentile(&all, 50.0),
            p90: percentile(&all, 90.0),
            p99: percentile(&all, 99.0),
            max: all.last().copied().unwrap_or_default(),
            throughput: runs.iter().map(Run::throughput).sum::<f64>() / runs.len().max(1) as f64,
            p50_range: (
                medians.iter().min().copied().unwrap_or_default(),
                medians.iter().max().copied().unwrap_or_default(),
            ),
            first_error: runs.iter().find_map(|r| r.errors.first().cloned()),
        }
    }
}

/// Sorted latencies of all runs, in milliseconds (for CDF plots).
pub(crate) fn sorted_ms(runs: &[Run]) -> Vec<f64> {
    let mut all: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().map(|d| ms(*d)))
        .collect();
    all.sort_unstable_by(f64::total_cmp);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |n: u64| Duration::from_millis(n);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(50));
        assert_eq!(percentile(&sorted, 99.0), ms(99));
        assert_eq!(percentile(&sorted, 100.0), ms(100));
        assert_eq!(percentile(&sorted[..1], 99.0), ms(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn summaries_pool_runs_and_keep_the_median_range() {
        let ms = |n: u64| Duration::from_millis(n);
        let a = Run {
            latencies: vec![ms(3), ms(1), ms(2)],
            errors: vec![],
            wall: Duration::from_secs(1),
        };
        let b = Run {
            latencies: vec![ms(10), ms(20), ms(30)],
            errors: vec!["boom".into()],
            wall: Duration::from_secs(2),
        };
        let s = Summary::of(&[a, b]);
        assert_eq!(s.n, 6);
        assert_eq!(s.errors, 1);
        assert_eq!(s.p50, ms(3));
        assert_eq!(s.max, ms(30));
        assert_eq!(s.p50_range, (ms(2), ms(20)));
        assert_eq!(s.throughput, (3.0 + 2.0) / 2.0);
        assert_eq!(s.first_error.as_deref(), Some("boom"));
        assert_eq!(Summary::of(&[]).n, 0);
    }
}
