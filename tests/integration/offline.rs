//! Air-gapped builds, hermetic: a base image in a real registry on 127.0.0.1
//! (`fixtures::registry`), a `debian` layer from a signed test archive (`debian_repo`) and a
//! `pip` layer from a test PEP 691 index with a wheel and an sdist (`pip_index`).
//!
//! The target is built online (which writes the lock), its inputs are fetched into `dir:`, every
//! server is stopped and the cache emptied, and the offline build from the directory must give
//! the same image digest. A deleted input is named in one sentence, `verify` checks the
//! directory, and a layer the lock does not pin is refused offline.

use std::fs;

use crate::common::{assert_success, one_line_error, refused};
use crate::fixtures::offline::{build_and_fetch, offline_build, online_world};
use crate::fixtures::pypi::edit_pin;

fn inputs_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("inputs.json")).unwrap()).unwrap()
}

#[test]
fn an_offline_build_from_fetched_inputs_equals_the_online_build() {
    let (online, project) = online_world();
    let (digest, inputs) = build_and_fetch(&project);
    let dir_arg = format!("dir:{}", inputs.display());

    // Every kind of input is listed, the sdist with the wheel built from it.
    let listed = inputs_json(&inputs);
    let kinds: Vec<&str> = listed["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    for kind in ["deb", "pip", "pip-built", "image"] {
        assert!(kinds.contains(&kind), "no {kind} input: {listed:#}");
    }
    let verified = project.run(&["verify", &dir_arg]);
    assert_success(&verified, "oci-build verify");

    // The far side: no server, an empty cache.
    drop(online);
    fs::remove_dir_all(project.cache()).unwrap();
    let offline = project.build(&[
        "app",
        "--offline",
        "--inputs",
        &dir_arg,
        "--output",
        "oci:offline",
    ]);
    assert_eq!(offline["digest"].as_str().unwrap(), digest);
    assert_eq!(offline["layers_built"], 2);

    // The cache now holds everything: --offline alone builds the same image again.
    let again = project.build(&["app", "--offline", "--output", "oci:again"]);
    assert_eq!(again["digest"].as_str().unwrap(), digest);

    // A layer the lock does not pin cannot be resolved offline.
    fs::remove_file(project.path("recipes/recipes.lock")).unwrap();
    let error = one_line_error(&project.run(&["build", "app", "--offline", "--inputs", &dir_arg]));
    assert!(
        error.contains("app (")
            && error.contains("layer 1 (debian hello)")
            && error.contains("not pinned")
            && error.contains("oci-build lock"),
        "{error}"
    );
}

#[test]
fn a_missing_or_damaged_input_is_named() {
    let (online, project) = online_world();
    let (_, inputs) = build_and_fetch(&project);
    let dir_arg = format!("dir:{}", inputs.display());
    drop(online);
    fs::remove_dir_all(project.cache()).unwrap();

    let listed = inputs_json(&inputs);
    let sha_of = |kind: &str| -> String {
        listed["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == kind)
            .unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let deb = inputs.join("blobs/sha256").join(sha_of("deb"));
    let deb_bytes = fs::read(&deb).unwrap();
    fs::remove_file(&deb).unwrap();
    let error = one_line_error(&offline_build(&project, &dir_arg, "oci:offline"));
    assert!(
        error.contains("app (")
            && error.contains("layer 1 (debian hello)")
            && error.contains("Debian package hello 1.0 (pool/main/hello_1.0_amd64.deb")
            && error.contains(&format!("is not in {dir_arg}")),
        "{error}"
    );
    assert!(!project.tmp.path().join("offline").exists());
    let error = one_line_error(&project.run(&["verify", &dir_arg]));
    assert!(
        error.contains("Debian package hello 1.0") && error.contains("is missing"),
        "{error}"
    );

    // Back in place, one flipped byte in the built wheel is caught by verify and by the build.
    fs::write(&deb, deb_bytes).unwrap();
    assert_success(&project.run(&["verify", &dir_arg]), "oci-build verify");
    let wheel = inputs.join("blobs/sha256").join(sha_of("pip-built"));
    let mut bytes = fs::read(&wheel).unwrap();
    bytes[10] ^= 1;
    fs::write(&wheel, bytes).unwrap();
    let error = one_line_error(&project.run(&["verify", &dir_arg]));
    assert!(
        error.contains(&format!(
            "blobs/sha256/{}",
            wheel.file_name().unwrap().to_string_lossy()
        )) && error.contains("corrupt"),
        "{error}"
    );
    let error = one_line_error(&project.run(&["build", "app", "--offline", "--inputs", &dir_arg]));
    assert!(
        error.contains("layer 2 (pip tiny srconly)")
            && error.contains("the wheel built from the sdist of srconly 0.3")
            && error.contains("does not match its SHA256"),
        "{error}"
    );
}

/// The wheel built online and carried in the inputs is held to the hash the lock pins: an
/// offline build under a lock that pins other bytes is refused, naming the package.
#[test]
fn an_offline_build_holds_the_carried_built_wheel_to_the_lock() {
    let (online, project) = online_world();
    let (_, inputs) = build_and_fetch(&project);
    let dir_arg = format!("dir:{}", inputs.display());
    drop(online);
    fs::remove_dir_all(project.cache()).unwrap();
    let other = "1".repeat(64);
    edit_pin(&project, "srconly", |pin| {
        assert!(
            pin.contains_key("built_sha256"),
            "the online build pinned it"
        );
        pin.insert("built_sha256".to_owned(), other.clone().into());
    });
    let error = refused(
        &offline_build(&project, &dir_arg, "oci:offline"),
        "the wheel built from the sdist of srconly 0.3",
    );
    assert!(error.contains(&format!("pins sha256 {other}")), "{error}");
    assert!(!project.tmp.path().join("offline").exists());
}
