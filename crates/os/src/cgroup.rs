//! How a run's process tree is held together: a cgroup v2 per run where one
//! can be created, else the agent's process group plus a walk of the shim's
//! descendants.
//!
//! Even a cgroup v2 tree without controllers has `cgroup.procs` (every
//! member, including those that called `setsid()`) and `cgroup.kill` (kill
//! them all in one write, racing no fork). Which containment is in force is
//! detected once by [`Containment::detect`] and never asked again.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Environment variable that turns cgroups off (`off`) or names the base
/// directory under which run cgroups are made.
pub const CGROUP_ENV: &str = "WRANGLE_CGROUP";

/// The containment in force for new runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// Each run gets its own cgroup v2 directory under `base`.
    Cgroup {
        /// Directory under which run cgroups are created.
        base: PathBuf,
    },
    /// No writable cgroup v2: process group plus the subreaper's descendants.
    ProcessGroup {
        /// Why cgroups are not used, for `wrangle doctor`.
        why: String,
    },
}

impl Containment {
    /// Finds out, once, what this machine and user allow: reads where
    /// cgroup v2 is mounted and where this process sits in it, and tries to
    /// create (and remove) a cgroup under `<own cgroup>/wrangle`.
    pub fn detect() -> Containment {
        match std::env::var(CGROUP_ENV) {
            Ok(value) if value == "off" => {
                return Containment::ProcessGroup {
                    why: format!("cgroups turned off by {CGROUP_ENV}=off"),
                }
            }
            Ok(value) if !value.is_empty() => return probe(PathBuf::from(value)),
            _ => {}
        }
        let Some(mount) = cgroup2_mount() else {
            return Containment::ProcessGroup {
                why: "no cgroup v2 file system is mounted".into(),
            };
        };
        let own = own_cgroup().unwrap_or_else(|| "/".into());
        let base = mount.join(own.trim_start_matches('/')).join("wrangle");
        probe(base)
    }

    /// One line for people: what holds a run's process tree.
    pub fn describe(&self) -> String {
        match self {
            Containment::Cgroup { base } => format!("cgroup v2 per run under {}", base.display()),
            Containment::ProcessGroup { why } => {
                format!("process group + subreaper descendants ({why})")
            }
        }
    }
}

fn probe(base: PathBuf) -> Containment {
    let attempt = || -> io::Result<()> {
        fs::create_dir_all(&base)?;
        let probe = base.join(format!(".probe-{}", std::process::id()));
        match fs::create_dir(&probe) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        let usable = probe.join("cgroup.procs").exists();
        fs::remove_dir(&probe)?;
        if usable {
            Ok(())
        } else {
            Err(io::Error::other("it is not a cgroup v2 directory"))
        }
    };
    match attempt() {
        Ok(()) => Containment::Cgroup { base },
        Err(error) => Containment::ProcessGroup {
            why: format!("cannot create cgroups under {}: {error}", base.display()),
        },
    }
}

/// Where the cgroup v2 file system is mounted, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup v2 path, from the `0::` line of `/proc/self/cgroup`.
fn own_cgroup() -> Option<String> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_string))
}

/// The cgroup v2 directory of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCgroup {
    path: PathBuf,
}

impl RunCgroup {
    /// Creates the cgroup directory (it may exist already).
    pub fn create(path: &Path) -> io::Result<RunCgroup> {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        Ok(RunCgroup {
            path: path.to_path_buf(),
        })
    }

    /// A handle on an existing cgroup directory, e.g. after a restart.
    pub fn existing(path: &Path) -> RunCgroup {
        RunCgroup {
            path: path.to_path_buf(),
        }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the cgroup's directory (close-on-exec) for a child to be
    /// created in it, or to move itself into.
    pub fn open_for_join(&self) -> io::Result<crate::spawn::CgroupJoin> {
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY)
            .open(&self.path)?;
        Ok(crate::spawn::CgroupJoin { dir: dir.into() })
    }

    /// Pids of every process in the cgroup; empty when it is gone.
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        match fs::read_to_string(self.path.join(PROCS_FILE)) {
            Ok(text) => Ok(pids_of(&text)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// The cgroup's member list, held open to be read again and again.
    pub fn open_members(&self) -> io::Result<CgroupMembers> {
        Ok(CgroupMembers {
            file: fs::File::open(self.path.join(PROCS_FILE))?,
        })
    }

    /// True while any process is in the cgroup.
    pub fn is_populated(&self) -> io::Result<bool> {
        Ok(!self.pids()?.is_empty())
    }

    /// Sends `signal` to every process in the cgroup; returns how many.
    pub fn signal_all(&self, signal: i32) -> io::Result<usize> {
        let mut sent = 0;
        for pid in self.pids()? {
            // A member that exits meanwhile is fine: ESRCH is ignored.
            if crate::signals::send(pid, signal).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Kills every process in the cgroup with SIGKILL, with one write to
    /// `cgroup.kill` where the kernel has it (5.14+), else member by member.
    pub fn kill_all(&self) -> io::Result<()> {
        let kill_file = self.path.join("cgroup.kill");
        match fs::OpenOptions::new().write(true).open(&kill_file) {
            Ok(mut file) => file.write_all(b"1"),
            Err(error) if error.kind() == io::ErrorKind::NotFound && self.path.exists() => {
                self.signal_all(libc::SIGKILL).map(drop)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Removes the (empty) cgroup directory; a missing one is fine.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// The file that lists a cgroup's members, one pid per line.
const PROCS_FILE: &str = "cgroup.procs";

fn pids_of(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A cgroup's `cgroup.procs`, open: each read starts again from the top,
/// with no walk of the path. Of many runs stopped at once, each path walk
/// into the cgroup tree waited on the kernel's lock of it, which the
/// removals of the runs already ended held for writing.
#[derive(Debug)]
pub struct CgroupMembers {
    file: fs::File,
}

impl CgroupMembers {
    /// Pids of every process in the cgroup now; empty once it is removed.
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        let mut text = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // From offset 0 the kernel lists the members anew.
            match self.file.read_at(&mut chunk, text.len() as u64) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // A removed cgroup's files answer ENODEV: it has no members.
                Err(error) if error.raw_os_error() == Some(libc::ENODEV) => return Ok(Vec::new()),
                Err(error) => return Err(error),
            }
        }
        Ok(pids_of(&String::from_utf8_lossy(&text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_names_what_is_in_force() {
        let containment = Containment::detect();
        let text = containment.describe();
        match containment {
            Containment::Cgroup { base } => {
                assert!(base.is_dir());
                assert!(text.contains("cgroup v2"));
            }
            Containment::ProcessGroup { why } => assert!(text.contains(&why)),
        }
    }

    #[test]
    fn a_cgroup_holds_and_kills_its_members() {
        let Containment::Cgroup { base } = Containment::detect() else {
            eprintln!("no writable cgroup v2 here; nothing to test");
            return;
        };
        let cgroup = RunCgroup::create(&base.join(format!("test-{}", std::process::id()))).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let members = cgroup.open_members().unwrap();
        assert_eq!(members.pids().unwrap(), Vec::<i32>::new());
        fs::write(cgroup.path().join("cgroup.procs"), child.id().to_string()).unwrap();
        assert_eq!(cgroup.pids().unwrap(), vec![child.id() as i32]);
        // The open list, read again, shows the member that came since.
        assert_eq!(members.pids().unwrap(), vec![child.id() as i32]);
        assert_eq!(members.pids().unwrap(), vec![child.id() as i32]);
        cgroup.kill_all().unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cgroup.is_populated().unwrap() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(members.pids().unwrap(), Vec::<i32>::new());
        cgroup.remove().unwrap();
        assert!(!cgroup.path().exists());
        // Held open past the removal, it lists nobody (and errs not).
        assert_eq!(members.pids().unwrap(), Vec::<i32>::new());
    }
}
