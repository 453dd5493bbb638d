//! The MLRun image family of this repository: names from the MLRun variables, `resolve`, the
//! committed lock covering every image built from the index (the heavy ones are not built
//! here) and the CUDA libraries its GPU frameworks declare, and, live, the `mlrun` image built
//! from that lock, pushed, pulled back with skopeo and run as its user; the GPU smoke check's
//! image builds.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use oci_build::recipe::{BaseRef, LayerSource, Project};

use crate::common::{
    PIP_LIST_EACH_SITE, assert_success, bin_path, build_in_repo, chroot, in_repo, is_root, json,
    json_of, layer_count, live_cache, oci_build_at, push_mlrun_from_the_lock, repo,
    require_apt_sources, site_distributions, tool,
};
use crate::fixtures::registry::{Auth, Registry, http_request};
use crate::runtime::Container;

#[test]
fn targets_are_named_by_the_mlrun_variables() {
    let out = in_repo(&["targets", "--json"], &[("MLRUN_VERSION", "0.9.2")]);
    assert_success(&out, "targets");
    let listed: BTreeSet<String> = json(&String::from_utf8(out.stdout).unwrap())
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["image"].as_str().unwrap().to_owned())
        .filter(|image| image.starts_with("mlrun/"))
        .collect();
    let expected: BTreeSet<String> = [
        "mlrun/mlrun-api:0.9.2",
        "mlrun/mlrun-api:0.9.2-py39",
        "mlrun/mlrun:0.9.2",
        "mlrun/jupyter:0.9.2",
        "mlrun/ml-base:0.9.2",
        "mlrun/ml-base:0.9.2-py39",
        "mlrun/ml-models:0.9.2",
        "mlrun/ml-models:0.9.2-py39",
        "mlrun/ml-models-gpu:0.9.2",
        "mlrun/ml-models-gpu:0.9.2-py39",
        "mlrun/mlrun-ui:0.9.2",
        // oci-build's own image, next to the family's, with its own version.
        "mlrun/oci-build:latest",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(listed, expected);

    let out = in_repo(
        &["targets"],
        &[
            ("MLRUN_DOCKER_REGISTRY", "quay.io/"),
            ("MLRUN_DOCKER_REPO", "iguazio"),
        ],
    );
    assert_success(&out, "targets with a registry");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("quay.io/iguazio/mlrun:unstable"), "{text}");
    assert!(
        text.contains("quay.io/iguazio/ml-models-gpu:unstable-py39"),
        "{text}"
    );
}

#[test]
fn resolve_gives_the_family_its_version_and_registry() {
    let vars = [
        ("MLRUN_VERSION", "1.12.1"),
        ("MLRUN_DOCKER_REGISTRY", "registry.site:5000/"),
    ];
    let out = in_repo(
        &[
            "resolve",
            "mlrun/mlrun",
            "mlrun/mlrun-api",
            "mlrun/ml-models:1.6.0",
            "python:3.11-slim",
        ],
        &vars,
    );
    assert_success(&out, "resolve");
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            "registry.site:5000/mlrun/mlrun:1.12.1",
            "registry.site:5000/mlrun/mlrun-api:1.12.1",
            "registry.site:5000/mlrun/ml-models:1.6.0",
            "python:3.11-slim",
        ]
    );

    // With the repository renamed, MLRun's own short names (recipes/_vars.toml's [project]
    // resolve_namespaces) and the new namespace both name the family's images.
    let out = in_repo(
        &["resolve", "mlrun/mlrun", "iguazio/ml-base", "other/mlrun"],
        &[("MLRUN_DOCKER_REPO", "iguazio")],
    );
    assert_success(&out, "resolve with a renamed repository");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "iguazio/mlrun:unstable\niguazio/ml-base:unstable\nother/mlrun\n"
    );
}

/// Every `debian`, `pip` and `conda` layer in the chain of `target` has a lock entry for amd64.
fn missing_pins(project: &Project, lock: &toml::Value, target: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut name = target.to_owned();
    loop {
        let recipe = project.load(&name).unwrap();
        for (index, layer) in recipe.layers.iter().enumerate() {
            let LayerSource::Locked(locked) = &layer.source else {
                continue;
            };
            let table = locked.key();
            let (key, value) = match table {
                "debian" => ("arch", "amd64"),
                "pip" => ("platform", "linux/amd64"),
                "conda" => ("subdir", "linux-64"),
                other => panic!("the family has no `{other}` layers"),
            };
            let pinned = lock
                .get(table)
                .and_then(|t| t.as_array())
                .is_some_and(|entries| {
                    entries.iter().any(|e| {
                        e["target"].as_str() == Some(&name)
                            && e["layer"].as_integer() == Some(index as i64 + 1)
                            && e[key].as_str() == Some(value)
                            && !e["packages"].as_array().unwrap().is_empty()
                    })
                });
            if !pinned {
                missing.push(format!("{name} layer {}", index + 1));
            }
        }
        match recipe.from {
            BaseRef::Definition(base) => name = base,
            _ => return missing,
        }
    }
}

#[test]
fn the_committed_lock_pins_every_image_of_the_family() {
    // The variables at their defaults, as the lock was written.
    for name in [
        "MLRUN_VERSION",
        "MLRUN_DOCKER_REPO",
        "MLRUN_DOCKER_REGISTRY",
        "MLRUN_CONDA_CHANNEL",
    ] {
        assert!(
            std::env::var(name).is_err(),
            "unset {name} to run this test"
        );
    }
    let project = Project::open(&repo()).unwrap();
    let text = std::fs::read_to_string(repo().join("recipes/recipes.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    let mut missing = Vec::new();
    for target in [
        "mlrun",
        "jupyter",
        "base",
        "base-legacy",
        "models",
        "models-legacy",
        "models-gpu",
        "models-gpu-legacy",
        "ui",
    ] {
        missing.extend(missing_pins(&project, &lock, target));
    }
    assert!(missing.is_empty(), "not pinned: {}", missing.join(", "));

    // The GPU split: the shared CUDA layer holds only NVIDIA's wheels, and the frameworks'
    // layer above installs none of them again.
    let pip = lock["pip"].as_array().unwrap();
    let packages = |target: &str, layer: i64| -> Vec<String> {
        pip.iter()
            .filter(|e| {
                e["target"].as_str() == Some(target) && e["layer"].as_integer() == Some(layer)
            })
            .flat_map(|e| e["packages"].as_array().unwrap().clone())
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let cuda = packages("cuda", 1);
    assert!(
        !cuda.is_empty() && cuda.iter().all(|n| n.starts_with("nvidia-")),
        "{cuda:?}"
    );
    let frameworks = packages("models-gpu", 2);
    assert!(frameworks.contains(&"torch".to_owned()), "{frameworks:?}");
    assert!(
        !frameworks.iter().any(|n| n.starts_with("nvidia-")),
        "{frameworks:?}"
    );
    // The legacy images run mlrun 1.10.4 on Python 3.9.
    let legacy = pip
        .iter()
        .find(|e| e["target"].as_str() == Some("base-legacy"))
        .expect("ml-base for Python 3.9 is locked");
    assert!(
        legacy["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"].as_str() == Some("mlrun") && p["version"].as_str() == Some("1.10.4"))
    );
}

/// `name → version` of every package the lock pins in `table` (`pip`, `debian`) for the
/// layers of `target` and the definitions below it, on amd64.
fn chain_pins(
    project: &Project,
    lock: &toml::Value,
    target: &str,
    table: &str,
) -> BTreeMap<String, String> {
    let (key, value) = match table {
        "debian" => ("arch", "amd64"),
        _ => ("platform", "linux/amd64"),
    };
    let mut pins = BTreeMap::new();
    let mut name = target.to_owned();
    loop {
        for entry in lock[table].as_array().unwrap() {
            if entry["target"].as_str() == Some(&name) && entry[key].as_str() == Some(value) {
                for package in entry["packages"].as_array().unwrap() {
                    pins.insert(
                        package["name"].as_str().unwrap().to_owned(),
                        package["version"].as_str().unwrap().to_owned(),
                    );
                }
            }
        }
        match project.load(&name).unwrap().from {
            BaseRef::Definition(base) => name = base,
            _ => return pins,
        }
    }
}

/// The GPU images give each framework its CUDA libraries: torch's nvidia-* dependencies and
/// TensorFlow's `and-cuda` extra, as the frameworks' own metadata declares them (read by uv,
/// the peer, from the index's PEP 658 metadata; no framework is downloaded), resolved against
/// everything the image pins, need nothing the shared CUDA layer does not hold.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the package index"
)]
fn the_gpu_images_hold_the_cuda_libraries_their_frameworks_declare() {
    let project = Project::open(&repo()).unwrap();
    let text = std::fs::read_to_string(repo().join("recipes/recipes.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (image, cuda, python) in [
        ("models-gpu", "cuda", "python3.11"),
        ("models-gpu-legacy", "cuda-legacy", "python3.9"),
    ] {
        let pins = chain_pins(&project, &lock, image, "pip");
        let in_cuda_layer = chain_pins(&project, &lock, cuda, "pip");
        let debian = chain_pins(&project, &lock, image, "debian");
        // The image's Python and glibc, as uv's target: 3.11.2-6 → 3.11.2, 2.36-9 → 2_36.
        let upstream = |package: &str| debian[package].split(['-', '+']).next().unwrap().to_owned();
        let python_version = upstream(python);
        let glibc = upstream("libc6").replace('.', "_");
        // Each framework with the extra that names its CUDA libraries (torch has them as
        // plain dependencies).
        let frameworks: String = [("torch", "torch"), ("tensorflow", "tensorflow[and-cuda]")]
            .iter()
            .filter_map(|(name, with_cuda)| pins.get(*name).map(|v| format!("{with_cuda}=={v}\n")))
            .collect();
        assert!(frameworks.contains("torch=="), "{image} pins no torch");
        // Python 3.9's TensorFlow cannot share CUDA with its torch (layers/cuda.toml).
        if image == "models-gpu" {
            assert!(
                frameworks.contains("tensorflow[and-cuda]=="),
                "{frameworks}"
            );
        }
        let requirements = tmp.path().join(format!("{image}.in"));
        std::fs::write(&requirements, &frameworks).unwrap();
        let constraints = tmp.path().join(format!("{image}.constraints"));
        let lines: String = pins.iter().map(|(n, v)| format!("{n}=={v}\n")).collect();
        std::fs::write(&constraints, lines).unwrap();
        let uv = Command::new("uv")
            .args(["pip", "compile", "--no-header", "--no-annotate", "--quiet"])
            .args(["--python-version", &python_version])
            .args(["--python-platform", &format!("x86_64-manylinux_{glibc}")])
            .arg("--constraint")
            .arg(&constraints)
            .arg(&requirements)
            .output()
            .expect("uv is installed by .ci/run (pip install uv)");
        assert_success(
            &uv,
            &format!("uv: the frameworks of {image} on its own pins"),
        );
        let needed: Vec<String> = String::from_utf8_lossy(&uv.stdout)
            .lines()
            .filter_map(|line| line.split_once("=="))
            .map(|(name, version)| (name.trim().to_lowercase(), version.trim().to_owned()))
            .filter(|(name, _)| name.starts_with("nvidia-"))
            .map(|(name, version)| format!("{name}=={version}"))
            .collect();
        assert!(
            !needed.is_empty(),
            "{image}: {frameworks} needs no CUDA library?"
        );
        let missing: Vec<&String> = needed
            .iter()
            .filter(|pin| {
                let (name, version) = pin.split_once("==").unwrap();
                in_cuda_layer.get(name).map(String::as_str) != Some(version)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{image}: its frameworks need CUDA libraries the `{cuda}` layer does not hold: {missing:?}"
        );
    }
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn mlrun_builds_from_the_lock_pushes_and_runs() {
    require_apt_sources();
    let registry = Registry::start(Auth::None);
    let report = push_mlrun_from_the_lock(&registry);
    let reference = report[0]["reference"].as_str().unwrap().to_owned();

    // Its SBOM is attached to the amd64 manifest, and spdx-tools finds it valid.
    let tmp = tempfile::tempdir().unwrap();
    let amd64 = report[0]["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"] == "linux/amd64")
        .expect("an amd64 image");
    let subject = amd64["manifest"]["digest"].as_str().unwrap();
    let attached = pushed_sbom(&registry, "mlrun/mlrun", subject);
    let sbom_file = tmp.path().join("mlrun.spdx.json");
    std::fs::write(&sbom_file, &attached).unwrap();
    crate::sbom::validate_spdx(&sbom_file);
    let attached: serde_json::Value = serde_json::from_slice(&attached).unwrap();

    // skopeo reads it back from the registry; the image runs MLRun.
    let layout = tmp.path().join("pulled");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:mlrun", layout.display()),
        ],
    );
    // skopeo copies no referrers: `oci-build sbom` makes the SBOM from the layers, the same
    // packages.
    let out = Command::new(bin_path())
        .args(["sbom", &format!("oci:{}:mlrun", layout.display())])
        .output()
        .unwrap();
    assert_success(&out, "oci-build sbom of the pulled mlrun image");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        crate::sbom::spdx_packages(&made),
        crate::sbom::spdx_packages(&attached)
    );
    if is_root() {
        let bundle = tmp.path().join("bundle");
        let rootfs = crate::common::umoci_unpack(&layout, "mlrun", &bundle);
        // As the image's own user, with its environment, as a runtime starts it.
        let container = Container::new(&bundle);
        let version = container.run(&container.process.with_args(&[
            "python3",
            "-c",
            "import mlrun; print(mlrun.__version__)",
        ]));
        let lock = std::fs::read_to_string(repo().join("recipes/recipes.lock")).unwrap();
        assert!(
            lock.contains(&format!(
                "name = \"mlrun\"\nversion = \"{}\"",
                version.trim()
            )),
            "mlrun {version} is not the locked version"
        );
        // The SBOM pushed with it lists exactly what dpkg and pip say the image holds.
        let (debs, wheels) = installed_packages(&rootfs);
        assert_eq!(
            sbom_packages(&attached, "pkg:deb/"),
            debs,
            "Debian packages"
        );
        assert_eq!(
            sbom_packages(&attached, "pkg:pypi/"),
            wheels,
            "Python distributions"
        );
    } else {
        eprintln!("not root: the chroot part of the mlrun test skipped");
    }
}

/// The SPDX SBOM that `registry` lists as a referrer of `subject` in `repository` (by the
/// fallback tag: docker-registry 2.8 has no referrers API).
fn pushed_sbom(registry: &Registry, repository: &str, subject: &str) -> Vec<u8> {
    let get = |path: &str, accept: &str| {
        let url = format!("{}/v2/{repository}/{path}", registry.base_url());
        let response = http_request("GET", &url, &[("Accept", accept)], b"").unwrap();
        assert_eq!(response.status, 200, "GET {url}");
        response.body
    };
    let index = json(
        &String::from_utf8(get(
            &format!("manifests/{}", subject.replace(':', "-")),
            "application/vnd.oci.image.index.v1+json",
        ))
        .unwrap(),
    );
    let spdx = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["artifactType"] == "application/spdx+json")
        .unwrap_or_else(|| panic!("no SPDX referrer of {subject}: {index}"));
    let manifest = json(
        &String::from_utf8(get(
            &format!("manifests/{}", spdx["digest"].as_str().unwrap()),
            "application/vnd.oci.image.manifest.v1+json",
        ))
        .unwrap(),
    );
    get(
        &format!(
            "blobs/{}",
            manifest["layers"][0]["digest"].as_str().unwrap()
        ),
        "*/*",
    )
}

/// `(name, version)` of packages.
type Packages = BTreeSet<(String, String)>;

/// `(name, version)` of the packages of an SPDX document whose purl starts with `prefix`;
/// Python names normalised as pip compares them.
fn sbom_packages(document: &serde_json::Value, prefix: &str) -> Packages {
    document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|purl| purl.starts_with(prefix))
        })
        .map(|p| {
            let name = p["name"].as_str().unwrap();
            let name = if prefix == "pkg:pypi/" {
                python_name(name)
            } else {
                name.to_owned()
            };
            (name, p["versionInfo"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn python_name(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// What `dpkg-query -W` and `pip list` say the unpacked image at `rootfs` holds.
fn installed_packages(rootfs: &std::path::Path) -> (Packages, Packages) {
    let debs = chroot(rootfs, "dpkg-query -W -f '${binary:Package} ${Version}\\n'")
        .lines()
        .map(|line| {
            let (name, version) = line.split_once(' ').unwrap();
            // `libc6:amd64` for Multi-Arch: same packages.
            let name = name.split(':').next().unwrap();
            (name.to_owned(), version.to_owned())
        })
        .collect();
    // Each site directory on its own: together they show a distribution that one directory
    // shadows in another (Debian's setuptools under the pinned one), which the image holds
    // all the same.
    let wheels = site_distributions(&chroot(rootfs, PIP_LIST_EACH_SITE))
        .into_iter()
        .map(|(name, version)| (python_name(&name), version))
        .collect();
    (debs, wheels)
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn the_gpu_smoke_image_builds() {
    require_apt_sources();
    let tmp = tempfile::tempdir().unwrap();
    let out = oci_build_at(&repo().join("gpu-smoke"), &live_cache())
        .args(["build", "--json", "--locked", "cuda-smoke", "--output"])
        .arg(format!("oci:{}", tmp.path().join("out").display()))
        .output()
        .unwrap();
    let report = json_of(&out, "build the GPU smoke image");
    assert_eq!(layer_count(&report[0]), 3);
}

/// The committed digests of the images `build --locked` gives from recipes/recipes.lock.
const DIGESTS_FILE: &str = "recipes/recipes.digests";

/// `platform digest` of every manifest a build report's target has.
fn manifest_digests(report: &serde_json::Value) -> Vec<String> {
    report[0]["manifests"]
        .as_array()
        .expect("a build report lists manifests")
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["platform"].as_str().unwrap(),
                m["manifest"]["digest"].as_str().unwrap()
            )
        })
        .collect()
}

/// The main job, reproducible across machines: `mlrun` built from the committed lock, once in
/// the checkout with the shared live cache and once elsewhere with everything a build machine
/// varies changed (user, HOME, cache, umask, time zone, locale, working directory, hash seed,
/// directory order), gives the digests committed beside the lock. CI runs it on every new
/// machine. `OCI_BUILD_UPDATE_DIGESTS=1` writes the file instead, after a lock refresh.
#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn mlrun_from_the_lock_has_the_committed_digest_on_any_build_machine() {
    require_apt_sources();
    let here = tempfile::tempdir().unwrap();
    let report = build_in_repo(
        &[
            "build",
            "--json",
            "--locked",
            "mlrun",
            "--output",
            &format!("oci:{}", here.path().join("out").display()),
        ],
        &[],
    );
    let digests = manifest_digests(&report);

    let elsewhere = crate::common::Project::new();
    crate::common::copy_project(&elsewhere.dir());
    let home = elsewhere.tmp.path().join("home");
    let work = elsewhere.tmp.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let out = elsewhere.tmp.path().join("out");
    let unprivileged = elsewhere.unprivileged_command();
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 077 && exec \"$@\"", "sh"])
        .arg(unprivileged.get_program())
        .args(unprivileged.get_args())
        .arg("-C")
        .arg(elsewhere.dir())
        .arg("--cache-dir")
        .arg(elsewhere.cache())
        .args(["build", "--json", "--locked", "mlrun", "--output"])
        .arg(format!("oci:{}", out.display()))
        .current_dir(&work)
        .env("HOME", &home)
        .env("TZ", "Pacific/Chatham")
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .env("PYTHONHASHSEED", "4242")
        .env_remove("SOURCE_DATE_EPOCH");
    for name in crate::common::FAMILY_VARIABLES {
        command.env_remove(name);
    }
    let varied = manifest_digests(&json_of(
        &command.output().unwrap(),
        "oci-build build --locked mlrun elsewhere",
    ));
    assert_eq!(
        varied, digests,
        "two builds of mlrun from one lock differ with the build machine"
    );

    let path = repo().join(DIGESTS_FILE);
    let lines: Vec<String> = digests.iter().map(|d| format!("mlrun {d}")).collect();
    if std::env::var_os("OCI_BUILD_UPDATE_DIGESTS").is_some() {
        let header = "# What `oci-build build --locked` gives from recipes.lock, on any machine: CI fails when a\n# build differs. After a lock refresh: OCI_BUILD_UPDATE_DIGESTS=1 cargo test mlrun_from_the_lock\n";
        std::fs::write(&path, format!("{header}{}\n", lines.join("\n"))).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {DIGESTS_FILE} ({e})"));
    let committed: Vec<&str> = committed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        committed, lines,
        "mlrun built from the committed lock does not have the digest {DIGESTS_FILE} records"
    );
}
