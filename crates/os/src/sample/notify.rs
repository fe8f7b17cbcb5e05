//! Changes in watched directories as the kernel tells them (inotify), so
//! that a directory in which nothing happened costs nothing to look at.
//!
//! One [`DirChanges`] serves any number of directories; it is drained
//! without blocking. Where it cannot serve (no inotify, no watch left, a
//! full queue: [`DirChange::Lost`]), the caller looks for itself.

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

/// What is watched in a directory: every change to an entry's content,
/// times or name, and to the directory itself.
const WATCHED: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR)
    // A file replaced or removed is no longer what its name shows: writes
    // to it, still open somewhere, are of no concern.
    .union(WatchFlags::EXCL_UNLINK);

/// Bytes read from the kernel at once: about 2000 events of short names.
const READ_BUFFER: usize = 64 * 1024;

/// One inotify instance whose directories are told apart by their
/// [`DirWatch`].
#[derive(Debug)]
pub struct DirChanges {
    fd: OwnedFd,
    buffer: Vec<MaybeUninit<u8>>,
}

/// A directory under watch, as the kernel numbers it. Two paths to the
/// same directory get the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirWatch(i32);

/// One thing [`DirChanges::drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirChange<'a> {
    /// The entry named so in the directory was written to, created,
    /// removed, renamed, or had its times changed.
    Entry(DirWatch, &'a [u8]),
    /// The directory itself was moved, removed or changed: anything in it
    /// may have changed.
    Dir(DirWatch),
    /// The watch has ended (the directory is gone, or it was unwatched):
    /// nothing more is told of it.
    Gone(DirWatch),
    /// Changes were lost (the kernel's queue was full): any watched
    /// directory may have changed.
    Lost,
}

/// How many changes the kernel queues for one inotify instance before it
/// drops them and reports an overflow (`fs.inotify.max_queued_events`).
pub fn max_queued_events() -> io::Result<usize> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")?
        .trim()
        .parse()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

impl DirChanges {
    /// A new instance, watching nothing yet. Fails where the kernel has no
    /// inotify or no instance is left (`max_user_instances`).
    pub fn new() -> io::Result<DirChanges> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(DirChanges {
            fd,
            buffer: vec![MaybeUninit::uninit(); READ_BUFFER],
        })
    }

    /// Starts watching the directory at `path`. Fails when it cannot be
    /// (no such directory, `EACCES`, `ENOSPC` once `max_user_watches` is
    /// reached, a file system without inotify).
    pub fn watch(&self, path: &Path) -> io::Result<DirWatch> {
        Ok(DirWatch(inotify::add_watch(&self.fd, path, WATCHED)?))
    }

    /// Stops watching; a watch that has ended already is no error.
    pub fn unwatch(&self, watch: DirWatch) {
        let _ = inotify::remove_watch(&self.fd, watch.0);
    }

    /// Hands every change queued since the last drain to `each`, without
    /// waiting for more.
    pub fn drain(&mut self, mut each: impl FnMut(DirChange<'_>)) -> io::Result<()> {
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buffer);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(error) => return Err(error.into()),
            };
            let flags = event.events();
            let watch = DirWatch(event.wd());
            each(if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                DirChange::Lost
            } else if flags.contains(ReadFlags::IGNORED) {
                DirChange::Gone(watch)
            } else {
                match event.file_name() {
                    Some(name) => DirChange::Entry(watch, name.to_bytes()),
                    None => DirChange::Dir(watch),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write as _;

    /// Every change of one drain, names as text.
    fn drained(changes: &mut DirChanges) -> Vec<(Option<DirWatch>, String)> {
        let mut seen = Vec::new();
        changes
            .drain(|change| {
                seen.push(match change {
                    DirChange::Entry(watch, name) => {
                        (Some(watch), String::from_utf8_lossy(name).into_owned())
                    }
                    DirChange::Dir(watch) => (Some(watch), ".".into()),
                    DirChange::Gone(watch) => (Some(watch), "gone".into()),
                    DirChange::Lost => (None, "lost".into()),
                })
            })
            .unwrap();
        seen
    }

    #[test]
    fn changes_in_a_watched_directory_are_told_by_name() {
        let temp = tempfile::tempdir().unwrap();
        let mut changes = DirChanges::new().unwrap();
        let watch = changes.watch(temp.path()).unwrap();
        assert!(drained(&mut changes).is_empty(), "nothing happened yet");

        let mut log = fs::File::create(temp.path().join("stdout.log")).unwrap();
        log.write_all(b"hello\n").unwrap();
        fs::write(temp.path().join("status.json.tmp"), "{}").unwrap();
        fs::rename(
            temp.path().join("status.json.tmp"),
            temp.path().join("status.json"),
        )
        .unwrap();
        let seen = drained(&mut changes);
        for name in ["stdout.log", "status.json.tmp", "status.json"] {
            assert!(
                seen.contains(&(Some(watch), name.to_string())),
                "{name} in {seen:?}"
            );
        }
        assert!(drained(&mut changes).is_empty(), "a drain takes everything");

        // Times alone (a `touch`) count as a change.
        let now = std::time::SystemTime::now();
        log.set_modified(now).unwrap();
        assert_eq!(
            drained(&mut changes),
            [(Some(watch), "stdout.log".to_string())]
        );
    }

    #[test]
    fn an_unwatched_or_removed_directory_tells_nothing_more() {
        let temp = tempfile::tempdir().unwrap();
        let mut changes = DirChanges::new().unwrap();
        let one = temp.path().join("one");
        let two = temp.path().join("two");
        fs::create_dir(&one).unwrap();
        fs::create_dir(&two).unwrap();
        let first = changes.watch(&one).unwrap();
        let second = changes.watch(&two).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            changes.watch(&one).unwrap(),
            first,
            "one directory, one watch"
        );

        changes.unwatch(first);
        fs::write(one.join("stdout.log"), "x").unwrap();
        assert_eq!(drained(&mut changes), [(Some(first), "gone".to_string())]);

        fs::remove_dir(&two).unwrap();
        let seen = drained(&mut changes);
        assert_eq!(
            seen.last(),
            Some(&(Some(second), "gone".to_string())),
            "{seen:?}"
        );
        assert!(changes.watch(&two).is_err(), "no such directory");
    }

    #[test]
    fn a_full_queue_is_told() {
        let limit = max_queued_events().unwrap();
        if limit > 1 << 20 {
            eprintln!("max_queued_events is {limit}: too many events to fill the queue in a test");
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let mut changes = DirChanges::new().unwrap();
        changes.watch(temp.path()).unwrap();
        let mut a = fs::File::create(temp.path().join("a")).unwrap();
        let mut b = fs::File::create(temp.path().join("b")).unwrap();
        // Changes alike and in a row are merged into one: these alternate.
        for _ in 0..=limit / 2 {
            a.write_all(b"a").unwrap();
            b.write_all(b"b").unwrap();
        }
        let seen = drained(&mut changes);
        assert_eq!(seen.last(), Some(&(None, "lost".to_string())));
        assert!(drained(&mut changes).is_empty());
    }
}
