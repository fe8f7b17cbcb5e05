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
    mount_of(path).map(|mount| mount.fs_type)
}

/// The mount that holds `path`: the longest mount point above it.
fn mount_of(path: &Path) -> Option<procfs::process::MountInfo> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts
        .0
        .into_iter()
        .filter(|mount| path.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.as_os_str().len())
}

/// True when `path` is on ext4 without a journal. There, a new file or
/// directory skips every inode of its group freed in the last minute
/// (six, while their table block is not yet written back), reading each
/// one's entry: after a fleet's runs were removed, creating runs was
/// several times slower.
pub fn ext4_without_journal(path: &Path) -> bool {
    let Some(mount) = mount_of(path).filter(|mount| mount.fs_type == "ext4") else {
        return false;
    };
    // ext4 names its file systems in sysfs by their block device's name
    // (`vda`, `dm-0`), which `/sys/dev/block/MAJOR:MINOR` links to.
    let device = std::fs::read_link(Path::new("/sys/dev/block").join(&mount.majmin));
    let Some(name) = device
        .ok()
        .and_then(|link| link.file_name().map(ToOwned::to_owned))
    else {
        return false;
    };
    std::fs::read_to_string(Path::new("/sys/fs/ext4").join(name).join("journal_task"))
        .is_ok_and(|task| task.trim() == "<none>")
}

/// Size and free space, in bytes, of the file system holding `path`
/// (free: what an unprivileged user may still write).
pub fn filesystem_space(path: &Path) -> Option<(u64, u64)> {
    let stats = rustix::fs::statvfs(path).ok()?;
    let block = stats.f_frsize.max(1);
    Some((
        stats.f_blocks.saturating_mul(block),
        stats.f_bavail.saturating_mul(block),
    ))
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

/// Whether this Linux is Windows' WSL (`/proc/version` names Microsoft):
/// `Some(2)` for WSL2, whose real Linux kernel runs wrangle; `Some(1)` for
/// WSL1, which only translates Linux's calls and has no pidfds or cgroups.
pub fn wsl_version() -> Option<u8> {
    let version = std::fs::read_to_string("/proc/version").ok()?;
    wsl_of(&version)
}

/// [`wsl_version`] of a `/proc/version` line.
pub fn wsl_of(version: &str) -> Option<u8> {
    let lower = version.to_ascii_lowercase();
    if !lower.contains("microsoft") {
        return None;
    }
    // WSL2's kernels say `microsoft-standard-WSL2`; WSL1 says `Microsoft`.
    Some(
        if lower.contains("wsl2") || lower.contains("microsoft-standard") {
            2
        } else {
            1
        },
    )
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
        // Only ext4 is told to have no journal.
        assert!(!ext4_without_journal(Path::new("/proc/self")));
        assert!(!ext4_without_journal(Path::new("/dev/shm")));
        assert!(!ext4_without_journal(Path::new("/nonexistent/path")));
        if filesystem_of(Path::new("/")).is_some_and(|fs| fs != "ext4") {
            assert!(!ext4_without_journal(Path::new("/")));
        }
    }

    #[test]
    fn wsl_is_told_from_its_kernel() {
        assert_eq!(
            wsl_of("Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc (GCC) 11.2.0)"),
            Some(2)
        );
        assert_eq!(
            wsl_of("Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) )"),
            Some(1)
        );
        assert_eq!(
            wsl_of("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)"),
            None
        );
    }
}
