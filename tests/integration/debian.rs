//! Live: the Python 3.11 base of layers/ built from the real Debian archive (through the host's
//! apt configuration), unpacked, and its python3 run in a chroot.
//!
//! Set OCI_BUILD_OFFLINE=1 to skip the live tests on a machine without the archive; they say
//! so on stderr. Running python3 needs chroot, hence root (CI runs as root).

use std::path::Path;
use std::process::Command;

use crate::common::{assert_success, bin_path, is_root, json, tool, umoci_unpack};

fn offline() -> bool {
    if std::env::var("OCI_BUILD_OFFLINE").is_ok_and(|v| v == "1") {
        eprintln!("OCI_BUILD_OFFLINE=1: live Debian test skipped");
        return true;
    }
    false
}

fn chroot(rootfs: &Path, script: &str) -> String {
    let out = Command::new("chroot")
        .arg(rootfs)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    assert_success(&out, &format!("chroot: {script}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn live_python_base_from_debian_runs_in_a_chroot() {
    if offline() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let build = |extra: &[&str]| {
        let mut cmd = Command::new(bin_path());
        cmd.arg("-C")
            .arg(repo)
            .arg("--cache-dir")
            .arg(&cache)
            .args([
                "build",
                "--json",
                "python-3.11",
                "--platform",
                "linux/amd64",
                "--output",
            ])
            .arg(format!("oci:{}:python", out_dir.display()))
            .args(extra)
            .env_remove("SOURCE_DATE_EPOCH");
        let out = cmd.output().unwrap();
        assert_success(&out, "build python-3.11");
        json(&String::from_utf8(out.stdout).unwrap())
    };
    let first = build(&[]);
    let layers = first[0]["manifests"][0]["layers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(layers.len(), 2);
    // The same archive state builds the same image.
    let second = build(&[]);
    assert_eq!(first[0]["digest"], second[0]["digest"]);
    assert_eq!(second[0]["layers_cached"].as_u64(), Some(2));
    tool(
        "oci-image-tool",
        &["validate", "--type", "image", out_dir.to_str().unwrap()],
    );

    if !is_root() {
        eprintln!(
            "not root: the image was built and validated, but python3 is not run (chroot needs root)"
        );
        return;
    }
    let rootfs = umoci_unpack(&out_dir, "python", &tmp.path().join("bundle"));
    chroot(
        &rootfs,
        "python3 -c 'import ssl, sqlite3, ctypes, zlib, lzma, bz2, venv'",
    );
    let pip = chroot(&rootfs, "python3 -m pip --version");
    assert!(pip.starts_with("pip "), "{pip}");
    let dpkg = chroot(&rootfs, "dpkg -l python3");
    assert!(
        dpkg.lines().any(|l| l.starts_with("ii  python3 ")),
        "{dpkg}"
    );
    // The CA bundle is there and loads: what an HTTPS client needs.
    let stats = chroot(
        &rootfs,
        "python3 -c 'import ssl; c = ssl.create_default_context(); print(c.cert_store_stats()[\"x509_ca\"])'",
    );
    assert!(stats.trim().parse::<u32>().unwrap() > 100, "{stats}");
    // Users and groups of base-passwd exist.
    let passwd = chroot(&rootfs, "getent passwd root nobody");
    assert_eq!(passwd.lines().count(), 2, "{passwd}");
}
