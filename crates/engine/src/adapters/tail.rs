//! Following a run's stdout for its adapter: what was written since the
//! last look is read, cut into lines and given to the [`Reader`] one by
//! one. Only the end of the last complete line is a position worth
//! storing; a line still being written is read again after a restart.

use super::{Changed, Reader};
use chrono::{DateTime, Utc};
use std::io;
use std::os::unix::fs::FileExt;
use wrangle_shim::logfiles::{LogFiles, Segment};

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

    /// Reads what is new in the stream's log files into `reader`, its
    /// lines dated `at`, going on across rotated files. A log not made yet
    /// (nothing written) has nothing new; output in files deleted before
    /// it was read is passed over.
    pub fn read(
        &mut self,
        files: &LogFiles,
        reader: &mut Reader,
        at: DateTime<Utc>,
    ) -> io::Result<Changed> {
        let mut changed = Changed::default();
        // Only what is new is read, into a buffer of its size (up to
        // CHUNK) made for this read: a tail lives as long as its run, and
        // one that kept a CHUNK-sized buffer made a daemon reading 1000
        // runs hold a gigabyte of zeroes. What is written after this
        // length is read at the next look (its write marks the log changed
        // again).
        let mut buffer = Vec::new();
        let mut open: Option<Segment> = None;
        loop {
            let position = self.read_to + self.partial.len() as u64;
            let segment = match &mut open {
                Some(segment) => segment,
                None => {
                    let rotated = files.rotated()?;
                    let kept_from = rotated.first().map_or(0, |&oldest| files.start_of(oldest));
                    if position < kept_from {
                        self.pass_over(kept_from);
                        continue;
                    }
                    let located = files.locate(position, &rotated);
                    match files.open(located.segment)? {
                        Some(segment) => open.insert(segment),
                        None => match files.after_gap(located.segment, &rotated) {
                            Some(next) => {
                                self.pass_over(next);
                                continue;
                            }
                            None => return Ok(changed),
                        },
                    }
                }
            };
            let local = position - segment.start;
            let length = segment.file.metadata()?.len();
            let new = length.saturating_sub(local).min(CHUNK as u64) as usize;
            if new == 0 {
                if !segment.rotated && files.rotated_path(segment.number).exists() {
                    // Rotated since it was opened: its last bytes first.
                    segment.rotated = true;
                    continue;
                }
                if !segment.rotated {
                    return Ok(changed);
                }
                let next = files.start_of(segment.number + 1);
                if position < next {
                    // A rotated file shorter than its size (not written by
                    // a shim): what is missing is passed over.
                    self.pass_over(next);
                }
                open = None;
                continue;
            }
            buffer.resize(new, 0);
            match segment.file.read_at(&mut buffer[..new], local) {
                // Cut short since its length was read: nothing more now.
                Ok(0) => return Ok(changed),
                Ok(read) => self.feed(&buffer[..read], reader, at, &mut changed),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Goes on from `position`: what came before it can no longer be
    /// read, and what is left of a line cut by the gap is passed over as
    /// one line not understood.
    fn pass_over(&mut self, position: u64) {
        self.read_to = position;
        self.partial.clear();
        self.skipping = true;
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
    use std::fs::File;
    use std::io::Write;
    use wrangle_wire::AdapterKind;

    fn jsonl() -> Reader {
        Reader::new(AdapterKind::Jsonl, "test".into(), None)
    }

    #[test]
    fn lines_are_read_as_they_are_written_and_a_cut_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(dir.path(), "stdout.log", 1 << 30);
        let path = files.current_path();
        let mut reader = jsonl();
        let mut tail = Tail::default();
        assert_eq!(
            tail.read(&files, &mut reader, Utc::now()).unwrap(),
            Changed::default()
        );
        let mut log = File::create(&path).unwrap();
        log.write_all(b"{\"message\": \"one\"}\nbanner\n{\"message\": \"tw")
            .unwrap();
        let changed = tail.read(&files, &mut reader, Utc::now()).unwrap();
        assert!(changed.session);
        assert_eq!(
            (reader.session().lines, reader.session().other_lines),
            (2, 1)
        );
        assert_eq!(tail.read_to(), 26);
        log.write_all(b"o\"}\n").unwrap();
        tail.read(&files, &mut reader, Utc::now()).unwrap();
        assert_eq!(reader.session().last_text.as_deref(), Some("two"));
        assert_eq!(tail.read_to(), 45);
        // A last line without a newline counts once the run has ended.
        log.write_all(b"{\"message\": \"three\"}").unwrap();
        tail.read(&files, &mut reader, Utc::now()).unwrap();
        assert_eq!(reader.session().lines, 3);
        tail.finish(&mut reader, Utc::now());
        assert_eq!(reader.session().last_text.as_deref(), Some("three"));
        assert_eq!(tail.read_to(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn an_overlong_line_is_passed_over_as_one_line_without_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(dir.path(), "stdout.log", 1 << 30);
        let path = files.current_path();
        let mut log = File::create(&path).unwrap();
        let huge = vec![b'x'; MAX_LINE + CHUNK + 17];
        log.write_all(b"{\"message\": \"before\"}\n").unwrap();
        log.write_all(&huge).unwrap();
        let mut reader = jsonl();
        let mut tail = Tail::default();
        tail.read(&files, &mut reader, Utc::now()).unwrap();
        assert!(tail.partial.is_empty() && tail.skipping);
        log.write_all(b"xxx\n{\"message\": \"after\"}\n").unwrap();
        tail.read(&files, &mut reader, Utc::now()).unwrap();
        let session = reader.session();
        assert_eq!((session.lines, session.other_lines), (3, 1));
        assert_eq!(session.last_text.as_deref(), Some("after"));
        assert_eq!(tail.read_to(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn lines_are_read_across_rotated_files_and_lost_ones_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(dir.path(), "stdout.log", 8);
        let mut reader = jsonl();
        let mut tail = Tail::default();
        // Three lines over files 1 to 3 and the current one (4).
        let text = b"{\"n\":1}\n{\"n\":22}\n{\"message\":\"x\"}\n";
        for (number, piece) in text.chunks(8).enumerate() {
            let number = number as u64 + 1;
            if piece.len() == 8 && (number as usize) * 8 < text.len() {
                std::fs::write(files.rotated_path(number), piece).unwrap();
            } else {
                std::fs::write(files.current_path(), piece).unwrap();
            }
        }
        tail.read(&files, &mut reader, Utc::now()).unwrap();
        assert_eq!(reader.session().lines, 3);
        assert_eq!(reader.session().last_text.as_deref(), Some("x"));
        assert_eq!(tail.read_to(), text.len() as u64);
        // A tail that was far behind when files 1 to 3 went goes on from
        // the oldest one left: the rest of the line cut by the gap is one
        // line it does not understand.
        let mut behind = Tail::at(3);
        let mut late = jsonl();
        for number in 1..=3 {
            files.delete_rotated(number).unwrap();
        }
        behind.read(&files, &mut late, Utc::now()).unwrap();
        assert_eq!((late.session().lines, late.session().other_lines), (1, 1));
        assert_eq!(behind.read_to(), text.len() as u64);
    }

    #[test]
    fn a_tail_started_where_another_stopped_reads_the_rest_once() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(dir.path(), "stdout.log", 1 << 30);
        let path = files.current_path();
        let lines: Vec<String> = (0..100)
            .map(|n| format!("{{\"tokens\": {n}, \"message\": \"line {n}\"}}\n"))
            .collect();
        std::fs::write(&path, lines[..60].concat() + &lines[60][..10]).unwrap();
        let mut first = jsonl();
        let mut tail = Tail::default();
        tail.read(&files, &mut first, Utc::now()).unwrap();
        // Stored: the reader and where it read to; a new daemon goes on.
        let mut second: Reader =
            serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
        let mut resumed = Tail::at(tail.read_to());
        std::fs::write(&path, lines.concat()).unwrap();
        resumed.read(&files, &mut second, Utc::now()).unwrap();
        assert_eq!(second.session().lines, 100);
        assert_eq!(second.session().last_text.as_deref(), Some("line 99"));
    }
}
