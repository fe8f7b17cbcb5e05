//! The telemetry thread's wake-ups, coalesced. A thousand agents
//! exporting once a second each send their own request at their own
//! moment: served as they come, the thread wakes a thousand times a second
//! and each wake-up (the switch into the thread, `epoll_wait`, the
//! scheduler's turn) cost more than the request itself. While requests
//! keep coming, the thread instead sleeps between turns, and each turn
//! takes every request that arrived meanwhile, as a network card coalesces
//! its interrupts: their records are counted together at the end of the
//! turn (one transaction for all), then answered. With no requests it
//! waits on its sockets as usual, so an idle daemon pays nothing for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the thread sleeps between turns while requests come: a
/// record waits at most this much to be counted (against the 100 ms it
/// may take to show in `inspect`); a second's thousand requests take 40
/// turns and 40 transactions.
pub const TURN: Duration = Duration::from_millis(25);

/// Whether requests came since the pacer last looked.
#[derive(Debug, Default)]
pub struct Pace {
    busy: AtomicBool,
    woken: Notify,
}

impl Pace {
    /// A pace and its pacer (to run on the thread it paces, see
    /// [`Pace::pacer`]).
    pub fn new() -> Arc<Pace> {
        Arc::new(Pace::default())
    }

    /// Notes a request: the pacer starts pacing if it did not.
    pub fn request_came(&self) {
        if !self.busy.swap(true, Ordering::AcqRel) {
            self.woken.notify_one();
        }
    }

    /// Runs for ever on a current-thread runtime: while requests come,
    /// blocks the thread for [`TURN`] and then yields, so that the runtime
    /// takes everything that became ready meanwhile in one turn; then
    /// calls `turn` (which counts what the turn's requests brought) and
    /// yields again, so that their answers are written. Calls `rest` once
    /// a turn found no request, before it waits for the next.
    pub async fn pacer(self: Arc<Pace>, mut turn: impl FnMut(), mut rest: impl FnMut()) {
        loop {
            self.woken.notified().await;
            while self.busy.swap(false, Ordering::AcqRel) {
                // Blocking on purpose: the runtime is this thread's alone,
                // and its sockets are to be read in bunches.
                std::thread::sleep(TURN);
                // Twice: a request's handler that woke itself (its body
                // read after its head) is polled again at the back of the
                // queue, behind this task once it has yielded once.
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                turn();
                tokio::task::yield_now().await;
            }
            rest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Requests that come while it paces are taken at its next turn, which
    /// ends with a count; it stops pacing (waits without sleeping, counts
    /// nothing) once they stop.
    #[test]
    fn paces_while_requests_come_and_rests_after() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pace = Pace::new();
            let turns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counted = turns.clone();
            let rests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let rested = rests.clone();
            tokio::spawn(pace.clone().pacer(
                move || {
                    counted.fetch_add(1, Ordering::Relaxed);
                },
                move || {
                    rested.fetch_add(1, Ordering::Relaxed);
                },
            ));
            let started = Instant::now();
            for _ in 0..5 {
                pace.request_came();
                tokio::task::yield_now().await;
            }
            // Five requests in a row: each yield found the pacer asleep
            // for a turn at most once.
            assert!(started.elapsed() >= TURN);
            tokio::time::sleep(TURN * 3).await;
            // Each turn that took requests was followed by a count.
            let counts = turns.load(Ordering::Relaxed);
            assert!(counts >= 1);
            // No requests since: a wait on a timer is not held up by it
            // (pacing, every one would take a turn; the quickest of five
            // tells it from a thread the machine was slow to run).
            let mut quickest = Duration::MAX;
            for _ in 0..5 {
                let quiet = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                quickest = quickest.min(quiet.elapsed());
            }
            assert!(quickest < TURN, "{quickest:?}");
            assert!(!pace.busy.load(Ordering::Acquire));
            // And it rested once they stopped (again after a wake-up that
            // found them all taken already).
            assert!(rests.load(Ordering::Relaxed) >= 1, "it never rested");
            assert_eq!(
                turns.load(Ordering::Relaxed),
                counts,
                "a count with no requests"
            );
        });
    }
}
