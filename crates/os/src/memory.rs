//! How much memory processes hold, from `/proc/PID/statm`: what the shim's
//! memory watchdog compares with a limit where no controller enforces it;
//! and how the daemon's own allocator gives memory back.

use std::io;

/// Size from which an allocation is a mapping of its own (glibc's
/// default before it starts moving it).
const OWN_MAPPING_FROM: i32 = 128 * 1024;

/// Makes every allocation of [`OWN_MAPPING_FROM`] bytes or more a mapping
/// of its own, returned to the kernel when freed. glibc raises that
/// threshold each time such a mapping is freed (up to 32 MiB), after
/// which large buffers (a request's body, a list of ten thousand agents)
/// come from the heap and stay in it once freed: a daemon that took a
/// few large requests held tens of MiB more for good, and how much
/// depended on the order they came in. Does nothing where the C library
/// is not glibc.
pub fn give_back_large_frees() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets a parameter of the allocator, under
        // the allocator's own lock; it touches none of our memory. The
        // daemon calls it once, at its start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM);
        }
    }
}

/// Resident memory of process `pid` in bytes.
pub fn resident_bytes(pid: i32) -> io::Result<u64> {
    let process = procfs::process::Process::new(pid).map_err(io::Error::other)?;
    let statm = process.statm().map_err(io::Error::other)?;
    Ok(statm.resident * procfs::page_size())
}

/// Resident memory of the processes `pids` together, in bytes; a process
/// that has gone meanwhile counts nothing. Memory shared between them
/// (libraries, copy-on-write pages) is counted once per process, as
/// `ps` would: an upper bound.
pub fn tree_resident_bytes(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|&pid| resident_bytes(pid).ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_holds_some_memory_and_a_gone_one_none() {
        let me = std::process::id() as i32;
        let mine = resident_bytes(me).unwrap();
        assert!(mine > 0);
        // A buffer that is touched becomes resident.
        let buffer = vec![1u8; 64 << 20];
        let after = resident_bytes(me).unwrap();
        assert!(after >= mine + (32 << 20), "{mine} -> {after}");
        drop(buffer);
        assert!(resident_bytes(i32::MAX).is_err());
        assert_eq!(tree_resident_bytes(&[i32::MAX]), 0);
    }
}
