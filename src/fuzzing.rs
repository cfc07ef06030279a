//! Entry points for the fuzzers (`fuzz/`: libFuzzer on nightly, and the
//! stable coverage-guided runner `tests/fuzz`). Each takes arbitrary bytes,
//! drives one parser with them, and panics only on a real bug: a crash, or
//! a broken invariant checked here (a decoded value that does not encode
//! back the same, a parse that depends on how the input was split).
//! Not part of the API.

use crate::codec::dimeb;
use crate::wire::FrameReader;

/// Largest frame the fuzzed readers accept: big enough for every seed,
/// small enough that a declared length never allocates much.
const MAX_MESSAGE: u64 = 1 << 20;

/// A fuzz target: takes any bytes; panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by name, for runners that pick one at run time.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_reader", frame_reader),
    ("dimeb", dimeb),
    ("pattern", pattern),
    ("requests", requests),
    ("ws_rewrite", ws_rewrite),
    ("auth_file", auth_file),
    ("address", address),
    ("shm_descriptor", shm_descriptor),
];

/// The frame reader: `data` read in chunks whose sizes come from its first
/// byte; every frame found must be the same as when read in one go.
pub fn frame_reader(data: &[u8]) {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = frames(stream, stream.len().max(1));
    let split = frames(stream, usize::from(step % 16) + 1);
    assert_eq!(whole, split, "frames depend on how the input was split");
}

/// A frame's JSON and payload.
type Parts = (Vec<u8>, Vec<u8>);

/// The frames of `stream` fed `chunk` bytes at a time, and the error that
/// stopped it, if any.
fn frames(stream: &[u8], chunk: usize) -> (Vec<Parts>, Option<String>) {
    let mut r = FrameReader::new(MAX_MESSAGE);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut src = piece;
        while !src.is_empty() {
            if r.read_from(&mut src).is_err() {
                break;
            }
        }
        loop {
            match r.next_frame() {
                Ok(Some(f)) => out.push((f.json().to_vec(), f.payload.to_vec())),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

/// The dimeb decoder: whatever decodes must encode to bytes that decode
/// and encode to the same bytes again.
pub fn dimeb(data: &[u8]) {
    let Ok(value) = dimeb::decode(data) else {
        return;
    };
    let Ok(once) = dimeb::encode(&value) else {
        return;
    };
    let again = dimeb::decode(&once).expect("our own encoding decodes");
    assert_eq!(
        dimeb::encode(&again).expect("a decoded value encodes"),
        once,
        "decode/encode is not stable"
    );
}

/// The tuple-space pattern compiler: a JSON spec and exact values, split
/// at the first NUL byte; a compiled pattern is then matched against the
/// exact values' own fields.
pub fn pattern(data: &[u8]) {
    let (spec, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(spec) else {
        return;
    };
    if let Ok(matchers) = crate::pattern::compile(&spec, payload) {
        let fields = crate::pattern::split_list(payload).unwrap_or_default();
        for m in &matchers {
            m.matches(payload);
            for &(a, b) in &fields {
                m.matches(&payload[a..b]);
            }
        }
    }
}

/// Requests to a server: `data` is the byte stream of two clients'
/// frames, run through the real dispatcher and every service, with an
/// auth file so the handshake's token path and the permission checks run
/// too (see `server::fuzzing`).
pub fn requests(data: &[u8]) {
    crate::server::fuzzing::run(data);
}

/// The WebSocket reader's text-to-binary rewriter: the same bytes split
/// anywhere must come out the same.
pub fn ws_rewrite(data: &[u8]) {
    crate::transport::fuzz_ws_rewrite(data);
}

/// The auth file parser, and every grant it accepts matched against
/// names taken from the same text.
pub fn auth_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(table) = crate::server::auth::AuthTable::parse(text) {
        for word in text.split_whitespace() {
            if let Some(user) = table.by_token(word) {
                for g in &user.grants {
                    g.allows(crate::server::auth::Action::Send, word);
                }
            }
        }
    }
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some(p), Some(n)) = (words.next(), words.next()) {
            crate::server::auth::glob_matches(p, n);
        }
    }
}

/// Address and listener-spec parsing: whatever parses prints back to an
/// address that parses to the same.
pub fn address(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = crate::transport::Address::parse(text) {
        let again = crate::transport::Address::parse(&a.to_string())
            .unwrap_or_else(|e| panic!("{a} does not parse back: {e}"));
        assert_eq!(a, again);
    }
    let _ = crate::server::parse_listen(text);
}

/// A shared-memory descriptor received with a message: the broker's and a
/// recipient's checks must accept exactly a sealed memory file as long as
/// the message says (see `server::fuzzing::shm_descriptor`).
pub fn shm_descriptor(data: &[u8]) {
    crate::server::fuzzing::shm_descriptor(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input a fuzzer once crashed on (`fuzz/regressions/TARGET/`)
    /// runs clean now, and every target takes its seed corpus
    /// (`fuzz/corpus/TARGET/`) and the empty input.
    #[test]
    fn saved_crashes_and_seeds_run_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (name, target) in TARGETS {
            target(&[]);
            for dir in ["regressions", "corpus"] {
                let Ok(files) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for f in files.flatten() {
                    let input = std::fs::read(f.path()).unwrap();
                    target(&input);
                    ran += 1;
                }
            }
        }
        assert!(
            ran > TARGETS.len(),
            "no seeds or saved crashes found under {}",
            root.display()
        );
    }
}
