//! Summaries of repeated timings.

use std::time::Duration;

/// Repeated timings of one operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    /// The samples, in any order.
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        samples.sort();
        Samples { sorted: samples }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `q` quantile (0.0 to 1.0) by nearest rank; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q.clamp(0.0, 1.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The median (the lower one of an even count's middle pair).
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The smallest.
    pub fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    /// The largest.
    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples = Samples::new((1..=10).rev().map(Duration::from_millis).collect());
        assert_eq!(samples.len(), 10);
        assert_eq!(samples.min(), Duration::from_millis(1));
        assert_eq!(samples.median(), Duration::from_millis(5));
        assert_eq!(samples.quantile(0.9), Duration::from_millis(9));
        assert_eq!(samples.max(), Duration::from_millis(10));
        assert_eq!(Samples::default().median(), Duration::ZERO);
    }
}
