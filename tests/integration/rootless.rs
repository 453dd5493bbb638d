//! A build by an unprivileged user: no chown, no user namespace, no daemon, and the image
//! still holds root-owned files with the recipe's modes.

use std::fs;

use crate::common::{NOBODY, Project, assert_success, is_root, tool};

#[test]
fn unprivileged_build_writes_root_owned_files() {
    let p = Project::new();
    p.write_mode("data/owned-by-builder.txt", "payload\n", 0o644);
    p.write_mode("data/tool", "#!/bin/sh\n", 0o755);
    p.recipe(
        "rootless",
        r#"
platforms = ["linux/amd64"]

[[layer]]
files = [
  { src = "data/owned-by-builder.txt", dest = "/etc/secret.conf", mode = "0600" },
  { src = "data/tool", dest = "/usr/local/bin/tool", mode = "4755" },
  { src = "data", dest = "/srv/data", uid = 33, gid = 33, dir_mode = "0750" },
]
"#,
    );
    let tmp = p.tmp.path();
    let out = tmp.join("out");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    // CI runs as root: the build drops to nobody, who owns the inputs and the output area.
    let mut command = p.unprivileged_command();
    let output = command
        .arg("-C")
        .arg(p.dir())
        .arg("--cache-dir")
        .arg(tmp.join("cache"))
        .args(["build", "--json", "rootless", "--output"])
        .arg(format!("oci:{}", out.display()))
        .env("HOME", &home)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert_success(&output, "unprivileged build");
    if is_root() {
        // The output really was written by nobody.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(out.join("index.json")).unwrap().uid(), NOBODY);
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layer = &crate::common::layer_paths(&out, &report[0])[0];

    // GNU tar, not our reader, says what the layer holds.
    let listing = tool(
        "tar",
        &["--numeric-owner", "-tvzf", layer.to_str().unwrap()],
    );
    let line = |path: &str| -> Vec<String> {
        let found = listing
            .lines()
            .find(|l| l.split_whitespace().nth(5) == Some(path))
            .unwrap_or_else(|| panic!("{path} missing from layer:\n{listing}"));
        found
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(line("etc/secret.conf"), ["-rw-------", "0/0"]);
    assert_eq!(line("usr/local/bin/tool"), ["-rwsr-xr-x", "0/0"]);
    assert_eq!(line("srv/data/"), ["drwxr-x---", "33/33"]);
    assert_eq!(
        line("srv/data/owned-by-builder.txt"),
        ["-rw-r--r--", "33/33"]
    );
    assert_eq!(line("etc/"), ["drwxr-xr-x", "0/0"]);
}
