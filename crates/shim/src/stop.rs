//! The staged stop: the stop signal (followed by SIGCONT) to the whole
//! tree, the grace period, the signal again, a shorter wait, then SIGKILL
//! to the tree, repeated until the tree is empty.

use crate::protocol::Escalation;
use crate::tree::Tree;
use std::time::{Duration, Instant};

/// Longest wait after the repeated stop signal, before SIGKILL.
const SECOND_GRACE_MAX: Duration = Duration::from_secs(5);
/// Interval at which SIGKILL is repeated while something survives (a
/// process in uninterruptible sleep, or one forked during the kill).
const KILL_REPEAT: Duration = Duration::from_secs(1);

/// A stop sequence under way.
#[derive(Debug, Clone)]
pub struct StopSequence {
    signal: i32,
    grace: Duration,
    escalation: Escalation,
    next: Instant,
}

impl StopSequence {
    /// Starts the sequence: sends `signal` to the tree, or SIGKILL at once
    /// when the grace period is zero.
    pub fn begin(tree: &Tree, signal: i32, grace: Duration, now: Instant) -> StopSequence {
        let mut sequence = StopSequence {
            signal,
            grace,
            escalation: Escalation::Signaled,
            next: now + grace,
        };
        if grace.is_zero() || signal == libc::SIGKILL {
            sequence.kill(tree, now);
        } else {
            report(deliver(tree, signal), "signal the tree");
        }
        sequence
    }

    /// How far the sequence has gone.
    pub fn escalation(&self) -> Escalation {
        self.escalation
    }

    /// When [`StopSequence::advance`] must run next.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// Makes a new, shorter grace period count: a second stop request with
    /// a smaller timeout moves the next step closer, never further.
    pub fn hurry(&mut self, tree: &Tree, grace: Duration, now: Instant) {
        if grace.is_zero() {
            self.kill(tree, now);
        } else {
            self.next = self.next.min(now + grace);
        }
    }

    /// Takes the next step if its time has come. Call it only while the
    /// tree is not empty.
    pub fn advance(&mut self, tree: &Tree, now: Instant) {
        if now < self.next {
            return;
        }
        match self.escalation {
            Escalation::Signaled => {
                report(deliver(tree, self.signal), "repeat the stop signal");
                self.escalation = Escalation::Repeated;
                self.next = now + self.grace.min(SECOND_GRACE_MAX);
            }
            Escalation::Repeated | Escalation::Killed => self.kill(tree, now),
        }
    }

    fn kill(&mut self, tree: &Tree, now: Instant) {
        report(tree.kill(), "kill the tree");
        self.escalation = Escalation::Killed;
        self.next = now + KILL_REPEAT;
    }
}

/// Sends the stop signal to the tree, then SIGCONT as systemd does: a
/// suspended process (SIGSTOP, Ctrl-Z) only acts on the signal once it
/// runs again, and would otherwise wait for SIGKILL as if it ignored it.
fn deliver(tree: &Tree, signal: i32) -> std::io::Result<()> {
    if signal == libc::SIGCONT {
        tree.signal(signal)
    } else {
        tree.signal_each(&[signal, libc::SIGCONT])
    }
}

fn report(result: std::io::Result<()>, what: &str) {
    if let Err(error) = result {
        diag!("wrangle shim: cannot {what}: {error}");
    }
}
