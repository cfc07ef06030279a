//! When to poll instead of sleeping.
//!
//! Sleeping in the kernel and being woken costs tens of microseconds on a
//! virtual machine (the idle vCPU must be interrupted), which was most of a
//! small request's round trip. So after serving traffic the loop keeps
//! polling without blocking for a short window, and a request that arrives
//! in it is served at once. The window only opens when it would have paid
//! off last time: if the previous quiet spell was longer than the window,
//! the client is not in a tight exchange, and the server sleeps at once.
//! An idle server therefore never spins, and a server whose clients send
//! now and then spins at most one window per request.

use std::time::{Duration, Instant};

/// The adaptive busy-poll policy of one event loop.
#[derive(Debug)]
pub struct BusyPoll {
    window: Duration,
    /// When the loop ran out of work, if it has.
    quiet_since: Option<Instant>,
    /// Whether the last quiet spell was short enough to have been caught.
    worth_it: bool,
}

impl BusyPoll {
    /// A policy polling for up to `window` (zero disables it).
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            quiet_since: None,
            worth_it: true,
        }
    }

    /// Records that events arrived at `now`.
    pub fn on_events(&mut self, now: Instant) {
        if let Some(since) = self.quiet_since.take() {
            self.worth_it = now.duration_since(since) <= self.window;
        }
    }

    /// Called when the loop has nothing to do at `now`: true to poll for
    /// events without blocking, false to sleep until one arrives.
    pub fn poll_without_blocking(&mut self, now: Instant) -> bool {
        if self.window.is_zero() {
            return false;
        }
        let since = *self.quiet_since.get_or_insert(now);
        self.worth_it && now.duration_since(since) < self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn polls_through_the_window_then_sleeps() {
        let t = Instant::now();
        let mut p = BusyPoll::new(50 * US);
        assert!(p.poll_without_blocking(t));
        assert!(p.poll_without_blocking(t + 30 * US));
        assert!(!p.poll_without_blocking(t + 50 * US));
    }

    #[test]
    fn a_request_inside_the_window_keeps_it_open() {
        let t = Instant::now();
        let mut p = BusyPoll::new(50 * US);
        assert!(p.poll_without_blocking(t));
        p.on_events(t + 20 * US);
        assert!(p.poll_without_blocking(t + 100 * US));
        assert!(p.poll_without_blocking(t + 120 * US));
    }

    #[test]
    fn a_long_quiet_spell_closes_it_until_traffic_is_dense_again() {
        let t = Instant::now();
        let mut p = BusyPoll::new(50 * US);
        assert!(p.poll_without_blocking(t));
        assert!(!p.poll_without_blocking(t + 60 * US));
        p.on_events(t + 1000 * US);
        // The last gap was long: sleep at once, without spinning.
        assert!(!p.poll_without_blocking(t + 1010 * US));
        // Woken 30 µs later: a tight exchange again, so spin next time.
        p.on_events(t + 1040 * US);
        assert!(p.poll_without_blocking(t + 1050 * US));
    }

    #[test]
    fn a_zero_window_never_polls() {
        let t = Instant::now();
        let mut p = BusyPoll::new(Duration::ZERO);
        assert!(!p.poll_without_blocking(t));
        p.on_events(t);
        assert!(!p.poll_without_blocking(t));
    }
}
