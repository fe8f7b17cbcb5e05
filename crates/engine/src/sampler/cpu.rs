//! CPU % from a counter of CPU time read on every tick.

use std::time::{Duration, Instant};

/// Shortest window a CPU % is computed over. CPU times of `/proc` come in
/// clock ticks (10 ms); over a few milliseconds one tick would read as
/// hundreds of percent.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// Turns successive readings of a CPU time counter into CPU %.
#[derive(Debug, Clone, Default)]
pub struct CpuMeter {
    last: Option<(u64, Instant)>,
}

impl CpuMeter {
    /// CPU % (100 is one core) since the last reading, given the counter
    /// `usec` (CPU time in microseconds) read at `now`. The first reading
    /// is measured from the counter's start, `counting_for` ago (a run's
    /// processes and cgroup start at zero with the run). A counter that
    /// went back (a process of the tree ended without being accounted)
    /// starts the meter again and reads 0.
    pub fn percent(&mut self, usec: u64, now: Instant, counting_for: Duration) -> f64 {
        let (before, window) = match self.last {
            Some((before, at)) => (before, now.saturating_duration_since(at)),
            None => (0, counting_for),
        };
        self.last = Some((usec, now));
        let Some(used) = usec.checked_sub(before) else {
            return 0.0;
        };
        used as f64 * 100.0 / window.max(MIN_WINDOW).as_micros() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_cpu_time_over_wall_time_between_readings() {
        let start = Instant::now();
        let mut meter = CpuMeter::default();
        // First reading: 1.5 s of CPU in the 2 s since the start.
        let first = meter.percent(1_500_000, start, Duration::from_secs(2));
        assert!((first - 75.0).abs() < 1e-9, "{first}");
        // Then two busy cores for 2 s.
        let second = meter.percent(5_500_000, start + Duration::from_secs(2), Duration::ZERO);
        assert!((second - 200.0).abs() < 1e-9, "{second}");
        // Then idle.
        let idle = meter.percent(5_500_000, start + Duration::from_secs(4), Duration::ZERO);
        assert_eq!(idle, 0.0);
    }

    #[test]
    fn a_counter_that_goes_back_starts_again() {
        let start = Instant::now();
        let mut meter = CpuMeter::default();
        meter.percent(900_000, start, Duration::from_secs(1));
        let reset = meter.percent(100_000, start + Duration::from_secs(1), Duration::ZERO);
        assert_eq!(reset, 0.0);
        let after = meter.percent(600_000, start + Duration::from_secs(2), Duration::ZERO);
        assert!((after - 50.0).abs() < 1e-9, "{after}");
    }

    #[test]
    fn a_tiny_window_does_not_explode() {
        let start = Instant::now();
        let mut meter = CpuMeter::default();
        // One 10 ms clock tick 2 ms after the start is not 500%.
        let first = meter.percent(10_000, start, Duration::from_millis(2));
        assert!((first - 10.0).abs() < 1e-9, "{first}");
    }
}
