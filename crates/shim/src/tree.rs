//! The agent's whole process tree, however it is held together: signalled,
//! killed and checked for emptiness the same way by the stop sequence.

use std::cell::Cell;
use std::io;
use wrangle_os::{signals, CgroupMembers, RunCgroup};

/// Most walks of the tree per signal without a cgroup (see `signal_each`).
const WALKS: usize = 4;

/// The run's process tree.
pub struct Tree {
    /// The agent's main process, leader of its session and process group.
    main_pid: i32,
    /// The run's cgroup, when one holds the tree.
    cgroup: Option<RunCgroup>,
    /// Its member list, held open (see [`CgroupMembers`]); None without a
    /// cgroup, or when it could not be opened (then read by its path).
    members: Option<CgroupMembers>,
    /// Found empty once: nothing is left that could fill it again, and a
    /// shim ending among ten thousand does not read its cgroup again and
    /// again (each read of a cgroup file waits on the kernel's cgroup
    /// locks).
    found_empty: Cell<bool>,
}

impl Tree {
    /// The tree of the agent `main_pid`, held by `cgroup` if there is one.
    pub fn new(main_pid: i32, cgroup: Option<RunCgroup>) -> Tree {
        let members = cgroup
            .as_ref()
            .and_then(|cgroup| cgroup.open_members().ok());
        Tree {
            main_pid,
            cgroup,
            members,
            found_empty: Cell::new(false),
        }
    }

    /// The run's cgroup, when one holds the tree.
    pub fn cgroup(&self) -> Option<&RunCgroup> {
        self.cgroup.as_ref()
    }

    /// The cgroup's members (None without a cgroup).
    fn cgroup_pids(&self) -> Option<io::Result<Vec<i32>>> {
        match (&self.members, &self.cgroup) {
            (Some(members), _) => Some(members.pids()),
            (None, Some(cgroup)) => Some(cgroup.pids()),
            (None, None) => None,
        }
    }

    /// Sends `signal` to every process of the tree. Without a cgroup: the
    /// agent's process group, then every other descendant of the shim
    /// (those that left the group with `setsid`).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        self.signal_each(&[signal])
    }

    /// Sends each of the signal `numbers`, in order, to every process of the tree,
    /// finding the tree once: without a cgroup that takes a walk of all of
    /// /proc, which a stop of many runs at once must not repeat needlessly.
    pub fn signal_each(&self, numbers: &[i32]) -> io::Result<()> {
        if let Some(members) = self.cgroup_pids() {
            // Its members read once for all the signals.
            let members = members?;
            for &signal in numbers {
                for &pid in &members {
                    // A member that exits meanwhile is fine (ESRCH).
                    let _ = signals::send(pid, signal);
                }
            }
            return Ok(());
        }
        for &signal in numbers {
            // ESRCH: the group is empty already; the walk below still runs.
            let _ = signals::send_to_group(self.main_pid, signal);
        }
        // A process that is being reparented to the shim while the tree is
        // walked (its parent is exiting) can be missed by one walk: walk
        // again until a walk finds nobody new.
        let shim = std::process::id() as i32;
        let mut signalled = std::collections::HashSet::new();
        for _ in 0..WALKS {
            let mut found_new = false;
            for process in wrangle_os::proc::descendants(shim)? {
                if process.pgrp == self.main_pid
                    || process.is_dead()
                    || !signalled.insert(process.id)
                {
                    continue;
                }
                found_new = true;
                for &signal in numbers {
                    let _ = signals::send(process.id.pid, signal);
                }
            }
            if !found_new {
                break;
            }
        }
        Ok(())
    }

    /// Kills every process of the tree with SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(),
            None => self.signal(libc::SIGKILL),
        }
    }

    /// True when no process of the tree is left: the shim, a subreaper, has
    /// no child (every orphan of the tree is reparented to it) and the
    /// cgroup, if any, is empty.
    pub fn is_empty(&self) -> bool {
        if self.found_empty.get() {
            return true;
        }
        if !signals::has_no_children() {
            return false;
        }
        let empty = match self.cgroup_pids() {
            Some(members) => members.map_or(true, |pids| pids.is_empty()),
            None => true,
        };
        self.found_empty.set(empty);
        empty
    }

    /// The pids of the tree's live processes: the cgroup's members, or the
    /// shim's descendants (every process of the tree is one: the shim is
    /// their subreaper).
    pub fn pids(&self) -> Vec<i32> {
        match self.cgroup_pids() {
            Some(members) => members.unwrap_or_default(),
            None => wrangle_os::proc::descendants(std::process::id() as i32)
                .map(|found| {
                    found
                        .iter()
                        .filter(|p| !p.is_dead())
                        .map(|p| p.id.pid)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Counts the processes still in the tree (for the record of leftovers).
    pub fn count(&self) -> usize {
        match self.cgroup_pids() {
            Some(members) => members.map(|p| p.len()).unwrap_or(0),
            None => wrangle_os::proc::descendants(std::process::id() as i32)
                .map(|found| found.iter().filter(|p| !p.is_dead()).count())
                .unwrap_or(0),
        }
    }
}
