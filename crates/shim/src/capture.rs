//! Reading one output pipe of the agent into its log file and index.
//!
//! When the log cannot be written (a full disk), the bytes stay in memory
//! and are retried; past a cap the shim stops reading the pipe, so the
//! agent blocks on its write instead of losing output.

use crate::logindex::IndexRecord;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Bytes read from the pipe at most per read (a buffer on the stack, so
/// that no read zeroes fresh memory).
const CHUNK: usize = 16 * 1024;
/// Bytes kept in memory while the log cannot be written.
const PENDING_CAP: usize = 8 * 1024 * 1024;

/// One of the agent's output pipes and where it is recorded.
pub struct Capture {
    pipe: Option<File>,
    /// The log and its index are made with the first output: an agent
    /// that has printed nothing has no files yet (readers take a missing
    /// log as an empty one), and a start makes fewer inodes.
    log: Option<File>,
    log_path: PathBuf,
    index: Option<File>,
    index_path: PathBuf,
    offset: u64,
    pending: Vec<u8>,
    pending_since_nanos: i64,
    last_error: Option<String>,
}

impl Capture {
    /// Records the pipe's read end `pipe` (non-blocking) into the log at
    /// `log_path` with its index at `index_path`, both made (or appended
    /// to) with the first output.
    pub fn new(pipe: OwnedFd, log_path: &Path, index_path: &Path) -> Capture {
        Capture {
            pipe: Some(File::from(pipe)),
            log: None,
            log_path: log_path.to_path_buf(),
            index: None,
            index_path: index_path.to_path_buf(),
            offset: 0,
            pending: Vec::new(),
            pending_since_nanos: 0,
            last_error: None,
        }
    }

    /// The pipe to poll, while it is open and there is room to read into.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        if self.pending.len() >= PENDING_CAP {
            return None;
        }
        self.pipe.as_ref().map(|pipe| pipe.as_fd())
    }

    /// True once the pipe reached end-of-file and everything is written.
    pub fn is_done(&self) -> bool {
        self.pipe.is_none() && self.pending.is_empty()
    }

    /// True while bytes wait for the disk.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The last error writing the log, if it has not recovered.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Reads what the pipe has (without blocking) and records it.
    pub fn read_available(&mut self, now_nanos: i64) {
        let mut buffer = [0u8; CHUNK];
        while self.pending.len() < PENDING_CAP {
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

    /// Retries writing bytes that the disk refused before.
    pub fn retry_pending(&mut self) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let since = self.pending_since_nanos;
            self.record(&pending, since);
        }
    }

    fn record(&mut self, data: &[u8], now_nanos: i64) {
        if !self.pending.is_empty() {
            // Keep order: new bytes queue behind those already waiting.
            self.pending.extend_from_slice(data);
            return;
        }
        let record = IndexRecord {
            offset: self.offset,
            unix_nanos: now_nanos,
        };
        let (written, error) = match self.log() {
            Ok(log) => write_some(log, data),
            Err(error) => (0, Some(error)),
        };
        if written > 0 {
            // A lost index record only costs that chunk its exact time.
            if let Some(index) = self.index() {
                let _ = record.write_to(index);
            }
            self.offset += written as u64;
        }
        if written < data.len() {
            self.pending.extend_from_slice(&data[written..]);
            self.pending_since_nanos = now_nanos;
            let error = error.map_or_else(
                || "the file took no more bytes".to_string(),
                |e| e.to_string(),
            );
            self.last_error = Some(format!("writing the log: {error}"));
        } else {
            self.last_error = None;
        }
    }
}

impl Capture {
    /// The log, opened (appending) on first use, which also finds where
    /// the next record starts; an error while it cannot be opened (tried
    /// again with the next output, the bytes kept meanwhile).
    fn log(&mut self) -> io::Result<&mut File> {
        if self.log.is_none() {
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)?;
            self.offset = log.metadata()?.len();
            self.log = Some(log);
        }
        Ok(self.log.as_mut().expect("opened above"))
    }

    /// The index, opened (appending) on first use; `None` while it cannot
    /// be opened (tried again with the next output).
    fn index(&mut self) -> Option<&mut File> {
        if self.index.is_none() {
            self.index = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.index_path)
                .ok();
        }
        self.index.as_mut()
    }
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

    #[test]
    fn chunks_land_in_the_log_with_their_capture_times() {
        let dir = tempfile::tempdir().unwrap();
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .unwrap();
        let log = dir.path().join("stdout.log");
        let index = dir.path().join("stdout.log.idx");
        let mut capture = Capture::new(read, &log, &index);
        assert!(!log.exists() && !index.exists(), "no file before output");
        let mut writer = File::from(write);
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
    fn output_waits_while_its_log_cannot_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .unwrap();
        let missing = dir.path().join("not-yet");
        let log = missing.join("stdout.log");
        let mut capture = Capture::new(read, &log, &missing.join("stdout.log.idx"));
        let mut writer = File::from(write);
        writer.write_all(b"kept\n").unwrap();
        capture.read_available(1_000);
        assert!(capture.has_pending());
        assert!(capture
            .last_error()
            .is_some_and(|e| e.contains("writing the log")));

        std::fs::create_dir(&missing).unwrap();
        capture.retry_pending();
        assert!(!capture.has_pending());
        assert_eq!(capture.last_error(), None);
        assert_eq!(std::fs::read(&log).unwrap(), b"kept\n");
    }
}
