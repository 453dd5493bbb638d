//! What we write, read back by skopeo, umoci and oci-image-tool.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::{Project, json, skopeo_copy_arm64, tool, umoci_unpack};

const LONG_DIR: &str = "a-directory-name-long-enough-that-the-whole-path-needs-a-pax-header-because-ustar-stops-at-one-hundred-bytes";

/// A project with executables, private files, a symlink, hard links, a long path and an
/// empty directory, copied with an owner, plus one file with an explicit mode.
fn tree_project() -> Project {
    let p = Project::new();
    p.write_mode("app/bin/run", "#!/bin/sh\necho run\n", 0o700);
    p.write_mode("app/data/secret.txt", "not so secret\n", 0o600);
    p.write(&format!("app/{LONG_DIR}/deep/file.txt"), "deep\n");
    std::os::unix::fs::symlink("bin/run", p.path("app/link")).unwrap();
    p.write("app/hard1", "same inode\n");
    fs::hard_link(p.path("app/hard1"), p.path("app/hard2")).unwrap();
    fs::create_dir_all(p.path("app/empty")).unwrap();
    p.write_mode("conf/app.conf", "key = value\n", 0o666);
    p.recipe(
        "tree",
        r#"
platforms = ["linux/amd64"]

[[layer]]
files = [{ src = "app", dest = "/opt/app", uid = 1000, gid = 1001 }]

[[layer]]
files = [{ src = "conf/app.conf", dest = "/etc/", mode = "0640" }]

[config]
entrypoint = ["/opt/app/bin/run"]
workdir = "/opt/app"
"#,
    );
    p
}

#[test]
fn layout_passes_oci_image_tool_and_skopeo_sees_our_digests() {
    let p = tree_project();
    let out = p.tmp.path().join("out");
    let report = p.build(&["tree", "--output", &format!("oci:{}", out.display())]);
    assert_eq!(
        report["output"],
        format!("oci:{}:tree:latest", out.display())
    );

    crate::common::validate_image(p.tmp.path(), report["output"].as_str().unwrap());

    let image = format!("oci:{}:tree:latest", out.display());
    let inspected = json(&tool("skopeo", &["inspect", &image]));
    assert_eq!(inspected["Digest"], report["digest"]);
    assert_eq!(inspected["Architecture"], "amd64");
    let ours: Vec<_> = report["manifests"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();
    assert_eq!(inspected["Layers"].as_array().unwrap(), &ours);

    // The raw manifest skopeo reads is byte for byte the blob we wrote and digested.
    let raw = tool("skopeo", &["inspect", "--raw", &image]);
    let digest = report["digest"].as_str().unwrap();
    let blob = fs::read(out.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    assert_eq!(raw.as_bytes(), &blob[..]);
}

#[test]
fn umoci_unpacks_the_input_tree_with_recipe_owners_and_modes() {
    let p = tree_project();
    let out = p.tmp.path().join("out");
    p.build(&["tree", "--output", &format!("oci:{}", out.display())]);
    let rootfs = umoci_unpack(&out, "tree:latest", &p.tmp.path().join("bundle"));

    let meta = |rel: &str| fs::symlink_metadata(rootfs.join(rel)).unwrap();
    let mode = |rel: &str| meta(rel).permissions().mode() & 0o7777;
    assert_eq!(
        fs::read_to_string(rootfs.join("opt/app/bin/run")).unwrap(),
        "#!/bin/sh\necho run\n"
    );
    // Host modes are normalised: executable → 0755, anything else → 0644.
    assert_eq!(mode("opt/app/bin/run"), 0o755);
    assert_eq!(mode("opt/app/data/secret.txt"), 0o644);
    assert_eq!(mode("opt/app/empty"), 0o755);
    assert!(meta("opt/app/empty").is_dir());
    assert_eq!(mode("etc/app.conf"), 0o640);
    assert_eq!(
        fs::read_to_string(rootfs.join(format!("opt/app/{LONG_DIR}/deep/file.txt"))).unwrap(),
        "deep\n"
    );
    assert_eq!(
        fs::read_link(rootfs.join("opt/app/link")).unwrap(),
        Path::new("bin/run")
    );
    assert_eq!(meta("opt/app/hard1").ino(), meta("opt/app/hard2").ino());
    if crate::common::is_root() {
        assert_eq!(
            (meta("opt/app/bin/run").uid(), meta("opt/app/bin/run").gid()),
            (1000, 1001)
        );
        assert_eq!(
            (meta("etc/app.conf").uid(), meta("etc/app.conf").gid()),
            (0, 0)
        );
        // Directories the copy implies belong to root.
        assert_eq!(meta("opt").uid(), 0);
    }
}

#[test]
fn whiteouts_remove_paths_of_a_base_layout() {
    let p = tree_project();
    let base = p.path("base-layout");
    p.build(&["tree", "--output", &format!("oci:{}", base.display())]);
    p.recipe(
        "slim",
        r#"
from = "oci:base-layout:tree:latest"

[[layer]]
comment = "drop the config and the data"
remove = ["/etc/app.conf", "/opt/app/data"]
"#,
    );
    let out = p.tmp.path().join("out");
    let report = p.build(&["slim", "--output", &format!("oci:{}", out.display())]);
    // Base layers are reused as they are, and the config keeps the base's settings.
    assert_eq!(
        report["manifests"][0]["layers"].as_array().unwrap().len(),
        3
    );
    let inspected = json(&tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{}:slim:latest", out.display()),
        ],
    ));
    assert_eq!(inspected["config"]["Entrypoint"][0], "/opt/app/bin/run");
    assert_eq!(inspected["platform"], serde_json::Value::Null);
    assert_eq!(inspected["architecture"], "amd64");

    let rootfs = umoci_unpack(&out, "slim:latest", &p.tmp.path().join("bundle"));
    assert!(!rootfs.join("etc/app.conf").exists());
    assert!(!rootfs.join("opt/app/data").exists());
    assert!(rootfs.join("opt/app/bin/run").exists());
}

#[test]
fn archives_are_read_by_skopeo() {
    let p = tree_project();
    let tmp = p.tmp.path();
    let oci_archive = tmp.join("image.oci.tar");
    let report = p.build(&[
        "tree",
        "--output",
        &format!("oci-archive:{}", oci_archive.display()),
    ]);
    let inspected = json(&tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci-archive:{}:tree:latest", oci_archive.display()),
        ],
    ));
    assert_eq!(inspected["Digest"], report["digest"]);

    // docker-archive: layers are stored uncompressed, so their digests are the diff_ids, and
    // the config is carried unchanged.
    let docker_archive = tmp.join("image.docker.tar");
    let report = p.build(&[
        "tree",
        "--output",
        &format!("docker-archive:{}", docker_archive.display()),
    ]);
    let source = format!("docker-archive:{}", docker_archive.display());
    let raw = json(&tool("skopeo", &["inspect", "--raw", &source]));
    assert_eq!(
        raw["config"]["digest"],
        report["manifests"][0]["config"]["digest"]
    );
    let config = json(&tool("skopeo", &["inspect", "--config", "--raw", &source]));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap().clone();
    let layers: Vec<_> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();
    assert_eq!(layers, diff_ids);
    let manifest = json(&tool(
        "tar",
        &["-xOf", docker_archive.to_str().unwrap(), "manifest.json"],
    ));
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["tree:latest"]));
    // And skopeo can copy it on into a layout that oci-image-tool accepts.
    let copied = tmp.join("copied");
    tool(
        "skopeo",
        &["copy", &source, &format!("oci:{}:copy", copied.display())],
    );
    tool(
        "oci-image-tool",
        &["validate", "--type", "image", copied.to_str().unwrap()],
    );
}

#[test]
fn skopeo_copies_our_layout_to_a_docker_archive() {
    let p = tree_project();
    let out = p.tmp.path().join("out");
    let report = p.build(&["tree", "--output", &format!("oci:{}", out.display())]);
    let archive = p.tmp.path().join("copy.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:tree:latest", out.display()),
            &format!("docker-archive:{}:tree:copy", archive.display()),
        ],
    );
    let raw = json(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("docker-archive:{}", archive.display()),
        ],
    ));
    assert_eq!(
        raw["config"]["digest"],
        report["manifests"][0]["config"]["digest"]
    );
}

#[test]
fn several_platforms_make_an_index_and_several_tags_share_a_layout() {
    let p = tree_project();
    p.recipe(
        "multi",
        r#"
image = "example.org/team/multi:1.0"
platforms = ["linux/amd64", "linux/arm64"]

[[layer]]
files = [{ src = "conf/app.conf", dest = "/etc/app.conf" }]
"#,
    );
    let out = p.tmp.path().join("out");
    let dest = format!("oci:{}", out.display());
    let multi = p.build(&["multi", "--output", &dest]);
    assert_eq!(
        multi["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    p.build(&["tree", "--output", &dest]);
    // A rebuild replaces its tag instead of adding a second entry.
    p.build(&["multi", "--output", &dest]);

    let index = json(&fs::read_to_string(out.join("index.json")).unwrap());
    let mut names: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        // Beside each image, the index of its manifests' referrers (SBOM, provenance).
        .filter(|name| !name.contains(":sha256-"))
        .collect();
    names.sort();
    assert_eq!(names, ["example.org/team/multi:1.0", "tree:latest"]);

    let image = format!("oci:{}:example.org/team/multi:1.0", out.display());
    let raw = json(&tool("skopeo", &["inspect", "--raw", &image]));
    let platforms: Vec<_> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    let arm = json(&tool(
        "skopeo",
        &["--override-arch", "arm64", "inspect", "--config", &image],
    ));
    assert_eq!(arm["architecture"], "arm64");
    skopeo_copy_arm64(&[&image], &p.tmp.path().join("arm"));
    for name in ["example.org/team/multi:1.0", "tree:latest"] {
        crate::common::validate_image(p.tmp.path(), &format!("oci:{}:{name}", out.display()));
    }
}

#[test]
fn zstd_layers_and_docker_media_types() {
    let p = tree_project();
    let out = p.tmp.path().join("zstd");
    let report = p.build(&[
        "tree",
        "--compression",
        "zstd",
        "--output",
        &format!("oci:{}", out.display()),
    ]);
    let image = format!("oci:{}:tree:latest", out.display());
    let raw = json(&tool("skopeo", &["inspect", "--raw", &image]));
    for layer in raw["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    // The zstd CLI decompresses each layer to the bytes our config names as its diff_id.
    let config = json(&tool("skopeo", &["inspect", "--config", "--raw", &image]));
    for (layer, diff_id) in report["manifests"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let blob = out
            .join("blobs/sha256")
            .join(&layer["digest"].as_str().unwrap()[7..]);
        let sum = tool(
            "sh",
            &["-c", &format!("zstd -dc '{}' | sha256sum", blob.display())],
        );
        assert_eq!(format!("sha256:{}", &sum[..64]), diff_id.as_str().unwrap());
    }

    let docker = p.tmp.path().join("docker-types");
    p.build(&[
        "tree",
        "--docker-media-types",
        "--output",
        &format!("oci:{}", docker.display()),
    ]);
    // skopeo's oci: transport serves only OCI manifests, so the layout is read directly.
    let index = json(&fs::read_to_string(docker.join("index.json")).unwrap());
    let descriptor = &index["manifests"][0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let digest = descriptor["digest"].as_str().unwrap();
    let raw = json(&fs::read_to_string(docker.join("blobs/sha256").join(&digest[7..])).unwrap());
    assert_eq!(raw["schemaVersion"], 2);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    let refused = p.run(&[
        "build",
        "tree",
        "--docker-media-types",
        "--compression",
        "zstd",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no zstd layer type"));
    assert!(
        !p.tmp.path().join("out").exists(),
        "a refused build wrote its output"
    );
}
