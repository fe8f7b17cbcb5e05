//! Reading a run's logs back as lines with their capture times: the last N
//! lines, everything, or everything and then what follows, across the
//! rotated files of each stream as if they were one.

use chrono::{DateTime, Utc};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use wrangle_shim::logfiles::{LogFiles, Segment};
use wrangle_shim::logindex::{self, IndexRecord, RECORD_LEN};
use wrangle_wire::{LogLine, LogStream};

/// Bytes read per step.
const READ_CHUNK: usize = 256 * 1024;

/// A position in one stream, from which complete lines are read as they
/// come. Positions count every byte the agent wrote to the stream, so
/// that a rotation does not move them.
pub struct LogCursor {
    stream: LogStream,
    files: LogFiles,
    /// Position of the next byte to read.
    position: u64,
    /// The file being read, with its index.
    open: Option<OpenSegment>,
    /// An unfinished line and the capture time of its first byte.
    partial: Vec<u8>,
    partial_time: i64,
    /// The file read to its end last, to go on from without a break.
    finished: Option<u64>,
    /// Reading starts in a file whose predecessor is gone: its first bytes
    /// may be the end of a line begun there, passed over to the first
    /// newline.
    skip_fragment: bool,
}

/// One file of the stream being read, and what is known of its index.
struct OpenSegment {
    segment: Segment,
    index_file: Option<File>,
    /// Index records read so far, from the one covering the cursor on.
    index: Vec<IndexRecord>,
    index_read: u64,
}

impl LogCursor {
    /// A cursor on the stream of `files` starting at `position`.
    pub fn new(stream: LogStream, files: LogFiles, position: u64) -> LogCursor {
        LogCursor {
            stream,
            files,
            position,
            open: None,
            partial: Vec::new(),
            partial_time: 0,
            finished: None,
            skip_fragment: false,
        }
    }

    /// A cursor at the start of the last `lines` lines of the stream.
    pub fn at_tail(stream: LogStream, files: LogFiles, lines: usize) -> io::Result<LogCursor> {
        let position = tail_position(&files, lines)?;
        Ok(LogCursor::new(stream, files, position))
    }

    /// Reads up to about one chunk of new bytes and returns the complete
    /// lines among them, going on into the next file when one was
    /// rotated. An empty result means nothing new (for now).
    pub fn read_lines(&mut self) -> io::Result<Vec<LogLine>> {
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            if self.open.is_none() && !self.open_segment()? {
                return Ok(Vec::new());
            }
            let open = self.open.as_mut().expect("opened above");
            let start = open.segment.start;
            let read = open
                .segment
                .file
                .read_at(&mut buffer, self.position - start)?;
            if read == 0 {
                if open.segment.rotated {
                    // This file is whole: the next one starts where it
                    // would have, had it been written without a break.
                    let next = self.files.start_of(open.segment.number + 1);
                    self.position = self.position.max(next);
                    self.finished = Some(open.segment.number);
                    self.open = None;
                    continue;
                }
                if self.files.rotated_path(open.segment.number).exists() {
                    // Rotated since it was opened: what is left in it is
                    // read before the next file.
                    open.segment.rotated = true;
                    continue;
                }
                return Ok(Vec::new());
            }
            let lines = self.cut_lines(&buffer[..read])?;
            if !lines.is_empty() {
                return Ok(lines);
            }
        }
    }

    /// Opens the file holding the cursor's position; false when it is not
    /// there yet. A position in files deleted since (rotated away, or the
    /// home's cap) moves on to the oldest one there is.
    fn open_segment(&mut self) -> io::Result<bool> {
        let rotated = self.files.rotated()?;
        if let Some(&oldest) = rotated.first() {
            let first_kept = self.files.start_of(oldest);
            if self.position < first_kept {
                self.position = first_kept;
                self.partial.clear();
            }
        }
        let located = self.files.locate(self.position, &rotated);
        let Some(segment) = self.files.open(located.segment)? else {
            return match self.files.after_gap(located.segment, &rotated) {
                Some(next) => {
                    self.position = next;
                    self.partial.clear();
                    self.open_segment()
                }
                None => Ok(false),
            };
        };
        let number = segment.number;
        if located.offset == 0
            && number > 1
            && self.finished != Some(number - 1)
            && !rotated.contains(&(number - 1))
        {
            self.skip_fragment = true;
        }
        self.open = Some(OpenSegment {
            segment,
            index_file: None,
            index: Vec::new(),
            index_read: 0,
        });
        Ok(true)
    }

    /// Cuts bytes read at the cursor into lines, each dated by the chunk
    /// its first byte was captured in.
    fn cut_lines(&mut self, bytes: &[u8]) -> io::Result<Vec<LogLine>> {
        self.load_index()?;
        let open = self.open.as_ref().expect("a file is open");
        let start = open.segment.start;
        let mut lines = Vec::new();
        let mut rest = bytes;
        if self.skip_fragment {
            let fragment = rest
                .iter()
                .position(|byte| *byte == b'\n')
                .map_or(rest.len(), |n| n + 1);
            self.skip_fragment = fragment == rest.len() && rest.last() != Some(&b'\n');
            self.position += fragment as u64;
            rest = &rest[fragment..];
        }
        while !rest.is_empty() {
            if self.partial.is_empty() {
                self.partial_time =
                    logindex::time_of(&open.index, self.position - start).unwrap_or(0);
            }
            let (piece, ends_line) = match rest.iter().position(|byte| *byte == b'\n') {
                Some(newline) => (&rest[..newline], true),
                None => (rest, false),
            };
            self.partial.extend_from_slice(piece);
            let used = piece.len() + usize::from(ends_line);
            self.position += used as u64;
            rest = &rest[used..];
            if ends_line {
                let text = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                lines.push(self.line(text, true));
            }
        }
        Ok(lines)
    }

    /// The unfinished last line, if any, marked incomplete; used when no
    /// more output will come or a reader does not follow.
    pub fn take_partial(&mut self) -> Option<LogLine> {
        if self.partial.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(self.line(text, false))
    }

    fn line(&self, text: String, complete: bool) -> LogLine {
        LogLine {
            stream: self.stream,
            time: DateTime::<Utc>::from_timestamp_nanos(self.partial_time),
            text,
            complete,
        }
    }

    /// Reads the open file's index records that are new since the last
    /// call; the first time, from the record covering the cursor on
    /// (binary search).
    fn load_index(&mut self) -> io::Result<()> {
        let open = self.open.as_mut().expect("a file is open");
        if open.index_file.is_none() {
            open.index_file = self.files.open_index(open.segment.number)?;
        }
        let Some(file) = &open.index_file else {
            return Ok(());
        };
        let local = self.position - open.segment.start;
        let records = file.metadata()?.len() / RECORD_LEN as u64;
        if open.index_read == 0 && open.index.is_empty() {
            open.index_read = first_record_covering(file, records, local)?;
        }
        if open.index_read >= records {
            return Ok(());
        }
        let mut bytes = vec![0u8; ((records - open.index_read) as usize) * RECORD_LEN];
        file.read_exact_at(&mut bytes, open.index_read * RECORD_LEN as u64)?;
        open.index.extend(logindex::decode(&bytes));
        open.index_read = records;
        // Only the records from the one covering the cursor on are needed
        // again (a line's time is taken at its first byte).
        let first_needed = open
            .index
            .partition_point(|record| record.offset <= local)
            .saturating_sub(1);
        open.index.drain(..first_needed);
        Ok(())
    }
}

/// The number of the last index record at or before `offset`.
fn first_record_covering(file: &File, records: u64, offset: u64) -> io::Result<u64> {
    let read_offset = |n: u64| -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        file.read_exact_at(&mut bytes, n * RECORD_LEN as u64)?;
        Ok(u64::from_le_bytes(bytes))
    };
    let (mut low, mut high) = (0u64, records);
    while low < high {
        let middle = (low + high) / 2;
        if read_offset(middle)? <= offset {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(low.saturating_sub(1))
}

/// Position where the last `lines` lines of the stream start, found by
/// reading its files backwards from the end. A last line without a
/// newline counts as a line; a line may begin in an older file.
pub fn tail_position(files: &LogFiles, lines: usize) -> io::Result<u64> {
    let rotated = files.rotated()?;
    let current = LogFiles::current_number(&rotated);
    let mut numbers = rotated.clone();
    numbers.push(current);
    let oldest_start = numbers.first().map_or(0, |&n| files.start_of(n));
    let mut newlines = 0;
    // The stream's final newline ends the last line; it does not start one.
    let mut skip_final = true;
    let mut buffer = vec![0u8; 64 * 1024];
    for &number in numbers.iter().rev() {
        let Some(segment) = files.open(number)? else {
            continue;
        };
        let length = segment.file.metadata()?.len();
        if lines == 0 {
            return Ok(segment.start + length);
        }
        let mut end = length;
        while end > 0 {
            let start = end.saturating_sub(buffer.len() as u64);
            let chunk = &mut buffer[..(end - start) as usize];
            segment.file.read_exact_at(chunk, start)?;
            for (i, byte) in chunk.iter().enumerate().rev() {
                if *byte != b'\n' {
                    skip_final = false;
                    continue;
                }
                if skip_final {
                    skip_final = false;
                    continue;
                }
                newlines += 1;
                if newlines == lines {
                    return Ok(segment.start + start + i as u64 + 1);
                }
            }
            end = start;
        }
    }
    Ok(oldest_start)
}

/// Merges lines of two streams by capture time, keeping each stream's
/// order (stdout first on a tie).
pub fn merge(mut first: Vec<LogLine>, second: Vec<LogLine>) -> Vec<LogLine> {
    if second.is_empty() {
        return first;
    }
    if first.is_empty() {
        return second;
    }
    let mut merged = Vec::with_capacity(first.len() + second.len());
    let mut second = second.into_iter().peekable();
    for line in first.drain(..) {
        while let Some(other) = second.next_if(|other| other.time < line.time) {
            merged.push(other);
        }
        merged.push(line);
    }
    merged.extend(second);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    /// Writes `chunks` as the file `name` with its index; the stream's
    /// files, not rotated unless named so.
    fn write_log(dir: &Path, name: &str, chunks: &[(&str, i64)]) -> LogFiles {
        let mut file = File::create(dir.join(name)).unwrap();
        let mut index = File::create(dir.join(format!("{name}.idx"))).unwrap();
        let mut offset = 0;
        for (text, nanos) in chunks {
            IndexRecord {
                offset,
                unix_nanos: *nanos,
            }
            .write_to(&mut index)
            .unwrap();
            file.write_all(text.as_bytes()).unwrap();
            offset += text.len() as u64;
        }
        let stream = name.split(".log").next().unwrap();
        LogFiles::new(dir, &format!("{stream}.log"), 1 << 20)
    }

    #[test]
    fn lines_carry_the_time_of_their_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(
            dir.path(),
            "stdout.log",
            &[("a\nb", 1_000), ("c\nd\n", 2_000)],
        );
        let mut cursor = LogCursor::new(LogStream::Stdout, log, 0);
        let lines = cursor.read_lines().unwrap();
        let got: Vec<(&str, i64)> = lines
            .iter()
            .map(|l| (l.text.as_str(), l.time.timestamp_nanos_opt().unwrap()))
            .collect();
        assert_eq!(got, [("a", 1_000), ("bc", 1_000), ("d", 2_000)]);
        assert!(cursor.read_lines().unwrap().is_empty());
        assert!(cursor.take_partial().is_none());
    }

    #[test]
    fn tail_finds_the_last_lines_and_counts_an_unfinished_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(dir.path(), "out.log", &[("1\n2\n3\n", 1)]);
        assert_eq!(tail_position(&log, 2).unwrap(), 2);
        assert_eq!(tail_position(&log, 10).unwrap(), 0);
        assert_eq!(tail_position(&log, 0).unwrap(), 6);
        let other = tempfile::tempdir().unwrap();
        let unfinished = write_log(other.path(), "out.log", &[("1\n2\n3", 1)]);
        assert_eq!(tail_position(&unfinished, 1).unwrap(), 4);
        let mut cursor = LogCursor::at_tail(LogStream::Stdout, unfinished, 2).unwrap();
        assert_eq!(cursor.read_lines().unwrap()[0].text, "2");
        let last = cursor.take_partial().unwrap();
        assert_eq!((last.text.as_str(), last.complete), ("3", false));
    }

    #[test]
    fn a_cursor_started_mid_file_finds_its_index_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(
            dir.path(),
            "out.log",
            &[("x\n", 10), ("y\n", 20), ("z\n", 30)],
        );
        let mut cursor = LogCursor::new(LogStream::Stdout, log, 2);
        let lines = cursor.read_lines().unwrap();
        assert_eq!(lines[0].time.timestamp_nanos_opt(), Some(20));
        assert_eq!(lines[1].time.timestamp_nanos_opt(), Some(30));
    }

    #[test]
    fn rotated_files_read_as_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        // Files of 6 bytes: "one\ntw", "o\nthre", "e\nfour", then "\n" (a
        // line begins in one file and ends in the next); file 1 is gone.
        write_log(dir.path(), "out.log.2", &[("o\nthre", 20)]);
        write_log(dir.path(), "out.log.3", &[("e\n", 30), ("four", 40)]);
        write_log(dir.path(), "out.log", &[("\n", 50)]);
        let files = LogFiles::new(dir.path(), "out.log", 6);
        assert_eq!(files.end().unwrap(), 19);
        // From the start: the rest of a line begun in the lost file is
        // passed over with it.
        let mut cursor = LogCursor::new(LogStream::Stdout, files.clone(), 0);
        let mut got = Vec::new();
        loop {
            let lines = cursor.read_lines().unwrap();
            if lines.is_empty() {
                break;
            }
            got.extend(
                lines
                    .into_iter()
                    .map(|l| (l.text, l.time.timestamp_nanos_opt().unwrap())),
            );
        }
        let expected = [("three", 20), ("four", 40)];
        let expected: Vec<(String, i64)> =
            expected.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        assert_eq!(got, expected);
        // The tail counts back across files.
        assert_eq!(tail_position(&files, 1).unwrap(), 14);
        assert_eq!(tail_position(&files, 2).unwrap(), 8);
        assert_eq!(tail_position(&files, 9).unwrap(), 6);
        let mut cursor = LogCursor::at_tail(LogStream::Stdout, files.clone(), 2).unwrap();
        assert_eq!(texts(cursor.read_lines().unwrap()), ["three"]);
        assert_eq!(texts(cursor.read_lines().unwrap()), ["four"]);
    }

    fn texts(lines: Vec<LogLine>) -> Vec<String> {
        lines.into_iter().map(|line| line.text).collect()
    }

    #[test]
    fn a_cursor_follows_a_file_rotated_under_it() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), "out.log", &[("ab\ncd", 10)]);
        let files = LogFiles::new(dir.path(), "out.log", 6);
        let mut cursor = LogCursor::new(LogStream::Stdout, files.clone(), 0);
        assert_eq!(texts(cursor.read_lines().unwrap()), ["ab"]);
        // The shim fills the file, rotates it and starts the next one.
        std::fs::OpenOptions::new()
            .append(true)
            .open(files.current_path())
            .unwrap()
            .write_all(b"e")
            .unwrap();
        std::fs::rename(files.current_index_path(), files.rotated_index_path(1)).unwrap();
        std::fs::rename(files.current_path(), files.rotated_path(1)).unwrap();
        write_log(dir.path(), "out.log", &[("f\ng\n", 20)]);
        assert_eq!(texts(cursor.read_lines().unwrap()), ["cdef", "g"]);
        assert!(cursor.read_lines().unwrap().is_empty());
    }

    #[test]
    fn merging_interleaves_by_time() {
        let line = |stream, text: &str, nanos| LogLine {
            stream,
            time: DateTime::<Utc>::from_timestamp_nanos(nanos),
            text: text.into(),
            complete: true,
        };
        let out = vec![
            line(LogStream::Stdout, "o1", 1),
            line(LogStream::Stdout, "o3", 3),
        ];
        let err = vec![
            line(LogStream::Stderr, "e2", 2),
            line(LogStream::Stderr, "e3", 3),
        ];
        let merged: Vec<String> = merge(out, err).into_iter().map(|l| l.text).collect();
        assert_eq!(merged, ["o1", "e2", "o3", "e3"]);
    }
}
