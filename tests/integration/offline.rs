//! Air-gapped builds, hermetic: a base image in a real registry on 127.0.0.1
//! (`fixtures::registry`), a `debian` layer from a signed test archive (`debian_repo`) and a
//! `pip` layer from a test PEP 691 index with a wheel and an sdist (`pip_index`).
//!
//! The target is built online (which writes the lock), its inputs are fetched into `dir:`, every
//! server is stopped and the cache emptied, and the offline build from the directory must give
//! the same image digest. A deleted input is named in one sentence, `verify` checks the
//! directory, and a layer the lock does not pin is refused offline.

use std::fs;
use std::path::PathBuf;

use crate::common::{Project, assert_success};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::pypi::{Index, STATUS, dist, sdist_bytes};
use crate::fixtures::registry::{Auth, Registry};

/// The servers of the online side; dropping them stops them all.
pub(crate) struct Online {
    _registry: Registry,
    _repo: Repo,
    _index: Index,
}

/// Pushes a base (a dpkg status saying Debian's Python 3.11 and glibc are installed) to a
/// registry, publishes a package and two Python distributions, and writes the `app` recipe on
/// top of them.
pub(crate) fn online_world() -> (Online, Project) {
    let registry = Registry::start(Auth::None);
    let base = Project::new();
    base.write("fixtures/status", STATUS);
    base.recipe(
        "base",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }]\n",
    );
    base.build(&[
        "base",
        "--output",
        &format!("docker://{}", registry.image("test/base:1")),
    ]);

    let mut repo = Repo::new();
    repo.add(Pkg::new("hello", "1.0"));
    repo.publish();

    let mut index = Index::new();
    index.publish(&dist("tiny", "1.0"));
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_bytes("py3-none-any"),
    );

    let project = Project::new();
    repo.trust(&project);
    project.recipe(
        "app",
        &format!(
            "image = \"test/app:1\"\nfrom = \"docker://{}\"\nplatforms = [\"linux/amd64\"]\n{}[[layer]]\npip = {{ index_url = \"{}\", packages = [\"tiny\", \"srconly\"] }}\n",
            registry.image("test/base:1"),
            repo.layer("packages = [\"hello\"]"),
            index.url()
        ),
    );
    (
        Online {
            _registry: registry,
            _repo: repo,
            _index: index,
        },
        project,
    )
}

/// Builds `app` online into `oci:online` and fetches its inputs into `dir:inputs`; returns the
/// image digest and the directory.
pub(crate) fn build_and_fetch(project: &Project) -> (String, PathBuf) {
    let online = project.build(&["app", "--output", "oci:online"]);
    let inputs = project.tmp.path().join("inputs");
    let out = project.run(&["fetch", "app", "--to", &format!("dir:{}", inputs.display())]);
    assert_success(&out, "oci-build fetch");
    (online["digest"].as_str().unwrap().to_owned(), inputs)
}

fn error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "the command should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    errors[0].to_owned()
}

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
    let error = error_line(&project.run(&["build", "app", "--offline", "--inputs", &dir_arg]));
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
    let error = error_line(&project.run(&[
        "build",
        "app",
        "--offline",
        "--inputs",
        &dir_arg,
        "--output",
        "oci:offline",
    ]));
    assert!(
        error.contains("app (")
            && error.contains("layer 1 (debian hello)")
            && error.contains("Debian package hello 1.0 (pool/main/hello_1.0_amd64.deb")
            && error.contains(&format!("is not in {dir_arg}")),
        "{error}"
    );
    assert!(!project.tmp.path().join("offline").exists());
    let error = error_line(&project.run(&["verify", &dir_arg]));
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
    let error = error_line(&project.run(&["verify", &dir_arg]));
    assert!(
        error.contains(&format!(
            "blobs/sha256/{}",
            wheel.file_name().unwrap().to_string_lossy()
        )) && error.contains("corrupt"),
        "{error}"
    );
    let error = error_line(&project.run(&["build", "app", "--offline", "--inputs", &dir_arg]));
    assert!(
        error.contains("layer 2 (pip tiny srconly)")
            && error.contains("the wheel built from the sdist of srconly 0.3")
            && error.contains("does not match its SHA256"),
        "{error}"
    );
}
