//! A run's directory, whose files (logs, status file) are looked at by
//! name from the open directory.

use rustix::fs::{openat, Mode, OFlags, CWD};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Last modification.
    pub modified: SystemTime,
    /// Size in bytes.
    pub length: u64,
    /// Inode number (a file replaced by a rename has another).
    pub inode: u64,
}

/// A directory whose files are looked at by name: one lookup from the
/// open directory, instead of a walk of the whole path on every tick.
#[derive(Debug)]
pub struct WatchedDir {
    dir: OwnedFd,
}

impl WatchedDir {
    /// Opens the directory at `path` (for lookups only).
    pub fn open(path: &Path) -> io::Result<WatchedDir> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(WatchedDir {
            dir: openat(CWD, path, flags, Mode::empty())?,
        })
    }

    /// The stamp of the directory itself: its modification time changes
    /// whenever an entry is added, removed or renamed.
    pub fn own_stamp(&self) -> io::Result<FileStamp> {
        self.stamp_at("", rustix::fs::AtFlags::EMPTY_PATH)
    }

    /// The stamp of the file `name` in the directory; `NotFound` when there
    /// is none.
    pub fn stamp(&self, name: &str) -> io::Result<FileStamp> {
        self.stamp_at(name, rustix::fs::AtFlags::empty())
    }

    fn stamp_at(&self, name: &str, flags: rustix::fs::AtFlags) -> io::Result<FileStamp> {
        use rustix::fs::{statx, StatxFlags};
        let wanted = StatxFlags::MTIME | StatxFlags::SIZE | StatxFlags::INO;
        let stat = statx(&self.dir, name, flags, wanted)?;
        let since_epoch = Duration::new(
            u64::try_from(stat.stx_mtime.tv_sec).unwrap_or(0),
            stat.stx_mtime.tv_nsec,
        );
        Ok(FileStamp {
            modified: SystemTime::UNIX_EPOCH + since_epoch,
            length: stat.stx_size,
            inode: stat.stx_ino,
        })
    }

    /// Reads at most `limit` bytes of the file `name` into `buffer`.
    pub fn read(&self, name: &str, limit: u64, buffer: &mut Vec<u8>) -> io::Result<()> {
        use std::io::Read as _;
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let file = File::from(openat(&self.dir, name, flags, Mode::empty())?);
        buffer.clear();
        file.take(limit).read_to_end(buffer).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_directory_stamps_and_reads_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let watched = WatchedDir::open(dir.path()).unwrap();
        let error = watched.stamp("status.json").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let before = watched.own_stamp().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("status.json"), "{}").unwrap();
        assert!(watched.own_stamp().unwrap().modified > before.modified);
        let stamp = watched.stamp("status.json").unwrap();
        let metadata = std::fs::metadata(dir.path().join("status.json")).unwrap();
        assert_eq!(stamp.modified, metadata.modified().unwrap());
        assert_eq!(stamp.length, 2);
        let mut buffer = Vec::new();
        watched.read("status.json", 1, &mut buffer).unwrap();
        assert_eq!(buffer, b"{");
    }
}
