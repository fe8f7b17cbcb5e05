//! The command line that `ps` and `/proc/PID/cmdline` show for this
//! process, rewritten in place (as nginx and PostgreSQL do): a shim forked
//! by the zygote says which run it holds, like one started by exec would.

use std::io;

/// Shows `args` as this process's command line. The kernel reads it from
/// the memory that held the original argv, so it cannot grow: it is cut to
/// fit, and the original must have been long enough (the zygote is started
/// with room to spare). Returns how many bytes of `args` fit.
pub fn set(args: &[&str]) -> io::Result<usize> {
    let stat = procfs::process::Process::myself()
        .and_then(|process| process.stat())
        .map_err(|error| io::Error::other(error.to_string()))?;
    let (Some(start), Some(end)) = (stat.arg_start, stat.arg_end) else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel does not say where the command line is",
        ));
    };
    let room = end.saturating_sub(start) as usize;
    if room == 0 {
        return Ok(0);
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
    // SAFETY: [arg_start, arg_end) is this process's own argv block on its
    // stack, mapped and writable for the whole life of the process; the
    // write stays inside it. std keeps pointers into it for `env::args`,
    // which afterwards yields (valid, NUL-terminated) pieces of the title.
    unsafe {
        std::ptr::copy_nonoverlapping(title.as_ptr(), start as usize as *mut u8, room);
    }
    Ok(fitted)
}
