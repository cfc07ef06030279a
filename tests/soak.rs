//! A short soak (the long one is `cargo bench --bench soak`): well-behaved
//! clients exchange numbered messages while others churn, are SIGKILLed
//! mid-send, stop reading or send garbage; nothing accepted is lost,
//! duplicated or reordered, and the server's memory stays within its limits.

mod common;

use common::soak::{self, SoakConfig};
use std::time::Duration;

#[test]
fn a_short_soak_loses_nothing_and_stays_bounded() {
    let cfg = SoakConfig {
        well_behaved: 24,
        churners: 2,
        killed: 2,
        slow_readers: 2,
        garbage: 2,
        duration: Duration::from_secs(6),
        max_queue: 4 << 20,
    };
    let r = soak::run(env!("CARGO_BIN_EXE_dime"), &cfg);
    let text = soak::describe(&cfg, &r);
    println!("{text}");
    assert!(r.ok(), "{text}");
    assert!(
        r.killed > 0 && r.churned > 0 && r.garbage_conns > 0,
        "{text}"
    );
}
