//! Reading one output pipe of the agent into its log files and indexes,
//! rotated by size (see [`LogFiles`]).
//!
//! When the log cannot be written (a full disk), a little of the output
//! waits in memory and is retried; past that, output is dropped and
//! counted, and a marker line says how much once the disk takes bytes
//! again. The agent is never blocked by its log: the pipe is always read.

use crate::logfiles::LogFiles;
use crate::logindex::IndexRecord;
use crate::protocol::LogRotation;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Bytes read from the pipe at most per read (a buffer on the stack, so
/// that no read zeroes fresh memory).
const CHUNK: usize = 16 * 1024;
/// Bytes kept in memory while the log cannot be written; what comes
/// after is dropped (thousands of shims may wait on one full disk).
const PENDING_CAP: usize = 64 * 1024;

/// One of the agent's output pipes and where it is recorded.
pub struct Capture {
    pipe: Option<File>,
    files: LogFiles,
    rotation: LogRotation,
    /// The current log and its index are made with the first output: an
    /// agent that has printed nothing has no files yet (readers take a
    /// missing log as an empty one), and a start makes fewer inodes.
    log: Option<File>,
    index: Option<File>,
    /// The current file's number, found when it is first opened.
    number: Option<u64>,
    /// Bytes in the current file.
    offset: u64,
    /// Output that the disk refused, to be written first.
    pending: Vec<u8>,
    pending_since_nanos: i64,
    /// Output dropped since the last marker, and why.
    dropped: u64,
    dropped_total: u64,
    /// Whether what was written so far ends a line (a marker must start
    /// one).
    ends_line: bool,
    /// A rename failed: the current file grows on rather than lose output.
    rotation_broken: bool,
    last_error: Option<String>,
}

impl Capture {
    /// Records the pipe's read end `pipe` (non-blocking) into `files`,
    /// rotated as `rotation` says; the files are made (or appended to)
    /// with the first output.
    pub fn new(pipe: OwnedFd, files: LogFiles, rotation: LogRotation) -> Capture {
        Capture {
            pipe: Some(File::from(pipe)),
            files,
            rotation,
            log: None,
            index: None,
            number: None,
            offset: 0,
            pending: Vec::new(),
            pending_since_nanos: 0,
            dropped: 0,
            dropped_total: 0,
            ends_line: true,
            rotation_broken: false,
            last_error: None,
        }
    }

    /// The pipe to poll while it is open.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(|pipe| pipe.as_fd())
    }

    /// True once the pipe reached end-of-file and everything is written
    /// (a drop's marker too).
    pub fn is_done(&self) -> bool {
        self.pipe.is_none() && !self.has_pending()
    }

    /// True once the pipe reached end-of-file (or could not be read).
    pub fn pipe_closed(&self) -> bool {
        self.pipe.is_none()
    }

    /// No more waiting for the disk: what is still kept is dropped (and
    /// counted), and no marker will be written.
    pub fn give_up(&mut self) {
        let kept = self.pending.len();
        self.pending = Vec::new();
        self.drop_bytes(kept);
        self.dropped = 0;
    }

    /// True while bytes or a drop's marker wait for the disk.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.dropped > 0
    }

    /// The last error writing the log, if it has not recovered.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Bytes of output dropped because the log could not be written.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_total
    }

    /// Reads what the pipe has (without blocking) and records it.
    pub fn read_available(&mut self, now_nanos: i64) {
        let mut buffer = [0u8; CHUNK];
        loop {
            let Some(pipe) = self.pipe.as_mut() else {
                return;
            };
            match pipe.read(&mut buffer) {
                Ok(0) => {
                    self.pipe = None;
                    break;
                }
                Ok(n) => self.record(&buffer[..n], now_nanos),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.last_error = Some(format!("reading the agent's output: {error}"));
                    self.pipe = None;
                    break;
                }
            }
        }
    }

    /// Retries writing what the disk refused before, then the marker of
    /// what was dropped meanwhile (dated `now_nanos`).
    pub fn retry_pending(&mut self, now_nanos: i64) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let since = self.pending_since_nanos;
            let written = self.write(&pending, since);
            if written < pending.len() {
                self.pending = pending[written..].to_vec();
                return;
            }
        }
        if self.dropped > 0 {
            let reason = self
                .last_error
                .as_deref()
                .map_or_else(|| "the log could not be written".to_string(), reason_of);
            let newline = if self.ends_line { "" } else { "\n" };
            let marker = format!(
                "{newline}[wrangle: {} bytes dropped: {reason}]\n",
                self.dropped
            );
            // The marker goes whole or not at all: it is tried again.
            if self.write(marker.as_bytes(), now_nanos) == marker.len() {
                self.dropped = 0;
                self.last_error = None;
            }
        }
    }

    fn record(&mut self, data: &[u8], now_nanos: i64) {
        if self.dropped > 0 {
            // The marker comes first: what follows a drop waits for it.
            self.drop_bytes(data.len());
            return;
        }
        if !self.pending.is_empty() {
            // Keep order: new bytes queue behind those already waiting.
            self.queue(data);
            return;
        }
        let written = self.write(data, now_nanos);
        if written < data.len() {
            self.pending_since_nanos = now_nanos;
            self.queue(&data[written..]);
        }
    }

    /// Keeps `data` to write later, or drops it once the queue is full.
    fn queue(&mut self, data: &[u8]) {
        if self.pending.len() + data.len() <= PENDING_CAP {
            self.pending.extend_from_slice(data);
        } else {
            self.drop_bytes(data.len());
        }
    }

    fn drop_bytes(&mut self, count: usize) {
        self.dropped += count as u64;
        self.dropped_total += count as u64;
    }

    /// Writes as much of `data` as the disk takes, captured at
    /// `time_nanos`, rotating the file at its size; returns how much.
    fn write(&mut self, data: &[u8], time_nanos: i64) -> usize {
        let mut written = 0;
        while written < data.len() {
            if let Err(error) = self.log() {
                self.last_error = Some(format!("writing the log: {error}"));
                return written;
            }
            let room = if self.rotation_broken {
                u64::MAX
            } else {
                self.rotation.max_size.saturating_sub(self.offset).max(1)
            };
            let take = (data.len() - written).min(usize::try_from(room).unwrap_or(usize::MAX));
            let piece = &data[written..written + take];
            let log = self.log.as_mut().expect("opened above");
            let (count, error) = write_some(log, piece);
            if count > 0 {
                let record = IndexRecord {
                    offset: self.offset,
                    unix_nanos: time_nanos,
                };
                // A lost index record only costs that chunk its exact time.
                if let Some(index) = self.index() {
                    let _ = record.write_to(index);
                }
                self.offset += count as u64;
                self.ends_line = piece[count - 1] == b'\n';
                written += count;
            }
            if count < piece.len() {
                let error = error.map_or_else(
                    || "the file took no more bytes".to_string(),
                    |e| e.to_string(),
                );
                self.last_error = Some(format!("writing the log: {error}"));
                return written;
            }
            if !self.rotation_broken && self.offset >= self.rotation.max_size {
                self.rotate();
            }
        }
        if self.dropped == 0 {
            self.last_error = None;
        }
        written
    }

    /// The current file is full: it becomes the newest rotated one, and
    /// the oldest beyond `max_files` goes. A failed rename leaves the
    /// current file growing on (see [`LogFiles::locate`]).
    fn rotate(&mut self) {
        let Some(number) = self.number else { return };
        self.log = None;
        self.index = None;
        self.offset = 0;
        let _ = fs::rename(
            self.files.current_index_path(),
            self.files.rotated_index_path(number),
        );
        if let Err(error) = fs::rename(self.files.current_path(), self.files.rotated_path(number)) {
            self.last_error = Some(format!("rotating the log: {error}"));
            self.rotation_broken = true;
            return;
        }
        self.number = Some(number + 1);
        // The current file counts among `max_files`.
        let kept = u64::from(self.rotation.max_files.max(1)) - 1;
        if number > kept {
            let _ = self.files.delete_rotated(number - kept);
        }
    }

    /// The current log, opened (appending) on first use, which also finds
    /// its number and where the next record starts; an error while it
    /// cannot be opened (tried again with the next output).
    fn log(&mut self) -> io::Result<&mut File> {
        if self.log.is_none() {
            if self.number.is_none() {
                self.number = Some(LogFiles::current_number(&self.files.rotated()?));
            }
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.files.current_path())?;
            self.offset = log.metadata()?.len();
            self.log = Some(log);
        }
        Ok(self.log.as_mut().expect("opened above"))
    }

    /// The current index, opened (appending) on first use; `None` while
    /// it cannot be opened (tried again with the next output).
    fn index(&mut self) -> Option<&mut File> {
        if self.index.is_none() {
            self.index = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.files.current_index_path())
                .ok();
        }
        self.index.as_mut()
    }
}

/// An OS error said as a marker says it: "no space left on device".
fn reason_of(error: &str) -> String {
    let error = error.strip_prefix("writing the log: ").unwrap_or(error);
    let error = error.split(" (os error").next().unwrap_or(error);
    let mut chars = error.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// Writes as much of `data` as the file takes; returns how much, and the
/// error that stopped it short.
fn write_some(file: &mut File, data: &[u8]) -> (usize, Option<io::Error>) {
    let mut written = 0;
    while written < data.len() {
        match file.write(&data[written..]) {
            Ok(0) => return (written, None),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return (written, Some(error)),
        }
    }
    (written, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logindex;
    use std::path::Path;

    fn pipe() -> (OwnedFd, File) {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .unwrap();
        (read, File::from(write))
    }

    fn capture(dir: &Path, read: OwnedFd, max_size: u64, max_files: u32) -> Capture {
        Capture::new(
            read,
            LogFiles::new(dir, "stdout.log", max_size),
            LogRotation {
                max_size,
                max_files,
            },
        )
    }

    #[test]
    fn chunks_land_in_the_log_with_their_capture_times() {
        let dir = tempfile::tempdir().unwrap();
        let (read, mut writer) = pipe();
        let log = dir.path().join("stdout.log");
        let index = dir.path().join("stdout.log.idx");
        let mut capture = capture(dir.path(), read, 1 << 20, 5);
        assert!(!log.exists() && !index.exists(), "no file before output");
        writer.write_all(b"one\ntwo\n").unwrap();
        capture.read_available(1_000);
        writer.write_all(b"three\n").unwrap();
        capture.read_available(2_000);
        drop(writer);
        capture.read_available(3_000);
        assert!(capture.is_done());
        assert_eq!(std::fs::read(&log).unwrap(), b"one\ntwo\nthree\n");
        let records = logindex::decode(&std::fs::read(&index).unwrap());
        assert_eq!(
            records,
            [
                IndexRecord {
                    offset: 0,
                    unix_nanos: 1_000
                },
                IndexRecord {
                    offset: 8,
                    unix_nanos: 2_000
                },
            ]
        );
    }

    #[test]
    fn a_full_file_is_rotated_at_its_exact_size_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let (read, mut writer) = pipe();
        let mut capture = capture(dir.path(), read, 10, 3);
        // 34 bytes in two chunks: files of 10, 10, 10 and 4; with three
        // files kept, the first rotated one is gone.
        writer.write_all(b"0123456789abcdefghij").unwrap();
        capture.read_available(1_000);
        writer.write_all(b"ABCDEFGHIJklmn").unwrap();
        capture.read_available(2_000);
        let files = LogFiles::new(dir.path(), "stdout.log", 10);
        assert_eq!(files.rotated().unwrap(), [2, 3]);
        assert_eq!(std::fs::read(files.rotated_path(2)).unwrap(), b"abcdefghij");
        assert_eq!(std::fs::read(files.rotated_path(3)).unwrap(), b"ABCDEFGHIJ");
        assert_eq!(std::fs::read(files.current_path()).unwrap(), b"klmn");
        assert!(!files.rotated_index_path(1).exists());
        // Each file's index starts at its own offset 0, with the time of
        // the chunk its first byte came in.
        let index = |path| logindex::decode(&std::fs::read(path).unwrap());
        assert_eq!(
            index(files.rotated_index_path(3)),
            [IndexRecord {
                offset: 0,
                unix_nanos: 2_000
            }]
        );
        assert_eq!(
            index(files.current_index_path()),
            [IndexRecord {
                offset: 0,
                unix_nanos: 2_000
            }]
        );
        assert_eq!(files.end().unwrap(), 34);
    }

    #[test]
    fn output_the_disk_refuses_waits_then_is_dropped_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let (read, mut writer) = pipe();
        let missing = dir.path().join("not-yet");
        let mut capture = capture(&missing, read, 1 << 20, 5);
        writer.write_all(b"kept\npart").unwrap();
        capture.read_available(1_000);
        assert!(capture.has_pending());
        assert!(capture
            .last_error()
            .is_some_and(|e| e.contains("writing the log")));
        // More than the queue holds: the agent is not blocked, the excess
        // is counted.
        let excess = vec![b'x'; PENDING_CAP];
        for _ in 0..2 {
            writer.write_all(&excess).unwrap();
            capture.read_available(2_000);
        }
        assert!(capture.dropped_bytes() >= PENDING_CAP as u64);
        let dropped = capture.dropped_bytes();

        std::fs::create_dir(&missing).unwrap();
        capture.retry_pending(3_000);
        assert!(!capture.has_pending());
        assert_eq!(capture.last_error(), None);
        writer.write_all(b"after\n").unwrap();
        capture.read_available(4_000);
        let log = String::from_utf8(std::fs::read(missing.join("stdout.log")).unwrap()).unwrap();
        // What was queued, then the marker on a line of its own, then
        // what came after: nothing of it lost or out of order.
        let queued = log.trim_start_matches("kept\npart").trim_start_matches('x');
        let kept_x = log.len() - "kept\npart".len() - queued.len();
        assert!(log.starts_with("kept\npartx"), "{}", &log[..20]);
        assert_eq!(kept_x as u64 + dropped, 2 * PENDING_CAP as u64);
        assert_eq!(
            queued,
            format!("\n[wrangle: {dropped} bytes dropped: no such file or directory]\nafter\n")
        );
    }
}
