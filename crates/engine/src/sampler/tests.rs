//! The sampler's look at a run's files, with changes told by the kernel
//! and without: both must see the same.

use super::*;
use crate::model::STATUS_FILE;
use chrono::DateTime;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use wrangle_os::ProcessId;
use wrangle_shim::protocol::{STDERR_LOG, STDOUT_LOG};

/// A sampler of one run (of agent "a") whose directory is `dir`, taking
/// changes from the kernel or not.
fn sampler_of(dir: &Path, kernel_changes: bool) -> Sampler {
    let mut sampler = Sampler::new(1000, usize::MAX, kernel_changes);
    sampler.watch("a", target(dir, 1));
    sampler
}

/// Run `run` in `dir`; its processes are this test's own (of no concern
/// here: only the files are looked at).
fn target(dir: &Path, run: u32) -> Target {
    let me = ProcessId::current().unwrap();
    Target {
        run,
        shim: me,
        main: me,
        cgroup: None,
        dir: dir.to_owned(),
        log_max_size: 1 << 20,
        started_at: None,
        session: None,
    }
}

/// What a tick sees of the run's files.
#[derive(Debug, PartialEq)]
struct Files {
    progress: Option<f64>,
    message: Option<String>,
    error: Option<String>,
    output_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
}

fn tick(sampler: &mut Sampler) -> Files {
    sampler.sample();
    let seen = &sampler.runs["a"].observation;
    Files {
        progress: seen.report.progress,
        message: seen.report.message.clone(),
        error: seen.report_error.as_deref().map(str::to_owned),
        output_at: seen.last_output_at,
        heartbeat_at: seen.last_heartbeat_at,
    }
}

/// A run directory as the shim leaves it: empty logs.
fn run_dir() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("1");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(STDOUT_LOG), "").unwrap();
    fs::write(dir.join(STDERR_LOG), "").unwrap();
    (temp, dir)
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Writes the status file as careful agents do: a new file renamed over
/// the old one.
fn replace_status(dir: &Path, text: &str) {
    let temporary = dir.join("status.json.tmp");
    fs::write(&temporary, text).unwrap();
    fs::rename(&temporary, dir.join(STATUS_FILE)).unwrap();
}

fn modified(path: &Path) -> Option<DateTime<Utc>> {
    Some(fs::metadata(path).unwrap().modified().unwrap().into())
}

/// Lets the clock move on, so that a new write has a later time.
fn later() {
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn output_between_two_ticks_moves_last_output_at() {
    for kernel_changes in [true, false] {
        let (_temp, dir) = run_dir();
        let mut sampler = sampler_of(&dir, kernel_changes);
        assert_eq!(sampler.changes.watched(), usize::from(kernel_changes));
        assert_eq!(tick(&mut sampler).output_at, None, "no output yet");

        append(&dir.join(STDOUT_LOG), "hello\n");
        let first = tick(&mut sampler).output_at;
        assert_eq!(first, modified(&dir.join(STDOUT_LOG)));

        later();
        append(&dir.join(STDERR_LOG), "oops\n");
        let second = tick(&mut sampler).output_at;
        assert_eq!(second, modified(&dir.join(STDERR_LOG)));
        assert!(second > first, "kernel changes: {kernel_changes}");

        later();
        append(&dir.join(STDOUT_LOG), "more\n");
        assert_eq!(
            tick(&mut sampler).output_at,
            modified(&dir.join(STDOUT_LOG))
        );
        assert_eq!(
            tick(&mut sampler).output_at,
            modified(&dir.join(STDOUT_LOG)),
            "a quiet tick keeps the time"
        );
    }
}

#[test]
fn a_status_file_replaced_by_rename_is_picked_up() {
    for kernel_changes in [true, false] {
        let (_temp, dir) = run_dir();
        let status = dir.join(STATUS_FILE);
        let mut sampler = sampler_of(&dir, kernel_changes);
        let none = tick(&mut sampler);
        assert_eq!((none.progress, none.heartbeat_at), (None, None));

        replace_status(&dir, r#"{"progress": 10, "message": "start"}"#);
        let seen = tick(&mut sampler);
        assert_eq!(
            seen.progress,
            Some(10.0),
            "kernel changes: {kernel_changes}"
        );
        assert_eq!(seen.heartbeat_at, modified(&status));

        later();
        replace_status(&dir, r#"{"progress": 20, "message": "tests"}"#);
        let seen = tick(&mut sampler);
        assert_eq!(
            seen.progress,
            Some(20.0),
            "kernel changes: {kernel_changes}"
        );
        assert_eq!(seen.message.as_deref(), Some("tests"));
        assert_eq!(seen.heartbeat_at, modified(&status));

        // Written in place, then only touched: both are heartbeats.
        later();
        fs::write(&status, r#"{"progress": 30}"#).unwrap();
        assert_eq!(tick(&mut sampler).progress, Some(30.0));
        let touched = SystemTime::now() + Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&status)
            .unwrap()
            .set_modified(touched)
            .unwrap();
        assert_eq!(tick(&mut sampler).heartbeat_at, Some(touched.into()));
    }
}

#[test]
fn runs_watched_and_runs_looked_at_every_tick_see_the_same() {
    let (_temp, dir) = run_dir();
    let mut watched = sampler_of(&dir, true);
    let mut looked_at = sampler_of(&dir, false);
    let mut both = |step: &str| {
        let seen = tick(&mut watched);
        assert_eq!(seen, tick(&mut looked_at), "after {step}");
        seen
    };
    both("the start");
    append(&dir.join(STDOUT_LOG), "hello\n");
    assert!(both("output").output_at.is_some());
    replace_status(&dir, r#"{"progress": 10, "message": "start"}"#);
    assert_eq!(both("a status file").progress, Some(10.0));

    // Caught just written, bad JSON may be half-written: it is judged at
    // a later tick, with nothing new to tell of it.
    later();
    fs::write(dir.join(STATUS_FILE), "{not json").unwrap();
    assert_eq!(both("bad JSON just written").error, None);
    std::thread::sleep(Duration::from_millis(150));
    let judged = both("bad JSON a while later");
    assert!(judged.error.unwrap().starts_with("invalid JSON"));
    assert_eq!(judged.progress, Some(10.0), "the last good report stays");

    later();
    fs::remove_file(dir.join(STATUS_FILE)).unwrap();
    assert!(both("the status file removed").heartbeat_at.is_some());
    replace_status(&dir, r#"{"progress": 50}"#);
    assert_eq!(both("a status file again").progress, Some(50.0));

    later();
    append(&dir.join(STDERR_LOG), "oops\n");
    fs::File::options()
        .write(true)
        .open(dir.join(STDOUT_LOG))
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(
        both("stdout emptied").output_at,
        modified(&dir.join(STDERR_LOG))
    );
    both("a quiet tick");
}

#[test]
fn changes_lost_from_a_full_queue_are_looked_for() {
    let limit = wrangle_os::sample::max_queued_events().unwrap();
    if limit > 1 << 20 {
        eprintln!("max_queued_events is {limit}: too many changes to fill the queue in a test");
        return;
    }
    let (_temp, dir) = run_dir();
    let mut sampler = sampler_of(&dir, true);
    tick(&mut sampler);
    // Changes alike and in a row are merged: these alternate, and fill
    // the queue before the output comes.
    let mut a = fs::File::create(dir.join("a")).unwrap();
    let mut b = fs::File::create(dir.join("b")).unwrap();
    for _ in 0..=limit / 2 {
        a.write_all(b"a").unwrap();
        b.write_all(b"b").unwrap();
    }
    append(&dir.join(STDOUT_LOG), "hello\n");
    replace_status(&dir, r#"{"progress": 10}"#);
    let seen = tick(&mut sampler);
    assert_eq!(seen.output_at, modified(&dir.join(STDOUT_LOG)));
    assert_eq!(seen.progress, Some(10.0));

    // Still watched: the next change is told again.
    assert_eq!(sampler.changes.watched(), 1);
    later();
    append(&dir.join(STDERR_LOG), "oops\n");
    assert_eq!(
        tick(&mut sampler).output_at,
        modified(&dir.join(STDERR_LOG))
    );
}

#[test]
fn a_directory_that_cannot_be_watched_is_looked_at_on_every_tick() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("1");
    let mut sampler = sampler_of(&dir, true);
    assert_eq!(sampler.changes.watched(), 0, "no directory to watch yet");
    assert_eq!(tick(&mut sampler).output_at, None);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(STDOUT_LOG), "hello\n").unwrap();
    assert_eq!(
        tick(&mut sampler).output_at,
        modified(&dir.join(STDOUT_LOG))
    );
}

#[test]
fn a_watch_ends_with_its_directory_or_its_run() {
    let (temp, dir) = run_dir();
    // With no files to keep open, the directory is not held between
    // ticks, so the kernel ends the watch as soon as it is removed (one
    // held open goes when it is let go).
    let mut sampler = Sampler::new(0, usize::MAX, true);
    sampler.watch("a", target(&dir, 1));
    tick(&mut sampler);
    // Removed and made again: the watch is gone, looks go on.
    fs::remove_dir_all(&dir).unwrap();
    tick(&mut sampler);
    assert_eq!(sampler.changes.watched(), 0);
    assert!(sampler.runs["a"].watch().is_none());
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(STDOUT_LOG), "hello\n").unwrap();
    assert_eq!(
        tick(&mut sampler).output_at,
        modified(&dir.join(STDOUT_LOG))
    );

    // A run replaced by one in the same directory (again under the same
    // number) leaves the watch to it.
    let other = temp.path().join("2");
    fs::create_dir(&other).unwrap();
    sampler.watch("a", target(&other, 2));
    sampler.watch("a", target(&other, 2));
    assert_eq!(sampler.changes.watched(), 1);
    assert!(sampler.runs["a"].watch().is_some());
    tick(&mut sampler);
    fs::write(other.join(STDOUT_LOG), "hello\n").unwrap();
    assert_eq!(
        tick(&mut sampler).output_at,
        modified(&other.join(STDOUT_LOG))
    );

    // A run that no longer runs is no longer watched, from the first look
    // at the registry after it was added: one that ended between the look
    // that found it and its watch is let go at the next.
    sampler.follow(&Registry::default());
    assert!(sampler.runs.is_empty());
    assert_eq!(sampler.changes.watched(), 0);
}

#[test]
fn the_sampler_leaves_the_runs_their_files() {
    // A limit of 20,000 open files: with 100 runs the sampler keeps its
    // half; with 9,000 runs (a pidfd each, room for starts) next to none.
    let mut scratch = super::run::Scratch::new(10_000, 20_000);
    scratch.start_tick(100);
    assert_eq!(scratch.budget(), 10_000);
    scratch.start_tick(9_000);
    assert_eq!(scratch.budget(), 20_000 - 18_000 - 1024);
    scratch.start_tick(10_000);
    assert_eq!(scratch.budget(), 0);
}
