//! Hermetic `conda` layers: each test writes a tiny conda channel (packages as `.tar.bz2` and
//! `.conda` archives made here, indexed into repodata.json and repodata.json.zst), serves it on
//! 127.0.0.1 or as a file:// URL, and builds a recipe that names it. Nothing else is contacted,
//! except by the live chroot test (Debian's archive, for the Python base).
//!
//! Covered: the solve (dependencies, versions, noarch), text and binary prefix replacement,
//! noarch python with an entry point, conda-meta records and history, PATH, the lock and a
//! build from it without repodata, channel names through the alias, an unsatisfiable spec, a
//! checksum mismatch, entries that escape the prefix; live: the entry point run in a chroot
//! of the Debian Python base.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::{
    DEBIAN_PATH, Project, TarEntry, assert_success, build_error, chroot_with_path, is_root, json,
    layer_paths, live_project, oci_build_at, read_layer, umoci_unpack,
};
use crate::fixtures::conda::{Channel, PLACEHOLDER, Pkg, conda_recipe};
use crate::fixtures::http::StaticServer;

/// The binary test file: an ELF-like header, a C string holding the placeholder twice, a
/// second string after it.
fn binary_with_placeholder() -> Vec<u8> {
    let mut data = b"\x7fELF\x02\x01\x01\0".to_vec();
    data.extend_from_slice(PLACEHOLDER.as_bytes());
    data.extend_from_slice(b"/lib:");
    data.extend_from_slice(PLACEHOLDER.as_bytes());
    data.extend_from_slice(b"/lib64\0after\0");
    data
}

/// The channel most tests use.
fn test_channel() -> Channel {
    let mut channel = Channel::new();
    channel
        .add(Pkg::new("textpre", "0.9", "0").prefixed("etc/textpre.conf", b"old\n", "text"))
        .add(Pkg::new("textpre", "1.0", "0").prefixed(
            "etc/textpre.conf",
            format!("prefix={PLACEHOLDER}\nlib={PLACEHOLDER}/lib\n").as_bytes(),
            "text",
        ))
        .add(
            Pkg::new("binpre", "2.1", "h1")
                .depends("textpre >=1.0")
                .prefixed("lib/libbinpre.so", &binary_with_placeholder(), "binary")
                .file("bin/binpre", b"#!/bin/sh\necho binpre\n", 0o755)
                .symlink("lib/libbinpre.so.2", "libbinpre.so")
                .conda(),
        )
        .add(
            Pkg::new("python", "3.11.2", "h0_test")
                .symlink("bin/python", "/usr/bin/python3.11")
                .symlink("bin/python3", "python")
                .file(
                    "pyvenv.cfg",
                    b"home = /usr/bin\ninclude-system-site-packages = false\n",
                    0o644,
                ),
        )
        .add(
            Pkg::new("hello", "2.0", "pyh_0")
                .depends("python >=3.11")
                .file(
                    "site-packages/hello/__init__.py",
                    b"def main():\n    print('hello from conda')\n",
                    0o644,
                )
                .noarch_python("hello = hello:main")
                .conda(),
        )
        .add(
            Pkg::new("app", "1.0", "0")
                .depends("binpre 2.*")
                .depends("hello")
                .file("share/app/README", b"app\n", 0o644),
        );
    channel
}

fn entry<'a>(layer: &'a [TarEntry], path: &str) -> &'a TarEntry {
    layer
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the layer"))
}

fn config_of(p: &Project, report: &Value) -> Value {
    let digest = report["manifests"][0]["config"]["digest"].as_str().unwrap();
    let blob = p
        .tmp
        .path()
        .join("out/blobs/sha256")
        .join(&digest["sha256:".len()..]);
    json(&fs::read_to_string(blob).unwrap())
}

#[test]
fn conda_layer_solves_installs_records_and_locks() {
    let channel = test_channel();
    let server = StaticServer::start(channel.path().to_owned(), "channel");
    let p = Project::new();
    let url = server.uri();
    conda_recipe(&p, &url, &["app", "python=3.11"]);
    let report = p.build(&["env", "--output", "oci:out"]);
    let layers: Vec<Vec<TarEntry>> = layer_paths(&p.tmp.path().join("out"), &report)
        .iter()
        .map(|l| read_layer(l))
        .collect();
    assert_eq!(layers.len(), 1);
    let layer = &layers[0];

    // The solve: app's dependencies, the newest textpre that binpre allows, noarch included.
    let mut records: Vec<String> = layer
        .iter()
        .filter_map(|e| e.path.strip_prefix("opt/conda/conda-meta/"))
        .filter(|n| n.ends_with(".json"))
        .map(str::to_owned)
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            "app-1.0-0.json",
            "binpre-2.1-h1.json",
            "hello-2.0-pyh_0.json",
            "python-3.11.2-h0_test.json",
            "textpre-1.0-0.json"
        ]
    );
    // repodata.json.zst is preferred where offered.
    let requests = server.paths();
    assert!(
        requests.contains(&"/linux-64/repodata.json.zst".to_owned()),
        "{requests:?}"
    );
    assert!(!requests.contains(&"/linux-64/repodata.json".to_owned()));

    // Text prefix replacement: every occurrence.
    assert_eq!(
        String::from_utf8_lossy(&entry(layer, "opt/conda/etc/textpre.conf").content),
        "prefix=/opt/conda\nlib=/opt/conda/lib\n"
    );
    // Binary: same length, the C string rewritten and NUL-padded, what follows unmoved.
    let original = binary_with_placeholder();
    let binary = &entry(layer, "opt/conda/lib/libbinpre.so").content;
    assert_eq!(binary.len(), original.len());
    let string_start = 8;
    let new_string = b"/opt/conda/lib:/opt/conda/lib64";
    assert_eq!(
        &binary[string_start..string_start + new_string.len()],
        new_string
    );
    let tail = b"\0after\0";
    let padding_end = binary.len() - tail.len();
    assert!(
        binary[string_start + new_string.len()..padding_end]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(&binary[padding_end..], tail);
    assert_eq!(entry(layer, "opt/conda/bin/binpre").mode, 0o755);
    let link = entry(layer, "opt/conda/lib/libbinpre.so.2");
    assert_eq!(
        (link.kind, link.link.as_deref()),
        ('l', Some("libbinpre.so"))
    );

    // noarch python: site-packages under the solved python's version, and the entry point.
    let module = entry(
        layer,
        "opt/conda/lib/python3.11/site-packages/hello/__init__.py",
    );
    assert!(String::from_utf8_lossy(&module.content).contains("hello from conda"));
    let script = entry(layer, "opt/conda/bin/hello");
    assert_eq!(script.mode, 0o755);
    let script_text = String::from_utf8_lossy(&script.content).into_owned();
    assert!(
        script_text.starts_with("#!/opt/conda/bin/python\n"),
        "{script_text}"
    );
    assert!(script_text.contains("from hello import main"));
    assert!(
        !layer.iter().any(|e| e.path.contains("site-packages/hello")
            && e.path.starts_with("opt/conda/site-packages"))
    );
    assert!(!layer.iter().any(|e| e.path.starts_with("opt/conda/info")));

    // conda-meta records as conda writes them.
    let hello: Value = json(&String::from_utf8_lossy(
        &entry(layer, "opt/conda/conda-meta/hello-2.0-pyh_0.json").content,
    ));
    assert_eq!(hello["name"], "hello");
    assert_eq!(hello["noarch"], "python");
    assert_eq!(hello["fn"], "hello-2.0-pyh_0.conda");
    assert_eq!(hello["channel"], url);
    assert_eq!(hello["url"], format!("{url}/noarch/hello-2.0-pyh_0.conda"));
    let files: Vec<&str> = hello["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "lib/python3.11/site-packages/hello/__init__.py",
            "bin/hello"
        ]
    );
    assert_eq!(hello["paths_data"]["paths_version"], 1);
    let python: Value = json(&String::from_utf8_lossy(
        &entry(layer, "opt/conda/conda-meta/python-3.11.2-h0_test.json").content,
    ));
    assert_eq!(python["requested_spec"], "python=3.11");
    assert_eq!(python["version"], "3.11.2");
    assert_eq!(python["sha256"].as_str().unwrap().len(), 64);
    let history =
        String::from_utf8_lossy(&entry(layer, "opt/conda/conda-meta/history").content).into_owned();
    assert!(
        history.starts_with("==> 1970-01-01 00:00:00 <==\n"),
        "{history}"
    );
    assert!(history.contains(&format!("+{url}/linux-64::binpre-2.1-h1\n")));
    assert!(history.contains("# update specs: [\"app\",\"python=3.11\"]"));

    // PATH: the environment's bin/ first.
    let config = config_of(&p, &report);
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.iter()
            .any(|e| e.starts_with("PATH=/opt/conda/bin:/usr/local/sbin")),
        "{env:?}"
    );

    // The lock: what, not where: file names relative to the channel, no package URLs.
    let lock = fs::read_to_string(p.path("recipes/recipes.lock")).unwrap();
    assert!(lock.contains("[[conda]]"), "{lock}");
    assert!(lock.contains("subdir = \"linux-64\""), "{lock}");
    assert!(
        lock.contains("filename = \"binpre-2.1-h1.conda\""),
        "{lock}"
    );
    assert!(lock.contains("build = \"pyh_0\""), "{lock}");
    assert!(!lock.contains("url ="), "{lock}");
    assert!(!lock.contains("/linux-64/"), "{lock}");

    // From the lock, with an empty cache: no repodata read, the same image.
    let before = server.paths().len();
    fs::remove_dir_all(p.cache()).unwrap();
    let again = p.build(&["env", "--output", "oci:out2"]);
    assert_eq!(again["digest"], report["digest"]);
    let later: Vec<String> = server.paths()[before..].to_vec();
    assert!(!later.iter().any(|r| r.contains("repodata")), "{later:?}");
}

#[test]
fn conda_layer_from_a_file_channel_by_name_through_the_alias() {
    let channel = test_channel();
    let p = Project::new();
    // The recipe says `testchannel`; the alias says where channels live.
    let alias_root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(channel.path(), alias_root.path().join("testchannel")).unwrap();
    conda_recipe(&p, "testchannel", &["binpre"]);
    let out = p
        .command(&["build", "--json", "env", "--output", "oci:out"])
        .env(
            "OCI_BUILD_CONDA_CHANNEL_ALIAS",
            format!("file://{}", alias_root.path().display()),
        )
        .output()
        .unwrap();
    assert_success(&out, "build from a file:// channel");
    let report: Value = json(&String::from_utf8_lossy(&out.stdout));
    let layer = read_layer(&layer_paths(&p.tmp.path().join("out"), &report[0])[0]);
    assert!(
        layer
            .iter()
            .any(|e| e.path == "opt/conda/conda-meta/textpre-1.0-0.json")
    );
    assert!(!layer.iter().any(|e| e.path.contains("python")));
    // A channel named by the recipe is pinned by that name: the alias may change.
    let lock = fs::read_to_string(p.path("recipes/recipes.lock")).unwrap();
    assert!(lock.contains("channel = \"testchannel\""), "{lock}");
    assert!(!lock.contains("file:"), "{lock}");

    // Without the alias, the name cannot be resolved, and the error says what to set. (A
    // rebuild finds the layer under its locked key and needs no channel: the layer records
    // go, so that it is built.)
    fs::remove_dir_all(p.cache().join("layers-v1")).unwrap();
    let out = p
        .command(&["build", "env", "--output", "oci:out3"])
        .env_remove("OCI_BUILD_CONDA_CHANNEL_ALIAS")
        .env("HOME", p.tmp.path())
        .env_remove("CONDARC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("OCI_BUILD_CONDA_CHANNEL_ALIAS"), "{stderr}");
}

#[test]
fn an_unsatisfiable_conda_spec_names_the_conflict() {
    let channel = test_channel();
    let p = Project::new();
    conda_recipe(&p, &channel.file_url(), &["binpre", "textpre<1"]);
    let error = build_error(&p, "env");
    assert!(error.contains("cannot be satisfied"), "{error}");
    assert!(error.contains("textpre"), "{error}");
    assert!(error.contains("binpre"), "{error}");
    // A package no channel has is named as such.
    conda_recipe(&p, &channel.file_url(), &["nosuchpackage >=1"]);
    let error = build_error(&p, "env");
    assert!(error.contains("nosuchpackage"), "{error}");
}

#[test]
fn a_conda_package_that_does_not_match_its_sha256_is_refused() {
    let mut channel = test_channel();
    channel.corrupt_sha256("linux-64", "textpre-1.0-0.tar.bz2");
    let p = Project::new();
    conda_recipe(&p, &channel.file_url(), &["textpre"]);
    let error = build_error(&p, "env");
    assert!(error.contains("textpre-1.0-0.tar.bz2"), "{error}");
    assert!(error.contains("does not match the SHA256"), "{error}");
}

#[test]
fn a_prefix_longer_than_a_binary_placeholder_is_refused() {
    let channel = test_channel();
    let p = Project::new();
    let prefix = format!("/opt/{}", "x".repeat(PLACEHOLDER.len()));
    p.recipe(
        "env",
        &format!(
            "from = \"scratch\"\nplatforms = [\"linux/amd64\"]\n[[layer]]\nconda = {{ channels = [{:?}], specs = [\"binpre\"], prefix = {prefix:?} }}\n",
            channel.file_url()
        ),
    );
    let error = build_error(&p, "env");
    assert!(
        error.contains("binpre-2.1-h1") && error.contains("lib/libbinpre.so"),
        "{error}"
    );
    assert!(error.contains("longer than the placeholder"), "{error}");
}

#[test]
fn conda_entries_escaping_the_prefix_are_refused() {
    for (name, pkg) in [
        (
            "dotdot",
            Pkg::new("evil", "1.0", "0").raw("../../etc/evil", b"x"),
        ),
        (
            "absolute",
            Pkg::new("evil", "1.0", "0").raw("/etc/evil", b"x"),
        ),
        (
            "link",
            Pkg::new("evil", "1.0", "0").symlink("lib/escape", "../../../etc"),
        ),
        (
            "below a link",
            Pkg::new("evil", "1.0", "0")
                .symlink("lib/etc", "/etc")
                .raw("lib/etc/passwd", b"x"),
        ),
    ] {
        let mut channel = Channel::new();
        channel.add(pkg);
        let p = Project::new();
        conda_recipe(&p, &channel.file_url(), &["evil"]);
        let error = build_error(&p, "env");
        assert!(
            error.contains("evil-1.0-0") && error.contains("escapes its prefix"),
            "{name}: {error}"
        );
    }
}

#[test]
fn conda_layers_in_recipes_are_checked() {
    let p = Project::new();
    for (layer, expected) in [
        (
            "conda = { channels = [\"file:///x\"], specs = [] }",
            "names no specs",
        ),
        (
            "conda = { channels = [\"file:///x\"], specs = [\"a\"], prefix = \"opt/conda\" }",
            "must be an absolute path",
        ),
        (
            "conda = { specs = [\"a\"] }\nfiles = []",
            "has both `files` and `conda`",
        ),
    ] {
        p.recipe("env", &format!("from = \"scratch\"\n[[layer]]\n{layer}\n"));
        let error = build_error(&p, "env");
        assert!(error.contains(expected), "{layer}: {error}");
    }
}

#[test]
fn each_platform_gets_its_subdir_and_lock_re_solves() {
    let mut channel = Channel::new();
    for (subdir, content) in [("linux-64", "x86\n"), ("linux-aarch64", "arm\n")] {
        channel.add(Pkg::new("tool", "1.0", "0").subdir(subdir).file(
            "share/tool/arch",
            content.as_bytes(),
            0o644,
        ));
    }
    let p = Project::new();
    p.recipe(
        "env",
        &format!(
            "from = \"scratch\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n[[layer]]\nconda = {{ channels = [{:?}], specs = [\"tool\"] }}\n",
            channel.file_url()
        ),
    );
    let report = p.build(&["env", "--output", "oci:out"]);
    let layout = p.tmp.path().join("out");
    for (i, expected) in ["x86\n", "arm\n"].iter().enumerate() {
        let digest = report["manifests"][i]["layers"][0]["digest"]
            .as_str()
            .unwrap();
        let layer = read_layer(&layout.join("blobs/sha256").join(&digest["sha256:".len()..]));
        let file = entry(&layer, "opt/conda/share/tool/arch");
        assert_eq!(String::from_utf8_lossy(&file.content), *expected);
    }
    let lock = fs::read_to_string(p.path("recipes/recipes.lock")).unwrap();
    assert_eq!(lock.matches("[[conda]]").count(), 2, "{lock}");
    assert!(lock.contains("subdir = \"linux-aarch64\""), "{lock}");

    // A newer version in the channel: builds keep the lock, `oci-build lock` takes it.
    for subdir in ["linux-64", "linux-aarch64"] {
        channel.add(Pkg::new("tool", "1.1", "0").subdir(subdir).file(
            "share/tool/arch",
            b"new\n",
            0o644,
        ));
    }
    let again = p.build(&["env", "--output", "oci:out"]);
    assert_eq!(again["digest"], report["digest"]);
    assert_success(&p.run(&["lock", "env"]), "oci-build lock env");
    let lock = fs::read_to_string(p.path("recipes/recipes.lock")).unwrap();
    assert_eq!(lock.matches("version = \"1.1\"").count(), 2, "{lock}");
    let relocked = p.build(&["env", "--output", "oci:out"]);
    assert_ne!(relocked["digest"], report["digest"]);
}

// ---------------------------------------------------------------------------------------------
// Live: the entry point runs in a chroot of the Debian Python base

#[test]
#[cfg_attr(
    offline_tests,
    ignore = "OCI_BUILD_OFFLINE is set: needs the host's Debian archive"
)]
fn live_conda_entry_point_runs_in_a_chroot_of_the_python_base() {
    let channel = test_channel();
    let (tmp, project) = live_project(
        "python-3.11",
        &format!(
            "from = \"python-3.11\"\nplatforms = [\"linux/amd64\"]\n\n[[layer]]\nconda = {{ channels = [{:?}], specs = [\"python=3.11.2\", \"hello\"] }}\n",
            channel.file_url()
        ),
    );
    let out_dir = tmp.path().join("out");
    let output = oci_build_at(&project, &tmp.path().join("cache"))
        .args(["build", "app", "--output"])
        .arg(format!("oci:{}:app", out_dir.display()))
        .output()
        .unwrap();
    assert_success(&output, "build app on python-3.11");
    if !is_root() {
        eprintln!("not root: the conda image was built, but not run (chroot needs root)");
        return;
    }
    let rootfs = umoci_unpack(&out_dir, "app", &tmp.path().join("bundle"));
    let run =
        |script: &str| chroot_with_path(&rootfs, &format!("/opt/conda/bin:{DEBIAN_PATH}"), script);
    assert_eq!(run("hello").trim(), "hello from conda");
    assert_eq!(
        run("python -c 'import sys; print(sys.prefix)'").trim(),
        "/opt/conda"
    );
    assert!(
        Path::new(&rootfs)
            .join("opt/conda/conda-meta/python-3.11.2-h0_test.json")
            .is_file()
    );
}

/// A pip layer on a conda Python installs into that Python's site-packages, with scripts for
/// the conda interpreter (the dpkg status below says only which glibc the image has).
#[test]
fn pip_on_a_conda_python_installs_into_its_site_packages() {
    let channel = test_channel();
    let server = StaticServer::start(channel.path().to_owned(), "channel");
    let mut index = crate::fixtures::pypi::Index::new();
    let mut tool = crate::fixtures::pypi::dist("demo-tool", "1.2");
    tool.files = vec![(
        "demo_tool.py".to_owned(),
        b"def main():\n    return 0\n".to_vec(),
    )];
    tool.entry_points = Some("[console_scripts]\ndemo-tool = demo_tool:main\n");
    index.publish(&tool);
    let p = Project::new();
    p.write(
        "fixtures/status",
        "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n",
    );
    p.recipe(
        "env",
        &format!(
            "from = \"scratch\"\nplatforms = [\"linux/amd64\"]\n\
             [[layer]]\nfiles = [{{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }}]\n\
             [[layer]]\nconda = {{ channels = [{:?}], specs = [\"python=3.11\"], prefix = \"/opt/conda\" }}\n\
             [[layer]]\npip = {{ index_url = {:?}, packages = [\"demo-tool\"] }}\n",
            server.uri(),
            index.url()
        ),
    );
    let report = p.build(&["env", "--output", "oci:out"]);
    let layers = layer_paths(&p.tmp.path().join("out"), &report);
    let pip_layer = read_layer(&layers[2]);
    entry(
        &pip_layer,
        "opt/conda/lib/python3.11/site-packages/demo_tool.py",
    );
    let script =
        String::from_utf8_lossy(&entry(&pip_layer, "opt/conda/bin/demo-tool").content).into_owned();
    assert!(
        script.starts_with("#!/opt/conda/bin/python3.11\n"),
        "{script}"
    );
    assert!(!pip_layer.iter().any(|e| e.path.starts_with("usr/")));
}
