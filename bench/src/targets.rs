//! The targets the figures of each N are judged against, and the report's
//! Targets table.
//!
//! A target is named for a fleet size: one named for 1000 agents is
//! judged at every N up to 1000, one named for 10,000 at every N above
//! 1000 up to 10,000 (where a figure has a target at both sizes, the
//! tighter one holds below 1000). Targets named for no size, such as a
//! ratio to the floor, are judged at every N. A path that misses its
//! target says so in the table: **FAIL**, with how far off.

use crate::report::{time, verdict, Figures};
use std::fmt::Write as _;
use std::time::Duration;

/// What a limit is counted in.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Times the floor's figure.
    Ratio,
    /// Seconds.
    Seconds,
    /// % of one core.
    Percent,
    /// MiB.
    Mib,
}

/// One target.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is judged, as the table says it, `{limit}` standing for the
    /// limit.
    label: &'static str,
    /// Judged at N above this...
    above: usize,
    /// ...and up to this.
    up_to: usize,
    /// The figure may be at most this, in `unit`.
    limit: f64,
    unit: Unit,
    /// The figure of one N in `unit`, and how the table shows it; `None`
    /// when it was not measured.
    measure: fn(&Figures) -> Option<(f64, String)>,
}

/// No upper bound on N.
const ANY: usize = usize::MAX;

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// `x / y` of two durations.
fn ratio(x: Duration, y: Duration) -> f64 {
    x.as_secs_f64() / y.as_secs_f64().max(1e-9)
}

/// A time and its ratio to the floor's: `0.42 s, 7.5x the floor's stop
/// (0.056 s)`.
fn with_floor(figure: Duration, floor: Duration, what: &str) -> String {
    format!(
        "{}, {:.1}x the floor's {what} ({})",
        time(figure),
        ratio(figure, floor),
        time(floor)
    )
}

impl Target {
    fn new(
        label: &'static str,
        (above, up_to): (usize, usize),
        limit: f64,
        unit: Unit,
        measure: fn(&Figures) -> Option<(f64, String)>,
    ) -> Target {
        Target {
            label,
            above,
            up_to,
            limit,
            unit,
            measure,
        }
    }

    /// Whether this target is judged at `n`.
    fn applies_to(&self, n: usize) -> bool {
        n > self.above && n <= self.up_to
    }

    /// What is judged, with the limit, as the table says it.
    fn label(&self) -> String {
        self.label.replace("{limit}", &self.shown_limit())
    }

    /// The limit as the table shows it.
    fn shown_limit(&self) -> String {
        match self.unit {
            Unit::Ratio => format!("{:.1}x", self.limit),
            Unit::Seconds => time(Duration::from_secs_f64(self.limit)),
            Unit::Percent => format!("{}%", self.limit),
            Unit::Mib => format!("{} MiB", self.limit),
        }
    }
}

/// Every target, in the table's order.
pub fn all() -> Vec<Target> {
    const UP_TO_1000: (usize, usize) = (0, 1000);
    const UP_TO_10000: (usize, usize) = (1000, 10_000);
    const EVERY_N: (usize, usize) = (0, ANY);
    vec![
        Target::new(
            "start over the API within {limit} of the floor's spawn",
            EVERY_N,
            2.0,
            Unit::Ratio,
            |f| {
                let start = f.start_all_running();
                let floor = f.floor_spawn();
                Some((
                    ratio(start, floor),
                    format!(
                        "{:.2}x ({} vs {})",
                        ratio(start, floor),
                        time(start),
                        time(floor)
                    ),
                ))
            },
        ),
        Target::new(
            "`wrangle up` within {limit} of the floor's spawn",
            EVERY_N,
            2.0,
            Unit::Ratio,
            |f| {
                let up = f.up_median()?;
                let floor = f.floor_spawn();
                Some((
                    ratio(up, floor),
                    format!(
                        "{:.2}x ({} vs {})",
                        ratio(up, floor),
                        time(up),
                        time(floor)
                    ),
                ))
            },
        ),
        stop_all(UP_TO_1000, 0.5),
        stop_all(UP_TO_10000, 3.0),
        Target::new(
            "`wrangle down` at most {limit} (no agent left in /proc)",
            UP_TO_1000,
            0.5,
            Unit::Seconds,
            |f| {
                let down = f.down_median()?;
                Some((seconds(down), with_floor(down, f.floor_stop(), "stop")))
            },
        ),
        ps_cli(UP_TO_1000, 0.025),
        ps_cli(UP_TO_10000, 0.150),
        reattach(UP_TO_1000, 1.0),
        reattach(UP_TO_10000, 2.0),
        idle(UP_TO_1000, 1.0),
        idle(UP_TO_10000, 2.0),
        Target::new(
            "daemon RSS at most {limit} (after the idle window)",
            (0, 10_000),
            150.0,
            Unit::Mib,
            |f| {
                let rss = f.idle.daemon_rss_kib as f64 / 1024.0;
                let peak = f.idle.daemon_peak_kib as f64 / 1024.0;
                Some((rss, format!("{rss:.1} MiB (peak {peak:.1} MiB)")))
            },
        ),
        Target::new(
            "`GET /metrics` at most {limit}",
            UP_TO_1000,
            0.020,
            Unit::Seconds,
            |f| {
                let scrape = f.metrics.as_ref()?.samples.median();
                Some((seconds(scrape), time(scrape)))
            },
        ),
        Target::new(
            "start over the API with `wrangle events` subscribers within {limit} of the floor's spawn",
            UP_TO_1000,
            1.8,
            Unit::Ratio,
            |f| {
                let events = f.median_delivery()?;
                let start = ratio(events.start.all_running, f.floor_spawn());
                Some((
                    start,
                    format!(
                        "{start:.2}x ({}, {} subscribers)",
                        time(events.start.all_running),
                        events.subscribers
                    ),
                ))
            },
        ),
        Target::new(
            "every subscriber gets every event of a start, none lost, none twice",
            EVERY_N,
            0.0,
            Unit::Ratio,
            |f| {
                let events = f.median_delivery()?;
                let lost: u64 = f.events.iter().map(|e| e.lost).sum();
                let twice: u64 = f.events.iter().map(|e| e.twice).sum();
                Some((
                    (lost + twice) as f64,
                    format!(
                        "{lost} lost, {twice} twice of {} runs x {} x {}",
                        f.events.len(),
                        events.subscribers,
                        events.events
                    ),
                ))
            },
        ),
    ]
}

fn stop_all(scope: (usize, usize), limit: f64) -> Target {
    Target::new(
        "`wrangle stop --all` at most {limit} (no agent left in /proc)",
        scope,
        limit,
        Unit::Seconds,
        |f| {
            let stop = f.stop_cli.agents_gone;
            Some((seconds(stop), with_floor(stop, f.floor_stop(), "stop")))
        },
    )
}

fn ps_cli(scope: (usize, usize), limit: f64) -> Target {
    Target::new(
        "`wrangle ps --json` from the CLI at most {limit} (median, process start included)",
        scope,
        limit,
        Unit::Seconds,
        |f| {
            let ps = f.ps_cli.samples.median();
            Some((seconds(ps), time(ps)))
        },
    )
}

fn reattach(scope: (usize, usize), limit: f64) -> Target {
    Target::new(
        "re-attach after a daemon SIGKILL at most {limit}",
        scope,
        limit,
        Unit::Seconds,
        |f| Some((seconds(f.reattach.took), time(f.reattach.took))),
    )
}

fn idle(scope: (usize, usize), limit: f64) -> Target {
    Target::new(
        "idle daemon at most {limit} of a core, sampler at its 2 s tick",
        scope,
        limit,
        Unit::Percent,
        |f| Some((f.idle.daemon_cpu, format!("{:.2}%", f.idle.daemon_cpu))),
    )
}

/// The Targets table: every target that applies to each N, with its
/// verdict; a target whose figure was not measured at that N says so.
pub fn table(out: &mut String, figures: &[Figures]) {
    let _ = writeln!(
        out,
        "### Targets\n\nA target named for 1000 agents is judged at every N up to 1000, one named for 10,000 at N above 1000 up to 10,000; ratios are to the floor of the same N in this run.\n\n| target | N | measured | verdict |\n|---|---|---|---|"
    );
    let targets = all();
    for f in figures {
        for target in targets.iter().filter(|target| target.applies_to(f.n)) {
            let (measured, judged) = match (target.measure)(f) {
                Some((value, shown)) => {
                    let off = if target.limit > 0.0 {
                        format!("{:.2}x the target", value / target.limit)
                    } else {
                        "must be none".to_string()
                    };
                    (shown, verdict(value <= target.limit, off))
                }
                None => ("not measured".to_string(), "–".to_string()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {measured} | {judged} |",
                target.label(),
                f.n
            );
        }
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged_at(n: usize) -> Vec<String> {
        all()
            .into_iter()
            .filter(|target| target.applies_to(n))
            .map(|target| format!("{} [{}]", target.label(), target.shown_limit()))
            .collect()
    }

    #[test]
    fn each_size_is_judged_by_the_targets_named_for_it() {
        let at_1000 = judged_at(1000);
        assert!(at_1000
            .iter()
            .any(|t| t.contains("ps --json") && t.contains("[25.0 ms]")));
        assert!(!at_1000.iter().any(|t| t.contains("[150.0 ms]")));
        assert!(at_1000.iter().any(|t| t.contains("down")));
        let at_100 = judged_at(100);
        assert_eq!(at_100, at_1000);
        let at_10000 = judged_at(10_000);
        assert!(at_10000
            .iter()
            .any(|t| t.contains("ps --json") && t.contains("[150.0 ms]")));
        assert!(at_10000
            .iter()
            .any(|t| t.contains("stop --all") && t.contains("[3.00 s]")));
        assert!(at_10000
            .iter()
            .any(|t| t.contains("re-attach") && t.contains("[2.00 s]")));
        assert!(at_10000
            .iter()
            .any(|t| t.contains("idle") && t.contains("[2%]")));
        assert!(at_10000
            .iter()
            .any(|t| t.contains("RSS") && t.contains("[150 MiB]")));
        assert!(at_10000.iter().any(|t| t.contains("`wrangle up`")));
        assert!(!at_10000.iter().any(|t| t.contains("down")));
        assert!(!at_10000.iter().any(|t| t.contains("[25.0 ms]")));
        // Past 10,000 only the ratios (and the events' check) are judged.
        assert_eq!(judged_at(20_000).len(), 3);
    }
}
