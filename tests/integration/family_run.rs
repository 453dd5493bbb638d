//! Live: the family's images started as a runtime starts them (their entrypoint and cmd, as
//! their declared user, with their environment and working directory; `runtime`) and checked
//! doing their job: JupyterLab answers its API and saves a notebook in its user's home, nginx
//! serves the UI as www-data, the api built from an MLRun checkout answers its health endpoint
//! as the mlrun user; and every image's working directory and volumes are writable by its user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    build_in_repo, copy_project, in_repo, is_root, json_of, live_cache, oci_build_at,
    one_line_error, repo, require_apt_sources, umoci_unpack,
};
use crate::runtime::{Container, free_port, require_free};

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
    (unpack(&layout, tmp), image_config(&layout))
}

/// The one image of an OCI layout unpacked by umoci into `<tmp>/bundle`.
fn unpack(layout: &Path, tmp: &Path) -> PathBuf {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap();
    let bundle = tmp.join("bundle");
    umoci_unpack(layout, name, &bundle);
    bundle
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

/// `target` from the committed lock, unpacked into a temporary directory and ready to start,
/// with its image config; None (said on stderr) where the tests do not run as root.
fn family_image(target: &str) -> Option<(tempfile::TempDir, Container, Value)> {
    require_apt_sources();
    if !require_root() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, config) = unpacked(target, tmp.path());
    let container = Container::new(&bundle);
    Some((tmp, container, config))
}

/// jupyter as Jupyter's images run: JupyterLab as jovyan (1000:100), listening on 8888, its
/// runtime files and a new notebook written to the home the demos layer sits in.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn jupyter_serves_its_api_as_jovyan_and_saves_notebooks_in_its_home() {
    let Some((_tmp, container, config)) = family_image("jupyter") else {
        return;
    };
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
    let Some((_tmp, container, config)) = family_image("ui") else {
        return;
    };
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

/// mlrun-api from an MLRun checkout (a small one, `fixtures::mlrun_checkout`, with the real
/// fastapi and uvicorn from the index): mlrun built from the tree with the version MLRun's
/// build writes, the server beside it, started as MLRun's image starts it (tini, uvicorn) as
/// the mlrun user, answering its health endpoint and writing its database into the volume;
/// and the mlrun image built from the same checkout runs that mlrun.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn api_from_a_checkout_serves_its_health_endpoint_as_mlrun() {
    require_apt_sources();
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("mlrun");
    crate::fixtures::mlrun_checkout::write(&checkout);
    // A copy of the project: the plain build pins the checkout in its own lock file.
    let project = tmp.path().join("project");
    copy_project(&project);

    // Without a checkout, one sentence says what the api image needs.
    let out = in_repo(&["build", "api"], &[]);
    assert!(
        one_line_error(&out).contains("api (recipes/api.toml) needs MLRUN_SOURCE_DIR"),
        "{out:?}"
    );

    let layout = tmp.path().join("layout");
    let out = oci_build_at(&project, &live_cache())
        .args(["build", "--json", "api", "--output"])
        .arg(format!("oci:{}", layout.display()))
        .env("MLRUN_SOURCE_DIR", &checkout)
        .env_remove("MLRUN_VERSION")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    json_of(&out, "build api from a checkout");
    assert!(
        !checkout.join("mlrun/utils/version/version.json").exists(),
        "the version is written into the build's copy, never into the checkout"
    );
    let bundle = unpack(&layout, tmp.path());
    let config = image_config(&layout);
    let container = Container::new(&bundle);
    assert_eq!((container.process.uid, container.process.gid), (1000, 1000));
    assert_eq!(container.process.args[..2], ["tini", "--"]);
    assert_writable_by_its_user(&container, &config);

    let port = free_port().to_string();
    let mut api = container.start(&container.process.with_env("UVICORN_PORT", &port), "api");
    let health = api.wait_for_http(
        &format!("http://127.0.0.1:{port}/api/v1/healthz"),
        Duration::from_secs(120),
    );
    let health: Value = serde_json::from_str(&health).unwrap();
    // MLRUN_VERSION=unstable is written as MLRun's build writes a tag that is not a release.
    assert_eq!(health["version"], "0.0.0+unstable", "{health}");
    let database = container.rootfs.join("mlrun/db/mlrun.db");
    assert_eq!(std::fs::metadata(&database).unwrap().uid(), 1000);
    drop(api);

    // The rest of the family takes mlrun from the same checkout: the mlrun image runs it.
    let layout = tmp.path().join("mlrun-layout");
    let out = oci_build_at(&project, &live_cache())
        .args(["build", "--json", "mlrun", "--output"])
        .arg(format!("oci:{}", layout.display()))
        .env("MLRUN_SOURCE_DIR", &checkout)
        .env_remove("MLRUN_VERSION")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    json_of(&out, "build mlrun from a checkout");
    let mlrun_tmp = tmp.path().join("mlrun-image");
    std::fs::create_dir_all(&mlrun_tmp).unwrap();
    let container = Container::new(&unpack(&layout, &mlrun_tmp));
    let version = container.run(&container.process.with_args(&[
        "python3",
        "-c",
        "import mlrun; print(mlrun.__version__)",
    ]));
    assert_eq!(version.trim(), "0.0.0+unstable");
}

/// The framework images import their frameworks as their users do. Heavy (gigabytes of
/// wheels): run with `OCI_BUILD_HEAVY_TESTS=1 cargo test --test integration family_run::models`.
#[test]
#[cfg_attr(
    not(heavy_tests),
    ignore = "builds gigabytes of frameworks: set OCI_BUILD_HEAVY_TESTS=1 to run it"
)]
fn models_images_import_their_frameworks() {
    for (target, check) in [
        (
            "models",
            "import torch, tensorflow, sklearn, xgboost, lightgbm; \
             print(torch.__version__, tensorflow.__version__)",
        ),
        // Without a GPU, what can be checked is that each framework finds the CUDA
        // libraries it was built for: torch loads cuDNN, TensorFlow's and-cuda wheels are
        // the CUDA 12 build TensorFlow reports.
        (
            "models-gpu",
            "import torch, tensorflow as tf, importlib.metadata as m; \
             assert torch.version.cuda, 'torch without CUDA'; \
             assert torch.backends.cudnn.version(), 'torch finds no cuDNN'; \
             cuda = tf.sysconfig.get_build_info()['cuda_version']; \
             assert cuda.startswith('12'), cuda; \
             assert m.version('nvidia-cudnn-cu12'), 'no cuDNN for TensorFlow'; \
             print(torch.version.cuda, cuda)",
        ),
    ] {
        let Some((_tmp, container, _)) = family_image(target) else {
            return;
        };
        let versions = container.run(&container.process.with_args(&["python3", "-c", check]));
        eprintln!("{target}: {}", versions.trim());
    }
}
