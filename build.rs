//! `OCI_BUILD_OFFLINE` set (and not `0`) turns on `cfg(offline_tests)`, under which the live
//! integration tests, which need the host's Debian archive, report as ignored, not as passes.
//! `OCI_BUILD_HEAVY_TESTS` set (and not `0`) turns on `cfg(heavy_tests)`: the tests that build
//! the framework images (gigabytes of wheels) run; otherwise they report as ignored.

fn main() {
    println!("cargo::rerun-if-env-changed=OCI_BUILD_OFFLINE");
    println!("cargo::rerun-if-env-changed=OCI_BUILD_HEAVY_TESTS");
    println!("cargo::rustc-check-cfg=cfg(offline_tests)");
    println!("cargo::rustc-check-cfg=cfg(heavy_tests)");
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if set("OCI_BUILD_OFFLINE") {
        println!("cargo::rustc-cfg=offline_tests");
    }
    if set("OCI_BUILD_HEAVY_TESTS") {
        println!("cargo::rustc-cfg=heavy_tests");
    }
}
