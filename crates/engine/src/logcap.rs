//! The cap on the logs of the whole home (`wrangle daemon
//! --logs-max-total`, by default a tenth of its file system and at most
//! 10G, as journald does): each run's logs are rotated by its shim, but
//! ten thousand runs of five files each can still fill a disk. Over the
//! cap, the logs of the oldest ended runs go first, then the oldest rotated
//! files of running ones; a file being written is never deleted. What was
//! deleted is logged and counted for `wrangle doctor`.

use crate::{Engine, Inner};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::thread;
use std::time::{Duration, SystemTime};
use wrangle_shim::logfiles::with_suffix;
use wrangle_shim::protocol::{INDEX_SUFFIX, STDERR_LOG, STDOUT_LOG};
use wrangle_wire::doctor::LogsReport;

/// The cap when none is given and the file system's size is not known,
/// and the most the default may be.
pub const DEFAULT_MAX_TOTAL: u64 = 10 << 30;

/// The default cap for a home on a file system of `filesystem_size`
/// bytes: a tenth of it, at most [`DEFAULT_MAX_TOTAL`].
pub fn default_max_total(filesystem_size: Option<u64>) -> u64 {
    filesystem_size.map_or(DEFAULT_MAX_TOTAL, |size| (size / 10).min(DEFAULT_MAX_TOTAL))
}

/// What the cap has done since the daemon started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapStats {
    /// Bytes of logs in the home at the last look.
    pub used: u64,
    /// Files deleted to keep under the cap.
    pub deleted_files: u64,
    /// Bytes those files held.
    pub deleted_bytes: u64,
}

/// One log file in the home, and whose it is.
#[derive(Debug, Clone)]
struct LogFile {
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
    /// A rotated file's number (`stdout.log.3`): finished, never written
    /// again.
    rotated: Option<u64>,
}

/// The logs of one run.
#[derive(Debug)]
struct RunLogs {
    ended: bool,
    files: Vec<LogFile>,
}

impl RunLogs {
    /// When it last wrote: its newest file's time.
    fn last_write(&self) -> SystemTime {
        self.files
            .iter()
            .map(|file| file.modified)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// What the last look found in the home's directories, so that the next
/// reads again only the directories that changed since (their time of
/// change moved: a file was made, renamed or deleted in it) and the files
/// still being written. A look at ten thousand runs is then two `stat`s a
/// run, not two directory reads and a `stat` a file.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// When the look began.
    at: Option<SystemTime>,
    /// Each agent's directory: when it last changed, and its runs'
    /// directories with their numbers.
    agents: HashMap<PathBuf, (SystemTime, RunDirs)>,
    /// Each run's directory.
    runs: HashMap<PathBuf, SeenRun>,
}

/// An agent's runs' directories, with their numbers.
type RunDirs = Vec<(PathBuf, Option<u32>)>;

/// What the last look found in one run's directory.
#[derive(Debug)]
struct SeenRun {
    /// When the directory last changed.
    changed: SystemTime,
    /// Whether the run was live: its current files could still grow.
    live: bool,
    files: Vec<LogFile>,
}

/// Starts the thread that keeps the home's logs under `max_total`,
/// looking every `interval`.
pub(crate) fn start(engine: Weak<Inner>, interval: Duration) -> io::Result<()> {
    thread::Builder::new()
        .name("wrangle-logcap".into())
        .spawn(move || {
            let mut seen = Seen::default();
            loop {
                thread::sleep(interval);
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                Engine { inner }.keep_logs_under_cap(&mut seen);
            }
        })
        .map(drop)
}

impl Engine {
    /// Looks at every run's logs and deletes the oldest past the cap;
    /// `seen` is what the last look found.
    pub(crate) fn keep_logs_under_cap(&self, seen: &mut Seen) {
        let max_total = self.inner.config.logs_max_total;
        let runs_dir = self.inner.config.home.join("runs");
        // Which runs still write: each agent's current run, unless ended.
        let live: HashMap<String, u32> = self
            .registry()
            .agents()
            .filter(|agent| !agent.status.state.is_ended())
            .map(|agent| (agent.identity.id.clone(), agent.status.run.number))
            .collect();
        let runs = match scan(&runs_dir, &live, seen) {
            Ok(runs) => runs,
            Err(error) => {
                tracing::warn!("cannot look at the logs in {}: {error}", runs_dir.display());
                return;
            }
        };
        let used = bytes_of(&runs);
        let (deleted_files, deleted_bytes) = if used > max_total {
            trim(runs, used - max_total)
        } else {
            (0, 0)
        };
        if deleted_files > 0 {
            tracing::info!(
                "the logs in {} were over their cap ({} of {}): deleted the {deleted_files} oldest files ({})",
                runs_dir.display(),
                wrangle_wire::parse::format_size(used),
                wrangle_wire::parse::format_size(max_total),
                wrangle_wire::parse::format_size(deleted_bytes),
            );
        }
        let mut stats = self.inner.log_cap.lock().unwrap_or_else(|e| e.into_inner());
        stats.used = used - deleted_bytes;
        stats.deleted_files += deleted_files;
        stats.deleted_bytes += deleted_bytes;
    }

    /// The cap and what it has done, for `wrangle doctor`.
    pub(crate) fn logs_report(&self) -> LogsReport {
        let stats = *self.inner.log_cap.lock().unwrap_or_else(|e| e.into_inner());
        LogsReport {
            max_total_bytes: self.inner.config.logs_max_total,
            used_bytes: stats.used,
            deleted_files: stats.deleted_files,
            deleted_bytes: stats.deleted_bytes,
            free_bytes: wrangle_os::features::filesystem_space(&self.inner.config.home)
                .map(|(_, free)| free),
        }
    }
}

/// Every run's log files under `runs_dir` (`<agent>/<run>/`); a run is
/// live when `live` names it as its agent's current one. `seen` is what
/// the last look found, and becomes what this one found.
fn scan(runs_dir: &Path, live: &HashMap<String, u32>, seen: &mut Seen) -> io::Result<Vec<RunLogs>> {
    let mut runs = Vec::new();
    let mut now_seen = Seen {
        at: Some(SystemTime::now()),
        ..Seen::default()
    };
    // A directory is taken as the last look found it only if it had not
    // changed for a while then: a file system's clock may tick coarsely,
    // and a change made in the same tick as the one before, just after
    // the look, would leave its time of change as it was.
    let unchanged = |then: SystemTime, now: SystemTime| {
        then == now && seen.at.is_some_and(|at| now + TIME_GRAIN < at)
    };
    let agents = match fs::read_dir(runs_dir) {
        Ok(agents) => agents,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            *seen = now_seen;
            return Ok(runs);
        }
        Err(error) => return Err(error),
    };
    for agent in agents.flatten() {
        let agent_id = agent.file_name().to_string_lossy().into_owned();
        let agent_dir = agent.path();
        let Some(changed) = changed_at(&agent_dir) else {
            continue; // removed meanwhile
        };
        let run_dirs = match seen.agents.remove(&agent_dir) {
            Some((at, run_dirs)) if unchanged(at, changed) => run_dirs,
            _ => match fs::read_dir(&agent_dir) {
                Ok(entries) => entries
                    .flatten()
                    .map(|run| {
                        let number = run.file_name().to_str().and_then(|n| n.parse().ok());
                        (run.path(), number)
                    })
                    .collect(),
                Err(_) => continue,
            },
        };
        for (run_dir, number) in &run_dirs {
            let is_live = live.get(&agent_id) == number.as_ref();
            let Some(changed) = changed_at(run_dir) else {
                continue;
            };
            let files = match seen.runs.remove(run_dir) {
                // The same files as at the last look: those of a run that
                // had ended then are as they were; a live run's current
                // files may have grown since (also if it ended meanwhile).
                Some(run) if unchanged(run.changed, changed) && !run.live => run.files,
                Some(run) if unchanged(run.changed, changed) => {
                    again(run.files).unwrap_or_else(|| log_files(run_dir))
                }
                _ => log_files(run_dir),
            };
            if !files.is_empty() {
                runs.push(RunLogs {
                    ended: !is_live,
                    files: files.clone(),
                });
            }
            let run = SeenRun {
                changed,
                live: is_live,
                files,
            };
            now_seen.runs.insert(run_dir.clone(), run);
        }
        now_seen.agents.insert(agent_dir, (changed, run_dirs));
    }
    *seen = now_seen;
    Ok(runs)
}

/// The bytes all of `runs`' log files hold.
fn bytes_of(runs: &[RunLogs]) -> u64 {
    runs.iter()
        .flat_map(|run| &run.files)
        .map(|f| f.bytes)
        .sum()
}

/// The coarsest tick of a file system's clock that a look allows for (FAT
/// counts in 2 s; ext4 and tmpfs in the kernel's tick, a few ms).
const TIME_GRAIN: Duration = Duration::from_secs(2);

/// When `dir` last changed (a file made, renamed or deleted in it).
fn changed_at(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir).and_then(|m| m.modified()).ok()
}

/// `files` with the size and time of those still written (a rotated
/// file is finished) looked at again; `None` if one of them is gone.
fn again(mut files: Vec<LogFile>) -> Option<Vec<LogFile>> {
    for file in files.iter_mut().filter(|file| file.rotated.is_none()) {
        let metadata = fs::metadata(&file.path).ok()?;
        file.bytes = metadata.len();
        file.modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    }
    Some(files)
}

/// The log files (and their indexes) of one run directory.
fn log_files(dir: &Path) -> Vec<LogFile> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = [STDOUT_LOG, STDERR_LOG]
            .iter()
            .find_map(|log| name.strip_prefix(log))
        else {
            continue;
        };
        let rest = rest.strip_suffix(INDEX_SUFFIX).unwrap_or(rest);
        let rotated = match rest.strip_prefix('.').map(str::parse::<u64>) {
            Some(Ok(number)) => Some(number),
            None if rest.is_empty() => None,
            _ => continue,
        };
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        files.push(LogFile {
            path: entry.path(),
            bytes: metadata.len(),
            modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            rotated,
        });
    }
    files
}

/// Deletes at least `excess` bytes: whole ended runs' logs, oldest first,
/// then rotated files of live runs, oldest first. Returns the files and
/// bytes deleted.
fn trim(runs: Vec<RunLogs>, excess: u64) -> (u64, u64) {
    let (mut ended, live): (Vec<RunLogs>, Vec<RunLogs>) = runs.into_iter().partition(|r| r.ended);
    ended.sort_by_key(RunLogs::last_write);
    let mut rotated: Vec<LogFile> = live
        .into_iter()
        .flat_map(|run| run.files)
        .filter(|file| {
            file.rotated.is_some() && !file.path.to_string_lossy().ends_with(INDEX_SUFFIX)
        })
        .collect();
    // Files rotated within the same clock tick go in their order, so that
    // a stream loses its oldest files, not some in the middle.
    rotated.sort_by_key(|file| (file.modified, file.rotated));
    let mut deleted = (0u64, 0u64);
    let mut delete = |path: &Path, bytes: u64| match fs::remove_file(path) {
        Ok(()) => {
            deleted.0 += 1;
            deleted.1 += bytes;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!("cannot delete the log {}: {error}", path.display()),
    };
    let mut freed = 0;
    for run in ended {
        if freed >= excess {
            break;
        }
        for file in run.files {
            delete(&file.path, file.bytes);
            freed += file.bytes;
        }
    }
    for file in rotated {
        if freed >= excess {
            break;
        }
        // A rotated file goes with its index.
        let index = with_suffix(&file.path, INDEX_SUFFIX);
        let index_bytes = fs::metadata(&index).map_or(0, |m| m.len());
        delete(&file.path, file.bytes);
        delete(&index, index_bytes);
        freed += file.bytes + index_bytes;
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: usize, age_seconds: u64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![b'x'; bytes]).unwrap();
        let time = SystemTime::now() - Duration::from_secs(age_seconds);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[test]
    fn the_oldest_ended_runs_go_first_then_rotated_files_never_current_ones() {
        let home = tempfile::tempdir().unwrap();
        let runs = home.path().join("runs");
        // Agent a: run 1 ended long ago, run 2 live with a rotated file.
        write(&runs.join("a/1/stdout.log"), 100, 500);
        write(&runs.join("a/1/stderr.log.idx"), 16, 500);
        write(&runs.join("a/1/state.json"), 10, 500);
        write(&runs.join("a/2/stdout.log.1"), 100, 300);
        write(&runs.join("a/2/stdout.log.1.idx"), 16, 300);
        write(&runs.join("a/2/stdout.log"), 50, 1);
        // Agent b: ended recently.
        write(&runs.join("b/1/stdout.log"), 100, 100);
        let live = HashMap::from([("a".to_string(), 2)]);
        // One `seen` throughout, as the cap's thread keeps it: what the
        // trim deleted is not counted again.
        let mut seen = Seen::default();
        let scanned = scan(&runs, &live, &mut seen).unwrap();
        assert_eq!(
            bytes_of(&scanned),
            100 + 16 + 100 + 16 + 50 + 100,
            "state.json is no log"
        );
        // 150 too much: a's first run goes, then b's (the next oldest
        // ended), and nothing of the live run.
        assert_eq!(trim(scanned, 150), (3, 216));
        assert!(!runs.join("a/1/stdout.log").exists());
        assert!(runs.join("a/1/state.json").exists());
        assert!(!runs.join("b/1/stdout.log").exists());
        assert!(runs.join("a/2/stdout.log.1").exists());
        // Then the live run's rotated file with its index; never the
        // file being written.
        let scanned = scan(&runs, &live, &mut seen).unwrap();
        assert_eq!(trim(scanned, 1000), (2, 116));
        let scanned = scan(&runs, &live, &mut seen).unwrap();
        assert_eq!(
            bytes_of(&scanned),
            50,
            "only the file being written is left"
        );
        assert!(!runs.join("a/2/stdout.log.1.idx").exists());
        assert!(runs.join("a/2/stdout.log").exists());
    }

    /// Sets the time of change of every directory under `dir` ten seconds
    /// back, so that a look takes them as the last one found them.
    fn age_dirs(dir: &Path) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                age_dirs(&entry.path());
            }
        }
        let time = SystemTime::now() - Duration::from_secs(10);
        fs::File::open(dir).unwrap().set_modified(time).unwrap();
    }

    #[test]
    fn a_look_sees_what_changed_since_the_last_one() {
        let home = tempfile::tempdir().unwrap();
        let runs = home.path().join("runs");
        write(&runs.join("a/1/stdout.log"), 100, 1);
        let live = HashMap::from([("a".to_string(), 1)]);
        let mut seen = Seen::default();
        age_dirs(&runs);
        assert_eq!(bytes_of(&scan(&runs, &live, &mut seen).unwrap()), 100);
        // The file being written grows; its directory does not change.
        let mut log = fs::OpenOptions::new()
            .append(true)
            .open(runs.join("a/1/stdout.log"))
            .unwrap();
        io::Write::write_all(&mut log, &[b'y'; 20]).unwrap();
        assert_eq!(bytes_of(&scan(&runs, &live, &mut seen).unwrap()), 120);
        // A rotation, a new run and a new agent change directories.
        fs::rename(runs.join("a/1/stdout.log"), runs.join("a/1/stdout.log.1")).unwrap();
        write(&runs.join("a/1/stdout.log"), 5, 0);
        write(&runs.join("a/2/stderr.log"), 7, 0);
        write(&runs.join("b/1/stdout.log"), 9, 0);
        assert_eq!(
            bytes_of(&scan(&runs, &live, &mut seen).unwrap()),
            120 + 5 + 7 + 9
        );
        age_dirs(&runs);
        let scanned = scan(&runs, &live, &mut seen).unwrap();
        assert_eq!(bytes_of(&scanned), 120 + 5 + 7 + 9);
        // Run 1 ended after a last write: that write is counted, and the
        // run is now among the ended ones.
        let mut log = fs::OpenOptions::new()
            .append(true)
            .open(runs.join("a/1/stdout.log"))
            .unwrap();
        io::Write::write_all(&mut log, &[b'z'; 30]).unwrap();
        let live = HashMap::from([("a".to_string(), 2)]);
        let scanned = scan(&runs, &live, &mut seen).unwrap();
        assert_eq!(bytes_of(&scanned), 120 + 35 + 7 + 9);
        assert_eq!(scanned.iter().filter(|run| !run.ended).count(), 1);
        // A directory removed is no longer counted.
        fs::remove_dir_all(runs.join("b")).unwrap();
        assert_eq!(
            bytes_of(&scan(&runs, &live, &mut seen).unwrap()),
            120 + 35 + 7
        );
    }

    #[test]
    fn the_default_is_a_tenth_of_the_disk_and_at_most_10g() {
        assert_eq!(default_max_total(Some(1 << 30)), (1 << 30) / 10);
        assert_eq!(default_max_total(Some(1 << 40)), 10 << 30);
        assert_eq!(default_max_total(None), 10 << 30);
    }
}
