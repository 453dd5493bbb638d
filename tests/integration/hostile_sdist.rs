//! Hostile source distributions: an sdist's build backend is code from outside. Under
//! `--only-binary` (requirements files) or `only_binary` (the recipe) an sdist is never
//! fetched or built, not even when a lock file pins it; where one is built, its backend runs
//! with no network and only its own temporary directory writable (bubblewrap, which `.ci/run`
//! installs). Each refusal is exit code 1 and one sentence naming the package, with the
//! sentinel tree outside the cache and output unchanged.

use std::net::TcpListener;

use crate::common::{Project, Sentinel, assert_success, refused};
use crate::fixtures::pypi::{Index, dist, locked, project, sdist_running};
use crate::fixtures::sha256_hex;

/// Backend code that leaves a marker in the sentinel tree when a hook imports it.
fn marking(sentinel: &Sentinel) -> String {
    format!(
        "with open({:?}, \"w\") as marker:\n    marker.write(\"built\\n\")\n",
        sentinel.root.join("built-marker").display().to_string()
    )
}

/// Publishes `srconly` 0.3 as an sdist only, whose backend marks the sentinel when it runs.
fn sdist_only_index(sentinel: &Sentinel) -> (Index, Vec<u8>) {
    let mut index = Index::new();
    let bytes = sdist_running("py3-none-any", &marking(sentinel));
    index.publish_raw("srconly", "srconly-0.3.tar.gz", &bytes);
    (index, bytes)
}

/// `oci-build --quiet build app` into a layout under the project's temp dir, and that layout.
fn build(project: &Project, extra: &[&str]) -> (std::process::Output, std::path::PathBuf) {
    let layout = project.tmp.path().join("out");
    let output = format!("oci:{}", layout.display());
    let mut args = vec!["--quiet", "build", "app", "--output", &output];
    args.extend_from_slice(extra);
    (project.run(&args), layout)
}

/// No build ran: the sdist was never even downloaded, and nothing marked the sentinel.
fn assert_not_built(index: &Index, sentinel: &Sentinel) {
    let requests = index.requests();
    assert!(
        !requests.iter().any(|r| r.ends_with(".tar.gz")),
        "the sdist was fetched: {requests:?}"
    );
    assert!(!sentinel.root.join("built-marker").exists());
    sentinel.assert_untouched();
}

#[test]
fn only_binary_in_a_requirements_file_never_builds_an_sdist() {
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = Sentinel::plant(tmp.path());
    let (index, _) = sdist_only_index(&sentinel);
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["requirements = \"requirements.txt\""],
    );
    project.write("requirements.txt", "--only-binary :all:\nsrconly\n");
    let (out, layout) = build(&project, &[]);
    let line = refused(&out, "srconly");
    assert!(line.contains("only binaries are allowed"), "{line}");
    assert!(
        line.ends_with(
            "(the layer asks for srconly, but no version of srconly is available for the image)"
        ),
        "{line}"
    );
    assert!(!layout.exists(), "a refused build wrote its output");
    assert_not_built(&index, &sentinel);
}

#[test]
fn only_binary_in_the_recipe_takes_a_wheel_and_refuses_a_locked_sdist() {
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = Sentinel::plant(tmp.path());
    let (mut index, sdist) = sdist_only_index(&sentinel);
    // Names are normalised, as pip's are.
    let layer = "packages = [\"srconly\"], only_binary = [\"SrcOnly\"]";
    let project = project(&index, "[\"linux/amd64\"]", &[layer]);
    let (out, layout) = build(&project, &[]);
    let line = refused(&out, "srconly");
    assert!(line.contains("only binaries are allowed"), "{line}");
    assert!(!layout.exists(), "a refused build wrote its output");
    assert_not_built(&index, &sentinel);

    // An older release with a wheel fits: it is taken instead of building the newest.
    let wheel = index.publish(&dist("srconly", "0.2"));
    assert_success(&project.run(&["lock", "app"]), "oci-build lock app");
    assert_eq!(
        locked(&project, 1)["srconly"],
        ("0.2".to_owned(), wheel.clone())
    );

    // A lock file edited to pin the sdist again is no way around the rule.
    let lock_path = project.path("recipes/recipes.lock");
    let mut lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    for package in lock["pip"][0]["packages"].as_array_mut().unwrap() {
        if package["name"].as_str() == Some("srconly") {
            package["version"] = "0.3".into();
            package["filename"] = "srconly-0.3.tar.gz".into();
            package["sha256"] = sha256_hex(&sdist).into();
        }
    }
    std::fs::write(&lock_path, toml::to_string(&lock).unwrap()).unwrap();
    let (out, layout) = build(&project, &["--locked"]);
    let line = refused(&out, "srconly");
    assert!(
        line.contains("srconly-0.3.tar.gz") && line.contains("only binaries are allowed"),
        "{line}"
    );
    assert!(!layout.exists(), "a refused build wrote its output");
    assert_not_built(&index, &sentinel);
}

#[test]
fn no_binary_builds_the_sdist_although_a_wheel_exists() {
    let mut index = Index::new();
    index.publish(&dist("srconly", "0.3"));
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_running("py3-none-any", ""),
    );
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["requirements = \"requirements.txt\""],
    );
    project.write("requirements.txt", "--no-binary=srconly\nsrconly\n");
    assert_success(&project.run(&["lock", "app"]), "oci-build lock app");
    assert_eq!(
        locked(&project, 1)["srconly"],
        ("0.3".to_owned(), "srconly-0.3.tar.gz".to_owned())
    );
}

/// Whether bubblewrap can make a sandbox here; `.ci/run` installs it, and root can use it.
fn bwrap_works() -> bool {
    std::process::Command::new("bwrap")
        .args(["--unshare-net", "--ro-bind", "/", "/", "true"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn a_build_backend_cannot_write_outside_its_build_or_reach_the_network() {
    if !bwrap_works() {
        eprintln!("SKIPPED: bubblewrap (`bwrap`) cannot make a sandbox on this machine");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = Sentinel::plant(tmp.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut index = Index::new();
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"srconly\"]"]);
    // Every attempt is made; the backend fails, naming each one that was stopped.
    let escape = format!(
        r#"
import socket
_blocked = []
for _path in ({sentinel:?}, {cache:?}):
    try:
        with open(_path, "w") as _f:
            _f.write("escaped\n")
    except OSError as e:
        _blocked.append(f"write: {{e}}")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
except OSError as e:
    _blocked.append(f"connect: {{e}}")
if _blocked:
    raise SystemExit("blocked: " + "; ".join(_blocked))
"#,
        sentinel = sentinel.root.join("escaped.txt").display().to_string(),
        cache = project.cache().join("escaped.txt").display().to_string(),
    );
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_running("py3-none-any", &escape),
    );
    let (out, layout) = build(&project, &[]);
    let line = refused(&out, "srconly-0.3.tar.gz");
    assert!(line.contains("blocked"), "{line}");
    assert!(!layout.exists(), "a refused build wrote its output");
    sentinel.assert_untouched();
    assert!(!project.cache().join("escaped.txt").exists());
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the build backend reached a listener on 127.0.0.1: {other:?}"),
    }
}
