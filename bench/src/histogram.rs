//! A fixed-bucket latency histogram (log-linear, ~3% resolution from 1 µs to
//! ~70 s): recording is one increment, and workers' histograms add up.

use serde::{Deserialize, Serialize};

const SUB_BUCKETS: u64 = 32;
const BUCKETS: usize = 64 * SUB_BUCKETS as usize;

/// Counts of latencies in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, micros: u64) {
        self.counts[index(micros)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Latencies recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The latency (µs, bucket's upper bound) below which `quantile` of the
    /// records fall; 0 when empty.
    pub fn quantile(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((self.total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= target {
                return upper(i);
            }
        }
        upper(BUCKETS - 1)
    }
}

fn index(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let magnitude = 63 - micros.leading_zeros() as u64; // >= 5
    let shift = magnitude - 5;
    let sub = (micros >> shift) - SUB_BUCKETS; // 0..32
    (((magnitude - 4) * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
}

fn upper(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let magnitude = index / SUB_BUCKETS + 4;
    let sub = index % SUB_BUCKETS;
    let shift = magnitude - 5;
    ((SUB_BUCKETS + sub + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn quantiles_are_within_a_few_percent() {
        let mut h = Histogram::default();
        for micros in 1..=100_000u64 {
            h.record(micros);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.04, "q{q}: {got} vs {exact}");
        }
        let mut other = Histogram::default();
        other.record(5);
        h.merge(&other);
        assert_eq!(h.total(), 100_001);
    }
}
