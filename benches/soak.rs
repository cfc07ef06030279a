//! Soak (issue 20): 200 well-behaved clients exchanging numbered messages
//! and using a share for minutes, while other clients connect and
//! disconnect, are SIGKILLed in the middle of a send, stop reading (slow
//! readers, flooded up to `--max-queue`), or send garbage. Prints what was
//! accepted, delivered, lost, the latency, and the server's memory against
//! the bound its limits allow; exits with status 1 if anything was lost,
//! duplicated or reordered, a well-behaved client hit an error, or memory
//! passed the bound.
//!
//! `cargo bench --bench soak` (SOAK_SECONDS, default 180; SOAK_CLIENTS,
//! default 200). The engine is `tests/common/soak.rs`, which `tests/soak.rs`
//! runs for a few seconds with fewer clients.

#[path = "../tests/common/soak.rs"]
mod soak;

use soak::SoakConfig;
use std::time::Duration;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let cfg = SoakConfig {
        well_behaved: env("SOAK_CLIENTS", 200) as usize,
        churners: 8,
        killed: 4,
        slow_readers: 4,
        garbage: 4,
        duration: Duration::from_secs(env("SOAK_SECONDS", 180)),
        max_queue: 8 << 20,
    };
    let r = soak::run(env!("CARGO_BIN_EXE_dime"), &cfg);
    println!("{}", soak::describe(&cfg, &r));
    if !r.ok() {
        std::process::exit(1);
    }
}
