//! The figures of one benchmark run and their Markdown report: machine,
//! a table of figures per N, the targets with pass/fail, and a row in the
//! peers' format (PEERS.md).

use crate::declared::UpRun;
use crate::events::Delivery;
use crate::floor::FloorRun;
use crate::measure::{Idle, Reattach, Status, Stop};
use crate::procinfo::Machine;
use crate::start::Start;
use crate::stats::Samples;
use std::fmt::Write;
use std::time::Duration;

/// The timings of one repeat of the start over the API (its fleet may be
/// gone: only the last repeat's is kept).
#[derive(Debug, Clone, Copy)]
pub struct StartRun {
    /// Until the last create request had answered.
    pub answered: Duration,
    /// Until `wrangle ps --json` showed all N `running`.
    pub all_running: Duration,
}

impl StartRun {
    /// The timings of `start`.
    pub fn of(start: &Start) -> StartRun {
        StartRun {
            answered: start.answered,
            all_running: start.all_running,
        }
    }
}

/// Everything measured for one N.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Number of agents.
    pub n: usize,
    /// Busy share of the machine just before, in %.
    pub busy_before: f64,
    /// The floor, measured `floor.len()` times.
    pub floor: Vec<FloorRun>,
    /// The last repeat of the start over the API, whose fleet went on to
    /// the later phases (its CPU figures are the report's).
    pub api_start: Start,
    /// The timings of every repeat of the start over the API, the last
    /// one included, in the order they ran.
    pub api_start_runs: Vec<StartRun>,
    /// Parallel connections the API start used.
    pub connections: usize,
    /// Start with a loop of `wrangle run` (of `--cli-loop` agents, at
    /// most N), if measured.
    pub cli_start: Option<Start>,
    /// The declarative path (`up`, `up` again, `down`), each round taking
    /// turns with the floor's runs; empty if not measured.
    pub up: Vec<UpRun>,
    /// `wrangle ps --json`, the CLI process.
    pub ps_cli: Status,
    /// `GET /v1/agents`, one connection per call.
    pub ps_api: Status,
    /// `wrangle summary --json`, the CLI process, where the binary has it.
    pub summary_cli: Option<Status>,
    /// `GET /metrics`, one connection per scrape, where the binary has it.
    pub metrics: Option<Status>,
    /// Starts with `wrangle events` subscribers following (none if not
    /// measured).
    pub events: Vec<Delivery>,
    /// Idle cost with N running.
    pub idle: Idle,
    /// Re-attach after a SIGKILL of the daemon with N running.
    pub reattach: Reattach,
    /// `wrangle stop --all` after the API start.
    pub stop_cli: Stop,
    /// `POST /v1/stop` after the CLI-loop start, if that was measured.
    pub stop_api: Option<Stop>,
    /// Phases left out at this N, each with why.
    pub not_measured: Vec<String>,
    /// What of the machine's limits disturbs the figures of this N (see
    /// `capacity`).
    pub warnings: Vec<String>,
}

impl Figures {
    /// Median floor spawn time.
    pub fn floor_spawn(&self) -> Duration {
        Samples::new(self.floor.iter().map(|run| run.spawn).collect()).median()
    }

    /// Median floor stop time.
    pub fn floor_stop(&self) -> Duration {
        Samples::new(self.floor.iter().map(|run| run.stop).collect()).median()
    }

    fn floor_range(&self, pick: fn(&FloorRun) -> Duration) -> String {
        range_cell(&Samples::new(self.floor.iter().map(pick).collect()))
    }

    /// The API start's repeats, one figure of each.
    fn start_samples(&self, pick: fn(&StartRun) -> Duration) -> Samples {
        Samples::new(self.api_start_runs.iter().map(pick).collect())
    }

    /// Median time of the API start until all were running.
    pub fn start_all_running(&self) -> Duration {
        self.start_samples(|run| run.all_running).median()
    }

    /// The starts with subscribers, until all were running.
    fn events_samples(&self) -> Samples {
        Samples::new(self.events.iter().map(|e| e.start.all_running).collect())
    }

    /// The start with subscribers of median time, if any was measured.
    pub fn median_delivery(&self) -> Option<&Delivery> {
        let median = self.events_samples().median();
        self.events.iter().find(|e| e.start.all_running == median)
    }

    /// One figure of each round of the declarative path.
    fn up_samples(&self, pick: fn(&UpRun) -> Duration) -> Samples {
        Samples::new(self.up.iter().map(pick).collect())
    }

    /// Median time of `wrangle up` until it exited, if measured.
    pub fn up_median(&self) -> Option<Duration> {
        (!self.up.is_empty()).then(|| self.up_samples(|run| run.up).median())
    }

    /// The round of `up` of median time, if any.
    fn median_up_run(&self) -> Option<&UpRun> {
        let median = self.up_median()?;
        self.up.iter().find(|run| run.up == median)
    }

    /// Median time of `wrangle down` until no agent was left, if measured.
    pub fn down_median(&self) -> Option<Duration> {
        (!self.up.is_empty()).then(|| self.up_samples(|run| run.down.agents_gone).median())
    }

    /// Agents the loop of `wrangle run` started, if it ran.
    fn cli_loop_agents(&self) -> Option<usize> {
        self.cli_start
            .as_ref()
            .map(|start| start.fleet.agents.len())
    }

    /// Median time of the API start until the last request had answered.
    pub fn start_answered(&self) -> Duration {
        self.start_samples(|run| run.answered).median()
    }
}

/// `median (min–max, k runs)` of repeated runs, or the one time.
fn range_cell(samples: &Samples) -> String {
    if samples.len() > 1 {
        format!(
            "{} ({}–{}, {} runs)",
            time(samples.median()),
            time(samples.min()),
            time(samples.max()),
            samples.len()
        )
    } else {
        time(samples.median())
    }
}

/// `12.3 ms` below a second, `1.23 s` above.
pub fn time(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 0.01 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

/// `x / y` as `1.85x`.
fn ratio(x: Duration, y: Duration) -> f64 {
    x.as_secs_f64() / y.as_secs_f64().max(1e-9)
}

/// KiB as `12.3 MiB`.
fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `median (p90 x, max y)` of status samples.
fn status_cell(status: &Status) -> String {
    format!(
        "{} (min {}, p90 {}, {} runs)",
        time(status.samples.median()),
        time(status.samples.min()),
        time(status.samples.quantile(0.9)),
        status.samples.len()
    )
}

/// `PASS` or `FAIL (how far off)`.
pub fn verdict(pass: bool, off_by: String) -> String {
    if pass {
        "PASS".into()
    } else {
        format!("**FAIL** ({off_by})")
    }
}

/// A report's title and the lines that say where it was measured: the
/// machine, its load, the homes' file system, the containment, the limits
/// and the binary.
pub fn header(title: &str, machine: &Machine, binary: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {title} — {}\n", machine.date);
    let _ = writeln!(
        out,
        "- machine: {} — {} cores, {:.1} GiB, Linux {}",
        machine.cpu, machine.cores, machine.memory_gib, machine.kernel
    );
    let _ = writeln!(out, "- load average at the start: {}", machine.load);
    let _ = writeln!(out, "- homes on: {}", machine.home_filesystem);
    let _ = writeln!(out, "- containment: {}", machine.containment);
    if !machine.limits.is_empty() {
        let _ = writeln!(out, "- limits: {}", machine.limits);
    }
    let _ = writeln!(out, "- kernel memory: {}", machine.kernel_memory);
    let _ = writeln!(out, "- wrangle: `{binary}`");
    out
}

/// The whole report.
pub fn markdown(
    machine: &Machine,
    binary: &str,
    figures: &[Figures],
    left_behind: usize,
) -> String {
    let mut out = header("wrangle benchmark", machine, binary);
    let _ = writeln!(
        out,
        "- agents: `sleep 3600`; floor = posix_spawnp/SIGTERM/waitpid from one process; floor, API start and `up`: median of their runs, interleaved; one fleet at a time"
    );
    let _ = writeln!(
        out,
        "- processes left behind after the benchmark: {left_behind}\n"
    );
    figure_table(&mut out, figures);
    for f in figures {
        for note in &f.not_measured {
            let _ = writeln!(out, "- N = {}: not measured: {note}", f.n);
        }
        for warning in &f.warnings {
            let _ = writeln!(out, "- N = {}: **warning**: {warning}", f.n);
        }
    }
    if figures
        .iter()
        .any(|f| !f.not_measured.is_empty() || !f.warnings.is_empty())
    {
        let _ = writeln!(out);
    }
    crate::targets::table(&mut out, figures);
    peer_rows(&mut out, figures);
    out
}

fn figure_table(out: &mut String, figures: &[Figures]) {
    let _ = write!(out, "### Figures\n\n| figure |");
    for f in figures {
        let _ = write!(out, " N = {} |", f.n);
    }
    let _ = write!(out, "\n|---|");
    for _ in figures {
        let _ = write!(out, "---|");
    }
    let _ = writeln!(out);
    let mut row = |label: &str, cell: &dyn Fn(&Figures) -> String| {
        let _ = write!(out, "| {label} |");
        for f in figures {
            let _ = write!(out, " {} |", cell(f));
        }
        let _ = writeln!(out);
    };
    row("machine busy just before (all cores)", &|f| {
        format!("{:.0}%", f.busy_before)
    });
    row("floor: spawn N (posix_spawnp)", &|f| {
        f.floor_range(|run| run.spawn)
    });
    row("floor: stop N (SIGTERM + waitpid)", &|f| {
        f.floor_range(|run| run.stop)
    });
    row("start, API: last 201 answered (median)", &|f| {
        format!(
            "{} ({} connections)",
            time(f.start_answered()),
            f.connections
        )
    });
    row(
        "**start, API: until `ps --json` shows all running**",
        &|f| {
            format!(
                "**{}**",
                range_cell(&f.start_samples(|run| run.all_running))
            )
        },
    );
    row("start ratio (API start / floor spawn, medians)", &|f| {
        format!("{:.1}x", ratio(f.start_all_running(), f.floor_spawn()))
    });
    row("per agent, API start", &|f| {
        time(f.start_all_running() / f.n.max(1) as u32)
    });
    row(
        "CPU during the API start (its last run): machine busy, daemon (+ zygote), shims, agents",
        &|f| {
            let cpu = &f.api_start.cpu;
            format!(
                "{:.0}%, {:.2} s, {:.2} s, {:.2} s",
                cpu.machine_busy, cpu.daemon, cpu.shims, cpu.agents
            )
        },
    );
    row(
        "**start, `wrangle up -f FILE` of N declared agents: until it exited**",
        &|f| match f.up_median() {
            None => "not measured".into(),
            Some(_) => format!("**{}**", range_cell(&f.up_samples(|run| run.up))),
        },
    );
    row("up ratio (`up` / floor spawn, medians)", &|f| {
        f.up_median().map_or("–".into(), |up| {
            format!("{:.1}x", ratio(up, f.floor_spawn()))
        })
    });
    row(
        "up: until `ps --json`, run after it exited, showed all running",
        &|f| {
            f.up_median().map_or("–".into(), |_| {
                range_cell(&f.up_samples(|run| run.up_all_running))
            })
        },
    );
    row(
        "CPU during `up` (its median run): machine busy, daemon (+ zygote), shims, agents, the `up` process",
        &|f| {
            f.median_up_run().map_or("–".into(), |run| {
                let cpu = &run.up_cpu;
                format!(
                    "{:.0}%, {:.2} s, {:.2} s, {:.2} s, {:.3} s",
                    cpu.machine_busy, cpu.daemon, cpu.shims, cpu.agents, run.up_cli_cpu
                )
            })
        },
    );
    row(
        "`wrangle up` again on the same file (starts nothing, same pids)",
        &|f| {
            f.up_median()
                .map_or("–".into(), |_| range_cell(&f.up_samples(|run| run.again)))
        },
    );
    row("`wrangle down -f FILE`: answered", &|f| {
        f.up_median().map_or("–".into(), |_| {
            range_cell(&f.up_samples(|run| run.down.answered))
        })
    });
    row(
        "**stop, `wrangle down -f FILE`: no agent left in /proc**",
        &|f| {
            f.down_median().map_or("not measured".into(), |_| {
                format!(
                    "**{}**",
                    range_cell(&f.up_samples(|run| run.down.agents_gone))
                )
            })
        },
    );
    row("down ratio (`down` / floor stop, medians)", &|f| {
        f.down_median().map_or("–".into(), |down| {
            format!("{:.1}x", ratio(down, f.floor_stop()))
        })
    });
    row(
        "start, loop of `wrangle run` CLI (K agents): until all running",
        &|f| match (&f.cli_start, f.cli_loop_agents()) {
            (Some(s), Some(k)) => format!("{} (K = {k})", time(s.all_running)),
            _ => "not measured".into(),
        },
    );
    row(
        "loop ratio, per agent (loop / K over floor spawn / N)",
        &|f| match (&f.cli_start, f.cli_loop_agents()) {
            (Some(s), Some(k)) if k > 0 => {
                let per_agent = s.all_running.as_secs_f64() / k as f64;
                let floor = f.floor_spawn().as_secs_f64() / f.n.max(1) as f64;
                format!("{:.1}x", per_agent / floor.max(1e-12))
            }
            _ => "–".into(),
        },
    );
    row("**`wrangle ps --json` CLI, wall time**", &|f| {
        format!("**{}**", status_cell(&f.ps_cli))
    });
    row("`GET /v1/agents`, new connection each", &|f| {
        status_cell(&f.ps_api)
    });
    row("size of the list", &|f| {
        format!("{:.0} KiB", f.ps_api.bytes as f64 / 1024.0)
    });
    row("`wrangle summary --json` CLI, wall time", &|f| {
        f.summary_cli
            .as_ref()
            .map_or("not measured".into(), status_cell)
    });
    row("**`GET /metrics`, new connection each**", &|f| {
        f.metrics
            .as_ref()
            .map_or("not measured".into(), |m| format!("**{}**", status_cell(m)))
    });
    row("size of the scrape", &|f| {
        f.metrics.as_ref().map_or("–".into(), |m| {
            format!("{:.0} KiB", m.bytes as f64 / 1024.0)
        })
    });
    row(
        "**start, API, with `wrangle events` subscribers following: until all running**",
        &|f| match f.median_delivery() {
            None => "not measured".into(),
            Some(e) => format!(
                "**{}** ({:.1}x the floor, {} subscribers)",
                range_cell(&f.events_samples()),
                ratio(e.start.all_running, f.floor_spawn()),
                e.subscribers
            ),
        },
    );
    row(
        "events of that start (median run): every subscriber had every one by (after all ran)",
        &|f| {
            f.median_delivery().map_or("–".into(), |e| {
                format!(
                    "{} events: {} ({} after)",
                    e.events,
                    time(e.all_delivered),
                    time(e.lag)
                )
            })
        },
    );
    row(
        "CPU during that start: machine busy, daemon (+ zygote), shims, agents, all subscribers",
        &|f| {
            f.median_delivery().map_or("–".into(), |e| {
                let cpu = &e.start.cpu;
                format!(
                    "{:.0}%, {:.2} s, {:.2} s, {:.2} s, {:.2} s",
                    cpu.machine_busy, cpu.daemon, cpu.shims, cpu.agents, e.subscribers_cpu
                )
            })
        },
    );
    row(
        "**events delivered per second, all subscribers together; lost, twice (all runs)**",
        &|f| {
            f.median_delivery().map_or("–".into(), |e| {
                let lost: u64 = f.events.iter().map(|e| e.lost).sum();
                let twice: u64 = f.events.iter().map(|e| e.twice).sum();
                format!("**{:.0}/s**; {lost} lost, {twice} twice", e.per_second)
            })
        },
    );
    row(
        "**re-attach: SIGKILL the daemon until a new one lists all running**",
        &|f| format!("**{}**", time(f.reattach.took)),
    );
    row("stop, `wrangle stop --all`: answered", &|f| {
        time(f.stop_cli.answered)
    });
    row(
        "**stop, `wrangle stop --all`: no agent left in /proc**",
        &|f| format!("**{}**", time(f.stop_cli.agents_gone)),
    );
    row("stop: every shim has exited", &|f| {
        time(f.stop_cli.shims_exited)
    });
    row("stop ratio (wrangle stop / floor stop)", &|f| {
        format!("{:.1}x", ratio(f.stop_cli.agents_gone, f.floor_stop()))
    });
    row("stop, `POST /v1/stop` of the loop's K agents", &|f| {
        f.stop_api
            .as_ref()
            .map_or("not measured".into(), |s| time(s.agents_gone))
    });
    row(
        "**daemon idle CPU (% of one core), sampler at its 2 s tick**",
        &|f| {
            format!(
                "**{:.2}%** over {:.0} s",
                f.idle.daemon_cpu,
                f.idle.window.as_secs_f64()
            )
        },
    );
    row("daemon RSS (peak)", &|f| {
        format!(
            "{} ({})",
            mib(f.idle.daemon_rss_kib),
            mib(f.idle.daemon_peak_kib)
        )
    });
    row("machine busy during the idle window (all cores)", &|f| {
        format!("{:.1}%", f.idle.machine_busy)
    });
    row("all shims idle CPU (% of one core)", &|f| {
        format!("{:.2}%", f.idle.shims_cpu)
    });
    row("all shims PSS (RSS of one shim)", &|f| {
        format!(
            "{} ({})",
            mib(f.idle.shims_pss_kib),
            mib(f.idle.shim_rss_kib)
        )
    });
    let _ = writeln!(out);
}

fn peer_rows(out: &mut String, figures: &[Figures]) {
    let _ = writeln!(
        out,
        "### In the peers' format (PEERS.md)\n\n| N | start all | status | stop all | idle CPU | daemon RSS |\n|---|---|---|---|---|---|"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "| {} floor (this run) | {} | – | {} | – | – |",
            f.n,
            time(f.floor_spawn()),
            time(f.floor_stop())
        );
        let up = f
            .up_median()
            .map(|up| format!(" (`up`: {})", time(up)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} wrangle | {}{} | {} | {} | {:.2}% | {} |",
            f.n,
            time(f.start_all_running()),
            up,
            time(f.ps_cli.samples.median()),
            time(f.stop_cli.agents_gone),
            f.idle.daemon_cpu,
            mib(f.idle.daemon_rss_kib)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_runs_show_their_median_range_and_count() {
        let runs = Samples::new([934, 850, 894].map(Duration::from_millis).to_vec());
        assert_eq!(range_cell(&runs), "894.0 ms (850.0 ms–934.0 ms, 3 runs)");
        let one = Samples::new(vec![Duration::from_millis(894)]);
        assert_eq!(range_cell(&one), "894.0 ms");
    }
}
