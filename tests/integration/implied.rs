//! Directories a layer only implies keep what the layers below made them (issue 14), and a
//! layer's `replace` hides a directory's contents from below with an opaque whiteout. Checked
//! by what umoci unpacks and what GNU tar lists in the layer blobs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::{Project, is_root, layer_paths, tool, umoci_unpack};

/// `(uid, gid, mode)` of a path of an unpacked rootfs.
fn owner_mode(rootfs: &Path, rel: &str) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(rootfs.join(rel)).unwrap();
    (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
}

/// GNU tar's listing of a layer blob: `(type and mode, uid/gid, name)` per member.
fn gnu_tar_listing(blob: &Path) -> Vec<(String, String, String)> {
    let listing = tool("tar", &["--numeric-owner", "-tvzf", blob.to_str().unwrap()]);
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (
                fields[0].to_owned(),
                fields[1].to_owned(),
                fields.last().unwrap().to_string(),
            )
        })
        .collect()
}

/// `/home/u` made 1000:100 0750 by one layer; `/home/u/x` written by the next.
fn home_project(home_mode: &str) -> Project {
    let p = Project::new();
    fs::create_dir_all(p.path("home-u")).unwrap();
    p.write("x.txt", "x\n");
    p.write("y.txt", "y\n");
    p.recipe(
        "home",
        &format!(
            r#"
platforms = ["linux/amd64"]

[[layer]]
comment = "the user's home"
files = [{{ src = "home-u", dest = "/home/u", uid = 1000, gid = 100, dir_mode = "{home_mode}" }}]

[[layer]]
comment = "a file in it, as root"
files = [{{ src = "x.txt", dest = "/home/u/x" }}]
"#
        ),
    );
    p
}

#[test]
fn a_files_layer_leaves_the_directories_below_as_they_are() {
    let p = home_project("0750");
    let out = p.tmp.path().join("out");
    let report = p.build(&["home", "--output", &format!("oci:{}", out.display())]);

    // The top layer carries home/u as the layer below made it; home, new, gets the defaults.
    let layers = layer_paths(&out, &report);
    let top = gnu_tar_listing(layers.last().unwrap());
    let member = |name: &str| top.iter().find(|m| m.2 == name).unwrap().clone();
    assert_eq!(member("home/u/").0, "drwxr-x---");
    assert_eq!(member("home/u/").1, "1000/100");
    assert_eq!(member("home/").0, "drwxr-xr-x");
    assert_eq!(member("home/").1, "0/0");
    assert_eq!(member("home/u/x").1, "0/0");

    let rootfs = umoci_unpack(&out, "home:latest", &p.tmp.path().join("bundle"));
    assert_eq!(fs::read_to_string(rootfs.join("home/u/x")).unwrap(), "x\n");
    if is_root() {
        assert_eq!(owner_mode(&rootfs, "home/u"), (1000, 100, 0o750));
        assert_eq!(owner_mode(&rootfs, "home"), (0, 0, 0o755));
    } else {
        assert_eq!(owner_mode(&rootfs, "home/u").2, 0o750);
    }

    // The same from a base read back from a layout (its layers' tars, not this run's trees).
    let base = p.path("base-layout");
    p.build(&["home", "--output", &format!("oci:{}", base.display())]);
    p.recipe(
        "more",
        r#"
from = "oci:base-layout:home:latest"

[[layer]]
files = [{ src = "y.txt", dest = "/home/u/y" }]
"#,
    );
    let more = p.tmp.path().join("more");
    p.build(&["more", "--output", &format!("oci:{}", more.display())]);
    let rootfs = umoci_unpack(&more, "more:latest", &p.tmp.path().join("bundle-more"));
    assert!(rootfs.join("home/u/x").is_file() && rootfs.join("home/u/y").is_file());
    if is_root() {
        assert_eq!(owner_mode(&rootfs, "home/u"), (1000, 100, 0o750));
    }
}

/// The upper layer's bytes depend on the directory below, so a cached one is not reused once
/// that directory changes, while the same inputs still hit the cache.
#[test]
fn a_changed_directory_below_is_not_served_from_the_layer_cache() {
    let p = home_project("0750");
    let out = p.tmp.path().join("out");
    let first = p.build(&["home", "--output", &format!("oci:{}", out.display())]);
    let again = p.build(&["home", "--output", &format!("oci:{}", out.display())]);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["layers_built"], 0, "{again}");

    p.recipe(
        "home",
        &fs::read_to_string(p.path("recipes/home.toml"))
            .unwrap()
            .replace("0750", "0700"),
    );
    let changed = p.build(&["home", "--output", &format!("oci:{}", out.display())]);
    let top = |report: &serde_json::Value| report["manifests"][0]["layers"][1]["digest"].clone();
    assert_ne!(top(&changed), top(&first));
    let layers = layer_paths(&out, &changed);
    let listing = gnu_tar_listing(layers.last().unwrap());
    let home_u = listing.iter().find(|m| m.2 == "home/u/").unwrap();
    assert_eq!(home_u.0, "drwx------");
}

#[test]
fn replace_hides_a_directorys_contents_from_below() {
    let p = Project::new();
    p.write("app-v1/old.txt", "old\n");
    p.write("app-v1/sub/keep.txt", "v1\n");
    p.write("app-v2/new.txt", "new\n");
    p.write("data/cache.bin", "cached\n");
    p.write("data/more/deep.bin", "deep\n");
    p.recipe(
        "app",
        r#"
platforms = ["linux/amd64"]

[[layer]]
files = [
  { src = "app-v1", dest = "/opt/app" },
  { src = "data", dest = "/srv/data", uid = 1000, gid = 100, dir_mode = "0750" },
]

[[layer]]
comment = "the new version, nothing of the old"
files = [{ src = "app-v2", dest = "/opt/app" }]
replace = ["/opt/app"]

[[layer]]
comment = "an empty data directory"
replace = ["/srv/data"]
"#,
    );
    let out = p.tmp.path().join("out");
    let report = p.build(&["app", "--output", &format!("oci:{}", out.display())]);

    let layers = layer_paths(&out, &report);
    let names =
        |blob: &Path| -> Vec<String> { gnu_tar_listing(blob).into_iter().map(|m| m.2).collect() };
    assert_eq!(
        names(&layers[1]),
        [
            "opt/",
            "opt/app/",
            "opt/app/.wh..wh..opq",
            "opt/app/new.txt"
        ]
    );
    let emptied = gnu_tar_listing(&layers[2]);
    assert_eq!(
        emptied.iter().map(|m| m.2.as_str()).collect::<Vec<_>>(),
        ["srv/", "srv/data/", "srv/data/.wh..wh..opq"]
    );
    // The emptied directory keeps its owner and mode from below: the layer only implies it.
    assert_eq!(emptied[1].0, "drwxr-x---");
    assert_eq!(emptied[1].1, "1000/100");

    let rootfs = umoci_unpack(&out, "app:latest", &p.tmp.path().join("bundle"));
    assert_eq!(
        fs::read_to_string(rootfs.join("opt/app/new.txt")).unwrap(),
        "new\n"
    );
    assert!(!rootfs.join("opt/app/old.txt").exists());
    assert!(!rootfs.join("opt/app/sub").exists());
    assert!(rootfs.join("srv/data").is_dir());
    assert_eq!(fs::read_dir(rootfs.join("srv/data")).unwrap().count(), 0);
    assert!(!rootfs.join("opt/app/.wh..wh..opq").exists());
    if is_root() {
        assert_eq!(owner_mode(&rootfs, "srv/data"), (1000, 100, 0o750));
    }
}

/// The jupyter case of issue 14: an `accounts` layer's home, then files copied into it.
#[test]
fn the_notebook_users_home_stays_its_own_under_copied_files() {
    let p = Project::new();
    p.write("demos/intro.ipynb", "{}\n");
    p.recipe(
        "notebook",
        r#"
platforms = ["linux/amd64"]

[[layer]]
accounts = [{ user = "jovyan", uid = 1000, group = "users", gid = 100 }]

[[layer]]
files = [{ src = "demos", dest = "/home/jovyan/demos", uid = 1000, gid = 100 }]
"#,
    );
    let out = p.tmp.path().join("out");
    let report = p.build(&["notebook", "--output", &format!("oci:{}", out.display())]);
    let layers = layer_paths(&out, &report);
    let top = gnu_tar_listing(layers.last().unwrap());
    let home = top.iter().find(|m| m.2 == "home/jovyan/").unwrap();
    assert_eq!(
        (home.0.as_str(), home.1.as_str()),
        ("drwxr-xr-x", "1000/100")
    );
    let rootfs = umoci_unpack(&out, "notebook:latest", &p.tmp.path().join("bundle"));
    if is_root() {
        assert_eq!(owner_mode(&rootfs, "home/jovyan"), (1000, 100, 0o755));
    }
}
