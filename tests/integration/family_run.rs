//! Live: the family's images started as a runtime starts them (their entrypoint and cmd, as
//! their declared user, with their environment and working directory; `runtime`) and checked
//! doing their job: jupyter holds scipy-notebook's stack with MLRun, runs a notebook in a
//! kernel, answers its API and saves a notebook in its user's home, and takes a new MLRun in
//! its own layer; nginx serves the UI as www-data, the api built from an MLRun checkout answers
//! its health endpoint as the mlrun user; and every image's working directory and volumes are
//! writable by its user.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    FAMILY_VARIABLES, build_in_repo, copy_project, in_repo, is_root, json_of, live_cache,
    oci_build_at, one_line_error, repo, require_apt_sources, umoci_unpack,
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

/// The image manifest of the one image in an OCI layout (the first of an index).
fn image_manifest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = layout_blob(layout, index["manifests"][0]["digest"].as_str().unwrap());
    if manifest["manifests"].is_array() {
        return layout_blob(layout, manifest["manifests"][0]["digest"].as_str().unwrap());
    }
    manifest
}

fn layout_blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The config of the one image in an OCI layout.
fn image_config(layout: &Path) -> Value {
    layout_blob(
        layout,
        image_manifest(layout)["config"]["digest"].as_str().unwrap(),
    )
}

/// The digests of the layers of the one image in an OCI layout, bottom first.
fn layer_digests(layout: &Path) -> Vec<String> {
    image_manifest(layout)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect()
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

/// What jupyter/scipy-notebook lets a notebook import (module names), with MLRun.
const SCIPY_NOTEBOOK_IMPORTS: &str = "scipy, sklearn, skimage, matplotlib, seaborn, bokeh, \
    altair, statsmodels, sympy, numba, numexpr, bottleneck, h5py, tables, openpyxl, xlrd, \
    sqlalchemy, cloudpickle, dill, patsy, google.protobuf, bs4, Cython, ipywidgets, ipympl, \
    jupyterlab_git, mlrun";

/// A notebook of one cell that imports MLRun and draws a figure with matplotlib's inline
/// backend, the kernel's default.
const MLRUN_AND_MATPLOTLIB_NOTEBOOK: &str = r#"{
 "cells": [{"cell_type": "code", "id": "check", "execution_count": null, "metadata": {},
   "outputs": [],
   "source": "import mlrun\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint('mlrun', mlrun.__version__)"}],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "nbformat": 4, "nbformat_minor": 5
}"#;

/// `name → version` of what the lock file `lock` pins in `target`'s pip layer `layer` (amd64).
fn pip_pins(lock: &str, target: &str, layer: i64) -> BTreeMap<String, String> {
    let lock: toml::Value = toml::from_str(lock).unwrap();
    lock["pip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["target"].as_str() == Some(target)
                && e["layer"].as_integer() == Some(layer)
                && e["platform"].as_str() == Some("linux/amd64")
        })
        .flat_map(|e| e["packages"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Whether something on this host listens on TCP `port` on every IPv4 address (0.0.0.0), as
/// /proc/net/tcp lists it: the started image shares the host's network.
fn listens_on_every_address(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let wanted = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, then rem_address, then the state: 0A is LISTEN.
        fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
    })
}

/// jupyter as the Jupyter Docker Stacks run: tini and start-notebook.py, JupyterLab as jovyan
/// (1000:100) on every address at JUPYTER_PORT (8888, exposed), NB_USER/NB_UID/NB_GID set; as
/// jovyan, scipy-notebook's stack imports beside MLRun, `pip check` finds nothing broken, a
/// kernel runs a notebook in ~/work that imports MLRun and draws with matplotlib, and the
/// server keeps its runtime files and a new notebook in the home the demos are in.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn jupyter_serves_its_api_as_jovyan_and_saves_notebooks_in_its_home() {
    let Some((_tmp, container, config)) = family_image("jupyter") else {
        return;
    };
    let image = &config["config"];
    assert_eq!(image["Entrypoint"], serde_json::json!(["tini", "-g", "--"]));
    assert_eq!(image["Cmd"], serde_json::json!(["start-notebook.py"]));
    assert!(image["ExposedPorts"]["8888/tcp"].is_object(), "{image}");
    let env: Vec<&str> = image["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for variable in [
        "NB_USER=jovyan",
        "NB_UID=1000",
        "NB_GID=100",
        "JUPYTER_PORT=8888",
    ] {
        assert!(env.contains(&variable), "{variable} not in {env:?}");
    }
    assert_eq!(
        (container.process.uid, container.process.gid),
        (1000, 100),
        "jovyan:users, as in Jupyter's images"
    );
    assert_writable_by_its_user(&container, &config);

    // The notebook user's stack, as that user.
    container.run(&container.process.with_args(&[
        "python3",
        "-c",
        &format!("import {SCIPY_NOTEBOOK_IMPORTS}"),
    ]));
    let check = container.run(
        &container
            .process
            .with_args(&["python3", "-m", "pip", "check"]),
    );
    assert!(check.contains("No broken requirements found"), "{check}");

    // A kernel runs a notebook in ~/work, which jovyan owns, and writes the result beside it.
    let work = container.rootfs.join("home/jovyan/work");
    let meta = std::fs::metadata(&work).unwrap();
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.gid()), (1000, 100), "~/work is jovyan's");
    let notebook = work.join("check.ipynb");
    std::fs::write(&notebook, MLRUN_AND_MATPLOTLIB_NOTEBOOK).unwrap();
    std::os::unix::fs::chown(&notebook, Some(1000), Some(100)).unwrap();
    container.run(&container.process.with_args(&[
        "jupyter",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        "--output",
        "executed",
        "work/check.ipynb",
    ]));
    let executed: Value =
        serde_json::from_slice(&std::fs::read(work.join("executed.ipynb")).unwrap()).unwrap();
    let outputs = executed["cells"][0]["outputs"].as_array().unwrap();
    let lock = std::fs::read_to_string(repo().join("recipes/recipes.lock")).unwrap();
    let mlrun = &pip_pins(&lock, "jupyter", 3)["mlrun"];
    assert!(
        outputs
            .iter()
            .any(|o| o["text"].to_string().contains(&format!("mlrun {mlrun}"))),
        "the kernel did not print the locked mlrun {mlrun}: {outputs:?}"
    );
    assert!(
        outputs.iter().any(|o| o["data"]["image/png"].is_string()),
        "matplotlib drew no figure in the kernel"
    );

    // A token and a port of the test's own, as `docker run -e JUPYTER_TOKEN=… -e
    // JUPYTER_PORT=…` gives them (8888 may be taken on a shared machine).
    let token = "oci-build-test-token";
    let port = free_port();
    let mut jupyter = container.start(
        &container
            .process
            .with_env("JUPYTER_TOKEN", token)
            .with_env("JUPYTER_PORT", &port.to_string()),
        "jupyter",
    );
    let base = format!("http://127.0.0.1:{port}");
    let status = jupyter.wait_for_http(
        &format!("{base}/api/status?token={token}"),
        Duration::from_secs(180),
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(status["started"].is_string(), "{status}");
    assert!(
        listens_on_every_address(port),
        "JupyterLab does not listen on 0.0.0.0:{port}: {}",
        jupyter.log()
    );

    let client = crate::common::http_client().no_proxy().build().unwrap();
    let created = client
        .post(format!("{base}/api/contents"))
        .header("Authorization", format!("token {token}"))
        .body(r#"{"type": "notebook"}"#)
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", jupyter.log());
    let created: Value = serde_json::from_reader(created).unwrap();
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
        .get(format!("{base}/api/contents/demos"))
        .header("Authorization", format!("token {token}"))
        .send()
        .unwrap();
    assert!(listing.status().is_success(), "{}", jupyter.log());
}

/// An MLRun release other than the locked one, for the test below.
const ANOTHER_MLRUN: &str = "1.11.0";

/// jupyter with another MLRun release (MLRUN_VERSION) differs from the locked image in one
/// layer, MLRun's: the scientific stack below it is pinned without naming MLRun's version, so
/// it stays as locked and the new MLRun resolves on it. A registry that has the locked image
/// receives one new layer.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive and the package index"
)]
fn jupyter_takes_another_mlrun_in_its_own_layer_above_the_scientific_stack() {
    require_apt_sources();
    let tmp = tempfile::tempdir().unwrap();
    let locked = tmp.path().join("locked");
    build_in_repo(
        &[
            "build",
            "--json",
            "--locked",
            "jupyter",
            "--output",
            &format!("oci:{}", locked.display()),
        ],
        &[],
    );
    // A copy of the project: the build pins the new MLRun layer in its own lock file.
    let project = tmp.path().join("project");
    copy_project(&project);
    let other = tmp.path().join("other");
    let mut command = oci_build_at(&project, &live_cache());
    command
        .args(["build", "--json", "jupyter", "--output"])
        .arg(format!("oci:{}", other.display()));
    for name in FAMILY_VARIABLES {
        command.env_remove(name);
    }
    json_of(
        &command
            .env("MLRUN_VERSION", ANOTHER_MLRUN)
            .output()
            .unwrap(),
        &format!("build jupyter with mlrun {ANOTHER_MLRUN}"),
    );

    let committed = std::fs::read_to_string(repo().join("recipes/recipes.lock")).unwrap();
    let relocked = std::fs::read_to_string(project.join("recipes/recipes.lock")).unwrap();
    assert_ne!(pip_pins(&committed, "jupyter", 3)["mlrun"], ANOTHER_MLRUN);
    assert_eq!(pip_pins(&relocked, "jupyter", 3)["mlrun"], ANOTHER_MLRUN);
    let stack = pip_pins(&relocked, "jupyter", 2);
    assert!(stack.contains_key("scipy"), "{stack:?}");
    assert_eq!(stack, pip_pins(&committed, "jupyter", 2));

    let (before, after) = (layer_digests(&locked), layer_digests(&other));
    assert_eq!(before.len(), after.len());
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    // Counted from the top: files, accounts, then MLRun's layer.
    assert_eq!(
        changed,
        [before.len() - 3],
        "only MLRun's layer may change with MLRun"
    );
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

    let build_from_checkout = |target: &str, layout: &Path| {
        let out = oci_build_at(&project, &live_cache())
            .args(["build", "--json", target, "--output"])
            .arg(format!("oci:{}", layout.display()))
            .env("MLRUN_SOURCE_DIR", &checkout)
            .env_remove("MLRUN_VERSION")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        json_of(&out, &format!("build {target} from a checkout"));
    };
    let layout = tmp.path().join("layout");
    build_from_checkout("api", &layout);
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
    build_from_checkout("mlrun", &layout);
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
