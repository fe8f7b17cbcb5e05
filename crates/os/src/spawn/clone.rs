//! The `clone3(2)` calls that create an agent: fork-like into a cgroup,
//! or vfork-like (the child borrows our memory until its exec), which is
//! what `posix_spawn` does and saves copying the shim's address space
//! only for the exec to throw the copy away.

use std::ffi::c_void;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// `struct clone_args` of clone3(2), up to the `cgroup` field.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The arguments for a child that starts in `cgroup` (if given) and exits
/// with SIGCHLD to its parent.
fn args_for(cgroup: Option<RawFd>) -> CloneArgs {
    CloneArgs {
        flags: if cgroup.is_some() {
            CLONE_INTO_CGROUP
        } else {
            0
        },
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    }
}

/// A fork whose child starts in the cgroup `dir`: returns like fork(2).
pub fn fork_into_cgroup(dir: RawFd) -> io::Result<i32> {
    let args = args_for(Some(dir));
    // SAFETY: clone3 without CLONE_VM is fork(2) with the child placed in
    // a cgroup: the child gets a copy of this process and returns here
    // with 0 on the same (copied) stack; the caller's child then only
    // makes async-signal-safe system calls, as after fork(2). `args` is a
    // valid clone_args of the size passed.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid as i32),
    }
}

/// The stack a vfork-like child runs on: it only sets up stdio and the
/// like and calls execve, so a little is plenty (the lazy binding of a
/// libc function saves the vector registers on it, a few KiB at most).
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// Whether this build can start vfork-like children (the trampoline that
/// moves the child onto its own stack is written for x86_64).
pub const VFORK_SUPPORTED: bool = cfg!(target_arch = "x86_64");

/// Starts a child that shares this process's memory and runs
/// `entry(context)` on a stack of its own, in the cgroup `cgroup` if
/// given; this thread is suspended until the child execs or exits (as
/// with vfork(2)). Returns the child's pid.
///
/// All signals are blocked while the child runs, so that no handler of
/// ours can run in it; `entry` must reset the handlers before it unblocks
/// them.
///
/// # Safety
/// `entry` must never return, must end in execve(2) or _exit(2), and may
/// only make async-signal-safe system calls on memory that stays valid
/// until then (this frame's, which is suspended): it shares our memory,
/// so any other write would be seen by us.
pub unsafe fn vfork_with(
    cgroup: Option<RawFd>,
    entry: extern "C" fn(*const c_void) -> !,
    context: *const c_void,
) -> io::Result<i32> {
    if !VFORK_SUPPORTED {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // u128 keeps the top of the stack 16-byte aligned, as the ABI wants at
    // a call; it need not be initialised (only the child writes it).
    let mut stack: Vec<MaybeUninit<u128>> = Vec::with_capacity(CHILD_STACK_BYTES / 16);
    let mut args = args_for(cgroup);
    args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = (stack.capacity() * 16) as u64;

    let mut all: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    let mut previous: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    // SAFETY: sigfillset fills the set it is given; pthread_sigmask reads
    // the initialised set and writes the previous mask to a valid pointer.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), previous.as_mut_ptr());
    }
    // SAFETY: see `clone3_on_stack`; `args` describes a stack we own that
    // outlives the child's use of it (we are suspended until its exec),
    // and the caller vouches for `entry`.
    let result = unsafe { clone3_on_stack(&args, entry, context) };
    // SAFETY: restores the mask saved above (initialised by that call).
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, previous.as_ptr(), std::ptr::null_mut());
    }
    drop(stack);
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result as i32))
    } else {
        Ok(result as i32)
    }
}

/// clone3 whose child calls `entry(context)` on the stack `args` names;
/// returns the raw result in the parent (the pid, or -errno).
///
/// # Safety
/// `args` must ask for a stack (`stack`, `stack_size`) that is valid,
/// writable and 16-byte aligned at its top, and `entry` must never return.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_on_stack(
    args: &CloneArgs,
    entry: extern "C" fn(*const c_void) -> !,
    context: *const c_void,
) -> isize {
    let result: isize;
    // SAFETY: the syscall clobbers rax (the result), rcx and r11, which
    // are declared. The parent only falls through to label 2. The child
    // (rax = 0) starts with the stack pointer at the top of the new stack
    // and every other register as the parent had it, so r12 and r13 still
    // hold `context` and `entry`; it calls `entry`, which never returns.
    // Memory is not declared untouched: the child writes shared memory.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => result,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") context,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_on_stack(
    _args: &CloneArgs,
    _entry: extern "C" fn(*const c_void) -> !,
    _context: *const c_void,
) -> isize {
    -(libc::ENOSYS as isize)
}

/// True when the kernel can start a child right in its cgroup (`clone3`
/// with `CLONE_INTO_CGROUP`, Linux 5.7+). Asked with a descriptor that is
/// no cgroup: a kernel that knows the flag refuses it with EBADF before
/// anything is created; one that does not says EINVAL (ENOSYS: no clone3).
pub fn clone_into_cgroup_supported() -> bool {
    let Ok(not_a_cgroup) = std::fs::File::open("/dev/null") else {
        return false;
    };
    use std::os::fd::AsRawFd;
    match fork_into_cgroup(not_a_cgroup.as_raw_fd()) {
        Err(error) => error.raw_os_error() == Some(libc::EBADF),
        // SAFETY: never reached (the kernel refuses the descriptor); were
        // it, the child only calls the async-signal-safe _exit(2).
        Ok(0) => unsafe { libc::_exit(0) },
        Ok(pid) => {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid out-pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            true
        }
    }
}
