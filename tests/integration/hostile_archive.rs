//! Hostile archive members: Debian packages, base-image layers and mirror bundles whose members
//! climb out with `..`, name absolute paths, write through symlinks, hard-link to symlinks or
//! ship devices. Each must fail with exit code 1 and one sentence naming the package, member or
//! blob, and leave a sentinel tree outside the cache and output as it was.

use std::fs;
use std::path::Path;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::common::{Project, Sentinel, read_layer, refused};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::gzip;
use crate::fixtures::tar::{Member, tar_of};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Runs `build bad --output oci:out` and checks it was refused naming each of `names`, with
/// no output written and the sentinel as it was.
fn assert_build_refused(p: &Project, sentinel: &Sentinel, names: &[&str]) {
    let out = p.run(&["build", "bad", "--output", "oci:out"]);
    let line = refused(&out, names[0]);
    for name in &names[1..] {
        assert!(
            line.contains(name),
            "the error does not name `{name}`: {line}"
        );
    }
    assert!(
        !p.tmp.path().join("out").exists(),
        "a refused build wrote its output"
    );
    sentinel.assert_untouched();
}

/// Debian packages whose members are each refused on their own, one package per case: (name,
/// members, what the error must name besides the package).
#[test]
fn deb_members_out_of_the_root_links_out_and_devices_are_refused() {
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    let keep = sentinel.root.join("keep.txt");
    let keep = keep.to_str().unwrap();
    // From <cache>/debs-v2/<tmp>/files/ this climbs to the sentinel.
    let dotdot = "./../../../../sentinel/keep.txt";
    let evil: &[u8] = b"evil\n";
    let dir = |name| (name, tar::EntryType::Directory, &b""[..], None);
    let cases: Vec<(&str, Vec<Member<'_>>, &str)> = vec![
        (
            "dotdot",
            vec![dir("./"), (dotdot, tar::EntryType::Regular, evil, None)],
            dotdot,
        ),
        (
            "absolute",
            vec![dir("./"), (keep, tar::EntryType::Regular, evil, None)],
            keep,
        ),
        (
            "device",
            vec![
                dir("./"),
                dir("./dev/"),
                ("./dev/sda", tar::EntryType::Block, b"", None),
            ],
            "./dev/sda",
        ),
        (
            // The link itself is harmless in an image; a hard link to it is a second name for
            // whatever it leads to.
            "hardlink-to-symlink",
            vec![
                dir("./"),
                dir("./etc/"),
                ("./etc/s", tar::EntryType::Symlink, b"", Some(keep)),
                ("./etc/h", tar::EntryType::Link, b"", Some("./etc/s")),
            ],
            "./etc/h",
        ),
        (
            "hardlink-out",
            vec![
                dir("./"),
                dir("./etc/"),
                ("./etc/h", tar::EntryType::Link, b"", Some(keep)),
            ],
            "./etc/h",
        ),
        (
            "hardlink-dotdot",
            vec![
                dir("./"),
                dir("./etc/"),
                ("./etc/h", tar::EntryType::Link, b"", Some(dotdot)),
            ],
            "./etc/h",
        ),
    ];
    let mut repo = Repo::new();
    for (name, members, _) in &cases {
        repo.add_data_tar(Pkg::new(name, "1"), &gzip(&tar_of(members)));
    }
    repo.publish();
    repo.trust(&p);
    for (name, _, member) in &cases {
        p.recipe("bad", &repo.recipe(&[&format!("packages = [\"{name}\"]")]));
        assert_build_refused(&p, &sentinel, &[&format!("package {name} 1"), member]);
    }
}

/// Symlinks that lead to `/` or out of the root, written through by the same package or by a
/// later one in the layer: refused, naming the package, the member and the link.
#[test]
fn deb_members_through_symlinks_out_of_the_root_are_refused() {
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    let dir = |name| (name, tar::EntryType::Directory, &b""[..], None);
    let link = |name, target| (name, tar::EntryType::Symlink, &b""[..], Some(target));
    let file = |name| (name, tar::EntryType::Regular, &b"evil\n"[..], None);
    let mut repo = Repo::new();
    repo.add_data_tar(
        Pkg::new("to-root", "1"),
        &gzip(&tar_of(&[
            dir("./"),
            dir("./usr/"),
            dir("./usr/lib/"),
            link("./usr/lib/escape", "/"),
            file("./usr/lib/escape/file"),
        ])),
    )
    .add_data_tar(
        Pkg::new("climbs", "1"),
        &gzip(&tar_of(&[
            dir("./"),
            link("./x", "../../.."),
            file("./x/etc/passwd"),
        ])),
    )
    // Across packages: the first ships the link, the second writes through it.
    .add_data_tar(
        Pkg::new("links-out", "1"),
        &gzip(&tar_of(&[
            dir("./"),
            dir("./opt/"),
            link("./opt/out", "../../../../sentinel"),
        ])),
    )
    .add_data_tar(
        Pkg::new("writes-through", "1").field("Depends", "links-out"),
        &gzip(&tar_of(&[
            dir("./"),
            dir("./opt/"),
            dir("./opt/out/"),
            file("./opt/out/keep.txt"),
        ])),
    );
    repo.publish();
    repo.trust(&p);
    for (request, names) in [
        (
            "to-root",
            [
                "package to-root 1",
                "/usr/lib/escape/file",
                "`/usr/lib/escape` -> `/`",
            ],
        ),
        (
            "climbs",
            ["package climbs 1", "/x/etc/passwd", "`/x` -> `../../..`"],
        ),
        (
            "writes-through",
            [
                "package writes-through 1",
                "/opt/out/keep.txt",
                "`/opt/out` -> `../../../../sentinel`",
            ],
        ),
    ] {
        p.recipe(
            "bad",
            &repo.recipe(&[&format!("packages = [\"{request}\"]")]),
        );
        assert_build_refused(&p, &sentinel, &names);
    }
}

/// Writes an OCI layout at `dir` holding one linux/amd64 image of one layer (`layer`, of
/// `layer_media_type`, whose uncompressed digest is `diff_id`), its index entry annotated with
/// `annotations`; the layer blob is written by `put_layer` at its path.
fn write_image_layout(
    dir: &Path,
    layer: &[u8],
    layer_media_type: &str,
    diff_id: &str,
    annotations: serde_json::Value,
    put_layer: impl FnOnce(&Path),
) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": layer_media_type,
            "digest": sha256(layer),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for blob in [&config, &manifest] {
        fs::write(blobs.join(&sha256(blob)[7..]), blob).unwrap();
    }
    put_layer(&blobs.join(&sha256(layer)[7..]));
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "annotations": annotations,
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Writes an OCI layout at `dir` holding one linux/amd64 image tagged `base` whose one layer
/// has `members`.
fn write_base(dir: &Path, members: &[Member<'_>]) {
    let tar = tar_of(members);
    let layer = gzip(&tar);
    write_image_layout(
        dir,
        &layer,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &sha256(&tar),
        json!({ "org.opencontainers.image.ref.name": "base" }),
        |path| fs::write(path, &layer).unwrap(),
    );
}

/// A `debian` layer on a base whose layer is hostile: the base is read (for its dpkg status and
/// symlinks) only from its own bytes, and packages are not written through its links.
#[test]
fn a_debian_layer_on_a_hostile_base_reads_and_writes_nothing_outside() {
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    let keep = sentinel.root.join("keep.txt");
    let keep = keep.to_str().unwrap();
    let dir = |name| (name, tar::EntryType::Directory, &b""[..], None);
    let mut repo = Repo::new();
    repo.add_data_tar(
        Pkg::new("tool", "1"),
        &gzip(&tar_of(&[
            dir("./"),
            dir("./bin/"),
            ("./bin/tool", tar::EntryType::Regular, b"tool\n", None),
            dir("./usr/"),
            dir("./usr/lib/"),
            dir("./usr/lib/escape/"),
            (
                "./usr/lib/escape/file",
                tar::EntryType::Regular,
                b"evil\n",
                None,
            ),
        ])),
    )
    .add(Pkg::new("plain", "1"));
    repo.publish();
    repo.trust(&p);
    let recipe = |package: &str| {
        format!(
            "from = \"oci:../base:base\"\n{}",
            repo.recipe(&[&format!("packages = [\"{package}\"]")])
        )
    };
    let base = p.tmp.path().join("base");
    let cases: [(&[Member<'_>], &str, [&str; 2]); 3] = [
        (
            &[
                dir("var/"),
                dir("var/lib/"),
                dir("var/lib/dpkg/"),
                (
                    "var/lib/dpkg/status",
                    tar::EntryType::Symlink,
                    b"",
                    Some(keep),
                ),
            ],
            "plain",
            ["/var/lib/dpkg/status", "is a symlink"],
        ),
        (
            &[(
                "../../sentinel/keep.txt",
                tar::EntryType::Regular,
                b"evil\n",
                None,
            )],
            "plain",
            ["../../sentinel/keep.txt", "leaves the image root"],
        ),
        (
            &[
                dir("usr/"),
                dir("usr/lib/"),
                ("usr/lib/escape", tar::EntryType::Symlink, b"", Some("/")),
            ],
            "tool",
            ["package tool 1", "`/usr/lib/escape` -> `/`"],
        ),
    ];
    for (members, package, names) in cases {
        let _ = fs::remove_dir_all(&base);
        write_base(&base, members);
        p.recipe("bad", &recipe(package));
        assert_build_refused(&p, &sentinel, &names);
    }

    // A merged-/usr base: the package's /bin/tool lands in /usr/bin, as dpkg puts it, and the
    // layer does not turn /bin into a directory.
    fs::remove_dir_all(&base).unwrap();
    write_base(
        &base,
        &[
            dir("usr/"),
            dir("usr/bin/"),
            ("bin", tar::EntryType::Symlink, b"", Some("usr/bin")),
            (
                "usr/lib/escape",
                tar::EntryType::Symlink,
                b"",
                Some("../share"),
            ),
        ],
    );
    p.recipe("good", &recipe("tool"));
    let report = p.build(&["good", "--output", "oci:out"]);
    let layers = crate::common::layer_paths(&p.tmp.path().join("out"), &report);
    let top = read_layer(layers.last().unwrap());
    let paths: Vec<&str> = top.iter().map(|e| e.path.trim_end_matches('/')).collect();
    assert!(paths.contains(&"usr/bin/tool"), "{paths:?}");
    assert!(paths.contains(&"usr/share/file"), "{paths:?}");
    assert!(
        !paths.iter().any(|p| *p == "bin" || p.starts_with("bin/")),
        "{paths:?}"
    );
    sentinel.assert_untouched();
}

/// Writes a bundle at `dir` with one image named `ref_name`, whose layer blob is `layer`
/// (written by `put_layer` at the blob's path).
fn write_bundle(dir: &Path, ref_name: &str, layer: &[u8], put_layer: impl FnOnce(&Path)) {
    write_image_layout(
        dir,
        layer,
        "application/vnd.oci.image.layer.v1.tar",
        &sha256(layer),
        json!({
            "org.opencontainers.image.ref.name": ref_name,
            "io.oci-build.mirror.reference": "registry.invalid/team/app:1",
        }),
        put_layer,
    );
}

/// A bundle whose ref name could act as a path, and one whose layer blob is a symlink to a host
/// file with exactly the blob's digest: `verify` and `mirror` refuse both and copy nothing.
#[test]
fn bundles_with_path_like_ref_names_or_symlinked_blobs_are_refused() {
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    let keep = sentinel.root.join("keep.txt");
    let host_file = fs::read(&keep).unwrap();
    let bundle = p.tmp.path().join("bundle");
    let copy = p.tmp.path().join("copy");
    let blob_file = format!("blobs/sha256/{}", &sha256(&host_file)[7..]);
    let cases: [(&str, bool, &str); 2] = [
        ("../../x", false, "`../../x`"),
        ("team/app:1", true, &blob_file),
    ];
    for (ref_name, symlinked, named) in cases {
        let _ = fs::remove_dir_all(&bundle);
        write_bundle(&bundle, ref_name, &host_file, |path| {
            if symlinked {
                std::os::unix::fs::symlink(&keep, path).unwrap();
            } else {
                fs::write(path, &host_file).unwrap();
            }
        });
        let source = format!("dir:{}", bundle.display());
        let to = format!("dir:{}", copy.display());
        for args in [
            vec!["verify", source.as_str()],
            vec!["mirror", &source, "--to", &to],
        ] {
            let out = p.run(&args);
            refused(&out, named);
            // The destination may be created empty, but holds no image and no blob.
            assert!(
                !copy.join(&blob_file).exists()
                    && fs::read_to_string(copy.join("index.json"))
                        .map_or(true, |i| !i.contains("team/app")),
                "{args:?} copied the image"
            );
            sentinel.assert_untouched();
        }
    }
}
