//! Files that must never be seen half-written, and the shim's control FIFO.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Replaces `path` with `contents` atomically: readers see the old file or
/// the new one, never a part. The temporary file sits beside the target.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    let mut file = fs::File::create(temporary)?;
    file.write_all(contents)?;
    drop(file);
    fs::rename(temporary, path)
}

/// Replaces `path` with `contents` atomically like [`write_atomic`], but
/// without a new inode per write: the new contents go into a spare file
/// beside it (`<path>.next`), which is then swapped with `path` in one
/// `renameat2(RENAME_EXCHANGE)`, so the spare holds the previous version
/// and is overwritten next time. For a file rewritten many times (the
/// shim's state): on some file systems (ext4 without a journal) each
/// new inode is slow after many deletes. Falls back to [`write_atomic`]
/// where the exchange is not supported.
pub fn write_by_exchange(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut spare = path.as_os_str().to_owned();
    spare.push(".next");
    let spare = Path::new(&spare);
    // Overwritten in place and cut to length, never truncated to zero
    // first: ext4 flushes a file truncated to zero when it is closed
    // (auto_da_alloc), which cost each shim's state write a disk write.
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(spare)?;
    file.write_all_at(contents, 0)?;
    file.set_len(contents.len() as u64)?;
    drop(file);
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        spare,
        rustix::fs::CWD,
        path,
        rustix::fs::RenameFlags::EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        // The first write: there is nothing to exchange with yet.
        Err(rustix::io::Errno::NOENT) => fs::rename(spare, path),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => write_atomic(path, contents),
        Err(error) => Err(error.into()),
    }
}

/// Creates a FIFO at `path` with mode 0600.
pub fn make_fifo(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .map_err(io::Error::from)
}

/// Writes one message (at most `PIPE_BUF` bytes, so it arrives whole) to
/// the FIFO at `path` without blocking. `NotFound` or `ENXIO` mean nobody
/// reads it any more.
pub fn send_to_fifo(path: &Path, message: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if message.len() > libc::PIPE_BUF {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "FIFO message longer than PIPE_BUF",
        ));
    }
    let mut fifo = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    fifo.write_all(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn exchanging_writes_reuse_two_files() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_by_exchange(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_by_exchange(&path, b"two, longer").unwrap();
        let inodes = |p: &Path| fs::metadata(p).unwrap().ino();
        let spare = dir.path().join("state.json.next");
        let known = [inodes(&path), inodes(&spare)];
        write_by_exchange(&path, b"3").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"3");
        assert_eq!(fs::read(&spare).unwrap(), b"two, longer");
        let mut now = [inodes(&path), inodes(&spare)];
        now.sort();
        let mut before = known;
        before.sort();
        assert_eq!(now, before, "no new inode after the second write");
    }

    #[test]
    fn fifo_carries_a_message_and_refuses_without_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        make_fifo(&path).unwrap();
        let refused = send_to_fifo(&path, b"stop\n").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ENXIO));
        let mut reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        send_to_fifo(&path, b"stop 15 1000\n").unwrap();
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "stop 15 1000\n");
    }
}
