//! A rebuild with everything cached reads small records, not layers or packages: the facts of
//! each layer (what layers on top read of it, what the SBOM lists) are kept in the cache by
//! diff_id, and a pinned package layer is found under its locked key before its tree is
//! listed. A damaged record is read again from its layer, never trusted.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{Project, blobs, layer_paths};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::pypi::{Index, STATUS, dist};

/// The hermetic shape of mlrun: a base with a dpkg status, a Debian layer, a pip layer and the
/// application's files, with the servers that serve its packages.
struct App {
    project: Project,
    repo: Repo,
    index: Index,
}

fn app() -> App {
    let mut repo = Repo::new();
    repo.add(Pkg::new("hello", "1.0").file("/usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755));
    repo.publish();
    let mut index = Index::new();
    index.publish(&dist("tiny", "1.0"));
    let project = Project::new();
    repo.trust(&project);
    project.write("fixtures/status", STATUS);
    project.write("app/main.py", "print('hello')\n");
    project.recipe(
        "base",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }]\n",
    );
    project.recipe(
        "app",
        &format!(
            "from = \"base\"\n{}[[layer]]\npip = {{ index_url = \"{}\", packages = [\"tiny==1.0\"] }}\n[[layer]]\nfiles = [{{ src = \"app\", dest = \"/app/main.py\" }}]\n",
            repo.layer("packages = [\"hello\"]"),
            index.url()
        ),
    );
    App {
        project,
        repo,
        index,
    }
}

/// Asserts that two layouts hold the same documents (manifests, configs, SBOMs, provenance),
/// naming the first that differs; layer blobs are left out.
fn assert_same_documents(first: &Path, second: &Path, layers: &[PathBuf]) {
    let documents = |layout: &Path| {
        let mut all = blobs(layout);
        for layer in layers {
            all.remove(layer.file_name().unwrap().to_str().unwrap());
        }
        all
    };
    let (first, second) = (documents(first), documents(second));
    for (name, bytes) in &first {
        if second.get(name) != Some(bytes) {
            let text = String::from_utf8_lossy(bytes);
            let others: Vec<_> = second
                .iter()
                .filter(|(other, _)| !first.contains_key(*other))
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .collect();
            panic!("{name} is not in the second layout:\n{text}\nits new documents:\n{others:#?}");
        }
    }
    assert_eq!(first.len(), second.len());
}

/// The files of a cache bucket.
fn records(cache: &Path, bucket: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(cache.join(bucket))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The second build of an unchanged project needs nothing but the cache's records and the
/// layer blobs it links into the output: with the archive and the index gone, every package
/// and extracted package removed from the cache, and every layer blob overwritten with other
/// bytes of its size (so that reading one, to scan it or hash it, would fail), it builds the
/// same image with the same SBOM.
#[test]
fn a_rebuild_reads_no_layer_and_lists_no_package() {
    let App {
        project: p,
        repo,
        index,
    } = app();
    // The first build writes the lock; the ones compared are built from it (the provenance
    // names the lock file).
    let locking = p.build(&["app"]);
    assert_eq!(locking["layers_built"], 4, "{locking:#}");
    let first = p.build(&["app", "--locked", "--output", "oci:first"]);
    let cache = p.cache();
    // The records of every layer are there after the first build.
    assert_eq!(records(&cache, "layer-scans-v1").len(), 4);
    assert_eq!(records(&cache, "layer-packages-v1").len(), 4);

    drop(repo);
    drop(index);
    let layers = layer_paths(&cache, &first);
    for entry in fs::read_dir(cache.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        if !layers.contains(&path) {
            fs::remove_file(&path).unwrap();
        }
    }
    for bucket in ["debs-v2", "wheels-v1", "pip-metadata-v1"] {
        let _ = fs::remove_dir_all(cache.join(bucket));
    }
    for layer in &layers {
        let len = fs::metadata(layer).unwrap().len();
        fs::write(layer, vec![0x5a; len as usize]).unwrap();
    }

    let second = p.build(&["app", "--locked", "--output", "oci:second"]);
    assert_eq!(
        (&second["layers_built"], &second["layers_cached"]),
        (&Value::from(0), &Value::from(4)),
        "{second:#}"
    );
    assert_eq!(first["digest"], second["digest"]);
    assert_same_documents(
        &p.tmp.path().join("first"),
        &p.tmp.path().join("second"),
        &layers,
    );
}

/// A facts record is outside input: one cut short, one of another layer (its diff_id is not
/// the key), one whose scan names a path with `..`, and one that is not JSON are each passed
/// over, the layer is read again, and the build is the one a clean cache gives.
#[test]
fn damaged_facts_records_are_read_again_from_their_layers() {
    let App {
        project: p,
        repo: _repo,
        index: _index,
    } = app();
    // The first build writes the lock; the ones compared are built from it (the provenance
    // names the lock file).
    let locking = p.build(&["app"]);
    assert_eq!(locking["layers_built"], 4, "{locking:#}");
    let first = p.build(&["app", "--locked", "--output", "oci:first"]);
    let cache = p.cache();
    let config = &first["manifests"][0]["config"]["digest"].as_str().unwrap()[7..];
    let config: Value = serde_json::from_slice(
        &fs::read(p.tmp.path().join("first/blobs/sha256").join(config)).unwrap(),
    )
    .unwrap();
    let record = |bucket: &str, layer: usize| {
        let diff_id = config["rootfs"]["diff_ids"][layer].as_str().unwrap();
        cache.join(bucket).join(&diff_id[7..])
    };
    // Layers 0 to 2 are below another, whose build reads their scans; nothing reads the top
    // layer's. The SBOM reads every layer's packages.
    let scans: Vec<PathBuf> = (0..3).map(|l| record("layer-scans-v1", l)).collect();
    let packages: Vec<PathBuf> = (0..4).map(|l| record("layer-packages-v1", l)).collect();

    let full = fs::read(&scans[0]).unwrap();
    fs::write(&scans[0], &full[..full.len() / 2]).unwrap();
    fs::write(&scans[1], &full).unwrap();
    let climbing = String::from_utf8(fs::read(&scans[2]).unwrap())
        .unwrap()
        .replacen(
            "\"symlinks\":[",
            "\"symlinks\":[[\"usr/../../x\",\"/\"],",
            1,
        );
    assert!(climbing.contains("usr/../../x"));
    fs::write(&scans[2], climbing).unwrap();
    fs::copy(&packages[1], &packages[0]).unwrap();
    fs::write(&packages[2], "not json").unwrap();

    let second = p.build(&["app", "--locked", "--output", "oci:second"]);
    assert_eq!(second["layers_built"], 0, "{second:#}");
    assert_eq!(first["digest"], second["digest"]);
    assert_same_documents(
        &p.tmp.path().join("first"),
        &p.tmp.path().join("second"),
        &[],
    );
    // Each layer read again is recorded again, under its own diff_id.
    for record in scans.iter().chain(&packages) {
        let text = fs::read_to_string(record).unwrap();
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
        let hex = record.file_name().unwrap().to_str().unwrap();
        assert_eq!(json["diff_id"], format!("sha256:{hex}"));
        assert!(!text.contains("usr/../../x"));
    }
}

/// A rebuild that finds every layer asks the archive and the index nothing, even with the
/// downloaded packages gone from the cache: the prefetch of a cold build waits until a layer
/// is really built from its packages, and here none is.
#[test]
fn a_rebuild_that_finds_every_layer_downloads_nothing() {
    let App {
        project: p,
        repo,
        index,
    } = app();
    p.build(&["app"]);
    let cache = p.cache();
    for bucket in ["debs-v2", "wheels-v1", "pip-metadata-v1"] {
        let _ = fs::remove_dir_all(cache.join(bucket));
    }
    let (archive_before, index_before) = (repo.requests().len(), index.server.requests().len());

    // The debug log says when a prefetch starts; how far it gets before a fast build ends is
    // a race, so the log is what shows that it never started.
    let again = p
        .command(&["build", "--locked", "app"])
        .env("OCI_BUILD_LOG", "oci_build=debug")
        .output()
        .unwrap();
    crate::common::assert_success(&again, "the rebuild");
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("layer blob ready"), "no debug log: {log}");
    assert!(!log.contains("prefetching"), "{log}");
    assert_eq!(
        repo.requests()[archive_before..],
        [] as [String; 0],
        "the archive was asked"
    );
    assert_eq!(
        index.server.requests()[index_before..],
        [] as [String; 0],
        "the index was asked"
    );
    // A build with a layer to make still prefetches: the packages come back.
    p.write("app/main.py", "print('changed')\n");
    let changed = p.build(&["app", "--locked"]);
    assert_eq!(changed["layers_built"], 1, "{changed:#}");
}
