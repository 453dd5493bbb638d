//! The oci-build image (recipes/oci-build.toml), built from this checkout's binary and run as
//! a pod runs it: its own binary, libc and CA certificates, as its non-root user, with only
//! its cache, /tmp and its workspace writable, building a function image as MLRun's builder
//! would (a base from a registry, a requirement from an index, the function's code) and
//! pushing it with credentials from a docker config.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::common::{
    Project, assert_success, build_in_repo, is_root, json, require_apt_sources, tool, umoci_unpack,
};
use crate::fixtures::pypi::{Index, STATUS, dist, sdist_bytes};
use crate::fixtures::registry::{Auth, Registry};
use crate::runtime::Container;

const USER: &str = "builder";
const PASSWORD: &str = "pod-s3cret";
/// The image's user, as recipes/oci-build.toml and examples/kubernetes name it.
const NONROOT: u32 = 65532;

/// The amd64 oci-build image of `binary`, built with the committed lock into `<tmp>/layout`
/// and unpacked by umoci into `<tmp>/bundle`.
fn oci_build_image(binary: &Path, tmp: &Path) -> std::path::PathBuf {
    // Cargo's layout for one Rust target: <dir>/<target>/<profile>/oci-build.
    let dist = tmp.join("dist");
    let placed = dist.join("x86_64-unknown-linux-gnu/debug");
    fs::create_dir_all(&placed).unwrap();
    std::os::unix::fs::symlink(binary, placed.join("oci-build")).unwrap();
    let layout = tmp.join("layout");
    let dist = dist.display().to_string();
    build_in_repo(
        &[
            "build",
            "--json",
            "--locked",
            "--no-sbom",
            "oci-build",
            "--platform",
            "linux/amd64",
            "--output",
            &format!("oci:{}", layout.display()),
        ],
        &[
            ("OCI_BUILD_TARGET_DIR", dist.as_str()),
            ("OCI_BUILD_PROFILE", "debug"),
        ],
    );
    let index = json(&fs::read_to_string(layout.join("index.json")).unwrap());
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_owned();
    let bundle = tmp.join("bundle");
    umoci_unpack(&layout, &name, &bundle);
    bundle
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn the_oci_build_image_builds_and_pushes_a_function_image_as_nonroot() {
    require_apt_sources();
    if !is_root() {
        eprintln!("not root: an image cannot be started in a chroot; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bundle = oci_build_image(&crate::common::bin_path(), tmp.path());
    let rootfs = bundle.join("rootfs");

    // What the image holds: the binary, glibc, the CA bundle, the nonroot user, nothing to
    // run a shell with.
    let process = crate::runtime::Process::of_bundle(&bundle);
    assert_eq!((process.uid, process.gid), (NONROOT, NONROOT));
    assert_eq!(process.args[0], "/usr/local/bin/oci-build");
    assert!(
        fs::metadata(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
            .unwrap()
            .len()
            > 100_000
    );
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/sh").exists());
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    // The registry with htpasswd auth, and a base pushed to it by the host's oci-build: a
    // "Python" (a dpkg status saying Debian's Python 3.11 is installed, all a pip layer reads).
    let registry = Registry::start(Auth::htpasswd(USER, PASSWORD));
    let docker_config = serde_json::json!({
        "auths": { registry.url(): { "auth": STANDARD.encode(format!("{USER}:{PASSWORD}")) } }
    })
    .to_string();
    let host = Project::new();
    let host_config = host.write("docker/config.json", &docker_config);
    host.write("fixtures/status", STATUS);
    host.recipe(
        "python",
        &format!(
            "image = \"{}\"\nplatforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }}]\n",
            registry.image("base/python:3.11")
        ),
    );
    let out = host
        .command(&["build", "python", "--no-sbom", "--push"])
        .env("DOCKER_CONFIG", host_config.parent().unwrap())
        .output()
        .unwrap();
    assert_success(&out, "push the base");

    let mut index = Index::new();
    let mut greeting = dist("greeting", "1.0");
    greeting.files = vec![(
        "greeting/__init__.py".to_owned(),
        b"HELLO = 'hello from the index'\n".to_vec(),
    )];
    index.publish(&greeting);
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_bytes("py3-none-any"),
    );

    // The pod's volumes, as examples/kubernetes mounts them: the workspace the init container
    // fills from the ConfigMap, the registry secret (read-only, root's), the cache; the rest
    // of the root file system is root's and read-only to the image's user.
    let home = rootfs.join("home/nonroot");
    chown(&home, Some(0), Some(0)).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    let writable = |dir: &Path| {
        fs::create_dir_all(dir).unwrap();
        chown(dir, Some(NONROOT), Some(NONROOT)).unwrap();
    };
    writable(&home.join(".cache"));
    let workspace = rootfs.join("workspace");
    writable(&workspace);
    let place = |rel: &str, text: &str| {
        let path = workspace.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        for dir in path.ancestors().skip(1).take_while(|d| *d != rootfs) {
            chown(dir, Some(NONROOT), Some(NONROOT)).unwrap();
        }
    };
    place(
        "recipes/function.toml",
        &format!(
            r#"image = "{image}"
from = "docker://{base}"

[[layer]]
comment = "requirements"
pip = {{ requirements = "requirements.txt", index_url = "{index}" }}

[[layer]]
comment = "the function's code, where MLRun puts it"
files = [{{ src = "src", dest = "/home/mlrun_code" }}]

[config]
workdir = "/home/mlrun_code"
"#,
            image = registry.image("team/func:1"),
            base = registry.image("base/python:3.11"),
            index = index.url(),
        ),
    );
    place("requirements.txt", "greeting==1.0\n");
    place(
        "src/handler.py",
        "from greeting import HELLO\n\ndef handler(context):\n    return HELLO\n",
    );
    let secret = rootfs.join("var/run/secrets/registry");
    fs::create_dir_all(&secret).unwrap();
    fs::write(secret.join("config.json"), &docker_config).unwrap();
    fs::set_permissions(
        secret.join("config.json"),
        fs::Permissions::from_mode(0o444),
    )
    .unwrap();

    // The Job's command line (examples/kubernetes/job.yaml), as the image's user.
    let container = Container::new(&bundle);
    let build = process
        .with_args(&[
            "/usr/local/bin/oci-build",
            "-C",
            "/workspace",
            "build",
            "function",
            "--push",
            "--json",
        ])
        .with_env("DOCKER_CONFIG", "/var/run/secrets/registry");
    let report = json(&container.run(&build));
    let pushed = report[0]["pushed"][0]["reference"].as_str().unwrap_or("");
    assert!(pushed.contains("team/func:1"), "{report}");
    // Its cache is where the image's HOME says, owned by its user.
    let cache = home.join(".cache/oci-build");
    assert_eq!(fs::metadata(&cache).unwrap().uid(), NONROOT);

    // The pushed image, read back by skopeo with the same credentials and unpacked by umoci.
    let creds = format!("{USER}:{PASSWORD}");
    let image = format!("docker://{}", registry.image("team/func:1"));
    let inspected: Value = json(&tool(
        "skopeo",
        &["inspect", "--tls-verify=false", "--creds", &creds, &image],
    ));
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        3,
        "{inspected}"
    );
    let pulled = tmp.path().join("pulled");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &image,
            &format!("oci:{}:func", pulled.display()),
        ],
    );
    let func = umoci_unpack(&pulled, "func", &tmp.path().join("func"));
    assert_eq!(
        fs::read_to_string(func.join("home/mlrun_code/handler.py")).unwrap(),
        "from greeting import HELLO\n\ndef handler(context):\n    return HELLO\n"
    );
    let installed: Vec<_> = walkdir::WalkDir::new(&func)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.path().ends_with("greeting/__init__.py"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(installed, ["HELLO = 'hello from the index'\n"]);

    // What a pod cannot do: build an sdist (no Python in the image). One sentence says so.
    place(
        "recipes/from-source.toml",
        &format!(
            "image = \"{}\"\nfrom = \"docker://{}\"\n[[layer]]\npip = {{ packages = [\"srconly\"], index_url = \"{}\" }}\n",
            registry.image("team/from-source:1"),
            registry.image("base/python:3.11"),
            index.url(),
        ),
    );
    let out = container.output(
        &process
            .with_args(&[
                "/usr/local/bin/oci-build",
                "-C",
                "/workspace",
                "build",
                "from-source",
                "--push",
            ])
            .with_env("DOCKER_CONFIG", "/var/run/secrets/registry"),
    );
    let error = crate::common::one_line_error(&out);
    assert!(
        error.contains("cannot run the host's Python `python3` to build srconly-0.3.tar.gz"),
        "{error}"
    );
}

/// The documents of a YAML file as JSON, read by PyYAML (Debian's python3-yaml).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("python3 with PyYAML (apt-get install python3-yaml)");
    assert_success(&out, "reading YAML with PyYAML");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// examples/kubernetes agrees with the image and the CLI: the pod runs as the image's user
/// with no privileges, its writable volumes are where the image writes, the registry secret is
/// where DOCKER_CONFIG says, and the ConfigMap laid out as the init container lays it out is a
/// project whose target the Job's arguments build.
#[test]
fn the_kubernetes_example_agrees_with_the_image_and_the_cli() {
    let repo = crate::common::repo();
    let recipe: toml::Value =
        toml::from_str(&fs::read_to_string(repo.join("recipes/oci-build.toml")).unwrap()).unwrap();
    let user = recipe["config"]["user"].as_str().unwrap();
    let (uid, gid) = user.split_once(':').unwrap();
    let home = recipe["config"]["env"]["HOME"].as_str().unwrap();
    let entrypoint = recipe["config"]["entrypoint"].as_array().unwrap();
    assert_eq!(
        entrypoint.len(),
        1,
        "the Job's args are oci-build's arguments"
    );

    let example = repo.join("examples/kubernetes");
    let job = yaml_documents(&example.join("job.yaml")).remove(0);
    assert_eq!(job["kind"], "Job");
    let pod = &job["spec"]["template"]["spec"];
    let context = &pod["securityContext"];
    assert_eq!(context["runAsNonRoot"], true);
    assert_eq!(context["runAsUser"].to_string(), uid);
    assert_eq!(context["runAsGroup"].to_string(), gid);
    assert_eq!(context["seccompProfile"]["type"], "RuntimeDefault");
    let containers: Vec<&Value> = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_array().unwrap())
        .collect();
    for container in &containers {
        let restricted = &container["securityContext"];
        assert_eq!(restricted["allowPrivilegeEscalation"], false, "{container}");
        assert_eq!(restricted["readOnlyRootFilesystem"], true, "{container}");
        assert_eq!(strings(&restricted["capabilities"]["drop"]), ["ALL"]);
    }

    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    let build = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["image"].as_str().unwrap().contains("/oci-build:"))
        .unwrap();
    let mounts = build["volumeMounts"].as_array().unwrap();
    let mounted_at = |path: &str| {
        let mount = mounts.iter().find(|m| m["mountPath"] == path);
        let mount = mount.unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volume(mount["name"].as_str().unwrap())
    };
    // The cache (under the image's HOME) and /tmp are emptyDirs; nothing else is written.
    assert!(mounted_at(&format!("{home}/.cache"))["emptyDir"].is_object());
    assert!(mounted_at("/tmp")["emptyDir"].is_object());
    let env = build["env"].as_array().unwrap();
    let docker_config = env.iter().find(|e| e["name"] == "DOCKER_CONFIG").unwrap();
    let secret = &mounted_at(docker_config["value"].as_str().unwrap())["secret"];
    assert_eq!(
        secret["items"][0],
        serde_json::json!({ "key": ".dockerconfigjson", "path": "config.json" })
    );
    let args = strings(&build["args"]);
    assert_eq!(args[0], "-C");
    assert!(mounted_at(args[1])["emptyDir"].is_object());

    // The ConfigMap's items where the init container copies them.
    let config_map = yaml_documents(&example.join("function.yaml")).remove(0);
    let init = &pod["initContainers"][0];
    let script = strings(&init["command"]).join(" ");
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("workspace");
    let function = volume("function");
    assert_eq!(
        function["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    for item in function["configMap"]["items"].as_array().unwrap() {
        let path = item["path"].as_str().unwrap();
        assert!(
            script.contains(&format!("/function/{path}"))
                || script.contains(&format!("/function/{}/*", path.rsplit_once('/').unwrap().0)),
            "the init container does not copy {path}: {script}"
        );
        let text = config_map["data"][item["key"].as_str().unwrap()]
            .as_str()
            .unwrap();
        let to = workspace.join(path);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(to, text).unwrap();
    }

    // The Job's arguments, run on that project offline (into a layout, since an offline
    // build cannot push): they parse, the recipe loads, and the build gets as far as the base
    // image, which an empty cache lacks.
    assert_eq!(args[2..], ["build", "function", "--push"]);
    let mut command = std::process::Command::new(crate::common::bin_path());
    command
        .arg("-C")
        .arg(&workspace)
        .args(&args[2..args.len() - 1])
        .arg("--offline")
        .arg("--output")
        .arg(format!("oci:{}", tmp.path().join("out").display()))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"));
    let out = command.output().unwrap();
    let error = crate::common::one_line_error(&out);
    assert!(
        error.contains("registry.example.com/mlrun/mlrun:1.12.1"),
        "{error}"
    );
}
