//! Live: the family's images started as a runtime starts them (their entrypoint and cmd, as
//! their declared user, with their environment and working directory; `runtime`) and checked
//! doing their job: JupyterLab answers its API and saves a notebook in its user's home, nginx
//! serves the UI as www-data; and every image's working directory and volumes are writable by
//! its user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{build_in_repo, is_root, repo, require_apt_sources, umoci_unpack};
use crate::runtime::{Container, require_free};

/// `target` built from the committed lock into a layout under `tmp` and unpacked there; returns
/// the bundle and the image config.
fn unpacked(target: &str, tmp: &Path) -> (PathBuf, Value) {
    let layout = tmp.join("layout");
    build_in_repo(
        &[
            "build",
            "--json",
            "--locked",
            target,
            "--output",
            &format!("oci:{}", layout.display()),
        ],
        &[],
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap();
    let bundle = tmp.join("bundle");
    umoci_unpack(&layout, name, &bundle);
    (bundle, image_config(&layout))
}

/// The config of the one image in an OCI layout.
fn image_config(layout: &Path) -> Value {
    let blob = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    if manifest["manifests"].is_array() {
        manifest = blob(manifest["manifests"][0]["digest"].as_str().unwrap());
    }
    blob(manifest["config"]["digest"].as_str().unwrap())
}

/// The image's working directory and every volume it declares can be written by its user:
/// checked by writing there as that user, as the image's own process would.
fn assert_writable_by_its_user(container: &Container, config: &Value) {
    let mut dirs: Vec<String> = config["config"]["WorkingDir"]
        .as_str()
        .filter(|dir| !dir.is_empty())
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(volumes) = config["config"]["Volumes"].as_object() {
        dirs.extend(volumes.keys().cloned());
    }
    for dir in dirs {
        let probe = format!("{}/.written-by-user", dir.trim_end_matches('/'));
        container.run(&container.process.with_args(&["touch", &probe]));
        let written = container.rootfs.join(probe.trim_start_matches('/'));
        assert_eq!(
            std::fs::metadata(&written).unwrap().uid(),
            container.process.uid
        );
        std::fs::remove_file(written).unwrap();
    }
}

fn require_root() -> bool {
    if !is_root() {
        eprintln!("not root: an image cannot be started in a chroot; skipped");
    }
    is_root()
}

/// jupyter as Jupyter's images run: JupyterLab as jovyan (1000:100), listening on 8888, its
/// runtime files and a new notebook written to the home the demos layer sits in.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn jupyter_serves_its_api_as_jovyan_and_saves_notebooks_in_its_home() {
    require_apt_sources();
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, config) = unpacked("jupyter", tmp.path());
    let container = Container::new(&bundle);
    assert_eq!(
        (container.process.uid, container.process.gid),
        (1000, 100),
        "jovyan:users, as in Jupyter's images"
    );
    assert_writable_by_its_user(&container, &config);

    require_free(8888);
    // A token of the test's own, as `docker run -e JUPYTER_TOKEN=…` gives one.
    let token = "oci-build-test-token";
    let mut jupyter = container.start(
        &container.process.with_env("JUPYTER_TOKEN", token),
        "jupyter",
    );
    let status = jupyter.wait_for_http(
        &format!("http://127.0.0.1:8888/api/status?token={token}"),
        Duration::from_secs(180),
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(status["started"].is_string(), "{status}");

    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let created = client
        .post("http://127.0.0.1:8888/api/contents")
        .header("Authorization", format!("token {token}"))
        .body(r#"{"type": "notebook"}"#)
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", jupyter.log());
    let created: Value = created.json().unwrap();
    let notebook = container
        .rootfs
        .join("home/jovyan")
        .join(created["path"].as_str().unwrap());
    let meta = std::fs::metadata(&notebook).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 100));
    assert!(
        container
            .rootfs
            .join("home/jovyan/.local/share/jupyter/runtime")
            .is_dir(),
        "JupyterLab keeps its runtime files in the home"
    );
    // The demos are where a notebook user finds them, next to the new notebook.
    let listing = client
        .get("http://127.0.0.1:8888/api/contents/demos")
        .header("Authorization", format!("token {token}"))
        .send()
        .unwrap();
    assert!(listing.status().is_success(), "{}", jupyter.log());
}

/// mlrun-ui: nginx as www-data (33:33), on its unprivileged port, serving the UI build.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn ui_serves_its_index_as_www_data() {
    require_apt_sources();
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, config) = unpacked("ui", tmp.path());
    let container = Container::new(&bundle);
    assert_eq!((container.process.uid, container.process.gid), (33, 33));
    assert_writable_by_its_user(&container, &config);

    require_free(8090);
    let mut nginx = container.start(&container.process, "nginx");
    let served = nginx.wait_for_http("http://127.0.0.1:8090/", Duration::from_secs(60));
    let built = std::fs::read_to_string(repo().join("recipes/ui/dist/index.html")).unwrap();
    assert_eq!(served, built);
    // A client-side route falls back to the UI's index, as the UI's router needs.
    let routed = nginx.wait_for_http(
        "http://127.0.0.1:8090/projects/default/jobs",
        Duration::from_secs(5),
    );
    assert_eq!(routed, built);
}
