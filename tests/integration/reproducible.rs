//! The same recipe and file contents give the same bytes, whatever the checkout looks like.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use filetime::FileTime;

use crate::common::{Project, TarEntry, blobs, is_root, layer_paths, read_layer};

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
