//! Following a run's stdout for its adapter: what was written since the
//! last look is read, cut into lines and given to the [`Reader`] one by
//! one. Only the end of the last complete line is a position worth
//! storing; a line still being written is read again after a restart.

use super::{Changed, Reader};
use chrono::{DateTime, Utc};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A line longer than this is passed over (counted as one line the
/// adapter did not understand) instead of held in memory.
pub const MAX_LINE: usize = 8 << 20;

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// Where a run's stdout has been read to.
#[derive(Debug, Default)]
pub struct Tail {
    /// The offset of the first byte not yet part of a line read (or of a
    /// line passed over).
    read_to: u64,
    /// The bytes from `read_to` on of a line whose newline has not come.
    partial: Vec<u8>,
    /// Passing over a line longer than [`MAX_LINE`] until its end.
    skipping: bool,
    /// Lines are stderr's (see [`Reader::stderr_line`]).
    stderr: bool,
}

impl Tail {
    /// A tail that has read up to `read_to`.
    pub fn at(read_to: u64) -> Tail {
        Tail {
            read_to,
            ..Tail::default()
        }
    }

    /// A tail of a run's stderr from `read_to` on.
    pub fn stderr_at(read_to: u64) -> Tail {
        Tail {
            read_to,
            stderr: true,
            ..Tail::default()
        }
    }

    /// Where to go on from after a restart: the end of the last line read.
    pub fn read_to(&self) -> u64 {
        self.read_to
    }

    /// Reads what is new in the log at `path` into `reader`, its lines
    /// dated `at`. A log not made yet (nothing written) has nothing new.
    pub fn read(
        &mut self,
        path: &Path,
        reader: &mut Reader,
        at: DateTime<Utc>,
    ) -> io::Result<Changed> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Changed::default()),
            Err(error) => return Err(error),
        };
        // Only what is new is read, into a buffer of its size (up to
        // CHUNK) made for this read: a tail lives as long as its run, and
        // one that kept a CHUNK-sized buffer made a daemon reading 1000
        // runs hold a gigabyte of zeroes. What is written after this
        // length is read at the next look (its write marks the log changed
        // again).
        let length = file.metadata()?.len();
        let mut changed = Changed::default();
        let mut buffer = Vec::new();
        loop {
            let position = self.read_to + self.partial.len() as u64;
            let new = length.saturating_sub(position).min(CHUNK as u64) as usize;
            if new == 0 {
                return Ok(changed);
            }
            buffer.resize(new, 0);
            match file.read_at(&mut buffer[..new], position) {
                // Cut short since its length was read: nothing more now.
                Ok(0) => return Ok(changed),
                Ok(read) => self.feed(&buffer[..read], reader, at, &mut changed),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// The run has ended: a last line without a newline counts too.
    pub fn finish(&mut self, reader: &mut Reader, at: DateTime<Utc>) -> Changed {
        let mut changed = Changed::default();
        if std::mem::take(&mut self.skipping) {
            changed.merge(self.give(reader, b"", at));
        } else if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            changed.merge(self.give(reader, &line, at));
            self.read_to += line.len() as u64;
        }
        changed
    }

    /// Gives one line to the reader, as stdout's or stderr's.
    fn give(&self, reader: &mut Reader, line: &[u8], at: DateTime<Utc>) -> Changed {
        if self.stderr {
            reader.stderr_line(line, at)
        } else {
            reader.line(line, at)
        }
    }

    /// Cuts `data` (what follows `read_to` and `partial` in the file) into
    /// lines and reads the complete ones.
    fn feed(&mut self, data: &[u8], reader: &mut Reader, at: DateTime<Utc>, changed: &mut Changed) {
        let mut start = 0;
        while let Some(length) = data[start..].iter().position(|byte| *byte == b'\n') {
            let end = start + length;
            if std::mem::take(&mut self.skipping) {
                // The end of an overlong line: it counts as one line.
                changed.merge(self.give(reader, b"", at));
                self.read_to += (end + 1 - start) as u64;
            } else if self.partial.is_empty() {
                changed.merge(self.give(reader, &data[start..end], at));
                self.read_to += (end + 1 - start) as u64;
            } else if self.partial.len() + length > MAX_LINE {
                changed.merge(self.give(reader, b"", at));
                self.read_to += (self.partial.len() + length + 1) as u64;
                self.partial.clear();
            } else {
                self.partial.extend_from_slice(&data[start..end]);
                let line = std::mem::take(&mut self.partial);
                changed.merge(self.give(reader, &line, at));
                self.read_to += line.len() as u64 + 1;
            }
            start = end + 1;
        }
        let rest = &data[start..];
        if self.skipping {
            self.read_to += rest.len() as u64;
        } else if self.partial.len() + rest.len() > MAX_LINE {
            self.read_to += (self.partial.len() + rest.len()) as u64;
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use wrangle_wire::AdapterKind;

    fn jsonl() -> Reader {
        Reader::new(AdapterKind::Jsonl, "test".into(), None)
    }

    #[test]
    fn lines_are_read_as_they_are_written_and_a_cut_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut reader = jsonl();
        let mut tail = Tail::default();
        assert_eq!(
            tail.read(&path, &mut reader, Utc::now()).unwrap(),
            Changed::default()
        );
        let mut log = File::create(&path).unwrap();
        log.write_all(b"{\"message\": \"one\"}\nbanner\n{\"message\": \"tw")
            .unwrap();
        let changed = tail.read(&path, &mut reader, Utc::now()).unwrap();
        assert!(changed.session);
        assert_eq!(
            (reader.session().lines, reader.session().other_lines),
            (2, 1)
        );
        assert_eq!(tail.read_to(), 26);
        log.write_all(b"o\"}\n").unwrap();
        tail.read(&path, &mut reader, Utc::now()).unwrap();
        assert_eq!(reader.session().last_text.as_deref(), Some("two"));
        assert_eq!(tail.read_to(), 45);
        // A last line without a newline counts once the run has ended.
        log.write_all(b"{\"message\": \"three\"}").unwrap();
        tail.read(&path, &mut reader, Utc::now()).unwrap();
        assert_eq!(reader.session().lines, 3);
        tail.finish(&mut reader, Utc::now());
        assert_eq!(reader.session().last_text.as_deref(), Some("three"));
        assert_eq!(tail.read_to(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn an_overlong_line_is_passed_over_as_one_line_without_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = File::create(&path).unwrap();
        let huge = vec![b'x'; MAX_LINE + CHUNK + 17];
        log.write_all(b"{\"message\": \"before\"}\n").unwrap();
        log.write_all(&huge).unwrap();
        let mut reader = jsonl();
        let mut tail = Tail::default();
        tail.read(&path, &mut reader, Utc::now()).unwrap();
        assert!(tail.partial.is_empty() && tail.skipping);
        log.write_all(b"xxx\n{\"message\": \"after\"}\n").unwrap();
        tail.read(&path, &mut reader, Utc::now()).unwrap();
        let session = reader.session();
        assert_eq!((session.lines, session.other_lines), (3, 1));
        assert_eq!(session.last_text.as_deref(), Some("after"));
        assert_eq!(tail.read_to(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_tail_started_where_another_stopped_reads_the_rest_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let lines: Vec<String> = (0..100)
            .map(|n| format!("{{\"tokens\": {n}, \"message\": \"line {n}\"}}\n"))
            .collect();
        std::fs::write(&path, lines[..60].concat() + &lines[60][..10]).unwrap();
        let mut first = jsonl();
        let mut tail = Tail::default();
        tail.read(&path, &mut first, Utc::now()).unwrap();
        // Stored: the reader and where it read to; a new daemon goes on.
        let mut second: Reader =
            serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
        let mut resumed = Tail::at(tail.read_to());
        std::fs::write(&path, lines.concat()).unwrap();
        resumed.read(&path, &mut second, Utc::now()).unwrap();
        assert_eq!(second.session().lines, 100);
        assert_eq!(second.session().last_text.as_deref(), Some("line 99"));
    }
}
