//! Removing the cgroups of runs that have ended, on a thread of its own.
//!
//! A run's cgroup is removed once its end is recorded. While thousands of
//! agents stop at once, each `rmdir` waits its turn for the kernel's one
//! cgroup lock behind the shims' own `cgroup.kill` writes (7 ms each when
//! 10,000 stop together), and some find their cgroup still busy with a
//! process that is leaving. Done where the ends are recorded, the removal
//! of one batch held up the recording of the next for seconds; here it
//! holds up nothing.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Passes over the cgroups still there, at most.
const PASSES: u32 = 10;

/// Pause before the second pass; it doubles after each (10 passes: about
/// 5 s in all, for a process that takes long to leave).
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// Hands cgroups to the removal thread.
#[derive(Debug)]
pub(crate) struct CgroupRemoval {
    sender: Mutex<Option<Sender<Vec<PathBuf>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl CgroupRemoval {
    /// Starts the removal thread (or, if no thread can be started, a
    /// removal that removes where it is asked).
    pub fn start() -> CgroupRemoval {
        let (sender, paths) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("wrangle-cgroups".into())
            .spawn(move || remove_as_they_come(paths));
        if let Err(error) = &started {
            tracing::warn!("cannot start the cgroup removal thread ({error}): cgroups are removed as ends are recorded");
        }
        let (sender, thread) = match started {
            Ok(thread) => (Some(sender), Some(thread)),
            Err(_) => (None, None),
        };
        CgroupRemoval {
            sender: Mutex::new(sender),
            thread: Mutex::new(thread),
        }
    }

    /// Removes what is queued, waiting at most `patience`, and from then
    /// on removes where it is asked: the daemon is stopping, and a cgroup
    /// left in the queue would outlive it (the next daemon of the same
    /// home removes its agents' last ones, but a home may not come back).
    pub fn finish(&self, patience: Duration) {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + patience;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("the removal of ended runs' cgroups did not finish in time");
        }
    }

    /// Removes `paths` soon (each emptied of anything left in it first).
    pub fn remove(&self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let unsent = match sender.as_ref() {
            Some(sender) => sender.send(paths).err().map(|error| error.0),
            None => Some(paths),
        };
        drop(sender);
        if let Some(paths) = unsent {
            remove_all(&paths);
        }
    }
}

fn remove_as_they_come(paths: Receiver<Vec<PathBuf>>) {
    while let Ok(mut batch) = paths.recv() {
        while let Ok(more) = paths.try_recv() {
            batch.extend(more);
        }
        remove_all(&batch);
    }
}

/// Removes the cgroups of runs that have ended, in passes: one that still
/// holds a process (it escaped the shim's stop) is killed after the first
/// pass; one whose last process is still leaving is tried again in the
/// next.
pub(crate) fn remove_all(paths: &[PathBuf]) {
    let mut left: Vec<&PathBuf> = paths.iter().collect();
    let mut pause = FIRST_PAUSE;
    for pass in 0..PASSES {
        left.retain(|path| {
            let cgroup = wrangle_os::RunCgroup::existing(path);
            let busy = cgroup.remove().is_err();
            if busy && pass == 0 {
                let _ = cgroup.kill_all();
            }
            busy
        });
        if left.is_empty() {
            return;
        }
        std::thread::sleep(pause);
        pause *= 2;
    }
    tracing::warn!(
        "{} cgroups of ended runs could not be removed, {} among them",
        left.len(),
        left[0].display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory standing for an empty cgroup is removed; one that
    /// cannot be (it is not empty) is given up after its passes and
    /// does not keep the others from going.
    #[test]
    fn removes_what_it_can_and_gives_up_on_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let empty = root.path().join("empty");
        let held = root.path().join("held");
        std::fs::create_dir(&empty).unwrap();
        std::fs::create_dir_all(held.join("child")).unwrap();
        let removal = CgroupRemoval::start();
        removal.remove(vec![held.clone(), empty.clone()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while empty.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!empty.exists());
        assert!(held.join("child").exists());
    }

    /// What is queued when the daemon stops is removed before it goes;
    /// what is asked after that is removed at once.
    #[test]
    fn finishing_removes_what_is_queued() {
        let root = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..50).map(|n| root.path().join(n.to_string())).collect();
        for path in &paths {
            std::fs::create_dir(path).unwrap();
        }
        let removal = CgroupRemoval::start();
        removal.remove(paths.clone());
        removal.finish(Duration::from_secs(10));
        assert!(paths.iter().all(|path| !path.exists()));
        let late = root.path().join("late");
        std::fs::create_dir(&late).unwrap();
        removal.remove(vec![late.clone()]);
        assert!(!late.exists());
    }
}
