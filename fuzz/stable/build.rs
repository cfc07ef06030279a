//! Compiles the coverage callbacks (cov.c) without instrumentation.
fn main() {
    cc::Build::new()
        .file("cov.c")
        .opt_level(2)
        .compile("dimecov");
    println!("cargo:rerun-if-changed=cov.c");
}
