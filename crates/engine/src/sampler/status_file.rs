//! What an agent says about itself: the JSON object it writes to its
//! status file (`$WRANGLE_STATUS_FILE`), and when it last said anything
//! (a write to the status file is a heartbeat; output counts too).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wrangle_os::sample::{FileStamp, WatchedDir};

/// Largest status file that is read.
pub const MAX_STATUS_FILE: u64 = 64 * 1024;

/// A status file that fails to parse this soon after it was written may be
/// half-written: it is read again at the next tick before it is called
/// invalid.
const SETTLE: Duration = Duration::from_millis(100);

/// What the agent last reported in its status file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// `progress`, 0 to 100.
    pub progress: Option<f64>,
    /// `message`.
    pub message: Option<String>,
    /// Every other key; absent when there is none.
    pub details: Option<Map<String, Value>>,
}

/// A status file as an agent writes one, for error messages.
const EXAMPLE: &str = r#"{"progress": 40, "message": "running tests"}"#;

/// Parses a status file: a JSON object whose `progress` (when present) is
/// a number from 0 to 100 and whose `message` is a string. The error says
/// what is wrong, for people.
pub fn parse(bytes: &[u8]) -> Result<Report, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| format!("invalid JSON ({error}): write one object like {EXAMPLE}"))?;
    let Value::Object(mut details) = value else {
        return Err(format!(
            "it must hold a JSON object like {EXAMPLE}, not {}",
            kind(&value)
        ));
    };
    let progress = match details.remove("progress") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => match number.as_f64() {
            Some(progress) if (0.0..=100.0).contains(&progress) => Some(progress),
            _ => return Err(format!("progress must be from 0 to 100, not {number}")),
        },
        Some(other) => {
            return Err(format!(
                "progress must be a number from 0 to 100, not {}",
                kind(&other)
            ))
        }
    };
    let message = match details.remove("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(message)) => Some(message),
        Some(other) => return Err(format!("message must be a string, not {}", kind(&other))),
    };
    Ok(Report {
        progress,
        message,
        details: (!details.is_empty()).then_some(details),
    })
}

/// `a string`, `an array` ...: what a JSON value is, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One run's status file, read again only when it has changed.
#[derive(Debug, Default)]
pub struct StatusFile {
    /// The version last taken (or found invalid).
    seen: Option<FileStamp>,
    /// The directory's stamp when the file was last found missing: until
    /// the directory changes, it is still missing (most agents never write
    /// one, and a lookup that fails costs more than one that succeeds).
    missing_while: Option<FileStamp>,
    /// The last valid report.
    pub report: Arc<Report>,
    /// Why the current version was not taken, if it was not.
    pub error: Option<Arc<str>>,
    /// When the file was last written.
    pub heartbeat: Option<DateTime<Utc>>,
}

impl StatusFile {
    /// Looks at the file `name` in `dir` (a `statx` or two) and reads it when it
    /// has changed since the last look; `buffer` is reused between calls.
    /// An invalid version leaves the last valid report in place and says
    /// why.
    ///
    /// Returns true when the file is to be looked at again at the next
    /// tick even if nothing tells of a change: it may have been caught
    /// half-written.
    #[must_use]
    pub fn refresh(
        &mut self,
        dir: &WatchedDir,
        name: &str,
        buffer: &mut Vec<u8>,
        now: SystemTime,
    ) -> bool {
        let dir_stamp = dir.own_stamp().ok();
        if dir_stamp.is_some() && self.missing_while == dir_stamp {
            return false;
        }
        let stamp = match dir.stamp(name) {
            Ok(stamp) => stamp,
            Err(_) => {
                // A directory changed just now may change again within the
                // same timestamp: only an older one is trusted to stay as
                // it was while its stamp does.
                self.missing_while = dir_stamp.filter(|dir| {
                    now.duration_since(dir.modified)
                        .is_ok_and(|age| age >= SETTLE)
                });
                return self.missing_while.is_none();
            }
        };
        self.missing_while = None;
        self.heartbeat = Some(stamp.modified.into());
        if self.seen == Some(stamp) {
            return false;
        }
        // An empty file is most likely being written (truncated first):
        // looked at again next time.
        if stamp.length == 0 {
            return true;
        }
        let outcome = if stamp.length > MAX_STATUS_FILE {
            Err(format!("it is larger than {} KiB", MAX_STATUS_FILE / 1024))
        } else {
            dir.read(name, MAX_STATUS_FILE, buffer)
                .map_err(|error| format!("cannot read it: {error}"))
                .and_then(|()| parse(buffer))
        };
        match outcome {
            Ok(report) => {
                self.report = Arc::new(report);
                self.error = None;
            }
            Err(_) if now.duration_since(stamp.modified).unwrap_or_default() < SETTLE => {
                return true
            }
            Err(error) => self.error = Some(error.into()),
        }
        self.seen = Some(stamp);
        false
    }
}

/// When the log `name` in `dir` was last written to, if anything was.
pub fn last_write(dir: &WatchedDir, name: &str) -> Option<DateTime<Utc>> {
    let stamp = dir.stamp(name).ok()?;
    (stamp.length > 0).then(|| stamp.modified.into())
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    #[test]
    fn progress_and_message_are_taken_and_the_rest_is_details() {
        let report =
            parse(br#"{"progress": 40, "message": "running tests", "tokens": 1200, "phase": "b"}"#)
                .unwrap();
        assert_eq!(report.progress, Some(40.0));
        assert_eq!(report.message.as_deref(), Some("running tests"));
        let details = Value::Object(report.details.unwrap());
        assert_eq!(details, json!({"tokens": 1200, "phase": "b"}));

        let bare = parse(b"{}").unwrap();
        assert_eq!(bare, Report::default());
        let nulls = parse(br#"{"progress": null, "message": null}"#).unwrap();
        assert_eq!(nulls, Report::default());
        assert_eq!(
            parse(br#"{"progress": 99.5}"#).unwrap().progress,
            Some(99.5)
        );
    }

    #[test]
    fn bad_reports_say_what_is_wrong() {
        let error = |text: &str| parse(text.as_bytes()).unwrap_err();
        assert!(
            error("{\"progress\": 4").starts_with("invalid JSON ("),
            "{}",
            error("{")
        );
        assert!(error("").starts_with("invalid JSON ("));
        assert!(error("").ends_with(&format!("): write one object like {EXAMPLE}")));
        assert!(
            error("[1, 2]").contains("not an array"),
            "{}",
            error("[1, 2]")
        );
        assert_eq!(
            error(r#"{"progress": 150}"#),
            "progress must be from 0 to 100, not 150"
        );
        assert_eq!(
            error(r#"{"progress": -1}"#),
            "progress must be from 0 to 100, not -1"
        );
        assert_eq!(
            error(r#"{"progress": "40"}"#),
            "progress must be a number from 0 to 100, not a string"
        );
        assert_eq!(
            error(r#"{"message": ["a"]}"#),
            "message must be a string, not an array"
        );
    }

    #[test]
    fn a_status_file_is_read_when_it_changes_and_bad_versions_keep_the_last_good_one() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("status.json");
        let dir = WatchedDir::open(temp.path()).unwrap();
        let mut file = StatusFile::default();
        let mut buffer = Vec::new();
        let later = || SystemTime::now() + Duration::from_secs(1);
        let mut refresh = |file: &mut StatusFile, now| {
            let _ = file.refresh(&dir, "status.json", &mut buffer, now);
        };

        refresh(&mut file, later());
        assert_eq!(*file.report, Report::default());
        assert!(file.heartbeat.is_none());
        // Still missing: the directory has not changed.
        refresh(&mut file, later());
        assert!(file.heartbeat.is_none());

        fs::write(&path, r#"{"progress": 10, "message": "start"}"#).unwrap();
        refresh(&mut file, later());
        assert_eq!(file.report.progress, Some(10.0));
        assert!(file.error.is_none());
        assert!(file.heartbeat.is_some());

        fs::write(&path, "{not json").unwrap();
        // Just written: it may be half-written, so it is not judged yet.
        refresh(&mut file, SystemTime::now());
        assert!(file.error.is_none());
        refresh(&mut file, later());
        assert!(file.error.as_deref().unwrap().starts_with("invalid JSON"));
        assert_eq!(file.report.message.as_deref(), Some("start"));

        fs::write(&path, r#"{"progress": 20, "message": "more"}"#).unwrap();
        refresh(&mut file, later());
        assert!(file.error.is_none());
        assert_eq!(file.report.message.as_deref(), Some("more"));

        fs::write(&path, vec![b' '; MAX_STATUS_FILE as usize + 1]).unwrap();
        refresh(&mut file, later());
        assert_eq!(file.error.as_deref(), Some("it is larger than 64 KiB"));
    }

    #[test]
    fn a_log_counts_once_it_has_output() {
        let temp = tempfile::tempdir().unwrap();
        let dir = WatchedDir::open(temp.path()).unwrap();
        let log = temp.path().join("stdout.log");
        assert!(last_write(&dir, "stdout.log").is_none());
        fs::write(&log, "").unwrap();
        assert!(last_write(&dir, "stdout.log").is_none());
        fs::write(&log, "hello\n").unwrap();
        assert!(last_write(&dir, "stdout.log").is_some());
    }
}
