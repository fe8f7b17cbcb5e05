//! The files of one output stream of a run, rotated by size: the current
//! `stdout.log`, and rotated ones `stdout.log.1`, `stdout.log.2`, … (a
//! higher number is newer; a number is never reused or shifted, so that a
//! reader never sees a file change its name under it). Each has its
//! capture-time index beside it (`stdout.log.2.idx`).
//!
//! Every rotated file holds exactly `segment_size` bytes: the shim splits
//! a chunk at the boundary. So a position in the whole stream (the bytes
//! the agent ever wrote to it, the one number readers store) is found
//! without any other record: rotated file `n` starts at
//! `(n - 1) * segment_size`, and the current file at that of the number
//! after the newest rotated one, running on as long as it grows.

use crate::protocol::INDEX_SUFFIX;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Where one stream's files are and how big each rotated one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    dir: PathBuf,
    name: String,
    segment_size: u64,
}

/// A position in the stream, in the file that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The file's number (the current one's is one past the newest
    /// rotated).
    pub segment: u64,
    /// Offset in that file.
    pub offset: u64,
    /// Where in the stream that file starts.
    pub segment_start: u64,
}

/// One file of the stream, opened.
#[derive(Debug)]
pub struct Segment {
    /// The file's number.
    pub number: u64,
    /// Where in the stream it starts.
    pub start: u64,
    /// The open log file.
    pub file: File,
    /// Whether it has been rotated (nothing more will be written to it).
    pub rotated: bool,
}

impl LogFiles {
    /// The stream `name` (`stdout.log`) in the run directory `dir`, rotated
    /// every `segment_size` bytes.
    pub fn new(dir: &Path, name: &str, segment_size: u64) -> LogFiles {
        LogFiles {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            segment_size: segment_size.max(1),
        }
    }

    /// Size of each rotated file.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The current file.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The current file's index.
    pub fn current_index_path(&self) -> PathBuf {
        with_suffix(&self.current_path(), INDEX_SUFFIX)
    }

    /// Rotated file number `number`.
    pub fn rotated_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{}.{number}", self.name))
    }

    /// Rotated file number `number`'s index.
    pub fn rotated_index_path(&self, number: u64) -> PathBuf {
        with_suffix(&self.rotated_path(number), INDEX_SUFFIX)
    }

    /// The numbers of the rotated files there are, oldest first.
    pub fn rotated(&self) -> io::Result<Vec<u64>> {
        let prefix = format!("{}.", self.name);
        let mut numbers = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(numbers),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .and_then(|rest| rest.parse::<u64>().ok())
            else {
                continue;
            };
            numbers.push(number);
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// The current file's number, given the rotated ones.
    pub fn current_number(rotated: &[u64]) -> u64 {
        rotated.last().map_or(1, |newest| newest + 1)
    }

    /// Where in the stream file number `number` starts.
    pub fn start_of(&self, number: u64) -> u64 {
        (number - 1).saturating_mul(self.segment_size)
    }

    /// The file that holds stream position `position`, given the rotated
    /// files: the current one runs on past its size when it could not be
    /// rotated (or was written before rotation existed).
    pub fn locate(&self, position: u64, rotated: &[u64]) -> Located {
        let current = LogFiles::current_number(rotated);
        let segment = (position / self.segment_size + 1).min(current);
        let segment_start = self.start_of(segment);
        Located {
            segment,
            offset: position - segment_start,
            segment_start,
        }
    }

    /// Where reading goes on from when file number `number` was deleted
    /// (the home's cap takes the oldest rotated files, but not always all
    /// before a kept one): the start of the next file there is, if
    /// `number` is behind the current file.
    pub fn after_gap(&self, number: u64, rotated: &[u64]) -> Option<u64> {
        let current = LogFiles::current_number(rotated);
        if number >= current {
            return None;
        }
        let next = rotated
            .iter()
            .copied()
            .find(|&kept| kept > number)
            .unwrap_or(current);
        Some(self.start_of(next))
    }

    /// Opens file number `number`: `Ok(None)` when it is not there (not
    /// written yet, or deleted). The current file is checked after it is
    /// opened, so that a rotation in between cannot hand over the next
    /// file under the old number.
    pub fn open(&self, number: u64) -> io::Result<Option<Segment>> {
        let start = self.start_of(number);
        if let Some(file) = open_if_there(&self.rotated_path(number))? {
            return Ok(Some(Segment {
                number,
                start,
                file,
                rotated: true,
            }));
        }
        let rotated = self.rotated()?;
        if LogFiles::current_number(&rotated) != number {
            return Ok(None);
        }
        let Some(file) = open_if_there(&self.current_path())? else {
            return Ok(None);
        };
        if self.rotated_path(number).exists() {
            // Rotated between the two looks: what was opened may be the
            // next file.
            return Ok(
                open_if_there(&self.rotated_path(number))?.map(|file| Segment {
                    number,
                    start,
                    file,
                    rotated: true,
                }),
            );
        }
        Ok(Some(Segment {
            number,
            start,
            file,
            rotated: false,
        }))
    }

    /// Opens the index of file number `number`, checked the same way as
    /// [`LogFiles::open`]; `Ok(None)` when there is none.
    pub fn open_index(&self, number: u64) -> io::Result<Option<File>> {
        if let Some(file) = open_if_there(&self.rotated_index_path(number))? {
            return Ok(Some(file));
        }
        if LogFiles::current_number(&self.rotated()?) != number {
            return Ok(None);
        }
        let file = open_if_there(&self.current_index_path())?;
        if file.is_some() && self.rotated_index_path(number).exists() {
            return open_if_there(&self.rotated_index_path(number));
        }
        Ok(file)
    }

    /// The stream's total length: where the current file ends.
    pub fn end(&self) -> io::Result<u64> {
        let rotated = self.rotated()?;
        let current = LogFiles::current_number(&rotated);
        let length = match fs::metadata(self.current_path()) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        Ok(self.start_of(current) + length)
    }

    /// Bytes of all the stream's files there are, and how many files.
    pub fn disk_usage(&self) -> io::Result<(u64, usize)> {
        let mut bytes = 0;
        let mut files = 0;
        let mut paths = vec![self.current_path(), self.current_index_path()];
        for number in self.rotated()? {
            paths.push(self.rotated_path(number));
            paths.push(self.rotated_index_path(number));
        }
        for path in paths {
            match fs::metadata(&path) {
                Ok(metadata) => {
                    bytes += metadata.len();
                    files += 1;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok((bytes, files))
    }

    /// Deletes rotated file number `number` and its index; the bytes freed.
    pub fn delete_rotated(&self, number: u64) -> io::Result<u64> {
        let mut freed = 0;
        for path in [self.rotated_path(number), self.rotated_index_path(number)] {
            let length = fs::metadata(&path).map_or(0, |m| m.len());
            match fs::remove_file(&path) {
                Ok(()) => freed += length,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(freed)
    }
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn open_if_there(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_to_files_and_the_current_one_runs_on() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(dir.path(), "stdout.log", 10);
        assert_eq!(files.rotated().unwrap(), Vec::<u64>::new());
        // Nothing rotated: everything is in the current file (number 1).
        let at = files.locate(25, &[]);
        assert_eq!((at.segment, at.offset), (1, 25));
        // Files 2 and 3 rotated (1 deleted): the current one is 4.
        fs::write(files.rotated_path(2), [0u8; 10]).unwrap();
        fs::write(files.rotated_path(3), [0u8; 10]).unwrap();
        fs::write(dir.path().join("stdout.log.3.idx"), b"").unwrap();
        fs::write(files.current_path(), b"abc").unwrap();
        let rotated = files.rotated().unwrap();
        assert_eq!(rotated, [2, 3]);
        assert_eq!(files.locate(15, &rotated).segment, 2);
        assert_eq!(
            files.locate(29, &rotated),
            Located {
                segment: 3,
                offset: 9,
                segment_start: 20
            }
        );
        assert_eq!(
            files.locate(30, &rotated),
            Located {
                segment: 4,
                offset: 0,
                segment_start: 30
            }
        );
        assert_eq!(files.locate(45, &rotated).offset, 15);
        assert_eq!(files.end().unwrap(), 33);
        assert!(files.open(1).unwrap().is_none());
        assert!(files.open(3).unwrap().unwrap().rotated);
        assert!(!files.open(4).unwrap().unwrap().rotated);
        assert!(files.open(5).unwrap().is_none());
        assert_eq!(files.after_gap(1, &rotated), Some(10));
        assert_eq!(files.after_gap(4, &rotated), None);
        assert_eq!(files.disk_usage().unwrap(), (23, 4));
        assert_eq!(files.delete_rotated(2).unwrap(), 10);
        assert_eq!(files.rotated().unwrap(), [3]);
    }
}
