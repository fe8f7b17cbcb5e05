//! The command line that `ps` and `/proc/PID/cmdline` show for this
//! process, rewritten in place (as nginx and PostgreSQL do): a shim forked
//! by the zygote says which run it holds, like one started by exec would.

use std::io;

/// Where this process's original argv lies in its memory: the only place
/// the kernel reads the command line from. A forked child has it at the
/// same addresses, so the zygote finds it once for all its shims.
#[derive(Debug, Clone, Copy)]
pub struct TitleArea {
    start: usize,
    end: usize,
}

impl TitleArea {
    /// This process's argv block, from `/proc/self/stat`.
    pub fn of_self() -> io::Result<TitleArea> {
        let stat = procfs::process::Process::myself()
            .and_then(|process| process.stat())
            .map_err(|error| io::Error::other(error.to_string()))?;
        let (Some(start), Some(end)) = (stat.arg_start, stat.arg_end) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel does not say where the command line is",
            ));
        };
        Ok(TitleArea {
            start: start as usize,
            end: end as usize,
        })
    }

    /// Shows `args` as the command line. It cannot grow: it is cut to fit,
    /// and the original must have been long enough (the zygote is started
    /// with room to spare). Returns how many bytes of `args` fit.
    ///
    /// Call it only in the process the area was found in, or in a child
    /// forked from it.
    pub fn set(&self, args: &[&str]) -> usize {
        let room = self.end.saturating_sub(self.start);
        if room == 0 {
            return 0;
        }
        let mut title = Vec::with_capacity(room);
        for arg in args {
            title.extend_from_slice(arg.as_bytes());
            title.push(0);
        }
        // The last byte stays NUL: the kernel stops there.
        title.truncate(room - 1);
        let fitted = title.len();
        title.resize(room, 0);
        // SAFETY: [start, end) is this process's own argv block on its
        // stack (found in this process or inherited by fork), mapped and
        // writable for the whole life of the process; the write stays
        // inside it. std keeps pointers into it for `env::args`, which
        // afterwards yields (valid, NUL-terminated) pieces of the title.
        unsafe {
            std::ptr::copy_nonoverlapping(title.as_ptr(), self.start as *mut u8, room);
        }
        fitted
    }
}
