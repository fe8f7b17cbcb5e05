//! The sampler: one thread for all runs that, on a fixed tick, reads each
//! running run's process tree (from `/proc`, or its cgroup), its status
//! file and its logs' times, and publishes a [`Snapshot`]. Status
//! calls read the snapshot and never sample, sleep or walk `/proc`.
//!
//! A tick is one pass over the runs; files of processes and cgroups are
//! kept open between ticks and buffers are reused, so a steady fleet is
//! sampled without opening or allocating anything. A run's logs and status
//! file are looked at only when the kernel told of a change in its
//! directory (see [`changes`]).

mod changes;
mod cpu;
mod run;
mod snapshot;
pub mod status_file;
#[cfg(test)]
mod tests;

pub use snapshot::{Observation, Snapshot};

use crate::registry::IdMap;
use crate::registry::Registry;
use crate::{Engine, Inner};
use changes::Changes;
use chrono::Utc;
use run::{RunSampler, Scratch, Target};
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};
use wrangle_os::sample::WatchedCgroup;
use wrangle_os::Containment;
use wrangle_wire::State;

/// Tick of the sampler when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// Share of the process's open-file limit the sampler may keep open
/// between ticks (1 in this many); past it, files are opened on each
/// tick instead.
const OPEN_FILES_SHARE: u64 = 2;

/// Starts the sampler's thread; it ends once the engine is gone.
pub(crate) fn start(engine: Weak<Inner>, interval: Duration) -> io::Result<()> {
    let interval = interval.max(wrangle_wire::parse::MIN_SAMPLE_INTERVAL);
    let open_files = wrangle_os::sample::open_file_limit().map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    let limit = open_files / OPEN_FILES_SHARE as usize;
    thread::Builder::new()
        .name("wrangle-sampler".into())
        .spawn(move || {
            let new_sampler = || Sampler::new(limit, open_files, true);
            let mut sampler = new_sampler();
            let mut next = Instant::now();
            loop {
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                // A bug in one tick must not end sampling for good: the
                // next tick starts afresh.
                let ticked = panic::catch_unwind(AssertUnwindSafe(|| sampler.tick(&engine)));
                if ticked.is_err() {
                    tracing::error!("the sampler failed; it starts again at the next tick");
                    sampler = new_sampler();
                }
                drop(engine);
                // A late tick does not make the next ones come faster.
                let now = Instant::now();
                next = (next + interval).max(now);
                thread::sleep(next - now);
            }
        })
        .map(drop)
}

/// The sampler's own state, kept from tick to tick.
struct Sampler {
    /// The runs watched, by agent id.
    runs: IdMap<RunSampler>,
    scratch: Scratch,
    /// Which runs' files changed.
    changes: Changes,
    /// The cgroup all runs' cgroups are in, and the CPU time its whole
    /// subtree had used at the last tick.
    fleet: Option<(WatchedCgroup, Option<u64>)>,
    /// The registry's count of changes when the runs to watch were last
    /// taken from it (see [`Registry::changes`](crate::registry::Registry::changes)).
    followed: Option<u64>,
    /// The agents whose runs were let go since the last tick, to drop
    /// from the snapshot.
    dropped: Vec<String>,
}

impl Sampler {
    /// A sampler watching no run yet, that may keep `limit` files open and
    /// takes changes of files from the kernel when `kernel_changes` (else
    /// it looks at every run's files on every tick).
    fn new(limit: usize, open_files: usize, kernel_changes: bool) -> Sampler {
        Sampler {
            runs: IdMap::default(),
            scratch: Scratch::new(limit, open_files),
            changes: Changes::new(kernel_changes),
            fleet: None,
            followed: None,
            dropped: Vec::new(),
        }
    }

    /// One tick: takes the runs to watch from the registry, samples each
    /// (holding no lock), publishes the observations, and has the agents'
    /// health assessed from them.
    fn tick(&mut self, engine: &Arc<Inner>) {
        let started = Instant::now();
        // The registry is only read under its lock; the new runs' files
        // are set up after, so that requests are not kept waiting.
        let new_runs = {
            let registry = engine.lock_registry();
            // No status changed since: the runs to watch are those watched
            // (ten thousand agents are not looked up again on every tick).
            if self.followed == Some(registry.changes()) {
                Vec::new()
            } else {
                self.followed = Some(registry.changes());
                self.follow(&registry)
            }
        };
        for (id, target) in new_runs {
            self.watch(&id, target);
        }
        if self.fleet.is_none() {
            if let Containment::Cgroup { base } = &engine.config.containment {
                self.fleet = WatchedCgroup::open(base).ok().map(|cgroup| (cgroup, None));
            }
        }
        self.sample();
        let dropped = mem::take(&mut self.dropped);
        engine.lock_observations().publish(
            Utc::now(),
            dropped.iter(),
            self.runs
                .iter_mut()
                .filter_map(|(id, run)| Some((id, run.unpublished()?))),
        );
        let runs = &self.runs;
        Engine {
            inner: engine.clone(),
        }
        .assess_all();
        tracing::debug!(
            runs = runs.len(),
            watched = self.changes.watched(),
            took = ?started.elapsed(),
            "sampled"
        );
    }

    /// Samples every run watched, once.
    fn sample(&mut self) {
        self.changes.drain(&mut self.runs);
        self.scratch.start_tick(self.runs.len());
        let now = Instant::now();
        let wall = Utc::now();
        // No process in any run's cgroup used CPU since the last tick:
        // none started, ended, grew or opened a file, so no tree changed
        // (an idle fleet of ten thousand costs one read, not twenty
        // thousand). Each run still reads its memory now and then.
        let fleet_quiet = match &mut self.fleet {
            Some((cgroup, last)) => {
                let usec = cgroup.cpu_usage_usec(&mut self.scratch.buffer);
                let quiet = usec.is_some() && usec == *last;
                *last = usec;
                quiet
            }
            None => false,
        };
        for run in self.runs.values_mut().filter(|run| !run.is_stopping()) {
            run.sample(&mut self.scratch, now, wall, fleet_quiet);
        }
    }

    /// Keeps watching the runs that are running or stopping, and only
    /// those (runs watched already keep their open files); returns the
    /// runs to start watching.
    fn follow(&mut self, registry: &Registry) -> Vec<(String, Target)> {
        let mut new_runs = Vec::new();
        for agent in registry.agents() {
            if !matches!(agent.status.state, State::Running | State::Stopping) {
                continue;
            }
            let run = &agent.status.run;
            let (Some(shim), Some(main)) = (run.shim, run.process) else {
                continue;
            };
            let stopping = agent.status.state == State::Stopping;
            match self.runs.get_mut(agent.identity.id.as_str()) {
                Some(sampler) if sampler.watches(run.number, shim) => sampler.mark(stopping),
                // A run seen first while it is stopped is not sampled.
                _ if stopping => {}
                _ => new_runs.push((
                    agent.identity.id.clone(),
                    Target {
                        run: run.number,
                        shim,
                        main,
                        cgroup: run.cgroup.clone(),
                        dir: run.dir.clone(),
                        log_max_size: agent.identity.spec.logs.max_size,
                        started_at: run.started_at,
                        session: agent
                            .session
                            .read
                            .clone()
                            .filter(|_| agent.session.run == run.number),
                    },
                )),
            }
        }
        let changes = &mut self.changes;
        let dropped = &mut self.dropped;
        self.runs.retain(|id, run| {
            let kept = run.take_mark();
            if !kept {
                dropped.push(id.clone());
                if let Some(watch) = run.watch() {
                    changes.unwatch(watch);
                }
            }
            kept
        });
        new_runs
    }

    /// Starts watching `target`, a run of agent `id`, in place of the run
    /// of it watched so far.
    fn watch(&mut self, id: &str, target: Target) {
        // The old run's watch goes first: a run again under the same
        // number has the same directory, and so would get the same watch.
        if let Some(watch) = self.runs.remove(id).and_then(|old| old.watch()) {
            self.changes.unwatch(watch);
        }
        let watch = self.changes.watch(id, &target.dir);
        self.runs
            .insert(id.to_owned(), RunSampler::new(target, watch));
    }
}
