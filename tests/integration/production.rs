//! Live: examples/production, a function image on a tag-pinned MLRun image in a registry. The
//! family's `mlrun` image, built from the committed lock and pushed to a docker-registry under
//! the example's MLRun tag, is its base; the example, built from its own committed lock and
//! pushed, is pulled back with skopeo and run as a runtime starts it: mlrun imports, the pinned
//! versions replaced the base's, the application package and its command are there, and pip
//! finds nothing broken. A pin that mlrun forbids fails in one sentence and writes nothing.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{
    PIP_LIST_EACH_SITE, copy_tree, is_root, json_of, live_cache, oci_build_at,
    push_mlrun_from_the_lock, refused, repo, require_apt_sources, site_distributions, tool,
    umoci_unpack,
};
use crate::fixtures::registry::{Auth, Registry, http_request};
use crate::runtime::Container;

/// Where the example lives in the repository.
const EXAMPLE: &str = "examples/production";

/// The variables the example reads; a test sets the ones it means and the host's never leak in.
const EXAMPLE_VARIABLES: [&str; 6] = [
    "MLRUN_VERSION",
    "MLRUN_DOCKER_REPO",
    "MLRUN_DOCKER_REGISTRY",
    "MLRUN_IMAGE_DIGEST",
    "APP_REPO",
    "APP_VERSION",
];

/// A variable's default in the example's `recipes/_vars.toml`.
fn example_default(name: &str) -> String {
    let text = std::fs::read_to_string(repo().join(EXAMPLE).join("recipes/_vars.toml")).unwrap();
    let vars: toml::Value = toml::from_str(&text).unwrap();
    vars["vars"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no default in the example"))
        .to_owned()
}

/// `oci-build` on the example copied to `dir`, with the live cache, `registry` as
/// MLRUN_DOCKER_REGISTRY and `vars`; the example's other variables at their defaults.
fn example_command(dir: &Path, registry: &Registry, vars: &[(&str, &str)]) -> Command {
    let mut command = oci_build_at(dir, &live_cache());
    command.args(["--insecure-registry", &registry.url()]);
    for name in EXAMPLE_VARIABLES {
        command.env_remove(name);
    }
    command.env("MLRUN_DOCKER_REGISTRY", format!("{}/", registry.url()));
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().unwrap()
}

/// The version the example's committed lock says a pin of `package` replaced in the base.
fn locked_replacement(package: &str) -> String {
    let text = std::fs::read_to_string(repo().join(EXAMPLE).join("recipes/recipes.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    lock["pip"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|layer| layer["packages"].as_array().unwrap())
        .find(|pin| pin["name"].as_str() == Some(package))
        .and_then(|pin| pin["replaces"].as_str())
        .unwrap_or_else(|| panic!("the example's lock has no replacement of {package}"))
        .to_owned()
}

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive and package index"
)]
fn the_production_example_builds_on_a_pushed_mlrun_image() {
    require_apt_sources();
    let registry = Registry::start(Auth::None);
    let prefix = format!("{}/", registry.url());
    let family = push_mlrun_from_the_lock(&registry);
    // The example names its base by MLRun's tag: the family's image under that tag.
    let mlrun_version = example_default("MLRUN_VERSION");
    let base = format!("{prefix}mlrun/mlrun:{mlrun_version}");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}", family[0]["reference"].as_str().unwrap()),
            &format!("docker://{base}"),
        ],
    );

    let tmp = tempfile::tempdir().unwrap();
    let example = tmp.path().join("production");
    copy_tree(&repo().join(EXAMPLE), &example);
    let lock_file = example.join("recipes/recipes.lock");
    let committed_lock = std::fs::read(&lock_file).unwrap();

    // One command, from the committed lock (made against this base), the base's tag pinned to
    // its digest as production pins it.
    let digest = format!("@{}", family[0]["digest"].as_str().unwrap());
    let pinned_base = format!("{base}{digest}");
    let out = run(
        example_command(&example, &registry, &[("MLRUN_IMAGE_DIGEST", &digest)]),
        &["build", "--json", "--locked", "--push", "scorer"],
    );
    let report = json_of(
        &out,
        "oci-build build --locked --push scorer (examples/production)",
    );
    let reference = report[0]["reference"].as_str().unwrap();
    assert_eq!(
        reference,
        format!("{prefix}apps/scorer:{}", example_default("APP_VERSION"))
    );
    let said = String::from_utf8_lossy(&out.stderr);
    let replaced = locked_replacement("requests");
    assert!(
        said.contains(&format!(
            "scorer: requests {replaced} \u{2192} 2.32.4 (in {pinned_base})"
        )),
        "the downgrade is not printed: {said}"
    );
    assert_eq!(std::fs::read(&lock_file).unwrap(), committed_lock);

    // skopeo reads it back from the registry.
    let layout = tmp.path().join("pulled");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:scorer", layout.display()),
        ],
    );
    if is_root() {
        let bundle = tmp.path().join("bundle");
        umoci_unpack(&layout, "scorer", &bundle);
        // As the image's own user, with its environment, as a runtime starts it.
        let container = Container::new(&bundle);
        let python =
            |code: &str| container.run(&container.process.with_args(&["python3", "-c", code]));
        let versions = python(
            "import mlrun, requests, humanize, scorer\n\
             print(mlrun.__version__, requests.__version__, humanize.__version__)",
        );
        // The example's tag names the release the family's image holds.
        assert_eq!(
            versions.split_whitespace().collect::<Vec<_>>(),
            [mlrun_version.as_str(), "2.32.4", "4.12.3"],
            "mlrun, and requests and humanize as requirements.txt pins them"
        );
        // Nothing of the replaced version's files is left beside the new one's.
        let stray = python(
            "import pathlib, requests\n\
             package = pathlib.Path(requests.__file__).parent\n\
             site = package.parent\n\
             record = (site / 'requests-2.32.4.dist-info' / 'RECORD').read_text()\n\
             recorded = {line.split(',')[0] for line in record.splitlines()}\n\
             print([str(p.relative_to(site)) for p in package.rglob('*') if p.is_file()\n\
                    and '__pycache__' not in p.parts and str(p.relative_to(site)) not in recorded])",
        );
        assert_eq!(stray.trim(), "[]", "files of the replaced requests remain");
        // The application's command, on the image's PATH.
        let said = container.run(&container.process.with_args(&["scorer", "1200000"]));
        assert_eq!(said.trim(), "1.2 million");
        let check = container.run(
            &container
                .process
                .with_args(&["python3", "-m", "pip", "check"]),
        );
        assert!(check.contains("No broken requirements"), "{check}");
        // One copy of requests in every site directory together: the base's was whited out.
        let listed = site_distributions(&container.run(&container.process.with_args(&[
            "/bin/sh",
            "-c",
            PIP_LIST_EACH_SITE,
        ])));
        let requests: Vec<_> = listed
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("requests"))
            .collect();
        assert_eq!(
            requests,
            [&("requests".to_owned(), "2.32.4".to_owned())],
            "{listed:?}"
        );
        assert!(
            listed
                .iter()
                .any(|(name, version)| name == "scorer" && version == "0.1.0"),
            "{listed:?}"
        );
    } else {
        eprintln!("not root: the run of the pulled scorer image skipped");
    }

    // A pin that mlrun forbids (mlrun 1.12.1 asks pandas<2.2,>=1.2), on the base by its tag
    // alone: one sentence naming mlrun and its requirement, nothing pushed, the lock as it was.
    let requirements = example.join("requirements.txt");
    let mut pinned = std::fs::read_to_string(&requirements).unwrap();
    pinned.push_str("pandas==2.2.3\n");
    std::fs::write(&requirements, pinned).unwrap();
    let out = run(
        example_command(&example, &registry, &[("APP_VERSION", "refused")]),
        &["build", "--push", "scorer"],
    );
    let sentence = refused(&out, "pandas");
    for part in [
        format!("mlrun {mlrun_version} (installed in {base}) requires pandas>=1.2,<2.2").as_str(),
        "pandas==2.2.3",
        "requirements.txt",
    ] {
        assert!(sentence.contains(part), "{part:?} not in: {sentence}");
    }
    assert!(!sentence.contains('\u{2205}'), "{sentence}");
    assert_eq!(std::fs::read(&lock_file).unwrap(), committed_lock);
    let manifest = http_request(
        "GET",
        &format!("{}/v2/apps/scorer/manifests/refused", registry.base_url()),
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    )
    .unwrap();
    assert_eq!(manifest.status, 404, "the refused build pushed an image");
}
