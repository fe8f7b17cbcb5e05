//! Reading a run's logs back as lines with their capture times: the last N
//! lines, everything, or everything and then what follows.

use chrono::{DateTime, Utc};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use wrangle_shim::logindex::{self, IndexRecord, RECORD_LEN};
use wrangle_shim::protocol::INDEX_SUFFIX;
use wrangle_wire::{LogLine, LogStream};

/// Bytes read per step.
const READ_CHUNK: usize = 256 * 1024;

/// A position in one log, from which complete lines are read as they come.
pub struct LogCursor {
    stream: LogStream,
    path: PathBuf,
    index_path: PathBuf,
    /// Offset of the next byte to read.
    offset: u64,
    /// An unfinished line: its bytes and the offset of its first byte.
    partial: Vec<u8>,
    partial_start: u64,
    /// Index records read so far, from the one covering the start on.
    index: Vec<IndexRecord>,
    index_read: u64,
}

impl LogCursor {
    /// A cursor on `log` (with its `.idx` beside it) starting at `offset`.
    pub fn new(stream: LogStream, log: &Path, offset: u64) -> LogCursor {
        let mut index_path = log.as_os_str().to_owned();
        index_path.push(INDEX_SUFFIX);
        LogCursor {
            stream,
            path: log.to_path_buf(),
            index_path: PathBuf::from(index_path),
            offset,
            partial: Vec::new(),
            partial_start: offset,
            index: Vec::new(),
            index_read: 0,
        }
    }

    /// A cursor at the start of the last `lines` lines of `log`.
    pub fn at_tail(stream: LogStream, log: &Path, lines: usize) -> io::Result<LogCursor> {
        let offset = tail_offset(log, lines)?;
        Ok(LogCursor::new(stream, log, offset))
    }

    /// Reads up to about one chunk of new bytes and returns the complete
    /// lines among them. An empty result means nothing new (for now).
    pub fn read_lines(&mut self) -> io::Result<Vec<LogLine>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buffer = vec![0u8; READ_CHUNK];
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(Vec::new());
        }
        self.load_index()?;
        let mut lines = Vec::new();
        let mut position = self.offset;
        for byte in &buffer[..read] {
            if self.partial.is_empty() {
                self.partial_start = position;
            }
            position += 1;
            if *byte == b'\n' {
                let text = String::from_utf8_lossy(&self.partial).into_owned();
                lines.push(self.line(text, true));
                self.partial.clear();
            } else {
                self.partial.push(*byte);
            }
        }
        self.offset = position;
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
        let nanos = logindex::time_of(&self.index, self.partial_start).unwrap_or(0);
        LogLine {
            stream: self.stream,
            time: DateTime::<Utc>::from_timestamp_nanos(nanos),
            text,
            complete,
        }
    }

    /// Reads index records that are new since the last call; the first
    /// time, starts at the record covering the cursor (binary search).
    fn load_index(&mut self) -> io::Result<()> {
        let file = match File::open(&self.index_path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let records = file.metadata()?.len() / RECORD_LEN as u64;
        if self.index_read == 0 && self.index.is_empty() {
            self.index_read = first_record_covering(&file, records, self.offset)?;
        }
        if self.index_read >= records {
            return Ok(());
        }
        let mut bytes = vec![0u8; ((records - self.index_read) as usize) * RECORD_LEN];
        file.read_exact_at(&mut bytes, self.index_read * RECORD_LEN as u64)?;
        self.index.extend(logindex::decode(&bytes));
        self.index_read = records;
        // Only the records from the one covering the oldest unread byte on
        // are needed again.
        let keep_from = self.partial_start.min(self.offset);
        let first_needed = self
            .index
            .partition_point(|record| record.offset <= keep_from)
            .saturating_sub(1);
        self.index.drain(..first_needed);
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

/// Offset where the last `lines` lines of the file start, found by reading
/// backwards from its end. A last line without a newline counts as a line.
pub fn tail_offset(path: &Path, lines: usize) -> io::Result<u64> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    if lines == 0 {
        return Ok(length);
    }
    let mut end = length;
    let mut newlines = 0;
    let mut buffer = vec![0u8; 64 * 1024];
    // The file's final newline ends the last line; it does not start one.
    let mut skip_final = true;
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
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
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
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

    fn write_log(dir: &Path, name: &str, chunks: &[(&str, i64)]) -> PathBuf {
        let log = dir.join(name);
        let mut file = File::create(&log).unwrap();
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
        log
    }

    #[test]
    fn lines_carry_the_time_of_their_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(
            dir.path(),
            "stdout.log",
            &[("a\nb", 1_000), ("c\nd\n", 2_000)],
        );
        let mut cursor = LogCursor::new(LogStream::Stdout, &log, 0);
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
        assert_eq!(tail_offset(&log, 2).unwrap(), 2);
        assert_eq!(tail_offset(&log, 10).unwrap(), 0);
        assert_eq!(tail_offset(&log, 0).unwrap(), 6);
        let unfinished = write_log(dir.path(), "partial.log", &[("1\n2\n3", 1)]);
        assert_eq!(tail_offset(&unfinished, 1).unwrap(), 4);
        let mut cursor = LogCursor::at_tail(LogStream::Stdout, &unfinished, 2).unwrap();
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
        let mut cursor = LogCursor::new(LogStream::Stdout, &log, 2);
        let lines = cursor.read_lines().unwrap();
        assert_eq!(lines[0].time.timestamp_nanos_opt(), Some(20));
        assert_eq!(lines[1].time.timestamp_nanos_opt(), Some(30));
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
