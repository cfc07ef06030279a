//! Counters the broker keeps about itself for `stats` (docs/admin.md):
//! requests per command with their errors, bytes in and out, messages
//! relayed, watches cut for falling behind, clients over time, and how
//! long requests take to handle.

use rustc_hash::FxHashMap;
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

/// Handling-time buckets: bucket `i` counts requests that took under
/// 2^i µs (the last one: everything slower).
const BUCKETS: usize = 24;

/// Requests and failures of one command.
#[derive(Default, Clone, Copy)]
struct PerCommand {
    requests: u64,
    errors: u64,
}

/// The broker's counters since it started.
pub struct Stats {
    started: Instant,
    per_command: FxHashMap<&'static str, PerCommand>,
    /// Requests whose command nobody knows.
    unknown: PerCommand,
    handling: [u64; BUCKETS],
    /// Bytes read from and written to clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Messages relayed by `send` and `broadcast` (each once, whatever the
    /// number of recipients).
    pub messages: u64,
    /// Times a watch fell behind because its client had as many events
    /// queued unread as `--watch-queue-events`/`--watch-queue-bytes` allow.
    pub watch_fell_behind: u64,
    /// Times a watch that fell behind found its missed events gone from
    /// the history, and was sent a `lost` event.
    pub watch_lost: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Most clients connected at once.
    pub peak_clients: usize,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            started: Instant::now(),
            per_command: FxHashMap::default(),
            unknown: PerCommand::default(),
            handling: [0; BUCKETS],
            bytes_in: 0,
            bytes_out: 0,
            messages: 0,
            watch_fell_behind: 0,
            watch_lost: 0,
            accepted: 0,
            peak_clients: 0,
        }
    }
}

impl Stats {
    /// Counts one request of `command` (None: unknown), which took
    /// `took` to handle and failed if `failed`.
    pub fn request(&mut self, command: Option<&'static str>, took: Duration, failed: bool) {
        let c = match command {
            Some(name) => self.per_command.entry(name).or_default(),
            None => &mut self.unknown,
        };
        c.requests += 1;
        c.errors += u64::from(failed);
        let micros = took.as_micros().max(1);
        let bucket = (128 - micros.leading_zeros()) as usize;
        self.handling[bucket.min(BUCKETS - 1)] += 1;
    }

    /// The handling time under which `q` (0..1) of requests fell, as the
    /// upper bound of its bucket, in µs.
    fn percentile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.handling.iter().sum();
        if total == 0 {
            return None;
        }
        let target = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.handling.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(1u64 << i);
            }
        }
        None
    }

    /// The counters as JSON, with `clients` connected now.
    pub fn to_json(&self, clients: usize) -> Json {
        let mut commands: Vec<(&str, PerCommand)> =
            self.per_command.iter().map(|(k, v)| (*k, *v)).collect();
        commands.sort_by_key(|(k, _)| *k);
        let mut per = serde_json::Map::new();
        for (k, v) in commands {
            per.insert(
                k.into(),
                json!({"requests": v.requests, "errors": v.errors}),
            );
        }
        if self.unknown.requests > 0 {
            per.insert(
                "(unknown)".into(),
                json!({"requests": self.unknown.requests, "errors": self.unknown.errors}),
            );
        }
        let (requests, errors) = per.values().fold((0, 0), |(r, e), v| {
            (
                r + v["requests"].as_u64().unwrap_or(0),
                e + v["errors"].as_u64().unwrap_or(0),
            )
        });
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "clients": clients,
            "peak_clients": self.peak_clients,
            "accepted": self.accepted,
            "requests": requests,
            "errors": errors,
            "messages": self.messages,
            "watch_fell_behind": self.watch_fell_behind,
            "watch_lost": self.watch_lost,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "commands": per,
            "handling_us": {
                "p50": self.percentile(0.5),
                "p90": self.percentile(0.9),
                "p99": self.percentile(0.99),
                "max_bucket": self.percentile(1.0),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let mut s = Stats::default();
        for _ in 0..98 {
            s.request(Some("send"), Duration::from_micros(3), false);
        }
        s.request(Some("join"), Duration::from_micros(900), true);
        s.request(None, Duration::from_millis(5), true);
        let j = s.to_json(2);
        assert_eq!(j["requests"], 100);
        assert_eq!(j["errors"], 2);
        assert_eq!(j["commands"]["send"]["requests"], 98);
        assert_eq!(j["commands"]["join"]["errors"], 1);
        assert_eq!(j["commands"]["(unknown)"]["requests"], 1);
        // 3 µs falls under 4 µs; the slowest under 8192 µs.
        assert_eq!(j["handling_us"]["p50"], 4);
        assert_eq!(j["handling_us"]["p99"], 1024);
        assert_eq!(j["handling_us"]["max_bucket"], 8192);
    }
}
