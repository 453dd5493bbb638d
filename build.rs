//! `OCI_BUILD_OFFLINE` set (and not `0`) turns on `cfg(offline_tests)`, under which the live
//! integration tests, which need the host's Debian archive, report as ignored, not as passes.

fn main() {
    println!("cargo::rerun-if-env-changed=OCI_BUILD_OFFLINE");
    println!("cargo::rustc-check-cfg=cfg(offline_tests)");
    if std::env::var_os("OCI_BUILD_OFFLINE").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=offline_tests");
    }
}
