//! How the zygote reaps its shims: each by its pid, as it says it ends.
//!
//! A wait for any child scans the caller's children from the oldest, under
//! the kernel's task list lock, which every fork and every exit on the
//! machine takes for writing. With 10,000 shims each such wait walked
//! thousands of live ones to find one that ended (a stop of 10,000 spent
//! 7% of the machine's time there, and held up every exit meanwhile).
//!
//! So a shim, as it ends, writes its pid to a pipe the zygote reads (a
//! "death note", four bytes, atomic), and the zygote waits for that pid
//! alone, which the kernel finds at once. A shim that ends without a
//! note (killed, or the pipe was full) is reaped by a wait for any child
//! a moment later, as a sweep: after the notes, few are left for it.
//!
//! A noted shim may not have finished exiting when its note is read
//! (while thousands end at once, it may wait its turn for a core): it is
//! tried again after 5 ms, then after as long again as it has taken so
//! far, and a sweep waits while any is pending, so that it walks the
//! children once the noted ones are gone and not once per zombie.

use rustix::pipe::PipeFlags;
use rustix::process::{Pid, WaitOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};
use wrangle_os::signals;

/// How long after a child's exit signal the sweep waits for any child.
const SWEEP_DELAY: Duration = Duration::from_secs(1);

/// How long a due sweep waits at most for the noted shims to be reaped
/// first. While shims end by the thousand (a fleet stopped), a sweep is
/// a wait for any child per zombie found, each a walk of all the
/// zygote's children under the task list lock: with ten thousand shims,
/// sweeping the zombies whose notes were just read cost more than all
/// the rest of the zygote's part of the stop.
const SWEEP_DEFER_MAX: Duration = Duration::from_secs(10);

/// How soon a noted shim that had not finished exiting is waited for
/// again (it writes its note just before it exits); each later try waits
/// as long again as the shim has taken so far, up to [`RETRY_MAX`].
const RETRY: Duration = Duration::from_millis(5);

/// The longest wait between two tries for one noted shim.
const RETRY_MAX: Duration = Duration::from_millis(200);

/// How long a noted shim is waited for by its pid at most; one still not
/// reaped by then (it hangs in its exit) is left to the sweep, so that
/// the zygote does not go on waking for it.
const PENDING_MAX: Duration = Duration::from_secs(1);

/// A shim whose note was read and that is not reaped yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    pid: i32,
    /// When its note was read.
    noted: Instant,
    /// When to wait for it next.
    next: Instant,
}

/// The zygote's side: notes to read, shims to reap.
pub struct Reaper {
    notes: OwnedFd,
    /// The write end, inherited by every shim forked.
    note_writer: OwnedFd,
    /// Noted shims not reaped yet.
    pending: Vec<Pending>,
    /// When to sweep.
    sweep_at: Option<Instant>,
}

impl Reaper {
    /// A reaper with its pipe of notes (close-on-exec, so that no agent
    /// inherits it; non-blocking, so that a shim never waits to end).
    pub fn new() -> io::Result<Reaper> {
        let (notes, note_writer) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Reaper {
            notes,
            note_writer,
            pending: Vec::new(),
            sweep_at: None,
        })
    }

    /// In a forked shim: the end of the pipe it writes its note on (the
    /// rest of the zygote's reaper is closed).
    pub fn into_note_writer(self) -> OwnedFd {
        self.note_writer
    }

    /// Readable when notes came.
    pub fn notes(&self) -> BorrowedFd<'_> {
        self.notes.as_fd()
    }

    /// How long the zygote may wait for requests before it must reap.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let retry = self.pending.iter().map(|pending| pending.next).min();
        let sweep = self.sweep_at.map(|at| self.sweep_due(at));
        retry
            .into_iter()
            .chain(sweep)
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// A child exited (SIGCHLD): a sweep is due soon, for one that left
    /// no note.
    pub fn child_exited(&mut self, now: Instant) {
        self.sweep_at.get_or_insert(now + SWEEP_DELAY);
    }

    /// Reads the notes that came, reaps the noted shims that have exited,
    /// and sweeps when it is due.
    pub fn reap(&mut self, notes_ready: bool, now: Instant) {
        if notes_ready {
            self.read_notes(now);
        }
        self.pending.retain_mut(|pending| {
            if now < pending.next {
                return true;
            }
            if reaped_or_gone(pending.pid) {
                return false;
            }
            let waited = now.saturating_duration_since(pending.noted);
            pending.next = now + waited.clamp(RETRY, RETRY_MAX);
            waited < PENDING_MAX
        });
        if self.sweep_at.is_some_and(|at| now >= self.sweep_due(at)) {
            while let Ok(Some(_)) = signals::reap_one() {}
            self.sweep_at = None;
        }
    }

    /// When a sweep that became due at `at` runs: once no noted shim is
    /// left to reap by its pid, or [`SWEEP_DEFER_MAX`] later.
    fn sweep_due(&self, at: Instant) -> Instant {
        if self.pending.is_empty() {
            at
        } else {
            at + SWEEP_DEFER_MAX
        }
    }

    fn read_notes(&mut self, now: Instant) {
        let mut buffer = [0u8; 4096];
        loop {
            match rustix::io::read(&self.notes, &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(length) => self.pending.extend(
                    buffer[..length - length % 4]
                        .chunks_exact(4)
                        .map(|note| i32::from_ne_bytes([note[0], note[1], note[2], note[3]]))
                        .map(|pid| Pending {
                            pid,
                            noted: now,
                            next: now,
                        }),
                ),
            }
        }
    }
}

/// Waits for `pid` alone, without blocking: true once it is reaped, or
/// when it is no child of ours (a sweep reaped it already).
fn reaped_or_gone(pid: i32) -> bool {
    let Some(pid) = Pid::from_raw(pid) else {
        return true;
    };
    match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// The shim's side: writes its own pid on `note_writer` as it ends. A
/// full pipe or a zygote gone loses the note, and the sweep reaps it.
pub fn leave_note(note_writer: &OwnedFd) {
    let pid = std::process::id() as i32;
    let _ = rustix::io::write(note_writer, &pid.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep reaps any child of the test process: the tests that sweep
    /// take turns, or one would reap the other's children.
    static SWEEPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(false)
    }

    fn gone(pid: u32) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    fn note(writer: &OwnedFd, pid: u32) {
        let _ = rustix::io::write(writer, &(pid as i32).to_ne_bytes());
    }

    /// A child that leaves a note is reaped by its pid, with no sweep;
    /// one that leaves none is reaped by the sweep after its exit signal.
    #[test]
    // The children are reaped by the reaper under test, not by `wait`.
    #[allow(clippy::zombie_processes)]
    fn noted_children_are_reaped_at_once_and_the_rest_by_the_sweep() {
        let _turn = SWEEPING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut reaper = Reaper::new().unwrap();
        let writer = reaper.note_writer.try_clone().unwrap();
        let noted = std::process::Command::new("true").spawn().unwrap();
        let silent = std::process::Command::new("true").spawn().unwrap();
        note(&writer, noted.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(zombie(noted.id()) && zombie(silent.id())) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        reaper.reap(true, Instant::now());
        assert!(gone(noted.id()), "the noted child is reaped");
        assert!(zombie(silent.id()), "the silent one waits for the sweep");
        let now = Instant::now();
        reaper.child_exited(now);
        reaper.reap(false, now + SWEEP_DELAY);
        assert!(gone(silent.id()), "the sweep reaps it");
    }

    /// A noted shim still on its way out is tried again later and later,
    /// and while one is, a due sweep waits (a sweep is a walk of all the
    /// children per zombie); once the noted one is given up, it runs.
    #[test]
    #[allow(clippy::zombie_processes)]
    fn a_sweep_waits_while_noted_children_are_pending() {
        let _turn = SWEEPING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut reaper = Reaper::new().unwrap();
        let writer = reaper.note_writer.try_clone().unwrap();
        let mut slow = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let silent = std::process::Command::new("true").spawn().unwrap();
        note(&writer, slow.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !zombie(silent.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The silent one's exit signal first, the slow one's note read a
        // little later (its sweep would be due 0.4 s after that).
        let exited = Instant::now();
        reaper.child_exited(exited);
        let noted = exited + Duration::from_millis(600);
        reaper.reap(true, noted);
        assert_eq!(
            reaper.timeout(noted),
            Some(RETRY),
            "the noted one is tried again soon"
        );
        let later = noted + Duration::from_millis(100);
        reaper.reap(false, later);
        assert_eq!(
            reaper.timeout(later),
            Some(Duration::from_millis(100)),
            "and then as long again as it has taken"
        );

        reaper.reap(false, exited + SWEEP_DELAY);
        assert!(
            zombie(silent.id()),
            "no sweep while a noted child is pending"
        );
        reaper.reap(false, exited + SWEEP_DELAY + SWEEP_DEFER_MAX);
        assert!(reaper.pending.is_empty(), "the noted one was given up");
        assert!(gone(silent.id()), "the deferred sweep reaps the silent one");
        slow.kill().unwrap();
        slow.wait().unwrap();
    }
}
