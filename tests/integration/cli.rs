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
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin_path())
        .arg("-C")
        .arg(repo)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .args(["build", "--json", "--all", "--output"])
        .arg(format!("oci:{}", tmp.path().join("out").display()))
        .output()
        .unwrap();
    assert_success(&out, "build --all of the bundled recipes");
    let reports = json(&String::from_utf8(out.stdout).unwrap());
    let example = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "example")
        .expect("the example target is built");
    assert_eq!(example["manifests"].as_array().unwrap().len(), 2);
}
