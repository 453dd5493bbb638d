//! Hostile inputs that name files: an index's hashes, an inputs directory's file names, a
//! cache whose blobs were swapped. Each is refused in one sentence naming the input, and a
//! sentinel tree beside the cache and the output is left as it was.

use std::fs;

use serde_json::json;

use crate::common::{Sentinel, refused};
use crate::offline::{build_and_fetch, online_world};
use crate::pip_index::{Index, project};

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
        let error = refused(
            &p.run(&[
                "build",
                "app",
                "--offline",
                "--inputs",
                &dir_arg,
                "--output",
                "oci:off",
            ]),
            "inputs.json",
        );
        assert!(
            error.contains("srconly") && error.contains("filename"),
            "{error}"
        );
        sentinel.assert_untouched();
        assert!(!p.tmp.path().join("off").exists());
    }
}
