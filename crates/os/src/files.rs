//! Files that must never be seen half-written, and the shim's control FIFO.

use std::fs;
use std::io::{self, Write};
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
