//! The checked-in `include/dime.h` is exactly what build.rs generates from
//! `src/ffi/`, and its version macros agree with Cargo.toml and with
//! `dime_version()`.
//!
//! After changing the C API, refresh the header with
//! `DIME_BLESS_HEADER=1 cargo test --test header`.

use std::ffi::CStr;
use std::path::Path;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/dime.h");
const GENERATED: &str = concat!(env!("OUT_DIR"), "/dime.h");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[test]
fn checked_in_header_matches_generated() {
    let fresh = read(GENERATED);
    if std::env::var_os("DIME_BLESS_HEADER").is_some() {
        // Write then rename, so the other tests here never read half a file.
        let tmp = format!("{CHECKED_IN}.tmp");
        std::fs::write(&tmp, &fresh).expect("write include/dime.h.tmp");
        std::fs::rename(&tmp, CHECKED_IN).expect("replace include/dime.h");
        return;
    }
    let current = if Path::new(CHECKED_IN).exists() {
        read(CHECKED_IN)
    } else {
        String::new()
    };
    if current != fresh {
        let first_diff = current
            .lines()
            .zip(fresh.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_string(),
                |(i, (a, b))| format!("line {}:\n  checked in: {a}\n  generated:  {b}", i + 1),
            );
        panic!(
            "include/dime.h is out of date with src/ffi/ ({first_diff}).\n\
             Regenerate it with: DIME_BLESS_HEADER=1 cargo test --test header"
        );
    }
}

#[test]
fn header_has_the_banner_and_guard() {
    let h = read(CHECKED_IN);
    assert!(h.contains("do not edit"), "missing the generated banner");
    assert!(h.contains("#ifndef DIME_H") && h.contains("#define DIME_H"));
}

fn define(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("include/dime.h has no #define {name}"))
        .trim()
        .to_string()
}

#[test]
fn versions_agree() {
    let h = read(CHECKED_IN);
    let cargo_toml = read(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    // The [package] version line, read from the file itself rather than
    // from CARGO_PKG_VERSION, so a stale build cannot hide a mismatch.
    let toml_version = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("Cargo.toml has a version")
        .trim_matches('"')
        .to_string();

    let parts: Vec<&str> = toml_version.split('.').collect();
    assert_eq!(define(&h, "DIME_VERSION_MAJOR"), parts[0]);
    assert_eq!(define(&h, "DIME_VERSION_MINOR"), parts[1]);
    assert_eq!(define(&h, "DIME_VERSION_PATCH"), parts[2]);
    assert_eq!(
        define(&h, "DIME_VERSION_STRING"),
        format!("\"{toml_version}\"")
    );

    let lib = unsafe { CStr::from_ptr(dime::ffi::version::dime_version()) };
    assert_eq!(lib.to_str().unwrap(), toml_version);
}
