//! Live: the Python 3.11 base of layers/ built from the real Debian archive (through the host's
//! apt configuration), unpacked, and its python3 run in a chroot.
//!
//! Built with OCI_BUILD_OFFLINE=1 (a machine without the archive), the live tests are ignored.
//! Running python3 needs chroot, hence root (CI runs as root).

use std::path::Path;

use crate::common::{
    assert_success, chroot, is_root, json_of, layer_count, live_project, oci_build_at, umoci_unpack,
};

fn build_python(project: &Path, cache: &Path, platform: &str, out: &Path) -> serde_json::Value {
    let output = oci_build_at(project, cache)
        .args([
            "build",
            "--json",
            "python-3.11",
            "--platform",
            platform,
            "--output",
        ])
        .arg(format!("oci:{}:python", out.display()))
        .output()
        .unwrap();
    json_of(&output, &format!("build python-3.11 for {platform}"))[0].clone()
}

/// e_machine of an ELF file in a gzip layer: 62 is x86-64, 183 is AArch64.
fn elf_machine(layer: &Path, path: &str) -> u16 {
    let entry = crate::common::read_layer(layer)
        .into_iter()
        .find(|e| e.path == path && e.kind == 'f')
        .unwrap_or_else(|| panic!("{path} is not a file of the layer"));
    assert_eq!(&entry.content[..4], b"\x7fELF");
    u16::from_le_bytes([entry.content[18], entry.content[19]])
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn live_python_base_from_debian_runs_in_a_chroot() {
    let (tmp, project) = live_project("python-3.11", "from = \"python-3.11\"\n");
    let out_dir = tmp.path().join("out");
    let first = build_python(&project, &tmp.path().join("cache"), "linux/amd64", &out_dir);
    assert_eq!(layer_count(&first), 2);
    let lock = std::fs::read_to_string(project.join("recipes/recipes.lock")).unwrap();
    assert!(lock.contains("name = \"python3\""), "{lock}");
    // From the lock, with an empty cache: byte-identical.
    let again = build_python(
        &project,
        &tmp.path().join("cache2"),
        "linux/amd64",
        &tmp.path().join("out2"),
    );
    assert_eq!(first["digest"], again["digest"]);
    crate::common::validate_image(tmp.path(), first["output"].as_str().unwrap());

    // The second layer holds only what the first does not: no second copy of libc.
    let layers = crate::common::layer_paths(&out_dir, &first);
    let python_layer = crate::common::read_layer(&layers[1]);
    assert!(python_layer.iter().any(|e| e.path == "usr/bin/python3.11"));
    assert!(
        !python_layer
            .iter()
            .any(|e| e.path.starts_with("usr/lib/x86_64-linux-gnu/libc.so"))
    );
    assert_eq!(elf_machine(&layers[1], "usr/bin/python3.11"), 62);

    // arm64 from this machine, no emulation: the same definition, aarch64 binaries.
    let arm_dir = tmp.path().join("arm");
    let arm = build_python(&project, &tmp.path().join("cache"), "linux/arm64", &arm_dir);
    assert_eq!(arm["manifests"][0]["platform"], "linux/arm64");
    let arm_layers = crate::common::layer_paths(&arm_dir, &arm);
    assert_eq!(elf_machine(&arm_layers[1], "usr/bin/python3.11"), 183);

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

/// The legacy base: Python 3.9 from bullseye through the same host configuration.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn live_python_39_base_from_bullseye_runs_in_a_chroot() {
    let (tmp, project) = live_project("python-3.9", "from = \"python-3.9\"\n");
    let out_dir = tmp.path().join("out");
    let output = oci_build_at(&project, &tmp.path().join("cache"))
        .args([
            "build",
            "python-3.9",
            "--platform",
            "linux/amd64",
            "--output",
        ])
        .arg(format!("oci:{}:python", out_dir.display()))
        .output()
        .unwrap();
    assert_success(&output, "build python-3.9");
    if !is_root() {
        eprintln!("not root: python-3.9 was built, but python3 is not run (chroot needs root)");
        return;
    }
    let rootfs = umoci_unpack(&out_dir, "python", &tmp.path().join("bundle"));
    let version = chroot(
        &rootfs,
        "python3 -c 'import ssl, sqlite3, venv, sys; print(sys.version_info[:2])'",
    );
    assert_eq!(version.trim(), "(3, 9)");
}
