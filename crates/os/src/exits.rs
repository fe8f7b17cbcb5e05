//! One thread that learns of process exits for many pidfds at once, with
//! epoll: thousands of runs cost one thread and no polling.

use crate::pidfd::PidFd;
use rustix::event::epoll;
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

type OnExit = Box<dyn FnOnce(PidFd) + Send>;

/// Calls a function when a watched process exits, from its own thread.
#[derive(Clone)]
pub struct ExitWatcher {
    shared: Arc<Shared>,
}

struct Shared {
    epoll: OwnedFd,
    watched: Mutex<Watched>,
}

#[derive(Default)]
struct Watched {
    next_token: u64,
    by_token: HashMap<u64, (PidFd, OnExit)>,
}

impl ExitWatcher {
    /// Starts the watcher thread.
    pub fn start() -> io::Result<ExitWatcher> {
        let shared = Arc::new(Shared {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            watched: Mutex::new(Watched::default()),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("exit-watcher".into())
            .spawn(move || thread_shared.run())?;
        Ok(ExitWatcher { shared })
    }

    /// Calls `on_exit` with the pidfd once its process has exited (at once
    /// if it already has). `on_exit` runs on the watcher thread: keep it
    /// short (send on a channel).
    pub fn watch(
        &self,
        pidfd: PidFd,
        on_exit: impl FnOnce(PidFd) + Send + 'static,
    ) -> io::Result<()> {
        let mut watched = self.shared.lock();
        let token = watched.next_token;
        watched.next_token += 1;
        epoll::add(
            &self.shared.epoll,
            &pidfd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN | epoll::EventFlags::ONESHOT,
        )?;
        watched.by_token.insert(token, (pidfd, Box::new(on_exit)));
        Ok(())
    }

    /// How many processes are watched.
    pub fn len(&self) -> usize {
        self.shared.lock().by_token.len()
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self) {
        let mut events = Vec::with_capacity(256);
        loop {
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => {
                    eprintln!("wrangle: the exit watcher failed: {error}");
                    return;
                }
            }
            for event in events.drain(..) {
                let entry = self.lock().by_token.remove(&event.data.u64());
                if let Some((pidfd, on_exit)) = entry {
                    let _ = epoll::delete(&self.epoll, &pidfd);
                    on_exit(pidfd);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn exits_are_reported_once_each() {
        let watcher = ExitWatcher::start().unwrap();
        let (sender, receiver) = mpsc::channel();
        let mut children = Vec::new();
        for seconds in ["0", "0.2", "30"] {
            let child = std::process::Command::new("sleep")
                .arg(seconds)
                .spawn()
                .unwrap();
            let pidfd = PidFd::open_child(child.id() as i32).unwrap();
            let sender = sender.clone();
            watcher
                .watch(pidfd, move |pidfd| {
                    let status = pidfd.try_reap().unwrap();
                    sender.send((pidfd.id().pid, status)).unwrap();
                })
                .unwrap();
            children.push(child);
        }
        let first = receiver.recv_timeout(Duration::from_secs(5)).unwrap();
        let second = receiver.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first.0, children[0].id() as i32);
        assert_eq!(second.0, children[1].id() as i32);
        assert_eq!(first.1, Some(crate::pidfd::ExitStatus::Exited(0)));
        assert!(receiver.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(watcher.len(), 1);
        children[2].kill().unwrap();
        let third = receiver.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            third.1,
            Some(crate::pidfd::ExitStatus::Signaled(libc::SIGKILL))
        );
        assert!(watcher.is_empty());
    }
}
