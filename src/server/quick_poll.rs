//! A poll without blocking that costs one system call, for the busy-poll
//! window (see `busy_poll.rs`).
//!
//! `Poller::wait` arms its timer, re-arms its timer and its notifier and
//! drains the notifier around every `epoll_wait`: five system calls, each
//! a microsecond or so on a virtual machine. While the loop spins, that
//! cost is paid once per turn, and once more on the critical path of every
//! request that ends the spin. So a spinning loop asks the poller's epoll
//! instance directly (`epoll_wait` with a zero timeout) and falls back on
//! `Poller::wait` only when the poller's own sources (its notifier, its
//! timer) fired, so that it re-arms them.
//!
//! This reads the poller's epoll instance, whose events carry the key each
//! source was registered with (the `polling` crate's epoll backend stores
//! it as the event's `u64`); `tests::reports_keys_as_the_poller_does`
//! checks that it still does.

use polling::{Events, Poller};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The key `polling` gives its own sources (notifier, timer).
const POLLER_OWN_KEY: usize = usize::MAX;

/// Most events taken per quick poll; more stay ready for the next one.
const CAPACITY: usize = 64;

/// One ready source: its key, and whether it is readable / writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The key the source was registered with.
    pub key: usize,
    /// Readable (or hung up, or in error: a read will tell).
    pub readable: bool,
    /// Writable (or hung up, or in error).
    pub writable: bool,
}

/// The event buffer of quick polls, kept from turn to turn.
pub struct QuickPoll {
    raw: Vec<libc::epoll_event>,
}

impl Default for QuickPoll {
    fn default() -> QuickPoll {
        QuickPoll {
            raw: vec![libc::epoll_event { events: 0, u64: 0 }; CAPACITY],
        }
    }
}

impl QuickPoll {
    /// Appends to `out` the sources of `poller` ready now, without
    /// blocking. When the poller's own notifier or timer fired, also runs
    /// `Poller::wait` without blocking (into `events`, whose sources are
    /// appended too), which re-arms them: a later `Poller::wait` must
    /// still wake for a notification.
    pub fn poll(
        &mut self,
        poller: &Poller,
        events: &mut Events,
        out: &mut Vec<Ready>,
    ) -> io::Result<()> {
        // SAFETY: `raw` holds CAPACITY initialized events, which epoll_wait
        // may overwrite; the epoll descriptor is the poller's, alive for
        // the borrow.
        let n = unsafe {
            libc::epoll_wait(
                poller.as_raw_fd(),
                self.raw.as_mut_ptr(),
                CAPACITY as libc::c_int,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut own = false;
        for ev in &self.raw[..n as usize] {
            let key = ev.u64 as usize;
            if key == POLLER_OWN_KEY {
                own = true;
                continue;
            }
            let flags = ev.events as libc::c_int;
            out.push(Ready {
                key,
                readable: flags
                    & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLPRI)
                    != 0,
                writable: flags & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0,
            });
        }
        if own {
            events.clear();
            poller.wait(events, Some(Duration::ZERO))?;
            out.extend(events.iter().map(|e| Ready {
                key: e.key,
                readable: e.readable,
                writable: e.writable,
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polling::{Event, PollMode};
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_keys_as_the_poller_does() {
        let poller = Poller::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        // SAFETY: deleted from the poller before `a` drops.
        unsafe {
            poller
                .add_with_mode(a.as_raw_fd(), Event::readable(7), PollMode::Level)
                .unwrap()
        };
        let mut quick = QuickPoll::default();
        let mut events = Events::new();
        let mut out = Vec::new();
        quick.poll(&poller, &mut events, &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        b.write_all(b"x").unwrap();
        quick.poll(&poller, &mut events, &mut out).unwrap();
        assert_eq!(
            out,
            [Ready {
                key: 7,
                readable: true,
                writable: false
            }]
        );
        poller.delete(&a).unwrap();
    }

    #[test]
    fn a_notification_taken_by_a_quick_poll_still_wakes_a_later_wait() {
        let poller = Poller::new().unwrap();
        let mut quick = QuickPoll::default();
        let mut events = Events::new();
        let mut out = Vec::new();
        poller.notify().unwrap();
        quick.poll(&poller, &mut events, &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        // Re-armed: the next notification ends a blocking wait at once.
        poller.notify().unwrap();
        events.clear();
        let started = std::time::Instant::now();
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
