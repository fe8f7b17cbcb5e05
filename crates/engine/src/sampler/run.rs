//! One run as the sampler watches it: its process tree (from its cgroup,
//! or the descendants of its shim), its status file and its logs.
//!
//! The tree is walked from its roots through each process's list of
//! children. With a cgroup the roots are the cgroup's members (the
//! kernel's own list, setsid'd daemons included); zombies have left the
//! cgroup, so it is through the children lists that they are found.
//! Without one, the roots are the shim's children: the shim is a child
//! subreaper, so every orphan of the tree is one of them.
//!
//! Its files are looked at only when they may have changed: when the
//! kernel told of a change in the run's directory, or on every tick for a
//! run whose directory is not watched.

use super::changes::Dirty;
use super::cpu::CpuMeter;
use super::snapshot::Observation;
use super::status_file::{self, StatusFile};
use crate::adapters::{Reader, Tail};
use crate::health::MainProcess;
use crate::model::STATUS_FILE;
use crate::sessions::SessionRead;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use wrangle_os::sample::{self, DirWatch, ProcCounters, WatchedCgroup, WatchedDir, WatchedProcess};
use wrangle_os::ProcessId;
use wrangle_shim::logfiles::LogFiles;
use wrangle_shim::protocol::{STDERR_LOG, STDOUT_LOG};
use wrangle_wire::{AdapterKind, ProcessMetrics, TreeMetrics};

/// What to watch of a run, from the engine's record of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The run's number.
    pub run: u32,
    /// Its shim.
    pub shim: ProcessId,
    /// The agent's main process.
    pub main: ProcessId,
    /// Its cgroup, if it has one.
    pub cgroup: Option<PathBuf>,
    /// The run's directory: its logs and status file.
    pub dir: PathBuf,
    /// Size at which its logs are rotated.
    pub log_max_size: u64,
    /// When the exec was confirmed.
    pub started_at: Option<DateTime<Utc>>,
    /// What the run's adapter has read so far (stored), if one reads it.
    pub session: Option<Arc<SessionRead>>,
}

/// A run's adapter as the sampler drives it: it reads on from where the
/// stored session stops, and the engine stores what it publishes.
#[derive(Debug)]
struct LiveSession {
    reader: Reader,
    stdout: Tail,
    /// Only Gemini says anything on stderr (its retries); it is followed
    /// from where it was when the run was first watched.
    stderr: Option<Tail>,
}

/// Files each run holds open outside the sampler: its shim's pidfd, and
/// one more while it starts.
const FILES_OUTSIDE_A_RUN: usize = 2;

/// Files kept free of the sampler's for everything else: the API's
/// connections, the store, followed logs, files opened within a tick.
const FILES_RESERVED: usize = 1024;

/// What the runs of one tick share: buffers reused from tick to tick, and
/// how many more files may be kept open.
#[derive(Debug)]
pub struct Scratch {
    /// For `/proc` and cgroup files.
    pub(super) buffer: Vec<u8>,
    /// For status files.
    file: Vec<u8>,
    /// Pids still to look at in the current walk.
    queue: Vec<i32>,
    /// Pids looked at in the current walk.
    visited: HashSet<i32>,
    /// Files that may still be kept open this tick.
    budget: usize,
    /// Most files the sampler keeps open between ticks.
    limit: usize,
    /// The process's own limit of open files, which the runs' pidfds and
    /// the API's connections need their part of.
    open_files: usize,
    ticks_per_second: u64,
    page_size: u64,
}

impl Scratch {
    /// Buffers for a sampler that may keep `limit` files open, of the
    /// process's `open_files`.
    pub fn new(limit: usize, open_files: usize) -> Scratch {
        Scratch {
            buffer: Vec::new(),
            file: Vec::new(),
            queue: Vec::new(),
            visited: HashSet::new(),
            budget: limit,
            limit,
            open_files,
            ticks_per_second: sample::ticks_per_second(),
            page_size: sample::page_size(),
        }
    }

    /// Starts a tick of `runs` runs: the whole budget of open files is
    /// available again, less what the runs need outside the sampler (a
    /// pidfd each, and room for starts, connections and the store), so
    /// that a fleet of thousands never runs the daemon out of files.
    pub fn start_tick(&mut self, runs: usize) {
        let elsewhere = runs
            .saturating_mul(FILES_OUTSIDE_A_RUN)
            .saturating_add(FILES_RESERVED);
        self.budget = self.limit.min(self.open_files.saturating_sub(elsewhere));
    }

    /// Files that may still be kept open this tick.
    #[cfg(test)]
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Whether something holding `files` open may be kept until the next
    /// tick; past the limit it is closed and opened again next time.
    fn keep(&mut self, files: usize) -> bool {
        let kept = self.budget >= files;
        if kept {
            self.budget -= files;
        }
        kept
    }

    fn micros(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(1_000_000) / self.ticks_per_second
    }
}

/// Walks in a row a quiet tree may skip: its memory can still change
/// without it running (the kernel reclaims, a file mapping is dropped),
/// so it is read again at least this often.
const QUIET_WALKS_SKIPPED: u32 = 15;

/// What a walk of a tree finds: its metrics, the main process's counters
/// and open files (if found), and the tree's CPU time in microseconds.
type Walked = (TreeMetrics, Option<(ProcCounters, u32)>, u64);

/// What the last full walk of a tree found (see [`RunSampler::walk`]).
#[derive(Debug, Clone)]
struct Quiet {
    /// The cgroup's CPU time then, in microseconds.
    usec: u64,
    /// The pids looked at first then: the main process and the cgroup's
    /// members, sorted.
    members: Vec<i32>,
    /// The processes the walk counted (the shim left out).
    counted: Vec<i32>,
    tree: TreeMetrics,
    main: Option<(ProcCounters, u32)>,
    /// Walks skipped since.
    skipped: u32,
}

/// One run under watch.
#[derive(Debug)]
pub struct RunSampler {
    target: Target,
    cgroup: Option<WatchedCgroup>,
    shim: Option<WatchedProcess>,
    dir: Option<WatchedDir>,
    /// The tree's processes, kept open from the last tick.
    processes: HashMap<i32, WatchedProcess>,
    /// Those of this tick, while it is walked.
    walked: HashMap<i32, WatchedProcess>,
    tree_cpu: CpuMeter,
    /// The most CPU time the tree was seen to have used, in microseconds:
    /// a counter that never goes back, though processes that ended may
    /// take their time with them where there is no cgroup.
    tree_usec: u64,
    main_cpu: CpuMeter,
    /// What the last full walk found, with the cgroup's CPU time and
    /// members then: while neither moves, nothing of the tree ran, so
    /// nothing of it changed (see [`RunSampler::walk`]).
    quiet: Option<Quiet>,
    status_file: StatusFile,
    /// The kernel's watch on the run's directory; without one, its files
    /// are looked at on every tick.
    watch: Option<DirWatch>,
    /// Its files that may have changed since they were last looked at.
    dirty: Dirty,
    /// When `stdout.log` last got output, as last looked at.
    stdout_at: Option<DateTime<Utc>>,
    /// When `stderr.log` did.
    stderr_at: Option<DateTime<Utc>>,
    /// Still to be watched, as found by the latest look at the registry.
    marked: bool,
    /// Being stopped: not sampled any more (see [`RunSampler::is_stopping`]).
    stopping: bool,
    /// Its adapter, if one reads it.
    session: Option<LiveSession>,
    /// What the last tick saw.
    pub observation: Observation,
    /// Whether the snapshot has [`RunSampler::observation`] as it is.
    published: bool,
}

impl RunSampler {
    /// Starts watching a run, whose directory is under `watch` if it
    /// could be watched. Its files are all looked at on the first tick, so
    /// that a run watched anew (after a restart of the daemon) shows the
    /// right times at once.
    pub fn new(target: Target, watch: Option<DirWatch>) -> RunSampler {
        // A session without an adapter (only its telemetry is received)
        // has nothing to read.
        let session = target
            .session
            .as_ref()
            .filter(|read| read.reader.kind() != AdapterKind::None)
            .map(|read| LiveSession {
                stderr: (read.reader.kind() == AdapterKind::Gemini).then(|| {
                    let files = LogFiles::new(&target.dir, STDERR_LOG, target.log_max_size);
                    Tail::stderr_at(files.end().unwrap_or(0))
                }),
                reader: read.reader.clone(),
                stdout: Tail::at(read.read_to),
            });
        RunSampler {
            session,
            status_file: StatusFile::default(),
            watch,
            dirty: Dirty::ALL,
            stdout_at: None,
            stderr_at: None,
            observation: Observation {
                run: target.run,
                ..Observation::default()
            },
            target,
            cgroup: None,
            shim: None,
            dir: None,
            processes: HashMap::new(),
            walked: HashMap::new(),
            tree_cpu: CpuMeter::default(),
            tree_usec: 0,
            main_cpu: CpuMeter::default(),
            quiet: None,
            // Watched from after a look at the registry: the next look
            // marks it if it still runs. Marked now, a run that ended in
            // between would outlive that look, and with it the last change
            // of the registry, and keep its files for good.
            marked: false,
            stopping: false,
            published: false,
        }
    }

    /// True when this watches run `run` held by `shim`.
    pub fn watches(&self, run: u32, shim: ProcessId) -> bool {
        self.target.run == run && self.target.shim == shim
    }

    /// Notes that the run is still to be watched, and whether it is being
    /// stopped.
    pub fn mark(&mut self, stopping: bool) {
        self.marked = true;
        if stopping && !self.stopping {
            // Not sampled any more: its files are let go, so that they
            // count against no other run's.
            self.processes.clear();
            self.walked.clear();
            self.cgroup = None;
            self.shim = None;
            self.dir = None;
        }
        self.stopping = stopping;
    }

    /// A run being stopped keeps what the last tick saw and is not sampled
    /// again: a stop of ten thousand changes every tree at once, and
    /// walking them all while they go only slowed the stop (its end reads
    /// the rest of the output anyway).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// What the last tick saw, if the snapshot does not have it yet; it
    /// is taken as published.
    pub fn unpublished(&mut self) -> Option<&Observation> {
        (!mem::replace(&mut self.published, true)).then_some(&self.observation)
    }

    /// Whether the run was marked since the last call; clears the mark.
    pub fn take_mark(&mut self) -> bool {
        mem::take(&mut self.marked)
    }

    /// The watch on the run's directory, if it has one.
    pub fn watch(&self) -> Option<DirWatch> {
        self.watch
    }

    /// Notes that the entry `name` of the run's directory changed.
    pub fn changed(&mut self, name: &[u8]) {
        self.dirty.note(name);
    }

    /// Notes that any of the run's files may have changed.
    pub fn changed_all(&mut self) {
        self.dirty = Dirty::ALL;
    }

    /// Notes that the watch on the run's directory has ended (the
    /// directory is gone): its files are looked at on every tick from now
    /// on, in whatever directory has its path.
    pub fn unwatched(&mut self) {
        self.watch = None;
        self.dirty = Dirty::ALL;
        self.dir = None;
    }

    /// Samples the run once, at `now` (`wall` on the clock), into
    /// [`RunSampler::observation`].
    /// With `fleet_quiet` (no run's cgroup used CPU since the last tick),
    /// a tree walked before is taken as it was without a look.
    pub fn sample(
        &mut self,
        scratch: &mut Scratch,
        now: Instant,
        wall: DateTime<Utc>,
        fleet_quiet: bool,
    ) {
        let (mut tree, main, tree_usec) = match self.unchanged(scratch, fleet_quiet) {
            Some(unchanged) => unchanged,
            None => self.walk(scratch),
        };
        let counting_for = self
            .target
            .started_at
            .and_then(|started| (wall - started).to_std().ok())
            .unwrap_or_default();
        tree.cpu_percent = self.tree_cpu.percent(tree_usec, now, counting_for);
        self.tree_usec = self.tree_usec.max(tree_usec);
        tree.cpu_seconds = self.tree_usec as f64 / 1e6;
        let (main, process) = match main {
            Some((counters, fds)) => (
                if counters.is_zombie() {
                    MainProcess::Zombie
                } else {
                    MainProcess::Alive
                },
                Some(ProcessMetrics {
                    cpu_percent: self.main_cpu.percent(
                        scratch.micros(counters.cpu_ticks),
                        now,
                        counting_for,
                    ),
                    rss_bytes: counters.rss_pages * scratch.page_size,
                    threads: counters.threads,
                    fds,
                }),
            ),
            None => (MainProcess::Missing, None),
        };
        let tree = Some(tree);
        let observation = &mut self.observation;
        if observation.main != main || observation.process != process || observation.tree != tree {
            (observation.main, observation.process, observation.tree) = (main, process, tree);
            self.published = false;
        }
        self.look_at_files(scratch, wall);
    }

    /// What the last walk found, when the whole fleet was quiet (no
    /// process of any run used CPU, so none started or ended either) and
    /// this tree is in a cgroup: its own files need no read.
    fn unchanged(&mut self, scratch: &mut Scratch, fleet_quiet: bool) -> Option<Walked> {
        if !fleet_quiet || self.target.cgroup.is_none() {
            return None;
        }
        let usec = self.quiet.as_ref()?.usec;
        let cgroup_files = self.cgroup.as_ref().map_or(0, |cgroup| cgroup.open_files());
        self.as_last_walked(scratch, usec, cgroup_files)
    }

    /// Walks the tree once: its metrics (CPU % aside), the main process's
    /// counters and open files if it was found, and the tree's CPU time
    /// since the run started in microseconds, reaped processes included
    /// (the cgroup's counter, else every member's own and reaped
    /// children's time plus what the shim reaped).
    fn walk(&mut self, scratch: &mut Scratch) -> Walked {
        scratch.queue.clear();
        scratch.visited.clear();
        // The main process first: as a zombie it is in no cgroup, and its
        // identity is checked.
        scratch.queue.push(self.target.main.pid);
        let mut cpu_ticks = 0;
        let cgroup_usec = self.roots(scratch, &mut cpu_ticks);
        // A tree that used no CPU since the last walk, with the same
        // members, cannot have changed (a process that starts, ends,
        // opens a file or grows runs first): what the last walk found
        // stands, at the cost of two reads instead of a walk (and now and
        // then a read of each process's memory).
        let members = cgroup_usec.map(|_| {
            let mut members = scratch.queue.clone();
            members.sort_unstable();
            members
        });
        if let (Some(usec), Some(members)) = (cgroup_usec, &members) {
            if let Some(walked) = self.quiet_since_walk(scratch, usec, members) {
                return walked;
            }
        }
        let mut tree = TreeMetrics::default();
        let mut counted = Vec::new();
        let mut main = None;
        let mut index = 0;
        while let Some(&pid) = scratch.queue.get(index) {
            index += 1;
            if pid == self.target.shim.pid || !scratch.visited.insert(pid) {
                continue;
            }
            let Some((mut process, counters)) = self.open(pid, scratch) else {
                continue;
            };
            let is_main = pid == self.target.main.pid;
            if is_main && counters.stat.id != self.target.main {
                // The main process's pid went to a process of no concern.
                continue;
            }
            let zombie = counters.is_zombie();
            let fds = if zombie { 0 } else { process.open_fds() };
            tree.processes += 1;
            counted.push(pid);
            tree.zombies += u32::from(zombie);
            tree.threads += counters.threads;
            tree.fds += fds;
            tree.rss_bytes += counters.rss_pages * scratch.page_size;
            cpu_ticks += counters.cpu_ticks + counters.reaped_children_cpu_ticks;
            if !zombie {
                // A zombie's children have gone to the subreaper already.
                let _ = process.children(counters.threads, &mut scratch.buffer, &mut scratch.queue);
            }
            if is_main {
                main = Some((counters, fds));
            }
            if scratch.keep(process.open_files()) {
                self.walked.insert(pid, process);
            }
        }
        // Processes not met in this walk have ended: their files close.
        self.processes.clear();
        mem::swap(&mut self.processes, &mut self.walked);
        self.quiet = match (cgroup_usec, members) {
            (Some(usec), Some(members)) => Some(Quiet {
                usec,
                members,
                counted,
                tree: tree.clone(),
                main: main.clone(),
                skipped: 0,
            }),
            _ => None,
        };
        let usec = cgroup_usec.unwrap_or_else(|| scratch.micros(cpu_ticks));
        (tree, main, usec)
    }

    /// What the last walk found, for a tree that used no CPU since
    /// (`usec`) and has the same `members`. `None` when it is to be walked.
    fn quiet_since_walk(
        &mut self,
        scratch: &mut Scratch,
        usec: u64,
        members: &[i32],
    ) -> Option<Walked> {
        self.quiet
            .as_ref()
            .filter(|quiet| quiet.usec == usec && quiet.members == members)?;
        self.as_last_walked(scratch, usec, 0)
    }

    /// What the last walk found, for a tree that has not run since: as it
    /// was, or, once in [`QUIET_WALKS_SKIPPED`] ticks, with each process's
    /// memory read again, the one thing that changes without running (the
    /// kernel reclaims). A read of one file a process, where a walk opens
    /// four. `None` when the tree is to be walked (also when its files,
    /// with `other_files` of the run, no longer fit).
    fn as_last_walked(
        &mut self,
        scratch: &mut Scratch,
        usec: u64,
        other_files: usize,
    ) -> Option<Walked> {
        let kept: usize = self
            .processes
            .values()
            .map(|process| process.open_files())
            .sum::<usize>()
            + other_files;
        if !scratch.keep(kept) {
            return None;
        }
        let quiet = self.quiet.as_mut()?;
        if quiet.skipped < QUIET_WALKS_SKIPPED {
            quiet.skipped += 1;
            return Some((quiet.tree.clone(), quiet.main.clone(), usec));
        }
        let mut rss_pages = 0;
        for &pid in &quiet.counted {
            let counters = match self.processes.get(&pid) {
                Some(process) => process.read(&mut scratch.buffer),
                None => WatchedProcess::counters_of(pid, &mut scratch.buffer),
            }
            // One has gone meanwhile: the walk tells what is left.
            .ok()?;
            if pid == self.target.main.pid {
                let main = quiet.main.as_mut()?;
                if counters.stat.id != self.target.main {
                    return None;
                }
                main.0 = counters.clone();
            }
            rss_pages += counters.rss_pages;
        }
        quiet.tree.rss_bytes = rss_pages * scratch.page_size;
        quiet.skipped = 0;
        Some((quiet.tree.clone(), quiet.main.clone(), usec))
    }

    /// Reads the status file if it changed, and when the logs last grew:
    /// of the files that may have changed, or of all of them when the
    /// directory is not watched.
    fn look_at_files(&mut self, scratch: &mut Scratch, wall: DateTime<Utc>) {
        let dirty = match self.watch {
            Some(_) => mem::take(&mut self.dirty),
            None => Dirty::ALL,
        };
        if !dirty.any() {
            // The directory kept open still counts against the budget.
            if self.dir.is_some() && !scratch.keep(1) {
                self.dir = None;
            }
            return;
        }
        let Some(dir) = self
            .dir
            .take()
            .or_else(|| WatchedDir::open(&self.target.dir).ok())
        else {
            // Looked at again at the next tick.
            self.dirty = dirty;
            return;
        };
        self.published = false;
        let observation = &mut self.observation;
        if dirty.status {
            let status_file = &mut self.status_file;
            let again =
                status_file.refresh(&dir, STATUS_FILE, &mut scratch.file, SystemTime::now());
            self.dirty.status = again;
            observation.report.clone_from(&status_file.report);
            observation.report_error.clone_from(&status_file.error);
            observation.last_heartbeat_at = status_file.heartbeat;
        }
        // Just after a rotation the current file is new and empty: the
        // last write seen stays.
        if dirty.stdout {
            self.stdout_at = self
                .stdout_at
                .max(status_file::last_write(&dir, STDOUT_LOG));
        }
        if dirty.stderr {
            self.stderr_at = self
                .stderr_at
                .max(status_file::last_write(&dir, STDERR_LOG));
        }
        observation.last_output_at = self.stdout_at.max(self.stderr_at);
        if dirty.stdout || dirty.stderr {
            self.read_session(dirty, wall);
        }
        if scratch.keep(1) {
            self.dir = Some(dir);
        }
    }

    /// Lets the run's adapter read what is new in its output; publishes
    /// what it read when it read anything.
    fn read_session(&mut self, dirty: Dirty, wall: DateTime<Utc>) {
        let Some(live) = &mut self.session else {
            return;
        };
        let before = (live.stdout.read_to(), live.reader.session().lines);
        let segment_size = self.target.log_max_size;
        let mut read = |tail: &mut Tail, log: &str| {
            let files = LogFiles::new(&self.target.dir, log, segment_size);
            if let Err(error) = tail.read(&files, &mut live.reader, wall) {
                tracing::debug!(%error, "cannot read a run's {log} for its adapter");
            }
        };
        if dirty.stdout {
            read(&mut live.stdout, STDOUT_LOG);
        }
        if let (true, Some(stderr)) = (dirty.stderr, live.stderr.as_mut()) {
            read(stderr, STDERR_LOG);
        }
        let after = (live.stdout.read_to(), live.reader.session().lines);
        if after != before || live.stderr.is_some() {
            self.observation.session = Some(Arc::new(SessionRead {
                reader: live.reader.clone(),
                read_to: live.stdout.read_to(),
            }));
        }
    }

    /// Queues the roots of the tree. Returns the cgroup's CPU time, or
    /// adds what the shim reaped to `cpu_ticks` where there is no cgroup.
    fn roots(&mut self, scratch: &mut Scratch, cpu_ticks: &mut u64) -> Option<u64> {
        if let Some(path) = &self.target.cgroup {
            let cgroup = self
                .cgroup
                .take()
                .or_else(|| WatchedCgroup::open(path).ok())?;
            let _ = cgroup.pids(&mut scratch.buffer, &mut scratch.queue);
            let usage = cgroup.cpu_usage_usec(&mut scratch.buffer);
            if scratch.keep(cgroup.open_files()) {
                self.cgroup = Some(cgroup);
            }
            return usage;
        }
        let shim = match self.shim.take() {
            Some(shim) => shim.read(&mut scratch.buffer).ok().map(|c| (shim, c)),
            None => WatchedProcess::open(self.target.shim.pid, &mut scratch.buffer)
                .ok()
                .filter(|(shim, _)| shim.id() == self.target.shim),
        };
        // A shim that is gone leaves only the main process to look at.
        let (mut shim, counters) = shim?;
        *cpu_ticks += counters.reaped_children_cpu_ticks;
        let _ = shim.children(counters.threads, &mut scratch.buffer, &mut scratch.queue);
        if scratch.keep(shim.open_files()) {
            self.shim = Some(shim);
        }
        None
    }

    /// The process `pid` and its counters now: from the files kept open
    /// since the last tick, else (a new process, or a new one with an old
    /// pid) from a fresh open.
    fn open(&mut self, pid: i32, scratch: &mut Scratch) -> Option<(WatchedProcess, ProcCounters)> {
        if let Some(process) = self.processes.remove(&pid) {
            if let Ok(counters) = process.read(&mut scratch.buffer) {
                return Some((process, counters));
            }
        }
        WatchedProcess::open(pid, &mut scratch.buffer).ok()
    }
}
