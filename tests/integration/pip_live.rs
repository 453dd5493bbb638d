//! Live: real PyPI wheels (through the host's pip configuration) installed on the Python 3.11
//! base built from the real Debian archive, then run in a chroot; and the real `mlrun`
//! closure locked and compared with `uv pip compile` on the same input.
//!
//! Built with OCI_BUILD_OFFLINE=1, these are ignored. The Debian layers are kept in one cache under
//! the target directory, shared by these tests and across runs (a fresh one works too).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::{
    assert_success, chroot, is_root, json_of, layer_count, live_cache, live_project, oci_build_at,
    umoci_unpack,
};

fn oci_build(project: &Path, args: &[&str]) -> std::process::Output {
    oci_build_at(project, &live_cache())
        .args(args)
        .output()
        .unwrap()
}

/// name → version of the `pip` layer `layer` of target `app` in the project's lock file.
fn locked(project: &Path, layer: i64) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(project.join("recipes/recipes.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    lock["pip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["target"].as_str() == Some("app") && l["layer"].as_integer() == Some(layer))
        .flat_map(|l| l["packages"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_ascii_lowercase().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn real_wheels_install_and_run_on_the_python_base() {
    let (tmp, dir) = live_project(
        "python-3.11",
        "image = \"test/pip:1\"\nfrom = \"python-3.11\"\nplatforms = [\"linux/amd64\"]\n\
         [[layer]]\npip = { packages = [\"numpy\", \"pandas\", \"pyyaml\", \"requests\", \"click\"] }\n",
    );
    let layout = tmp.path().join("out");
    let out = oci_build(
        &dir,
        &[
            "build",
            "--json",
            "app",
            "--output",
            &format!("oci:{}", layout.display()),
        ],
    );
    let report = json_of(&out, "build the pip image");
    assert_eq!(layer_count(&report[0]), 3);
    let pins = locked(&dir, 1);
    for name in ["numpy", "pandas", "pyyaml", "requests", "click", "urllib3"] {
        assert!(pins.contains_key(name), "{name} is not locked: {pins:?}");
    }
    if !is_root() {
        eprintln!(
            "not root: the chroot half of real_wheels_install_and_run_on_the_python_base skipped"
        );
        return;
    }
    let rootfs = umoci_unpack(&layout, "test/pip:1", &tmp.path().join("bundle"));
    let imported = chroot(
        &rootfs,
        "python3 -c 'import numpy, pandas, yaml, requests, click; print(numpy.__version__, pandas.__version__)'",
    );
    assert_eq!(
        imported.trim(),
        format!("{} {}", pins["numpy"], pins["pandas"])
    );
    chroot(&rootfs, "python3 -m pip check");
    // pip list shows exactly the locked versions (beside Debian's own pip, setuptools, wheel).
    let listed = chroot(&rootfs, "python3 -m pip list --format=json 2>/dev/null");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let listed: BTreeMap<String, String> = listed
        .iter()
        .map(|p| {
            (
                normalize(p["name"].as_str().unwrap()),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(name, _)| !["pip", "setuptools", "wheel"].contains(&name.as_str()))
        .collect();
    assert_eq!(listed, pins);
    // A console script generated for charset-normalizer runs with the image's interpreter.
    let version = chroot(&rootfs, "normalizer --version");
    assert!(
        version.contains(&pins["charset-normalizer"]) && version.contains("Python 3.11.2"),
        "{version}"
    );
    // RECORD is right: the image's pip removes a distribution completely.
    chroot(
        &rootfs,
        "python3 -m pip uninstall --yes --break-system-packages click >/dev/null 2>&1",
    );
    let gone = chroot(
        &rootfs,
        "ls /usr/local/lib/python3.11/dist-packages | grep -c '^click' || true",
    );
    assert_eq!(gone.trim(), "0");
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn the_mlrun_closure_locks_as_uv_resolves_it() {
    let (tmp, dir) = live_project(
        "python-3.11",
        "image = \"test/mlrun:1\"\nfrom = \"python-3.11\"\nplatforms = [\"linux/amd64\"]\n\
         [[layer]]\npip = { packages = [\"mlrun\"] }\n",
    );
    let out = oci_build(&dir, &["lock", "app"]);
    assert_success(&out, "lock mlrun");
    let ours = locked(&dir, 1);
    assert!(
        ours.contains_key("mlrun") && ours.contains_key("kfp-server-api"),
        "{ours:?}"
    );

    // The peer: uv, on the same requirement, Python 3.11.2 and glibc 2.36 on x86_64.
    std::fs::write(tmp.path().join("requirements.in"), "mlrun\n").unwrap();
    let uv = Command::new("uv")
        .args(["pip", "compile", "--no-header", "--no-annotate", "--quiet"])
        .args([
            "--python-version",
            "3.11.2",
            "--python-platform",
            "x86_64-manylinux_2_36",
        ])
        .arg(tmp.path().join("requirements.in"))
        .output()
        .expect("uv is installed by .ci/run (pip install uv)");
    assert_success(&uv, "uv pip compile mlrun");
    let theirs: BTreeMap<String, String> = String::from_utf8_lossy(&uv.stdout)
        .lines()
        .filter_map(|line| line.split_once("=="))
        .map(|(name, version)| {
            let version = version.split(';').next().unwrap().trim().to_owned();
            (normalize(name.trim()), version)
        })
        .collect();
    // Where the two differ, the test shows it; none is expected on the same index and input.
    let differences: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|name| ours.get(*name) != theirs.get(*name))
        .map(|name| {
            format!(
                "{name}: ours {:?}, uv {:?}",
                ours.get(name),
                theirs.get(name)
            )
        })
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A layer that pins another version of what the layer below installed replaces it as pip
/// would: in a chroot, `pip list` shows one copy, `pip check` is clean and the new version is
/// imported; a version the installed requests forbids fails naming requests and its
/// requirement (its specifiers in the order pep508_rs keeps them).
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn a_pin_replaces_a_real_distribution_below() {
    let recipe = |second: &str| {
        format!(
            "image = \"test/pip:1\"\nfrom = \"python-3.11\"\nplatforms = [\"linux/amd64\"]\n\
             [[layer]]\npip = {{ packages = [\"requests==2.32.3\"] }}\n\
             [[layer]]\npip = {{ packages = [\"{second}\"] }}\n"
        )
    };
    let (tmp, dir) = live_project("python-3.11", &recipe("requests==2.32.4"));
    let layout = tmp.path().join("out");
    let out = oci_build(
        &dir,
        &[
            "build",
            "app",
            "--output",
            &format!("oci:{}", layout.display()),
        ],
    );
    assert_success(&out, "build the replacing image");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("requests 2.32.3 \u{2192} 2.32.4 (in app layer 1)"),
        "{said}"
    );
    assert_eq!(locked(&dir, 2)["requests"], "2.32.4");
    if is_root() {
        let rootfs = umoci_unpack(&layout, "test/pip:1", &tmp.path().join("bundle"));
        chroot(&rootfs, "python3 -m pip check");
        let listed = chroot(
            &rootfs,
            "python3 -m pip list 2>/dev/null | grep -ic '^requests '",
        );
        assert_eq!(listed.trim(), "1");
        let imported = chroot(
            &rootfs,
            "python3 -c 'import requests; print(requests.__version__)'",
        );
        assert_eq!(imported.trim(), "2.32.4");
    } else {
        eprintln!("not root: the chroot half of a_pin_replaces_a_real_distribution_below skipped");
    }

    let (_tmp, dir) = live_project("python-3.11", &recipe("urllib3<1.21"));
    let out = oci_build(&dir, &["lock", "app"]);
    let line = crate::common::refused(&out, "requests 2.32.3");
    assert!(
        line.ends_with(
            "requests 2.32.3 (installed in app layer 1) requires urllib3>=1.21.1,<3, but the layer asks for urllib3<1.21"
        ),
        "{line}"
    );
}
