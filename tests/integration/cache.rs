//! The layer cache: unchanged layers are reused, changed ones rebuilt, broken entries ignored.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::{Project, assert_success, tool};

fn two_layer_project() -> Project {
    let p = Project::new();
    p.write("one/a.txt", "a\n");
    p.write("two/b.txt", "b\n");
    p.recipe(
        "app",
        r#"
platforms = ["linux/amd64"]
[[layer]]
files = [{ src = "one", dest = "/one" }]
[[layer]]
files = [{ src = "two", dest = "/two" }]
"#,
    );
    p
}

#[test]
fn unchanged_layers_come_from_the_cache_and_changed_ones_are_rebuilt() {
    let p = two_layer_project();
    let first = p.build(&["app"]);
    assert_eq!(
        (
            first["layers_built"].as_u64(),
            first["layers_cached"].as_u64()
        ),
        (Some(2), Some(0))
    );
    let second = p.build(&["app"]);
    assert_eq!(
        (
            second["layers_built"].as_u64(),
            second["layers_cached"].as_u64()
        ),
        (Some(0), Some(2))
    );
    assert_eq!(first["digest"], second["digest"]);

    p.write("two/b.txt", "b, changed\n");
    let third = p.build(&["app"]);
    assert_eq!(
        (
            third["layers_built"].as_u64(),
            third["layers_cached"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_ne!(first["digest"], third["digest"]);
    assert_eq!(
        first["manifests"][0]["layers"][0],
        third["manifests"][0]["layers"][0]
    );

    // Another compression is another layer.
    let zstd = p.build(&["app", "--compression", "zstd"]);
    assert_eq!(zstd["layers_built"].as_u64(), Some(2));
}

#[test]
fn a_damaged_cache_blob_is_rebuilt() {
    let p = two_layer_project();
    let first = p.build(&["app", "--output", "oci:first"]);
    let layer = first["manifests"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap();
    let blob = p.cache().join("blobs/sha256").join(&layer[7..]);
    let len = fs::metadata(&blob).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let second = p.build(&["app", "--output", "oci:second"]);
    assert_eq!(second["layers_built"].as_u64(), Some(1));
    assert_eq!(first["digest"], second["digest"]);
    crate::common::validate_image(p.tmp.path(), second["output"].as_str().unwrap());
}

/// A build killed while it writes a layer leaves no blob or record behind that a later build
/// would trust: the next build completes with the right digest.
#[test]
fn a_killed_build_leaves_no_corrupt_cache_entry() {
    let p = Project::new();
    // 48 MiB of poorly compressible bytes keep the build busy long enough to be killed.
    let mut file = fs::File::create(p.path("big.bin")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..48 {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&buf).unwrap();
    }
    drop(file);
    p.recipe("big", "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"big.bin\", dest = \"/big.bin\" }]\n");

    let mut child = p
        .command(&["build", "big", "--output", "oci:killed"])
        .spawn()
        .unwrap();
    let tmp_dir = p.cache().join("tmp");
    let started = Instant::now();
    // Kill as soon as layer bytes are being written into the cache.
    loop {
        let writing = fs::read_dir(&tmp_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
            })
            .unwrap_or(false);
        if writing || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the build finished before it could be killed"
    );

    // Whatever is in blobs/ is complete: each file hashes to its name.
    for entry in fs::read_dir(p.cache().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let sum = tool("sha256sum", &[entry.path().to_str().unwrap()]);
        assert!(sum.starts_with(&name), "cache blob {name} is not complete");
    }
    assert!(!p.tmp.path().join("killed/index.json").exists());

    let out = p.run(&["build", "--json", "big", "--output", "oci:after"]);
    assert_success(&out, "build after a killed build");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["layers_built"].as_u64(), Some(1));
    crate::common::validate_image(p.tmp.path(), report[0]["output"].as_str().unwrap());
}
