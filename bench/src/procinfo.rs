//! What the benchmark reads from `/proc`: process identity (pid + start
//! time), CPU ticks, memory, the processes this run started, and the
//! machine it runs on.

use std::fs;
use std::path::Path;

/// A process known by pid **and** start time, so that a recycled pid is
/// never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// The pid.
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`, in clock ticks since boot.
    pub start: u64,
}

impl ProcessId {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<ProcessId> {
        read_stat(pid).map(|stat| ProcessId {
            pid,
            start: stat.start,
        })
    }

    /// True while `/proc` still has this process (a zombie counts: it is
    /// not gone until it is reaped).
    pub fn exists(&self) -> bool {
        read_stat(self.pid).is_some_and(|stat| stat.start == self.start)
    }

    /// True while this process exists and has not exited (a zombie has
    /// exited: it only waits to be reaped, perhaps by an init that never
    /// does).
    pub fn is_running(&self) -> bool {
        read_stat(self.pid).is_some_and(|stat| stat.start == self.start && stat.state != 'Z')
    }
}

/// The fields of `/proc/PID/stat` the benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process state letter (`R`, `S`, `Z`...).
    pub state: char,
    /// User CPU time of all threads, in clock ticks.
    pub utime: u64,
    /// System CPU time of all threads, in clock ticks.
    pub stime: u64,
    /// Start time, in clock ticks since boot.
    pub start: u64,
}

/// Parses `/proc/PID/stat`; `None` when the process is gone.
pub fn read_stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of a `stat` file. The command name is in parentheses
/// and may hold spaces or parentheses itself, so fields are counted from
/// the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field k is fields[k - 3].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        utime: fields.get(11)?.parse().ok()?,
        stime: fields.get(12)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// User + system CPU ticks of a whole process (all its threads).
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    read_stat(pid).map(|stat| stat.utime + stat.stime)
}

/// User + system CPU ticks of each thread of a process, by thread name
/// (threads of one name summed): which of the daemon's threads did the
/// work. Threads that ended are not in it (their time is in
/// [`cpu_ticks`]).
pub fn thread_cpu_ticks(pid: i32) -> std::collections::BTreeMap<String, u64> {
    let mut threads = std::collections::BTreeMap::new();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let name = match (text.find('('), text.rfind(')')) {
            (Some(open), Some(close)) if open < close => text[open + 1..close].to_string(),
            _ => continue,
        };
        if let Some(stat) = parse_stat(&text) {
            *threads.entry(name).or_default() += stat.utime + stat.stime;
        }
    }
    threads
}

/// CPU time of a single-threaded process (its main thread), in
/// nanoseconds, from `/proc/PID/schedstat`: exact, where the tick counts of
/// `stat` round a process that ran for a few milliseconds down to zero.
pub fn main_thread_cpu_ns(pid: i32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The shim zygote of the daemon `daemon`: the process whose command
/// line is `wrangle __zygote <daemon> ...`.
pub fn zygote_of(daemon: i32) -> Option<i32> {
    let wanted = format!("\0__zygote\0{daemon}\0");
    fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&wanted))
        })
}

/// Sum of the CPU time of single-threaded `processes` still alive, in ns.
pub fn cpu_ns_of(processes: &[ProcessId]) -> u64 {
    processes
        .iter()
        .filter_map(|process| main_thread_cpu_ns(process.pid))
        .sum()
}

/// CPU ticks of the whole machine since boot, from the `cpu` line of
/// `/proc/stat`: (busy, total), where busy is everything but idle and
/// iowait.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// Busy share of all the machine's cores over the next `window`, in %.
pub fn machine_busy_over(window: std::time::Duration) -> f64 {
    let before = machine_ticks().unwrap_or_default();
    std::thread::sleep(window);
    let after = machine_ticks().unwrap_or_default();
    after.0.saturating_sub(before.0) as f64 / after.1.saturating_sub(before.1).max(1) as f64 * 100.0
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// A `Key:   123 kB` line of `/proc/PID/status` or `smaps_rollup`, in KiB.
pub fn kib_field(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Resident memory (`VmRSS`) of a process, in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS")
}

/// Peak resident memory (`VmHWM`) of a process, in KiB.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmHWM")
}

/// Proportional set size (shared pages divided among their users), in
/// KiB: what a process really costs when many share one binary.
pub fn pss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

/// Every pid in `/proc` but this process's own.
fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| *pid != me)
        .collect()
}

/// True when `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Processes this benchmark started: those whose environment holds the
/// entry `tag_entry` (`KEY=VALUE`), or whose command line mentions one of
/// `markers` (the homes, which every shim's command line names).
pub fn tagged(tag_entry: &str, markers: &[String]) -> Vec<i32> {
    // `\0KEY=VALUE\0` in the environment with a NUL put in front.
    let entry = [b"\0", tag_entry.as_bytes(), b"\0"].concat();
    all_pids()
        .into_iter()
        .filter(|pid| {
            let mut environ = vec![0];
            environ.extend(fs::read(format!("/proc/{pid}/environ")).unwrap_or_default());
            if contains(&environ, &entry) {
                return true;
            }
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            markers
                .iter()
                .any(|marker| contains(&cmdline, marker.as_bytes()))
        })
        .collect()
}

/// The machine the figures were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// When the benchmark ran (UTC).
    pub date: String,
    /// How process trees are contained, as the daemon reported it.
    pub containment: String,
    /// The file system the homes are on.
    pub home_filesystem: String,
    /// `/proc/loadavg` when the benchmark started.
    pub load: String,
    /// The limits that bound a fleet (see `capacity`), if read.
    pub limits: String,
    /// What the kernel does with memory that bears on the figures (see
    /// [`kernel_memory`]).
    pub kernel_memory: String,
}

impl Machine {
    /// Reads the machine's description.
    pub fn describe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_kib = kib_field("/proc/meminfo", "MemTotal").unwrap_or(0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_kib as f64 / (1024.0 * 1024.0),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            containment: String::new(),
            home_filesystem: String::new(),
            load: fs::read_to_string("/proc/loadavg")
                .map(|text| {
                    text.split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            limits: String::new(),
            kernel_memory: kernel_memory(),
        }
    }
}

/// Whether a DAMON daemon pages out memory it finds cold (a host's
/// proactive reclaim: pages of a binary or a store not touched for a
/// while are dropped and read from disk again at their next use, so the
/// same build measures slower after a quiet spell), and the size of the
/// dentry cache (millions of entries, most of them negative, after a day
/// of creating and deleting homes).
pub fn kernel_memory() -> String {
    let damon = Path::new("/sys/kernel/mm/damon/admin/kdamonds");
    let mut actions = Vec::new();
    for kdamond in fs::read_dir(damon).into_iter().flatten().flatten() {
        let running = fs::read_to_string(kdamond.path().join("state"))
            .is_ok_and(|state| state.trim() == "on");
        if !running {
            continue;
        }
        let contexts = kdamond.path().join("contexts");
        for context in fs::read_dir(contexts).into_iter().flatten().flatten() {
            let schemes = context.path().join("schemes");
            for scheme in fs::read_dir(schemes).into_iter().flatten().flatten() {
                if let Ok(action) = fs::read_to_string(scheme.path().join("action")) {
                    actions.push(action.trim().to_string());
                }
            }
        }
    }
    let damon = if actions.is_empty() {
        "no DAMON scheme running".to_string()
    } else {
        format!("DAMON schemes running: {}", actions.join(", "))
    };
    let dentries = fs::read_to_string("/proc/sys/fs/dentry-state")
        .ok()
        .and_then(|state| {
            let fields: Vec<u64> = state
                .split_whitespace()
                .filter_map(|field| field.parse().ok())
                .collect();
            Some(format!(
                "dentry cache {} entries ({} negative)",
                fields.first()?,
                fields.get(4)?
            ))
        })
        .unwrap_or_default();
    format!("{damon}; {dentries}")
}

/// The file system `path` is on, from `/proc/self/mountinfo`: type,
/// source and mount point, and for ext4 whether it has a journal (without
/// one, ext4 skips inodes deleted in the last minutes when it allocates a
/// new one, which makes creating files after deleting many slow).
pub fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let best = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let (kind, source) = (right.next()?, right.next()?);
            path.starts_with(mount_point).then(|| {
                (
                    mount_point.to_string(),
                    kind.to_string(),
                    source.to_string(),
                )
            })
        })
        .max_by_key(|(mount_point, _, _)| mount_point.len());
    let Some((mount_point, kind, source)) = best else {
        return "unknown".into();
    };
    let mut text = format!("{kind} ({source} on {mount_point})");
    if kind == "ext4" {
        let device = Path::new(&source)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(task) = fs::read_to_string(format!("/sys/fs/ext4/{device}/journal_task")) {
            if task.trim() == "<none>" {
                text.push_str(", no journal");
            } else {
                text.push_str(", journaled");
            }
        }
    }
    text
}

/// True when `path` exists (a cgroup directory, a socket).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 12345 1000 200";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.utime, 7);
        assert_eq!(stat.stime, 3);
        assert_eq!(stat.start, 12345);
    }

    #[test]
    fn this_process_is_seen() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.exists());
        assert!(rss_kib(me.pid).unwrap() > 0);
        assert!(cpu_ticks(me.pid).is_some());
        let other = ProcessId {
            start: me.start + 1,
            ..me
        };
        assert!(!other.exists());
    }
}
