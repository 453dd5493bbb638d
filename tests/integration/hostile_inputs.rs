//! Hostile inputs that name files: an index's hashes, an inputs directory's file names, a
//! cache whose blobs were swapped. Each is refused in one sentence naming the input, and a
//! sentinel tree beside the cache and the output is left as it was.

use std::fs;

use serde_json::json;
use sha2::Digest as _;

use crate::common::{Sentinel, refused};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::offline::{build_and_fetch, offline_build, online_world};
use crate::fixtures::pypi::{Index, dist, project};

/// An index whose hash is a path: `#sha256=../../sentinel/escape` (relative to the cache's
/// metadata bucket) or an absolute path into the sentinel. Before the fix, the metadata file
/// was written there (or, where it existed, read from there).
#[test]
fn an_index_hash_is_never_a_path() {
    for (page, hash) in [
        ("json", "../../sentinel/escape"),
        ("json", "/SENTINEL/keep.txt"),
        ("html", "../../sentinel/escape"),
        ("html", "/SENTINEL/sub/keep.txt"),
    ] {
        let mut index = Index::new();
        let p = project(&index, "[\"linux/amd64\"]", &["packages = [\"demo\"]"]);
        let sentinel = Sentinel::plant(p.tmp.path());
        let hash = hash.replace("/SENTINEL", &sentinel.root.display().to_string());
        let filename = "demo-1.0-py3-none-any.whl";
        match page {
            "json" => index.add(
                "demo",
                json!({
                    "filename": filename,
                    "url": format!("../../files/{filename}"),
                    "hashes": { "sha256": hash },
                    "core-metadata": true,
                }),
            ),
            _ => index.html_page(
                "demo",
                &format!(
                    "<html><body><a href=\"../../files/{filename}#sha256={hash}\" data-dist-info-metadata=\"true\">{filename}</a></body></html>"
                ),
            ),
        }
        fs::write(
            index_root_file(&index, &format!("{filename}.metadata")),
            "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        )
        .unwrap();
        let out = p.run(&["build", "app", "--output", "oci:out"]);
        let error = refused(&out, filename);
        assert!(error.contains("not a SHA256"), "{page} {hash}: {error}");
        sentinel.assert_untouched();
        assert!(!p.tmp.path().join("out").exists());
    }
}

fn index_root_file(index: &Index, name: &str) -> std::path::PathBuf {
    index.files_dir().join(name)
}

/// An inputs directory whose `pip-built` entry names a file by a path that climbs out of the
/// cache, or an absolute one: before the fix `build --offline` wrote the built wheel there and
/// `verify` passed. Both commands now refuse the directory, naming the file.
#[test]
fn an_inputs_directory_names_no_path() {
    let (online, p) = online_world();
    let (_, inputs) = build_and_fetch(&p);
    drop(online);
    let sentinel = Sentinel::plant(p.tmp.path());
    let original = fs::read(inputs.join("inputs.json")).unwrap();
    let dir_arg = format!("dir:{}", inputs.display());
    for filename in [
        "../../../sentinel/keep.txt".to_owned(),
        sentinel.root.join("sub/keep.txt").display().to_string(),
        "srconly-0.3-py3-none-any.whl\nerror: forged".to_owned(),
    ] {
        let mut listed: serde_json::Value = serde_json::from_slice(&original).unwrap();
        for input in listed["inputs"].as_array_mut().unwrap() {
            if input["kind"] == "pip-built" {
                input["filename"] = filename.clone().into();
            }
        }
        fs::write(inputs.join("inputs.json"), listed.to_string()).unwrap();
        let _ = fs::remove_dir_all(p.cache());

        let error = refused(&p.run(&["verify", &dir_arg]), "inputs.json");
        assert!(error.contains("filename"), "{error}");
        let error = refused(&offline_build(&p, &dir_arg, "oci:off"), "inputs.json");
        assert!(
            error.contains("srconly") && error.contains("filename"),
            "{error}"
        );
        sentinel.assert_untouched();
        assert!(!p.tmp.path().join("off").exists());
    }
}

/// A `.deb` swapped in the cache for other bytes of the same size after it was verified (by a
/// user, a disk or another program): the next extraction checks it in the same read and
/// refuses it, naming the cached file, instead of putting its files in a layer.
#[test]
fn a_swapped_cache_blob_is_refused_where_it_is_read() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("hello", "1.0"));
    repo.publish();
    let p = crate::common::Project::new();
    repo.trust(&p);
    p.recipe("app", &repo.recipe(&["packages = [\"hello\"]"]));
    crate::common::assert_success(&p.run(&["build", "app", "--output", "oci:first"]), "build");

    let deb = fs::read(repo.root().join(Repo::pool_name("hello", "1.0", "amd64"))).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&deb));
    let cached = p.cache().join("blobs/sha256").join(&digest);
    let mut swapped = fs::read(&cached).unwrap();
    let last = swapped.len() - 1;
    swapped[last] ^= 0x20;
    fs::write(&cached, &swapped).unwrap();
    // The layer and the extracted package are built again from the blob.
    fs::remove_dir_all(p.cache().join("layers-v1")).unwrap();
    fs::remove_dir_all(p.cache().join("debs-v2")).unwrap();
    let sentinel = Sentinel::plant(p.tmp.path());

    let error = refused(
        &p.run(&["build", "app", "--output", "oci:second"]),
        &cached.display().to_string(),
    );
    assert!(error.contains("changed in the cache"), "{error}");
    assert!(!p.tmp.path().join("second").exists());
    sentinel.assert_untouched();
}

/// A layer blob changed in the cache is caught while it is copied into an archive: the build
/// fails naming the blob instead of writing an archive whose layer does not match its digest.
#[test]
fn a_changed_layer_blob_is_refused_while_copied() {
    let p = crate::common::Project::new();
    p.write("files/hello.txt", "hello\n");
    p.recipe(
        "app",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/hello.txt\" }]\n",
    );
    let report = p.build(&["app", "--output", "oci:first"]);
    let layer = report["manifests"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let cached = p.cache().join("blobs/sha256").join(&layer);
    let mut bytes = fs::read(&cached).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&cached, &bytes).unwrap();

    let error = refused(
        &p.run(&["build", "app", "--output", "oci-archive:app.tar"]),
        &cached.display().to_string(),
    );
    assert!(error.contains("hashes to"), "{error}");
    assert!(!p.tmp.path().join("app.tar").exists());
}

/// A lock entry whose name is a path or holds a control character: the name became the path
/// of its `.dist-info` directory, and the build panicked (exit code 101) making it. Now the
/// build refuses the entry in one sentence naming the lock file, and writes nothing.
#[test]
fn a_lock_entry_with_a_hostile_name_is_refused() {
    for hostile in ["../../x", "demo\\u0001", "demo/../../../x", ".."] {
        let mut index = Index::new();
        index.publish(&dist("demo", "1.0"));
        let p = project(&index, "[\"linux/amd64\"]", &["packages = [\"demo\"]"]);
        let out = p.run(&["lock", "app"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        let lock_path = p.path("recipes/recipes.lock");
        let lock = fs::read_to_string(&lock_path).unwrap();
        assert!(lock.contains("name = \"demo\""), "{lock}");
        fs::write(
            &lock_path,
            lock.replace("name = \"demo\"", &format!("name = \"{hostile}\"")),
        )
        .unwrap();
        let sentinel = Sentinel::plant(p.tmp.path());
        let out = p.run(&["build", "app", "--locked", "--output", "oci:out"]);
        let error = refused(&out, "recipes/recipes.lock");
        let shown = hostile.replace("\\u0001", "\\u{1}");
        assert!(error.contains(&format!("`{shown}`")), "{hostile}: {error}");
        assert!(
            !error.contains('\u{1}'),
            "a control character reached the terminal"
        );
        sentinel.assert_untouched();
        assert!(!p.tmp.path().join("out").exists());
        assert!(!p.tmp.path().join("x").exists());
    }
}

/// Recipe values that become the Python target: a venv outside the image's tree and a
/// version with a sign in it (`parse::<u32>` takes `+11`; PEP 440 does not). Both panicked in
/// the middle of a build (exit code 101); now each is refused in one sentence naming it.
#[test]
fn a_venv_or_python_that_is_no_path_or_version_is_refused() {
    for (value, named) in [
        ("venv = \"../../venv\"", "../../venv"),
        ("venv = \"/opt/v\\u0000\"", "/opt/v\\0"),
        ("python = \"3.+11\"", "3.+11"),
    ] {
        let mut index = Index::new();
        index.publish(&dist("demo", "1.0"));
        let layer = format!("packages = [\"demo\"], {value}");
        let p = project(&index, "[\"linux/amd64\"]", &[&layer]);
        let out = p.run(&["build", "app", "--output", "oci:out"]);
        let error = refused(&out, named);
        assert!(error.contains("app"), "{value}: {error}");
        assert!(!p.tmp.path().join("out").exists());
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
