//! Requests that wait: deadlines from a request's `"timeout"`, parking a
//! client behind a blocked request and waking it, and the timers that end
//! both a blocked request and a DiME2 `wait`. Every service blocks through
//! here; what a blocked request waits for is the service's own business
//! (see `service::Service::Blocked`).

use super::conn::{Blocked, ConnId, wait_reply};
use super::request::{CommandError, Result};
use super::state::State;
use std::any::Any;
use std::time::{Duration, Instant};

/// Deadline from an optional `"timeout"` in milliseconds.
pub fn deadline(timeout: Option<f64>) -> Result<Option<Instant>> {
    deadline_after(Instant::now(), timeout).map_err(CommandError::Failed)
}

/// When a wait of `timeout` milliseconds from `now` ends: None for no
/// timeout, and also for one too long to represent (1e22 ms is longer than
/// any server will run, so it means "no deadline", not an error). A
/// negative timeout is refused; JSON has no NaN or infinity, so only a
/// caller of this function could pass those, and they are refused too.
pub fn deadline_after(
    now: Instant,
    timeout: Option<f64>,
) -> std::result::Result<Option<Instant>, String> {
    let Some(ms) = timeout else {
        return Ok(None);
    };
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!(
            "JSON parsing error: timeout: expected a non-negative number of milliseconds, got {ms}"
        ));
    }
    // Both steps are checked: seconds past Duration's range, and an
    // instant past the clock's range, are each "never".
    Ok(Duration::try_from_secs_f64(ms / 1000.0)
        .ok()
        .and_then(|d| now.checked_add(d)))
}

impl State {
    /// Parks `id` until its request completes or `deadline` passes; `on`
    /// is the blocking service's own description of what it waits for.
    pub fn block<B: Any + Send>(&mut self, id: ConnId, deadline: Option<Instant>, on: B) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.blocked = Some(Blocked {
                deadline,
                on: Box::new(on),
            });
            if let Some(d) = deadline {
                self.timers.insert((d, id));
            }
        }
    }

    /// Ends `id`'s blocked state; its deferred requests run next round.
    pub fn unblock(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(Blocked {
                deadline: Some(d), ..
            }) = c.blocked.take()
            {
                self.timers.remove(&(d, id));
            }
            self.resume.push(id);
            self.dirty.insert(id);
        }
    }

    /// Answers every DiME2 `wait` whose deadline has passed, and moves every
    /// blocked request whose deadline has passed into `expired` (the
    /// dispatcher has its service withdraw it and reply). Returns the next
    /// deadline.
    pub fn expire(
        &mut self,
        now: Instant,
        expired: &mut Vec<(ConnId, Blocked)>,
    ) -> Option<Instant> {
        while let Some(&(deadline, id)) = self.timers.first() {
            if deadline > now {
                return Some(deadline);
            }
            self.timers.pop_first();
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.waiting == Some(Some(deadline)) {
                if let Some(Some(d)) = c.answer_wait(wait_reply(0, true)) {
                    self.timers.insert((d, id));
                }
                self.dirty.insert(id);
            }
            if c.blocked
                .as_ref()
                .is_some_and(|b| b.deadline == Some(deadline))
            {
                expired.push((id, c.blocked.take().expect("checked")));
                self.resume.push(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_too_long_to_represent_mean_no_deadline() {
        let now = Instant::now();
        for ms in [1e22, 1e30, 1e300, f64::MAX, 1e40] {
            assert_eq!(deadline_after(now, Some(ms)), Ok(None), "{ms}");
        }
        assert_eq!(deadline_after(now, None), Ok(None));
        for ms in [0.0, -0.0, 5e-324, 1.5] {
            let d = deadline_after(now, Some(ms)).unwrap().expect("a deadline");
            assert!(d >= now && d <= now + Duration::from_millis(2), "{ms}");
        }
        let d = deadline_after(now, Some(2500.0)).unwrap().unwrap();
        assert_eq!(d - now, Duration::from_millis(2500));
    }

    #[test]
    fn negative_and_non_finite_timeouts_are_refused() {
        let now = Instant::now();
        for ms in [
            -1.0,
            -5e-324,
            -1e300,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NAN,
        ] {
            let err = deadline_after(now, Some(ms)).unwrap_err();
            assert!(
                err.contains("non-negative number of milliseconds"),
                "{ms}: {err}"
            );
        }
    }
}
