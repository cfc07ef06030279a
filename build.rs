//! Generates the C header `dime.h` from `src/ffi/` into `OUT_DIR`; the
//! checked-in `include/dime.h` must equal it (tests/header.rs checks).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed=src/ffi");
    // The C tests drive the C compiler through the cc crate, which needs
    // the target and host triples cargo only tells build scripts.
    for (name, var) in [("DIME_BUILD_TARGET", "TARGET"), ("DIME_BUILD_HOST", "HOST")] {
        println!(
            "cargo:rustc-env={name}={}",
            env::var(var).expect("cargo sets it")
        );
    }
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // The version macros come from Cargo.toml, so the header cannot drift
    // from the library it describes.
    let v = |k: &str| env::var(k).expect("cargo sets the package version");
    config.after_includes = Some(format!(
        "\n#define DIME_VERSION_MAJOR {}\n#define DIME_VERSION_MINOR {}\n\
         #define DIME_VERSION_PATCH {}\n#define DIME_VERSION_STRING \"{}\"",
        v("CARGO_PKG_VERSION_MAJOR"),
        v("CARGO_PKG_VERSION_MINOR"),
        v("CARGO_PKG_VERSION_PATCH"),
        v("CARGO_PKG_VERSION"),
    ));
    // Parse only the C boundary: it is self-contained, and parsing the whole
    // crate would need `cargo metadata` from inside the build.
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate dime.h from src/ffi")
        .write_to_file(out_dir.join("dime.h"));
}
