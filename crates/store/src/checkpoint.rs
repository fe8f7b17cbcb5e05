//! Checkpoints of the write-ahead log, on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: that commit copies the log's pages into the database file
//! and `fsync`s both, while the daemon holds the store (and the engine's
//! registry) for it. On a disk that is milliseconds per checkpoint, and a
//! burst of a thousand starts crosses the threshold a dozen times. Here a
//! commit that finds the log long only wakes a thread, which checkpoints
//! with a connection of its own (`PASSIVE`: it never waits for the
//! writer, nor the writer for it).

use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;
use std::time::Duration;

/// Log length (pages) after which a commit asks for a checkpoint: SQLite's
/// own default threshold.
pub(crate) const WAKE_AT_PAGES: i32 = 1000;

/// Log length after which the committing connection checkpoints itself,
/// should the thread fall behind (or be gone).
pub(crate) const INLINE_AT_PAGES: i32 = 16 * WAKE_AT_PAGES;

/// How long the thread lets a burst of commits go on before it copies
/// their pages: one checkpoint for many commits.
const GATHER: Duration = Duration::from_millis(50);

/// The handle of the checkpoint thread; the thread ends when it is dropped.
pub(crate) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the database at
    /// `path`; `None` if either cannot be had (SQLite's own checkpoints
    /// then stay in force).
    pub(crate) fn start(path: &Path) -> Option<Checkpointer> {
        let connection = Connection::open(path).ok()?;
        // A connection reads the file only when first used; until then it
        // does not know the log is there, and a checkpoint does nothing.
        let mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .ok()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return None;
        }
        let (wake, woken) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(connection, woken))
            .ok()?;
        Some(Checkpointer { wake })
    }

    /// A handle for the commit hook to wake the thread with.
    pub(crate) fn waker(&self) -> SyncSender<()> {
        self.wake.clone()
    }
}

fn run(connection: Connection, woken: Receiver<()>) {
    while woken.recv().is_ok() {
        thread::sleep(GATHER);
        // Wakes that came meanwhile are served by this checkpoint.
        let _ = woken.try_recv();
        // A failed checkpoint (another one running, a full disk) leaves
        // the pages in the log, where they are safe; the next commit past
        // the threshold asks again.
        let _ = connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
    }
}
