//! A layer cache in a registry shared by CI runners (`build --cache-from`, `--cache-to`),
//! hermetic: one docker-registry behind the fault proxy (which logs every request), a signed
//! test apt archive and a test PEP 691 index. Each "runner" starts from an empty cache
//! directory; they share only the project (with its lock) and the registry.

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::common::{Project, assert_success, json_of, tool};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::pypi::{Index, STATUS, dist};
use crate::fixtures::registry::{Auth, FaultProxy, Registry};

/// The servers and the project: `app` is the hermetic shape of mlrun (a base, a Debian layer,
/// a pip layer, the application's files), pushed to the registry.
struct World {
    registry: Registry,
    proxy: FaultProxy,
    repo: Repo,
    index: Index,
    project: Project,
}

fn app_recipe(world_index: &Index, repo: &Repo, image: &str, tiny: &str) -> String {
    format!(
        "image = \"{image}\"\nfrom = \"base\"\nplatforms = [\"linux/amd64\"]\n{}[[layer]]\npip = {{ index_url = \"{}\", packages = [\"tiny=={tiny}\"] }}\n[[layer]]\nfiles = [{{ src = \"app\", dest = \"/app\" }}]\n",
        repo.layer("packages = [\"hello\"]"),
        world_index.url()
    )
}

fn world() -> World {
    let registry = Registry::start(Auth::None);
    let proxy = FaultProxy::start(&registry.url(), Vec::new());
    let mut repo = Repo::new();
    repo.add(Pkg::new("hello", "1.0").file("/usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755));
    repo.publish();
    let mut index = Index::new();
    index.publish(&dist("tiny", "1.0"));
    index.publish(&dist("tiny", "1.1"));
    let project = Project::new();
    repo.trust(&project);
    project.write("fixtures/status", STATUS);
    project.write("app/main.py", "print('hello')\n");
    project.recipe(
        "base",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }]\n",
    );
    let image = proxy.image("test/app:1");
    project.recipe("app", &app_recipe(&index, &repo, &image, "1.0"));
    World {
        registry,
        proxy,
        repo,
        index,
        project,
    }
}

impl World {
    fn cache_repo(&self) -> String {
        self.proxy.image("ci/oci-build-cache")
    }

    /// `build --json app ARGS` on a runner of its own: `--cache-dir` is `runner`'s, empty at
    /// first.
    fn runner(&self, runner: &str, args: &[&str]) -> Output {
        let cache = self.project.tmp.path().join(format!("runner-{runner}"));
        let mut all = vec![
            "--cache-dir",
            cache.to_str().unwrap(),
            "build",
            "--json",
            "app",
        ];
        all.extend_from_slice(args);
        let mut command = std::process::Command::new(crate::common::bin_path());
        command
            .arg("-C")
            .arg(self.project.dir())
            .args(&all)
            .env_remove("SOURCE_DATE_EPOCH")
            .env("OCI_BUILD_LOG", "oci_build=debug")
            .current_dir(self.project.tmp.path());
        command.output().unwrap()
    }

    fn build(&self, runner: &str, args: &[&str]) -> Value {
        let out = self.runner(runner, args);
        json_of(&out, &format!("runner {runner}"))[0].clone()
    }

    /// The path of a blob's bytes in the registry's storage.
    fn stored_blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.registry
            .storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

fn layer_digests(report: &Value) -> Vec<String> {
    report["manifests"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Requests the proxy logged since `from` that GET one of `digests`' blobs.
fn blob_downloads(proxy: &FaultProxy, from: usize, digests: &[String]) -> Vec<String> {
    proxy.request_log()[from..]
        .iter()
        .filter(|r| r.method == "GET" && digests.iter().any(|d| r.path.ends_with(d.as_str())))
        .map(|r| r.path.clone())
        .collect()
}

/// Runner A builds with --cache-to and pushes; runner B, with an empty cache and only
/// --cache-from, builds the same image without building a layer, downloading a layer byte or
/// uploading one (its layers are mounted from the cache repository), and without asking the
/// apt archive or the index anything. After one package changes, runner C builds that layer
/// alone, and its image is the one a build without any registry cache makes.
#[test]
fn a_second_runner_builds_nothing_and_mounts_every_layer() {
    let world = world();
    let cache = world.cache_repo();
    let a = world.build("a", &["--push", "--cache-to", &cache]);
    assert_eq!(a["layers_built"], 4, "{a:#}");
    assert_eq!(a["registry_cache"]["published"]["records"], 4, "{a:#}");
    let layers = layer_digests(&a);
    assert_eq!(layers.len(), 4);

    let requests_before = world.proxy.request_log().len();
    let (apt_before, index_before) = (world.repo.requests().len(), world.index.requests().len());
    let b_image = world.proxy.image("runner-b/app:1");
    let b = world.build(
        "b",
        &[
            "--locked",
            "--cache-from",
            &cache,
            "--output",
            &format!("docker://{b_image}"),
        ],
    );
    assert_eq!(b["digest"], a["digest"], "{b:#}");
    assert_eq!(b["layers_built"], 0, "{b:#}");
    assert_eq!(b["registry_cache"]["layers_found"], 4, "{b:#}");
    assert_eq!(b["registry_cache"]["bytes_downloaded"], 0, "{b:#}");
    let pushed = &b["pushed"][0];
    assert_eq!(pushed["blobs_mounted"], 4, "{b:#}");
    // What is uploaded is no layer: the config, and the SBOM and provenance made from the
    // packages the records keep (no layer was read for them).
    let layer_uploads: Vec<String> = world.proxy.request_log()[requests_before..]
        .iter()
        .filter(|r| r.method == "PUT" && layers.iter().any(|d| r.path.contains(d.as_str())))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(layer_uploads, Vec::<String>::new());
    assert_eq!(
        blob_downloads(&world.proxy, requests_before, &layers),
        Vec::<String>::new()
    );
    assert_eq!(
        world.repo.requests().len(),
        apt_before,
        "runner B asked the apt archive"
    );
    assert_eq!(
        world.index.requests().len(),
        index_before,
        "runner B asked the index"
    );
    // What B pushed is whole: skopeo copies every layer out of it.
    let copy = world.project.tmp.path().join("b-copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{b_image}"),
            &format!("oci:{}", copy.display()),
        ],
    );

    // One package changes: its layer alone is built; nothing below it is downloaded.
    world.project.recipe(
        "app",
        &app_recipe(
            &world.index,
            &world.repo,
            &world.proxy.image("test/app:1"),
            "1.1",
        ),
    );
    let requests_before = world.proxy.request_log().len();
    let c_image = world.proxy.image("runner-c/app:1");
    let c = world.build(
        "c",
        &[
            "--cache-from",
            &cache,
            "--cache-to",
            &cache,
            "--output",
            &format!("docker://{c_image}"),
        ],
    );
    assert_eq!(c["layers_built"], 1, "{c:#}");
    assert_eq!(c["registry_cache"]["layers_found"], 3, "{c:#}");
    assert_eq!(c["registry_cache"]["published"]["records"], 1, "{c:#}");
    assert_eq!(
        blob_downloads(&world.proxy, requests_before, &layers),
        Vec::<String>::new()
    );
    let c_layers = layer_digests(&c);
    assert_eq!(c_layers[..2], layers[..2]);
    assert_ne!(c_layers[2], layers[2]);
    assert_eq!(c_layers[3], layers[3]);
    // The same image as a build that knows no registry cache.
    let clean = world.build("clean", &["--output", "oci:clean"]);
    assert_eq!(c["digest"], clean["digest"]);
}

/// A record whose blob was replaced (downloaded: its digest does not match) or deleted
/// (mounted: HEAD finds nothing) is passed over with a debug line; the layer is built and the
/// image is the same.
#[test]
fn records_with_a_replaced_or_missing_blob_are_rebuilt() {
    let world = world();
    let cache = world.cache_repo();
    let a = world.build("a", &["--cache-to", &cache, "--output", "oci:a"]);
    let layers = layer_digests(&a);

    // The pip layer's bytes replaced, same size: only a download can tell.
    let pip_blob = world.stored_blob(&layers[2]);
    let mut bytes = fs::read(&pip_blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&pip_blob, &bytes).unwrap();
    let out = world.runner("b", &["--cache-from", &cache, "--output", "oci:b"]);
    let b = json_of(&out, "runner b")[0].clone();
    assert_eq!(b["digest"], a["digest"], "{b:#}");
    assert_eq!(b["layers_built"], 1, "{b:#}");
    assert_eq!(b["registry_cache"]["layers_found"], 3, "{b:#}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("layer cache record ignored") && log.contains(&layers[2][7..]),
        "{log}"
    );

    // The pip layer back as it was, the Debian layer's blob deleted: runner C, pushing to the
    // same registry, would mount it.
    bytes[last] ^= 0xff;
    fs::write(&pip_blob, &bytes).unwrap();
    fs::remove_dir_all(world.stored_blob(&layers[1]).parent().unwrap()).unwrap();
    let c_image = world.proxy.image("runner-c/app:1");
    let out = world.runner(
        "c",
        &[
            "--cache-from",
            &cache,
            "--output",
            &format!("docker://{c_image}"),
        ],
    );
    let c = json_of(&out, "runner c")[0].clone();
    assert_eq!(c["digest"], a["digest"], "{c:#}");
    assert_eq!(c["layers_built"], 1, "{c:#}");
    assert_eq!(c["registry_cache"]["layers_found"], 3, "{c:#}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its blob is missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two runners record the same layers in one repository at once; a third finds every one.
#[test]
fn concurrent_writers_leave_a_usable_cache() {
    let world = world();
    let cache = world.cache_repo();
    // The lock is written first, so that both writers build from the same pins.
    let first = world.build("lock", &["--output", "oci:first"]);
    let spawn = |runner: &str| {
        let cache_dir = world.project.tmp.path().join(format!("runner-{runner}"));
        std::process::Command::new(crate::common::bin_path())
            .arg("-C")
            .arg(world.project.dir())
            .args([
                "--cache-dir",
                cache_dir.to_str().unwrap(),
                "build",
                "--json",
                "app",
            ])
            .args(["--locked", "--cache-to", &cache, "--output"])
            .arg(format!("oci:{runner}"))
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(world.project.tmp.path())
            .spawn()
            .unwrap()
    };
    let writers = [spawn("w1"), spawn("w2")];
    for writer in writers {
        let out = writer.wait_with_output().unwrap();
        assert_success(&out, "a concurrent writer");
    }
    let reader = world.build(
        "r",
        &["--locked", "--cache-from", &cache, "--output", "oci:r"],
    );
    assert_eq!(reader["layers_built"], 0, "{reader:#}");
    assert_eq!(reader["digest"], first["digest"]);
}

/// A cache repository that cannot be reached is given up on once, with one warning, and the
/// build goes on without it.
#[test]
fn an_unreachable_cache_is_warned_about_once_and_built_without() {
    let project = Project::new();
    project.write("a/x", "x\n");
    project.write("b/y", "y\n");
    project.recipe(
        "app",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"a\", dest = \"/a\" }]\n[[layer]]\nfiles = [{ src = \"b\", dest = \"/b\" }]\n",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = format!("127.0.0.1:{port}/ci/cache");
    let out = project.run(&["build", "--json", "app", "--cache-from", &cache]);
    let report = json_of(&out, "a build with an unreachable cache")[0].clone();
    assert_eq!(report["layers_built"], 2, "{report:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("not used in this build").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&format!("layer cache {cache}")), "{stderr}");
}

/// A pip layer installing a project directory is not found under the lock's pins once the
/// directory changed: it is built, as it would be without a registry cache.
#[test]
fn a_changed_project_directory_is_built_not_found_under_its_old_pins() {
    let registry = Registry::start(Auth::None);
    let index = Index::new();
    let project =
        crate::fixtures::pypi::project(&index, "[\"linux/amd64\"]", &["packages = [\"./app\"]"]);
    crate::fixtures::pypi::local_project(&project.path("app"), "app", "1.0", &[], &[], "A = 1\n");
    let cache = registry.image("ci/oci-build-cache");
    let a = project.build(&["app", "--cache-to", &cache, "--output", "oci:a"]);

    fs::write(project.path("app/app/__init__.py"), "A = 2\n").unwrap();
    fs::remove_dir_all(project.cache()).unwrap();
    let b = project.build(&["app", "--cache-from", &cache, "--output", "oci:b"]);
    assert_eq!(b["layers_built"], 1, "{b:#}");
    assert_eq!(b["registry_cache"]["layers_found"], 1, "{b:#}");
    assert_ne!(b["digest"], a["digest"]);
    fs::remove_dir_all(project.cache()).unwrap();
    let clean = project.build(&["app", "--output", "oci:clean"]);
    assert_eq!(b["digest"], clean["digest"]);
}
