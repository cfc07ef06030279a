//! Keeps a write to a closed socket from killing the host process.
//!
//! Writing to a unix socket whose peer has gone raises SIGPIPE, whose
//! default action ends the process. Rust programs ignore SIGPIPE at start-up,
//! but a C, MATLAB or other host loading libdime has not necessarily done
//! so, and a library must not change process-wide signal handling behind
//! its host's back. So, like libcurl, each client call blocks SIGPIPE on the
//! calling thread, and afterwards swallows a SIGPIPE it caused before
//! restoring the thread's mask. The failed write itself still reports EPIPE,
//! which the client turns into `DIME_STATUS_CONNECTION_LOST`.

use std::mem::MaybeUninit;

/// Blocks SIGPIPE on this thread while alive (see the module docs).
pub(crate) struct SigpipeGuard {
    old_mask: libc::sigset_t,
    /// A SIGPIPE already pending before the call is the host's, not ours.
    was_pending: bool,
}

fn sigpipe_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset with a valid
    // signal number cannot fail.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

fn sigpipe_pending() -> bool {
    let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set it is given.
    unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    }
}

impl SigpipeGuard {
    /// Blocks SIGPIPE on this thread until the guard drops.
    pub(crate) fn new() -> SigpipeGuard {
        let set = sigpipe_set();
        let was_pending = sigpipe_pending();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: valid set pointers; pthread_sigmask only fails for an
        // invalid `how`, and then leaves `old` unset, so fall back to an
        // empty set (nothing to restore beyond the default).
        let old_mask = unsafe {
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) == 0 {
                old.assume_init()
            } else {
                let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(empty.as_mut_ptr());
                empty.assume_init()
            }
        };
        SigpipeGuard {
            old_mask,
            was_pending,
        }
    }
}

impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        if !self.was_pending && sigpipe_pending() {
            let set = sigpipe_set();
            // SAFETY: valid set pointers. The signal is pending and blocked,
            // so this returns at once, consuming it.
            unsafe {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                {
                    let zero = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
                }
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                {
                    let mut sig = 0;
                    libc::sigwait(&set, &mut sig);
                }
            }
        }
        // SAFETY: restores the mask saved in `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigpipe_raised_under_the_guard_is_swallowed() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        {
            let _g = SigpipeGuard::new();
            // libc::write, not std: std's write on a unix socket is what
            // raises the signal in a C host too.
            let buf = [0u8; 1];
            use std::os::fd::AsRawFd;
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::write(a.as_raw_fd(), buf.as_ptr().cast(), 1) };
            assert_eq!(n, -1);
            assert!(sigpipe_pending());
        }
        assert!(!sigpipe_pending());
    }
}
