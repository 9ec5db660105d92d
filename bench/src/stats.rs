//! Latency summaries: nearest-rank percentiles over the raw samples.

use std::time::Duration;

use serde::Serialize;

/// p50/p90/p99 and friends of one series, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        Summary::of_ms(&samples.iter().map(|d| ms(*d)).collect::<Vec<_>>())
    }

    pub fn of_ms(samples: &[f64]) -> Summary {
        let mut s: Vec<f64> = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            return Summary {
                n,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                mean_ms: 0.0,
                min_ms: 0.0,
                max_ms: 0.0,
            };
        }
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let rank = |p: f64| s[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Summary {
            n,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            mean_ms: s.iter().sum::<f64>() / n as f64,
            min_ms: s[0],
            max_ms: s[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of_ms(&samples);
        assert_eq!(
            (s.p50_ms, s.p90_ms, s.p99_ms, s.min_ms, s.max_ms),
            (50.0, 90.0, 99.0, 1.0, 100.0)
        );
        assert_eq!(Summary::of_ms(&[3.0]).p99_ms, 3.0);
        assert_eq!(Summary::of_ms(&[]).n, 0);
    }
}
