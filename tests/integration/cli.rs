//! The command line as a newcomer and a CI script meet it.

use std::path::Path;
use std::process::Command;

use crate::common::{Project, assert_success, bin_path, json};

#[test]
fn help_lists_the_commands_and_build_options() {
    let out = Command::new(bin_path()).arg("--help").output().unwrap();
    assert_success(&out, "--help");
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["build", "inspect", "targets"] {
        assert!(
            help.contains(command),
            "--help does not mention {command}:\n{help}"
        );
    }
    let out = Command::new(bin_path())
        .args(["build", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--all",
        "--output",
        "--platform",
        "--compression",
        "--json",
        "oci-archive:",
    ] {
        assert!(
            help.contains(option),
            "build --help does not mention {option}:\n{help}"
        );
    }
}

#[test]
fn targets_resolve_variables_variants_and_environment() {
    let p = Project::new();
    p.write(
        "recipes/_vars.toml",
        "[vars]\nVERSION = \"unstable\"\nREPO = \"acme\"\n",
    );
    p.recipe(
        "tool",
        r#"
image = "${REPO}/tool:${VERSION}"
description = "a tool"
[[layer]]
remove = ["/tmp/x"]
[variants.legacy]
tag_suffix = "-py39"
"#,
    );
    let out = p.run(&["targets", "--json"]);
    assert_success(&out, "targets");
    let targets = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(targets[0]["target"], "tool");
    assert_eq!(targets[0]["image"], "acme/tool:unstable");
    assert_eq!(targets[1]["target"], "tool-legacy");
    assert_eq!(targets[1]["image"], "acme/tool:unstable-py39");

    let out = p
        .command(&["targets"])
        .env("VERSION", "0.9.2")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "tool         acme/tool:0.9.2\ntool-legacy  acme/tool:0.9.2-py39\n"
    );
}

#[test]
fn inspect_reports_config_layers_and_history() {
    let p = Project::new();
    p.write("files/hello.txt", "hello\n");
    p.recipe(
        "hello",
        r#"
platforms = ["linux/arm64"]
[[layer]]
comment = "greeting"
files = [{ src = "files/hello.txt", dest = "/hello.txt" }]
[config]
entrypoint = ["/bin/cat"]
cmd = ["/hello.txt"]
user = "1000"
workdir = "/"
ports = ["8888", "53/udp"]
volumes = ["/data"]
stop_signal = "SIGINT"
labels = { team = "ml" }
env = { A = "1" }
"#,
    );
    let report = p.build(&["hello", "--output", "oci-archive:hello.tar"]);
    let out = p.run(&["inspect", "--json", "oci-archive:hello.tar"]);
    assert_success(&out, "inspect");
    let inspected = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(inspected["digest"], report["digest"]);
    let image = &inspected["images"][0];
    assert_eq!(image["platform"], "linux/arm64");
    assert_eq!(
        image["layers"][0]["size"],
        report["manifests"][0]["layers"][0]["size"]
    );
    assert_eq!(image["history"][0]["comment"], "greeting");
    assert_eq!(
        image["config"]["ExposedPorts"],
        serde_json::json!({"8888/tcp": {}, "53/udp": {}})
    );
    assert_eq!(image["config"]["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(image["config"]["StopSignal"], "SIGINT");
    assert_eq!(image["config"]["Labels"]["team"], "ml");

    let out = p.run(&["inspect", "oci-archive:hello.tar"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("platform linux/arm64"), "{text}");
    assert!(text.contains("entrypoint [\"/bin/cat\"]"), "{text}");
    assert!(
        text.contains("oci-build: files files/hello.txt -> /hello.txt"),
        "{text}"
    );
}

/// The README's first command builds the bundled example; the same recipe must keep working.
#[test]
fn bundled_example_builds_offline() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/offline");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin_path())
        .arg("-C")
        .arg(&repo)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .args(["build", "--json", "example", "--output"])
        .arg(format!("oci:{}", tmp.path().join("out").display()))
        .output()
        .unwrap();
    assert_success(&out, "build of the bundled example");
    let reports = json(&String::from_utf8(out.stdout).unwrap());
    let example = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "example")
        .expect("the example target is built");
    assert_eq!(example["manifests"].as_array().unwrap().len(), 2);
}

/// Without a terminal, each layer is one plain line on stderr; -q silences them.
#[test]
fn progress_is_line_oriented_without_a_terminal() {
    let p = Project::new();
    p.write("a/one.txt", "1\n");
    p.recipe(
        "base",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"a\", dest = \"/a\" }]\n",
    );
    p.recipe(
        "app",
        "from = \"base\"\n[[layer]]\nremove = [\"/a/one.txt\"]\n",
    );
    let out = p.run(&["build", "app"]);
    assert_success(&out, "build");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with("base [1/1] files a -> /a sha256:"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("app [1/1] remove /a/one.txt sha256:"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("app: oci:out:app:latest sha256:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );

    let quiet = p.run(&["-q", "build", "app"]);
    assert_success(&quiet, "quiet build");
    assert!(quiet.stderr.is_empty());
}

/// A recipe built on another recipe carries its layers and config, and the manifest carries
/// the OCI annotations, including those the recipe sets through variables.
#[test]
fn recipes_build_on_recipes_and_annotate_manifests() {
    let p = Project::new();
    p.write("a/one.txt", "1\n");
    p.write("b/two.txt", "2\n");
    p.recipe(
        "base",
        r#"
platforms = ["linux/amd64"]
[[layer]]
files = [{ src = "a", dest = "/a" }]
[config]
env = { FROM_BASE = "yes" }
cmd = ["sh"]
"#,
    );
    p.recipe(
        "app",
        r#"
from = "base"
image = "acme/app:${VERSION}"
[vars]
VERSION = "2.0"
REVISION = "unknown"
[[layer]]
files = [{ src = "b", dest = "/b" }]
[annotations]
"org.opencontainers.image.revision" = "${REVISION}"
"org.opencontainers.image.source" = "https://example.org/acme/app"
"#,
    );
    let out = p
        .command(&["build", "--json", "app", "base"])
        .env("REVISION", "abc123")
        .output()
        .unwrap();
    assert_success(&out, "build");
    let reports = json(&String::from_utf8(out.stdout).unwrap());
    let (app, base) = (&reports[0], &reports[1]);
    assert_eq!(
        app["manifests"][0]["layers"][0],
        base["manifests"][0]["layers"][0]
    );
    assert_eq!(app["manifests"][0]["layers"].as_array().unwrap().len(), 2);
    // The base was built once for both targets.
    assert_eq!(app["layers_built"].as_u64(), Some(2));

    let image = format!("oci:{}:acme/app:2.0", p.tmp.path().join("out").display());
    let raw = json(&crate::common::tool(
        "skopeo",
        &["inspect", "--raw", &image],
    ));
    let annotations = &raw["annotations"];
    assert_eq!(annotations["org.opencontainers.image.revision"], "abc123");
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        "https://example.org/acme/app"
    );
    assert_eq!(annotations["org.opencontainers.image.version"], "2.0");
    assert_eq!(
        annotations["org.opencontainers.image.created"],
        "1970-01-01T00:00:00Z"
    );
    let config = json(&crate::common::tool(
        "skopeo",
        &["inspect", "--config", &image],
    ));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("FROM_BASE=yes"))
    );
}

/// Without --cache-dir, layers are cached under $XDG_CACHE_HOME/oci-build.
#[test]
fn cache_defaults_to_xdg_cache_home() {
    let p = Project::new();
    p.write("a/one.txt", "1\n");
    p.recipe(
        "app",
        "[[layer]]\nfiles = [{ src = \"a\", dest = \"/a\" }]\n",
    );
    let xdg = p.tmp.path().join("xdg");
    let out = Command::new(bin_path())
        .arg("-C")
        .arg(p.dir())
        .args(["-q", "build", "app", "--output"])
        .arg(format!("oci:{}", p.tmp.path().join("out").display()))
        .env("XDG_CACHE_HOME", &xdg)
        .env_remove("OCI_BUILD_CACHE_DIR")
        .output()
        .unwrap();
    assert_success(&out, "build");
    assert!(xdg.join("oci-build/CACHEDIR.TAG").is_file());
    assert_eq!(
        std::fs::read_dir(xdg.join("oci-build/layers-v1"))
            .unwrap()
            .count(),
        1
    );
}

/// A symlinked `src` file copied into a directory keeps the name the recipe gave, as COPY does.
#[test]
fn a_symlinked_source_keeps_its_own_name() {
    let p = Project::new();
    p.write("conf/app.conf.prod", "mode = prod\n");
    std::os::unix::fs::symlink("app.conf.prod", p.path("conf/app.conf")).unwrap();
    p.recipe(
        "app",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"conf/app.conf\", dest = \"/etc/\" }]\n",
    );
    let report = p.build(&["app", "--output", "oci:out"]);
    let out = p.tmp.path().join("out");
    let layer = crate::common::read_layer(&crate::common::layer_paths(&out, &report)[0]);
    let file = layer
        .iter()
        .find(|e| e.path == "etc/app.conf")
        .expect("etc/app.conf in the layer");
    assert_eq!(file.content, b"mode = prod\n");
}

/// Targets built at once (`--jobs`) give the same images as one after another, and a base
/// they share is the same layers in both.
#[test]
fn targets_built_in_parallel_match_a_sequential_build() {
    let p = Project::new();
    p.write("base/a.txt", "a\n");
    p.write("base/b.txt", "b\n");
    p.write("one/x.txt", "1\n");
    p.write("two/y.txt", "2\n");
    p.recipe(
        "base",
        "platforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nfiles = [{ src = \"base/a.txt\", dest = \"/a\" }]\n[[layer]]\nfiles = [{ src = \"base/b.txt\", dest = \"/b\" }]\n",
    );
    for (name, dir) in [("one", "one"), ("two", "two"), ("three", "one")] {
        p.recipe(
            name,
            &format!(
                "from = \"base\"\n[[layer]]\nfiles = [{{ src = \"{dir}\", dest = \"/{name}\" }}]\n"
            ),
        );
    }
    let digests = |jobs: &str, out: &str| -> Vec<String> {
        let reports = p.run(&[
            "build", "--json", "--jobs", jobs, "one", "two", "three", "--output", out,
        ]);
        assert_success(&reports, "parallel build");
        // The shared base is built once, whichever target reaches it first.
        let progress = String::from_utf8_lossy(&reports.stderr).into_owned();
        assert_eq!(progress.matches("base [1/2]").count(), 1, "{progress}");
        let reports: serde_json::Value = serde_json::from_slice(&reports.stdout).unwrap();
        reports
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r["target"], r["digest"]))
            .collect()
    };
    let parallel = digests("3", "oci:par");
    std::fs::remove_dir_all(p.cache()).unwrap();
    let sequential = digests("1", "oci:seq");
    assert_eq!(parallel, sequential);
    assert_eq!(parallel.len(), 3);
}
