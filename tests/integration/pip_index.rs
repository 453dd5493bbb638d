//! Hermetic `pip` layers: wheels and an sdist made by the test, indexed as PEP 691 JSON pages
//! with PEP 658 metadata files, served on 127.0.0.1. The image's "Python" is a dpkg status that
//! says Debian's libpython3.11-minimal 3.11.2 and libc6 2.36 are installed, which is all a
//! `pip` layer reads of its base; nothing runs in the image, so no interpreter is needed.
//!
//! Covered: markers and extras evaluated for a foreign target (arm64, Python 3.11.2), PEP 658
//! metadata used instead of wheels when locking, the installed layout (RECORD, INSTALLER,
//! entry point scripts), a file changed on the index refused, a wheel escaping its root
//! refused, a conflict explained, an sdist built on the host, and a layer split that rebuilds
//! only what changed.

use crate::common::{Project, assert_success, layer_paths, read_layer, refused};
use crate::fixtures::pypi::{
    BUILT_WITH_HELPER, Index, build_helper, dist, edit_pin, lock_text, locked,
    pinned_build_requires, pinned_built_sha256, project, sdist_bytes, sdist_running, wheel,
};
use crate::fixtures::sha256_hex;

/// The layer entry at `path` (directories with or without their trailing `/`).
fn entry<'a>(entries: &'a [crate::common::TarEntry], path: &str) -> &'a crate::common::TarEntry {
    entries
        .iter()
        .find(|e| e.path.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("{path} not in the layer"))
}

/// Builds `app` into `layout`, which must fail; its message.
fn failed_build(project: &Project, layout: &std::path::Path) -> String {
    let out = project.run(&[
        "build",
        "app",
        "--output",
        &format!("oci:{}", layout.display()),
    ]);
    assert!(!out.status.success());
    stderr(&out)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn locks_for_a_foreign_target_with_markers_extras_and_metadata_files() {
    let mut index = Index::new();
    let mut app = dist("app", "1.0");
    app.requires = vec![
        "native>=1; platform_machine == \"aarch64\"",
        "x86-only; platform_machine == \"x86_64\"",
        "soup",
        "fast-dep; extra == \"fast\"",
        "old-python-only; python_full_version < \"3.11.5\"",
        "new-python-only; python_full_version >= \"3.11.5\"",
    ];
    index.publish(&app);
    for tag in [
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux_2_17_aarch64",
    ] {
        let mut native = dist("native", "2.0");
        native.tag = tag;
        index.publish(&native);
    }
    // Newer glibc than the image's 2.36: unusable, so 1.5 is taken.
    let mut too_new = dist("native", "3.0");
    too_new.tag = "cp311-cp311-manylinux_2_38_aarch64";
    index.publish(&too_new);
    index.publish(&dist("x86-only", "1.0"));
    index.publish(&dist("fast-dep", "1.0"));
    index.publish(&dist("old-python-only", "1.0"));
    index.publish(&dist("new-python-only", "1.0"));
    // The soupsieve case: the newest needs Python >=3.11.5, the image has 3.11.2.
    index.publish(&dist("soup", "1.0"));
    let mut soup2 = dist("soup", "2.0");
    soup2.requires_python = Some(">=3.11.5");
    index.publish(&soup2);

    let project = project(&index, "[\"linux/arm64\"]", &["packages = [\"app[fast]\"]"]);
    let out = project.run(&["lock", "app"]);
    assert_success(&out, "oci-build lock app");
    let pins = locked(&project, 1);
    let names: Vec<&str> = pins.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["app", "fast-dep", "native", "old-python-only", "soup"]
    );
    assert_eq!(
        pins["native"].1,
        "native-2.0-cp311-cp311-manylinux_2_17_aarch64.whl"
    );
    assert_eq!(pins["soup"].0, "1.0");
    let lock = lock_text(&project);
    assert_eq!(lock["pip"][0]["platform"].as_str(), Some("linux/arm64"));
    // Locking read metadata files and never a wheel.
    let requests = index.requests();
    assert!(
        requests.iter().any(|r| r.ends_with(".whl.metadata")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.ends_with(".whl")),
        "{requests:?}"
    );
}

#[test]
fn installs_wheels_like_pip_and_refuses_a_changed_file() {
    let mut index = Index::new();
    let mut tool = dist("demo-tool", "1.2");
    tool.requires = vec!["helper"];
    tool.files = vec![(
        "demo_tool/__init__.py".to_owned(),
        b"def main():\n    return 0\n".to_vec(),
    )];
    tool.entry_points = Some("[console_scripts]\ndemo-tool = demo_tool:main\n");
    index.publish(&tool);
    let mut helper = dist("helper", "0.1");
    helper.files = vec![("helper.py".to_owned(), b"X = 1\n".to_vec())];
    let helper_file = index.publish(&helper);

    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"demo-tool\"]"]);
    let layout = project.tmp.path().join("out");
    let report = project.build(&["app", "--output", &format!("oci:{}", layout.display())]);
    let layers = layer_paths(&layout, &report);
    let entries = read_layer(&layers[1]);
    let get = |path: &str| entry(&entries, path);
    let site = "usr/local/lib/python3.11/dist-packages";
    assert_eq!(get(&format!("{site}/helper.py")).content, b"X = 1\n");
    let script = get("usr/local/bin/demo-tool");
    assert_eq!(script.mode, 0o755);
    let script_text = String::from_utf8_lossy(&script.content);
    assert!(
        script_text.starts_with("#!/usr/bin/python3.11\n"),
        "{script_text}"
    );
    assert!(script_text.contains("demo_tool"), "{script_text}");
    assert_eq!(
        get(&format!("{site}/demo_tool-1.2.dist-info/INSTALLER")).content,
        b"oci-build\n"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.path == format!("{site}/demo_tool-1.2.dist-info/REQUESTED"))
    );
    assert!(
        !entries
            .iter()
            .any(|e| e.path == format!("{site}/helper-0.1.dist-info/REQUESTED"))
    );
    let record =
        String::from_utf8_lossy(&get(&format!("{site}/demo_tool-1.2.dist-info/RECORD")).content)
            .into_owned();
    assert!(
        record.contains("../../../bin/demo-tool,sha256="),
        "{record}"
    );

    // The index now serves other bytes under the locked name: refused, with the file named.
    let mut changed = dist("helper", "0.1");
    changed.files = vec![("helper.py".to_owned(), b"X = 2\n".to_vec())];
    let (_, bytes) = wheel(&changed);
    std::fs::write(index.root.path().join("files").join(&helper_file), bytes).unwrap();
    std::fs::remove_dir_all(project.cache()).unwrap();
    let message = failed_build(&project, &layout);
    assert!(
        message.contains(&helper_file) && message.contains("does not match its hash"),
        "{message}"
    );
}

#[test]
fn refuses_a_wheel_that_escapes_its_root() {
    let mut index = Index::new();
    let mut evil = dist("evil", "1.0");
    evil.files = vec![(
        "../../../etc/cron.d/evil".to_owned(),
        b"* * * * * root true\n".to_vec(),
    )];
    let (filename, bytes) = wheel(&evil);
    index.publish_raw("evil", &filename, &bytes);
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"evil\"]"]);
    let layout = project.tmp.path().join("out");
    let message = failed_build(&project, &layout);
    assert!(
        message.contains(&filename) && message.contains("etc/cron.d/evil"),
        "{message}"
    );
    assert!(!layout.exists(), "a refused build wrote its output");
}

#[test]
fn a_conflict_names_the_packages_and_versions() {
    let mut index = Index::new();
    let mut left = dist("left", "1.0");
    left.requires = vec!["shared<2"];
    index.publish(&left);
    let mut right = dist("right", "1.0");
    right.requires = vec!["shared>=2"];
    index.publish(&right);
    index.publish(&dist("shared", "1.0"));
    index.publish(&dist("shared", "2.0"));
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"left\", \"right\"]"],
    );
    let out = project.run(&["lock", "app"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    for name in ["left", "right", "shared"] {
        assert!(message.contains(name), "{name} missing from: {message}");
    }
    assert!(message.contains("cannot be satisfied"), "{message}");
    // Said as pip says it, without the solver's wording.
    assert!(
        message.trim_end().ends_with(
            "the requirements cannot be satisfied together: left 1.0 requires shared<2, but right 1.0 requires shared>=2"
        ),
        "{message}"
    );
}

#[test]
fn builds_a_package_that_ships_only_an_sdist() {
    let mut index = Index::new();
    let bytes = sdist_bytes("py3-none-any");
    index.publish_raw("srconly", "srconly-0.3.tar.gz", &bytes);
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"srconly\"]"]);
    let layout = project.tmp.path().join("out");
    let report = project.build(&["app", "--output", &format!("oci:{}", layout.display())]);
    let entries = read_layer(&layer_paths(&layout, &report)[1]);
    let module = entries
        .iter()
        .find(|e| e.path == "usr/local/lib/python3.11/dist-packages/srconly.py")
        .expect("the built wheel is installed");
    assert_eq!(module.content, b"ANSWER = 42\n");
    let pins = locked(&project, 1);
    assert_eq!(
        pins["srconly"],
        ("0.3".to_owned(), "srconly-0.3.tar.gz".to_owned())
    );
    let lock = std::fs::read_to_string(project.path("recipes/recipes.lock")).unwrap();
    assert!(
        lock.contains(&sha256_hex(&bytes)),
        "the lock pins the sdist's hash: {lock}"
    );
}

/// A cache directory reached through a symlink (a cache moved to another disk) builds an
/// sdist: the sandbox is handed the cache's real path, which it can bind. (Outside /tmp, which
/// the sandbox replaces with its own, so that the link is in the sandbox's view.)
#[test]
fn builds_an_sdist_with_the_cache_behind_a_symlink() {
    let mut index = Index::new();
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_bytes("py3-none-any"),
    );
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"srconly\"]"]);
    let outside_tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let real = outside_tmp.path().join("disk/cache");
    std::fs::create_dir_all(&real).unwrap();
    let linked = outside_tmp.path().join("linked-cache");
    std::os::unix::fs::symlink(&real, &linked).unwrap();
    let layout = project.tmp.path().join("out");
    let out = crate::common::oci_build_at(&project.dir(), &linked)
        .args([
            "build",
            "app",
            "--output",
            &format!("oci:{}", layout.display()),
        ])
        .output()
        .unwrap();
    crate::common::assert_success(&out, "build with a symlinked cache");
    assert!(real.join("CACHEDIR.TAG").is_file());
}

/// The lock pins the wheel built from an sdist: `--locked` refuses a build whose wheel has
/// other bytes, in one sentence naming the package and both hashes. An entry from before built
/// wheels were pinned still builds; `--locked` leaves it as it is and a plain build pins it.
#[test]
fn a_locked_build_refuses_a_built_wheel_the_lock_does_not_pin() {
    let mut index = Index::new();
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_bytes("py3-none-any"),
    );
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"srconly\"]"]);
    let first = project.build(&["app", "--output", "oci:first"]);
    let built = pinned_built_sha256(&project, "srconly").expect("the built wheel is pinned");
    let lock_path = project.path("recipes/recipes.lock");

    edit_pin(&project, "srconly", |pin| {
        pin.remove("built_sha256");
    });
    let old_lock = std::fs::read(&lock_path).unwrap();
    let again = project.build(&["app", "--locked", "--output", "oci:again"]);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(
        std::fs::read(&lock_path).unwrap(),
        old_lock,
        "--locked changed the lock file"
    );
    project.build(&["app", "--output", "oci:plain"]);
    assert_eq!(
        pinned_built_sha256(&project, "srconly").as_ref(),
        Some(&built)
    );

    let other = "0".repeat(64);
    edit_pin(&project, "srconly", |pin| {
        pin.insert("built_sha256".to_owned(), other.clone().into());
    });
    let out = project.run(&["build", "app", "--locked", "--output", "oci:refused"]);
    let error = refused(&out, "the wheel built from the sdist of srconly 0.3");
    assert!(
        error.contains(&format!("has sha256 {built}"))
            && error.contains(&format!("pins sha256 {other}"))
            && error.contains("oci-build lock"),
        "{error}"
    );
    assert!(!project.tmp.path().join("refused").exists());

    // `oci-build lock` pins the wheel this machine builds.
    assert_success(&project.run(&["lock", "app"]), "oci-build lock");
    assert_eq!(
        pinned_built_sha256(&project, "srconly").as_ref(),
        Some(&built)
    );
}

/// The lock pins the build requirements an sdist's wheel was built with: a newer one on the
/// index later does not change what a locked build on an empty cache builds.
#[test]
fn a_locked_build_installs_the_build_requirements_the_lock_pins() {
    let mut index = Index::new();
    index.publish(&build_helper("1.0"));
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_running("py3-none-any", BUILT_WITH_HELPER),
    );
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"srconly\"]"]);
    let first = project.build(&["app", "--output", "oci:first"]);
    assert_eq!(
        pinned_build_requires(&project, "srconly"),
        ["buildhelp==1.0"]
    );

    index.publish(&build_helper("2.0"));
    // Another machine: no wheel built before.
    std::fs::remove_dir_all(project.cache().join("pip-built-v3")).unwrap();
    let again = project.build(&["app", "--locked", "--output", "oci:again"]);
    assert_eq!(again["digest"], first["digest"], "built with buildhelp 2.0");
}

#[test]
fn a_split_rebuilds_only_the_layer_whose_pins_changed() {
    let mut index = Index::new();
    index.publish(&dist("heavy", "1.0"));
    index.publish(&dist("appcode", "1.0"));
    index.publish(&dist("appcode", "2.0"));
    let layers = ["packages = [\"heavy\"]", "packages = [\"appcode==1.0\"]"];
    let project = project(&index, "[\"linux/amd64\"]", &layers);
    let layout = project.tmp.path().join("out");
    let output = format!("oci:{}", layout.display());
    let first = project.build(&["app", "--output", &output]);
    let app = std::fs::read_to_string(project.path("recipes/app.toml")).unwrap();
    project.recipe("app", &app.replace("appcode==1.0", "appcode==2.0"));
    let second = project.build(&["app", "--output", &output]);
    assert_eq!(second["layers_built"], 1, "{second}");
    let digests = |report: &serde_json::Value| -> Vec<String> {
        report["manifests"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let (before, after) = (digests(&first), digests(&second));
    assert_eq!(
        before[..2],
        after[..2],
        "the base and heavy layers are unchanged"
    );
    assert_ne!(before[2], after[2]);
    assert_eq!(locked(&project, 2)["appcode"].0, "2.0");
    assert_eq!(locked(&project, 1)["heavy"].0, "1.0");
}

#[test]
fn an_sdist_that_compiles_for_the_host_is_refused_for_another_target() {
    let mut index = Index::new();
    // What a compiled package's build on this x86_64 host gives: a wheel only the host can use.
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_bytes("cp311-cp311-linux_x86_64"),
    );
    let project = project(&index, "[\"linux/arm64\"]", &["packages = [\"srconly\"]"]);
    let out = project.run(&["lock", "app"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("srconly 0.3")
            && message.contains("aarch64")
            && message.contains("wheelhouse"),
        "{message}"
    );
}

#[test]
fn a_venv_layer_installs_into_its_own_prefix() {
    let mut index = Index::new();
    let mut tool = dist("demo-tool", "1.2");
    tool.files = vec![(
        "demo_tool.py".to_owned(),
        b"def main():\n    return 0\n".to_vec(),
    )];
    tool.entry_points = Some("[console_scripts]\ndemo-tool = demo_tool:main\n");
    index.publish(&tool);
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"demo-tool\"], venv = \"/opt/venv\""],
    );
    let layout = project.tmp.path().join("out");
    let report = project.build(&["app", "--output", &format!("oci:{}", layout.display())]);
    let entries = read_layer(&layer_paths(&layout, &report)[1]);
    let get = |path: &str| entry(&entries, path);
    assert!(get("opt/venv/lib/python3.11/site-packages/demo_tool.py").kind == 'f');
    let config = String::from_utf8_lossy(&get("opt/venv/pyvenv.cfg").content).into_owned();
    assert!(
        config.contains("home = /usr/bin") && config.contains("version = 3.11.2"),
        "{config}"
    );
    assert_eq!(
        get("opt/venv/bin/python").link.as_deref(),
        Some("/usr/bin/python3.11")
    );
    let script = String::from_utf8_lossy(&get("opt/venv/bin/demo-tool").content).into_owned();
    assert!(script.starts_with("#!/opt/venv/bin/python\n"), "{script}");
    assert!(
        !entries.iter().any(|e| e.path.starts_with("usr/local")),
        "nothing goes to the system site"
    );
}
