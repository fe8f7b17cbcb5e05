//! Resource limits of a run, written into the cgroups that enforce them.
//!
//! What the machine offers (cgroup v2 controllers, cgroup v1 hierarchies)
//! is found once by [`LimitSupport::detect`]; per run, a limit is one
//! [`Setting`] written into one cgroup directory of either version with
//! [`apply`], and the OOM killer's work in it is read with [`oom_kills`].
//! The open-file limit is an rlimit set by the agent's child before its
//! exec (see `spawn`), and memory without a controller is watched by the
//! shim with [`crate::memory`].

mod support;

pub use support::{enabled_v2_controllers, ControllerSupport, LimitSupport};

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A cgroup controller that enforces a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    /// `memory`: the tree's memory.
    Memory,
    /// `cpu`: the tree's CPU bandwidth.
    Cpu,
    /// `pids`: the number of the tree's processes and threads.
    Pids,
}

impl Controller {
    /// Every controller wrangle uses.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }

    /// A file every cgroup v1 group of this controller has: proof that a
    /// hierarchy really carries it.
    fn v1_file(self) -> &'static str {
        match self {
            Controller::Memory => "memory.limit_in_bytes",
            Controller::Cpu => "cpu.cfs_quota_us",
            Controller::Pids => "pids.max",
        }
    }
}

/// The version of the cgroup a setting is written into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// A cgroup v1 hierarchy's group.
    V1,
    /// A cgroup v2 directory.
    V2,
}

/// One limit as the kernel takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    /// Bytes of memory (swap is not allowed on top).
    MemoryMax(u64),
    /// Cores of CPU time per wall-clock time.
    CpuMax(f64),
    /// Processes and threads.
    PidsMax(u64),
}

/// The CFS period wrangle uses for CPU limits, in microseconds (the
/// kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The kernel's shortest CFS quota, in microseconds.
const MIN_CPU_QUOTA_US: u64 = 1_000;

impl Setting {
    /// The controller that enforces the setting.
    pub fn controller(self) -> Controller {
        match self {
            Setting::MemoryMax(_) => Controller::Memory,
            Setting::CpuMax(_) => Controller::Cpu,
            Setting::PidsMax(_) => Controller::Pids,
        }
    }

    /// The files to write, in order, and their contents. Optional files
    /// (swap) are skipped where the kernel has no such accounting.
    fn writes(self, version: CgroupVersion) -> Vec<(&'static str, String, bool)> {
        let required = true;
        let optional = false;
        match (self, version) {
            (Setting::MemoryMax(bytes), CgroupVersion::V2) => vec![
                ("memory.max", bytes.to_string(), required),
                ("memory.swap.max", "0".into(), optional),
            ],
            // memsw (memory + swap) may not be below the memory limit, so
            // it is written second.
            (Setting::MemoryMax(bytes), CgroupVersion::V1) => vec![
                ("memory.limit_in_bytes", bytes.to_string(), required),
                ("memory.memsw.limit_in_bytes", bytes.to_string(), optional),
            ],
            (Setting::CpuMax(cores), CgroupVersion::V2) => {
                vec![(
                    "cpu.max",
                    format!("{} {CPU_PERIOD_US}", cpu_quota_us(cores)),
                    required,
                )]
            }
            (Setting::CpuMax(cores), CgroupVersion::V1) => vec![
                ("cpu.cfs_period_us", CPU_PERIOD_US.to_string(), required),
                (
                    "cpu.cfs_quota_us",
                    cpu_quota_us(cores).to_string(),
                    required,
                ),
            ],
            (Setting::PidsMax(count), _) => vec![("pids.max", count.to_string(), required)],
        }
    }
}

/// The CFS quota per [`CPU_PERIOD_US`] for `cores`.
pub fn cpu_quota_us(cores: f64) -> u64 {
    ((cores * CPU_PERIOD_US as f64).round() as u64).max(MIN_CPU_QUOTA_US)
}

/// Writes `setting` into the cgroup directory `dir` of `version`. An
/// error names the file.
pub fn apply(dir: &Path, version: CgroupVersion, setting: Setting) -> io::Result<()> {
    for (file, value, required) in setting.writes(version) {
        let path = dir.join(file);
        match fs::write(&path, &value) {
            Ok(()) => {}
            Err(error) if !required && error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("cannot write {value} to {}: {error}", path.display()),
                ))
            }
        }
    }
    Ok(())
}

/// How many processes the OOM killer has killed in the cgroup `dir`
/// because of its memory limit: `oom_kill` of `memory.events` (v2) or of
/// `memory.oom_control` (v1; on kernels older than 4.13, which lack that
/// line, `memory.failcnt`: how often the limit was hit).
pub fn oom_kills(dir: &Path, version: CgroupVersion) -> io::Result<u64> {
    let file = match version {
        CgroupVersion::V2 => "memory.events",
        CgroupVersion::V1 => "memory.oom_control",
    };
    let text = fs::read_to_string(dir.join(file))?;
    if let Some(count) = keyed_value(&text, "oom_kill") {
        return Ok(count);
    }
    match version {
        CgroupVersion::V2 => Ok(0),
        CgroupVersion::V1 => Ok(fs::read_to_string(dir.join("memory.failcnt"))?
            .trim()
            .parse()
            .unwrap_or(0)),
    }
}

/// The number after `key` in a `key value` per line file.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Opens a cgroup's `cgroup.procs` for a child to move itself in with
/// before its exec (close-on-exec).
pub fn open_procs(dir: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join("cgroup.procs"))
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "cannot open {}: {error}",
                    dir.join("cgroup.procs").display()
                ),
            )
        })
}

/// Moves process `pid` into the cgroup `dir` (either version).
pub fn move_into(dir: &Path, pid: i32) -> io::Result<()> {
    open_procs(dir)?.write_all(pid.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_files_of_each_version() {
        assert_eq!(
            Setting::CpuMax(0.5).writes(CgroupVersion::V2),
            [("cpu.max", "50000 100000".to_string(), true)]
        );
        assert_eq!(
            Setting::CpuMax(0.001).writes(CgroupVersion::V1)[1],
            ("cpu.cfs_quota_us", "1000".to_string(), true)
        );
        let memory = Setting::MemoryMax(64 << 20).writes(CgroupVersion::V1);
        assert_eq!(memory[0].0, "memory.limit_in_bytes");
        assert_eq!(
            memory[1],
            ("memory.memsw.limit_in_bytes", "67108864".into(), false)
        );
        assert_eq!(Setting::PidsMax(5).controller(), Controller::Pids);
    }

    #[test]
    fn oom_counts_are_read_from_key_value_files() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(3));
        assert_eq!(keyed_value(text, "oom"), None);
        assert_eq!(keyed_value("low 0\noom_kill 1", "oom_kill"), Some(1));
    }

    #[test]
    fn limits_hold_in_a_real_group() {
        let support = LimitSupport::detect(&crate::Containment::detect());
        let name = format!("test-limits-{}", std::process::id());
        let Some((dir, version)) = support.get(Controller::Pids).group(&name) else {
            eprintln!("no pids controller usable here; nothing to test");
            return;
        };
        let group = crate::RunCgroup::create(&dir).unwrap();
        apply(&dir, version, Setting::PidsMax(1)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
            "1"
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; true & wait; echo $?"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        move_into(&dir, child.id() as i32).unwrap();
        // The shell is the one process allowed: its fork must fail.
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success(), "the fork succeeded: {output:?}");
        let events = fs::read_to_string(dir.join("pids.events")).unwrap();
        assert!(keyed_value(&events, "max").unwrap_or(0) >= 1, "{events}");
        group.remove().unwrap();
    }
}
