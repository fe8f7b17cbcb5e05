//! What this kernel and machine offer, for `wrangle doctor`: each check
//! asks the kernel itself rather than guessing from a version number.

use std::path::Path;

/// The kernel release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// True when the kernel has pidfds: `pidfd_open` works on this process.
pub fn pidfd_supported() -> bool {
    rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .is_ok()
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// This process's effective user id.
pub fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The type of the file system `path` is on (`ext4`, `tmpfs`, `nfs4` ...),
/// from the mount that holds it: the longest mount point above it.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts
        .0
        .into_iter()
        .filter(|mount| path.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.as_os_str().len())
        .map(|mount| mount.fs_type)
}

/// A number the kernel publishes under `/proc/sys` (e.g.
/// `kernel/pid_max`), if it can be read.
pub fn sysctl_number(name: &str) -> Option<u64> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Threads of all users that exist now (`/proc/loadavg`'s fourth field):
/// each takes a pid of `kernel.pid_max`.
pub fn threads_in_use() -> Option<u64> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let (_, total) = loadavg.split_whitespace().nth(3)?.split_once('/')?;
    total.parse().ok()
}

/// Descriptors this process holds open now.
pub fn open_descriptors() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_answers() {
        assert!(!kernel_release().is_empty());
        assert!(pidfd_supported(), "wrangle's tests need pidfds");
        assert_eq!(is_root(), uid() == 0);
        assert!(filesystem_of(Path::new("/proc/self")).is_some_and(|fs| fs == "proc"));
        assert_eq!(filesystem_of(Path::new("/nonexistent/path")), None);
    }
}
