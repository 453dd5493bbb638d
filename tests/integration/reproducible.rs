//! The same recipe and file contents give the same bytes, whatever the checkout looks like;
//! the same sdist gives the same wheel, whatever the machine that builds it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use filetime::FileTime;

use crate::common::{Project, TarEntry, blobs, is_root, layer_paths, read_layer};
use crate::fixtures::pypi::{Index, pinned_built_sha256, project as pypi_project, sdist_varying};

const RECIPE: &str = r#"
platforms = ["linux/amd64", "linux/arm64"]

[[layer]]
files = [{ src = "src", dest = "/app" }]

[config]
cmd = ["/app/bin/tool"]
"#;

/// Writes the same contents in a different order, with different times, host modes within
/// the same class (private vs. world-readable, 0700 vs 0755) and, as root, other owners.
fn checkout(reverse: bool, mtime: i64, private: bool) -> Project {
    let p = Project::new();
    p.recipe("app", RECIPE);
    let mut files = vec![
        ("src/bin/tool", "#!/bin/sh\necho tool\n", true),
        ("src/lib/a.py", "A = 1\n", false),
        ("src/lib/b.py", "B = 2\n", false),
        ("src/share/z/readme", "read me\n", false),
        ("src/share/y/notes", "notes\n", false),
    ];
    if reverse {
        files.reverse();
    }
    for (rel, contents, exec) in files {
        let mode = match (exec, private) {
            (true, true) => 0o700,
            (true, false) => 0o755,
            (false, true) => 0o600,
            (false, false) => 0o644,
        };
        p.write_mode(rel, contents, mode);
    }
    for entry in walkdir::WalkDir::new(p.path("src")) {
        let entry = entry.unwrap();
        filetime::set_symlink_file_times(
            entry.path(),
            FileTime::from_unix_time(mtime, 0),
            FileTime::from_unix_time(mtime, 0),
        )
        .unwrap();
        if is_root() && private {
            std::os::unix::fs::lchown(
                entry.path(),
                Some(crate::common::NOBODY),
                Some(crate::common::NOBODY),
            )
            .unwrap();
        }
        if entry.file_type().is_dir() && private {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
    p
}

#[test]
fn differing_checkouts_give_byte_identical_images() {
    let a = checkout(false, 1_000_000_000, false);
    let b = checkout(true, 1_600_000_000, true);
    let out_a = a.tmp.path().join("out");
    let out_b = b.tmp.path().join("out");
    let report_a = a.build(&["app", "--output", &format!("oci:{}", out_a.display())]);
    let report_b = b.build(&["app", "--output", &format!("oci:{}", out_b.display())]);
    assert_eq!(report_a["digest"], report_b["digest"]);
    assert_eq!(blobs(&out_a), blobs(&out_b));
    assert_eq!(
        fs::read(out_a.join("index.json")).unwrap(),
        fs::read(out_b.join("index.json")).unwrap()
    );
    // zstd too.
    let z_a = a.build(&["app", "--compression", "zstd", "--output", "oci:za"]);
    let z_b = b.build(&["app", "--compression", "zstd", "--output", "oci:zb"]);
    assert_eq!(z_a["digest"], z_b["digest"]);
}

fn listing_without_times(entries: &[TarEntry]) -> Vec<TarEntry> {
    entries
        .iter()
        .cloned()
        .map(|e| TarEntry { mtime: 0, ..e })
        .collect()
}

#[test]
fn source_date_epoch_changes_only_times() {
    let p = checkout(false, 1_000_000_000, false);
    let zero = p.tmp.path().join("zero");
    let later = p.tmp.path().join("later");
    let report_zero = p.build(&[
        "app",
        "--platform",
        "linux/amd64",
        "--output",
        &format!("oci:{}", zero.display()),
    ]);
    let out = p
        .command(&[
            "build",
            "--json",
            "app",
            "--platform",
            "linux/amd64",
            "--output",
            &format!("oci:{}", later.display()),
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    crate::common::assert_success(&out, "build with SOURCE_DATE_EPOCH");
    let report_later: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report_later = &report_later[0];
    assert_ne!(report_zero["digest"], report_later["digest"]);

    let layer_zero = read_layer(&layer_paths(&zero, &report_zero)[0]);
    let layer_later = read_layer(&layer_paths(&later, report_later)[0]);
    assert!(layer_zero.iter().all(|e| e.mtime == 0));
    assert!(layer_later.iter().all(|e| e.mtime == 1_700_000_000));
    assert_eq!(
        listing_without_times(&layer_zero),
        listing_without_times(&layer_later)
    );

    let config_of = |dir: &std::path::Path, report: &serde_json::Value| -> serde_json::Value {
        let digest = report["manifests"][0]["config"]["digest"].as_str().unwrap();
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap())
            .unwrap()
    };
    let mut config_zero = config_of(&zero, &report_zero);
    let mut config_later = config_of(&later, report_later);
    assert_eq!(config_zero["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config_later["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        config_later["history"][0]["created"],
        "2023-11-14T22:13:20Z"
    );
    // Apart from times and the layer identity they imply, the configs are the same.
    for config in [&mut config_zero, &mut config_later] {
        config["created"] = serde_json::Value::Null;
        config["history"][0]["created"] = serde_json::Value::Null;
        config["rootfs"] = serde_json::Value::Null;
    }
    assert_eq!(config_zero, config_later);
}

/// Whether bubblewrap can make a sandbox here, as oci-build's sdist builds need it to show the
/// build directory at a fixed path.
fn bubblewrap_runs() -> bool {
    std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--unshare-net", "--", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `build --json app --output oci:out` in `p`, under `umask` and with `env` on top of the test's
/// own environment (and its own HOME), from the project's temp dir.
fn build_varied(p: &Project, umask: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let home = p.tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .arg(crate::common::bin_path())
        .arg("-C")
        .arg(p.dir())
        .arg("--cache-dir")
        .arg(p.cache())
        .args(["build", "--json", "app", "--output", "oci:out"])
        .env_remove("SOURCE_DATE_EPOCH")
        .env("HOME", &home)
        .envs(env.iter().copied())
        .current_dir(p.tmp.path())
        .output()
        .unwrap();
    crate::common::assert_success(&out, "build with a varied environment");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

/// The wheel oci-build built from the sdist, as its cache holds it.
fn built_wheel(p: &Project) -> Vec<u8> {
    let bucket = p.cache().join("pip-built-v3");
    let dirs: Vec<_> = fs::read_dir(&bucket)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one built sdist, no build directory left");
    let wheels: Vec<_> = fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1);
    fs::read(&wheels[0]).unwrap()
}

/// An sdist whose backend lets the hash seed, the time, the time zone, the umask and where it
/// builds into its wheel, built by two builds that differ in all of them (and in locale, HOME,
/// cache and working directory): one wheel, one lock, one image.
#[test]
fn an_sdist_builds_into_the_same_wheel_whatever_the_build_environment() {
    let sandboxed = bubblewrap_runs();
    if !sandboxed {
        eprintln!("bubblewrap cannot run here: the build directory's path is left out");
    }
    let mut index = Index::new();
    index.publish_raw("varying", "varying-1.0.tar.gz", &sdist_varying(sandboxed));
    let a = pypi_project(&index, "[\"linux/amd64\"]", &["packages = [\"varying\"]"]);
    let b = pypi_project(&index, "[\"linux/amd64\"]", &["packages = [\"varying\"]"]);
    let first = build_varied(
        &a,
        "022",
        &[("PYTHONHASHSEED", "1"), ("TZ", "UTC"), ("LC_ALL", "C")],
    );
    // Zip times have a resolution of two seconds.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let second = build_varied(
        &b,
        "077",
        &[
            ("PYTHONHASHSEED", "2"),
            ("TZ", "XYZ-13:45"),
            ("LC_ALL", "C.UTF-8"),
        ],
    );
    let (wheel_a, wheel_b) = (built_wheel(&a), built_wheel(&b));
    assert!(wheel_a == wheel_b, "the two builds made different wheels");
    let pinned = pinned_built_sha256(&a, "varying").expect("the lock pins the built wheel");
    assert_eq!(pinned, crate::fixtures::sha256_hex(&wheel_a));
    assert_eq!(pinned_built_sha256(&b, "varying").as_ref(), Some(&pinned));
    assert_eq!(first["digest"], second["digest"]);
}
