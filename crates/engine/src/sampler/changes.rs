//! Which runs' files changed since the last tick, as the kernel tells (one
//! inotify watch per run directory), so that a tick looks only at those:
//! an agent that writes nothing costs no look at its logs or status file.
//!
//! Nothing is ever missed for want of a watch: a run without one (none
//! could be added, or the kernel has no inotify) has its files looked at
//! on every tick, and so has every run at a tick after changes were lost.

use super::run::RunSampler;
use crate::model::STATUS_FILE;
use crate::registry::IdMap;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use wrangle_os::sample::{DirChange, DirChanges, DirWatch};
use wrangle_shim::protocol::{STDERR_LOG, STDOUT_LOG};

/// The files of a run that may have changed since they were last looked
/// at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dirty {
    /// `stdout.log`.
    pub stdout: bool,
    /// `stderr.log`.
    pub stderr: bool,
    /// The status file.
    pub status: bool,
}

impl Dirty {
    /// Every file.
    pub const ALL: Dirty = Dirty {
        stdout: true,
        stderr: true,
        status: true,
    };

    /// Notes a change of the directory's entry `name`; other entries (the
    /// shim's own files) are of no concern.
    pub fn note(&mut self, name: &[u8]) {
        if name == STDOUT_LOG.as_bytes() {
            self.stdout = true;
        } else if name == STDERR_LOG.as_bytes() {
            self.stderr = true;
        } else if name == STATUS_FILE.as_bytes() {
            self.status = true;
        }
    }

    /// Whether any file is to be looked at.
    pub fn any(self) -> bool {
        self.stdout || self.stderr || self.status
    }
}

/// The sampler's watches on its runs' directories.
#[derive(Debug)]
pub struct Changes {
    /// `None` where changes are not taken from the kernel.
    kernel: Option<DirChanges>,
    /// The agent whose run each watch is for.
    owners: HashMap<DirWatch, String>,
    /// Whether a watch that could not be added was logged already: one
    /// warning is enough for a fleet past `max_user_watches`.
    warned: bool,
}

impl Changes {
    /// Changes from the kernel when `from_kernel` and it has inotify;
    /// otherwise none, and every run is looked at on every tick.
    pub fn new(from_kernel: bool) -> Changes {
        let kernel = from_kernel.then(DirChanges::new).and_then(|made| {
            made.inspect_err(|error| {
                tracing::warn!(%error, "no inotify: every run's files are looked at on every tick");
            })
            .ok()
        });
        Changes {
            kernel,
            owners: HashMap::new(),
            warned: false,
        }
    }

    /// Watches `dir`, the directory of agent `id`'s run; `None` when it
    /// cannot be, and the run's files are then looked at on every tick.
    pub fn watch(&mut self, id: &str, dir: &Path) -> Option<DirWatch> {
        let kernel = self.kernel.as_ref()?;
        match kernel.watch(dir) {
            Ok(watch) => match self.owners.entry(watch) {
                Entry::Vacant(owner) => {
                    owner.insert(id.to_owned());
                    Some(watch)
                }
                // The directory of another run watched (the same one by
                // another path): that run keeps the watch, and removes it.
                Entry::Occupied(_) => None,
            },
            Err(error) => {
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(
                        dir = %dir.display(),
                        %error,
                        "cannot watch a run's directory: its files are looked at on every tick"
                    );
                }
                None
            }
        }
    }

    /// Stops watching a run's directory.
    pub fn unwatch(&mut self, watch: DirWatch) {
        if let (Some(kernel), Some(_)) = (&self.kernel, self.owners.remove(&watch)) {
            kernel.unwatch(watch);
        }
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.owners.len()
    }

    /// Hands what changed since the last drain to the runs concerned, by
    /// agent id.
    pub fn drain(&mut self, runs: &mut IdMap<RunSampler>) {
        let Some(kernel) = &mut self.kernel else {
            return;
        };
        let owners = &mut self.owners;
        let mut lost = false;
        let drained = kernel.drain(|change| match change {
            DirChange::Entry(watch, name) => {
                if let Some(run) = owned(owners, runs, watch) {
                    run.changed(name);
                }
            }
            DirChange::Dir(watch) => {
                if let Some(run) = owned(owners, runs, watch) {
                    run.changed_all();
                }
            }
            DirChange::Gone(watch) => {
                if let Some(run) = owned(owners, runs, watch) {
                    run.unwatched();
                }
                owners.remove(&watch);
            }
            DirChange::Lost => lost = true,
        });
        if let Err(error) = drained {
            tracing::warn!(%error, "cannot read inotify's changes: every run is looked at");
            lost = true;
        }
        if lost {
            for run in runs.values_mut() {
                run.changed_all();
            }
        }
    }
}

/// The run that holds `watch`, if it is still watched.
fn owned<'a>(
    owners: &HashMap<DirWatch, String>,
    runs: &'a mut IdMap<RunSampler>,
    watch: DirWatch,
) -> Option<&'a mut RunSampler> {
    let run = runs.get_mut(owners.get(&watch)?)?;
    (run.watch() == Some(watch)).then_some(run)
}
