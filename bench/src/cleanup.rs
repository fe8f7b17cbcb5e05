//! Leaving nothing behind. Every process the benchmark starts carries a
//! tag in its environment (the daemon and the agents) or names one of the
//! benchmark's homes on its command line (the shims); cleanup stops each
//! daemon with its agents, SIGKILLs whatever is still tagged, removes the
//! runs' cgroups and the homes. It runs at the end, on an error, on a
//! panic, and on SIGINT/SIGTERM.

use crate::procinfo;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment entry that marks this run's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Variable name.
    pub key: String,
    /// Value unique to this run of the benchmark.
    pub value: String,
}

impl Tag {
    /// A tag unique to this process and moment.
    pub fn new() -> Tag {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        Tag {
            key: "WRANGLE_BENCH_TAG".into(),
            value: format!("{}-{nanos}", std::process::id()),
        }
    }

    /// `KEY=VALUE`.
    pub fn entry(&self) -> String {
        format!("{}={}", self.key, self.value)
    }
}

/// What cleanup needs to know.
struct Registry {
    binary: PathBuf,
    tag: Tag,
    homes: Mutex<Vec<PathBuf>>,
    cgroups: Mutex<Vec<PathBuf>>,
    /// Held while cleaning, so two cleanups never interleave.
    cleaning: Mutex<()>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long a daemon gets to stop itself and its agents before the
/// benchmark kills what is left.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Sets up cleanup for processes started from `binary` with `tag`, and a
/// thread that cleans up and exits on SIGINT or SIGTERM.
pub fn init(binary: &Path, tag: &Tag) {
    let _ = REGISTRY.set(Registry {
        binary: binary.to_path_buf(),
        tag: tag.clone(),
        homes: Mutex::new(Vec::new()),
        cgroups: Mutex::new(Vec::new()),
        cleaning: Mutex::new(()),
    });
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut interrupt), Ok(mut terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: cleaning up");
            // Let the main thread notice and stop spawning.
            std::thread::sleep(Duration::from_millis(200));
            let left = clean_all();
            if !left.is_empty() {
                eprintln!("still running after cleanup: pids {left:?}");
            }
            std::process::exit(130);
        });
    });
}

/// True once SIGINT or SIGTERM arrived: long loops stop early.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Remembers a home to stop the daemon of and remove.
pub fn register_home(home: &Path) {
    if let Some(registry) = REGISTRY.get() {
        lock(&registry.homes).push(home.to_path_buf());
    }
}

/// Remembers the runs' cgroup directories, to remove those left behind.
pub fn register_cgroups(paths: impl IntoIterator<Item = PathBuf>) {
    if let Some(registry) = REGISTRY.get() {
        lock(&registry.cgroups).extend(paths);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Processes of this benchmark still in `/proc` (zombies included).
pub fn leftovers() -> Vec<i32> {
    let Some(registry) = REGISTRY.get() else {
        return Vec::new();
    };
    let markers: Vec<String> = lock(&registry.homes)
        .iter()
        .map(|home| home.display().to_string())
        .collect();
    procinfo::tagged(&registry.tag.entry(), &markers)
}

/// Stops every daemon the benchmark started (with its agents), kills what
/// is left, removes left-over cgroups and the homes. Returns the pids still
/// there afterwards (none, one hopes).
pub fn clean_all() -> Vec<i32> {
    let Some(registry) = REGISTRY.get() else {
        return Vec::new();
    };
    let _cleaning = lock(&registry.cleaning);
    let homes = lock(&registry.homes).clone();
    for home in homes.iter().rev() {
        if procinfo::exists(&home.join("wrangle.sock")) {
            stop_daemon(&registry.binary, home);
        }
    }
    kill_leftovers();
    // Every daemon has stopped by now, and each removes its runs' cgroups
    // before it goes: one still here was left behind, which is a bug of
    // wrangle's to know about (the benchmark removes it all the same).
    let left_behind: Vec<PathBuf> = lock(&registry.cgroups)
        .iter()
        .filter(|cgroup| procinfo::exists(cgroup))
        .cloned()
        .collect();
    if let Some(first) = left_behind.first() {
        eprintln!(
            "warning: {} cgroups of ended runs were still there after their daemons stopped, {} among them",
            left_behind.len(),
            first.display()
        );
    }
    for cgroup in lock(&registry.cgroups).drain(..) {
        if procinfo::exists(&cgroup) {
            // A cgroup can be removed once its last process has been
            // reaped; that may take a moment after SIGKILL.
            for _ in 0..100 {
                if std::fs::remove_dir(&cgroup).is_ok() || !procinfo::exists(&cgroup) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let left = leftovers();
    // Homes are removed last: their paths are what finds the shims.
    if left.is_empty() {
        for home in lock(&registry.homes).drain(..) {
            let _ = std::fs::remove_dir_all(home);
        }
    }
    left
}

/// `wrangle daemon stop --stop-agents` for `home`, killed if it takes too
/// long.
fn stop_daemon(binary: &Path, home: &Path) {
    let Ok(mut child) = Command::new(binary)
        .args(["daemon", "stop", "--stop-agents"])
        .env("WRANGLE_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let deadline = Instant::now() + DAEMON_STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILLs every tagged process until two looks in a row find none (or
/// five seconds have passed).
fn kill_leftovers() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut quiet = 0;
    while quiet < 2 && Instant::now() < deadline {
        let pids = leftovers();
        if pids.is_empty() {
            quiet += 1;
        } else {
            quiet = 0;
            for pid in pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs [`clean_all`] when dropped, so that an error or a panic in the
/// benchmark still leaves nothing behind.
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        let left = clean_all();
        if !left.is_empty() {
            eprintln!("warning: still running after cleanup: pids {left:?}");
        }
    }
}
