//! A build by an unprivileged user: no chown, no user namespace, no daemon, and the image
//! still holds root-owned files with the recipe's modes.

use std::fs;

use crate::common::{NOBODY, Project, TarListing, is_root, layer_paths};

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
    // CI runs as root: the build drops to nobody, who owns the inputs and the output area.
    let (report, out) = p.unprivileged_build("rootless");
    if is_root() {
        // The output really was written by nobody.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(out.join("index.json")).unwrap().uid(), NOBODY);
    }
    let layer = &layer_paths(&out, &report)[0];

    // GNU tar, not our reader, says what the layer holds.
    let listing = TarListing::of(layer);
    let line = |path: &str| listing.mode_owner(path);
    assert_eq!(line("etc/secret.conf"), ["-rw-------", "0/0"]);
    assert_eq!(line("usr/local/bin/tool"), ["-rwsr-xr-x", "0/0"]);
    assert_eq!(line("srv/data/"), ["drwxr-x---", "33/33"]);
    assert_eq!(
        line("srv/data/owned-by-builder.txt"),
        ["-rw-r--r--", "33/33"]
    );
    assert_eq!(line("etc/"), ["drwxr-xr-x", "0/0"]);
}
