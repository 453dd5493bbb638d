//! Hermetic `pip` layers: wheels and an sdist made by the test, indexed as PEP 691 JSON pages
//! with PEP 658 metadata files, served on 127.0.0.1. The image's "Python" is a dpkg status that
//! says Debian's libpython3.11-minimal 3.11.2 and libc6 2.36 are installed, which is all a
//! `pip` layer reads of its base; nothing runs in the image, so no interpreter is needed.
//!
//! Covered: markers and extras evaluated for a foreign target (arm64, Python 3.11.2), PEP 658
//! metadata used instead of wheels when locking, the installed layout (RECORD, INSTALLER,
//! entry point scripts), a file changed on the index refused, a wheel escaping its root
//! refused, a conflict explained, an sdist built on the host, and a layer split that rebuilds
//! only what changed.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::common::{Project, assert_success, layer_paths, read_layer};
use crate::fixtures::http::StaticServer;

pub(crate) const STATUS: &str = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u7\nArchitecture: amd64\n\nPackage: libpython3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u6\nArchitecture: amd64\n";

/// One distribution file to publish.
pub(crate) struct Dist {
    name: &'static str,
    version: &'static str,
    tag: &'static str,
    requires: Vec<&'static str>,
    requires_python: Option<&'static str>,
    pub(crate) files: Vec<(String, Vec<u8>)>,
    pub(crate) entry_points: Option<&'static str>,
}

pub(crate) fn dist(name: &'static str, version: &'static str) -> Dist {
    Dist {
        name,
        version,
        tag: "py3-none-any",
        requires: Vec::new(),
        requires_python: None,
        files: Vec::new(),
        entry_points: None,
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn metadata_of(d: &Dist) -> String {
    let mut text = format!(
        "Metadata-Version: 2.1\nName: {}\nVersion: {}\n",
        d.name, d.version
    );
    if let Some(python) = d.requires_python {
        text.push_str(&format!("Requires-Python: {python}\n"));
    }
    for requirement in &d.requires {
        text.push_str(&format!("Requires-Dist: {requirement}\n"));
    }
    text
}

/// Writes a wheel for `d` and returns its file name and bytes.
pub(crate) fn wheel(d: &Dist) -> (String, Vec<u8>) {
    let stem = format!("{}-{}", d.name.replace('-', "_"), d.version);
    let filename = format!("{stem}-{}.whl", d.tag);
    let dist_info = format!("{stem}.dist-info");
    let mut entries: Vec<(String, Vec<u8>)> = d.files.clone();
    entries.push((format!("{dist_info}/METADATA"), metadata_of(d).into_bytes()));
    let pure = d.tag.ends_with("-any");
    entries.push((
        format!("{dist_info}/WHEEL"),
        format!(
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {pure}\nTag: {}\n",
            d.tag
        )
        .into_bytes(),
    ));
    if let Some(points) = d.entry_points {
        entries.push((
            format!("{dist_info}/entry_points.txt"),
            points.as_bytes().to_vec(),
        ));
    }
    let mut record = String::new();
    for (path, bytes) in &entries {
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes));
        record.push_str(&format!("{path},sha256={hash},{}\n", bytes.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    entries.push((format!("{dist_info}/RECORD"), record.into_bytes()));
    (filename, zip_of(&entries))
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (path, bytes) in entries {
            zip.start_file(path.as_str(), options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    out.into_inner()
}

/// A PEP 691 index: `simple/<project>/index.json`, files and `.metadata` files under `files/`.
pub(crate) struct Index {
    root: tempfile::TempDir,
    pages: BTreeMap<String, Vec<serde_json::Value>>,
    server: StaticServer,
}

impl Index {
    pub(crate) fn new() -> Index {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("files")).unwrap();
        let server = StaticServer::start(root.path().to_owned(), "pypi");
        Index {
            root,
            pages: BTreeMap::new(),
            server,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}/simple/", self.server.uri())
    }

    pub(crate) fn publish(&mut self, d: &Dist) -> String {
        let (filename, bytes) = wheel(d);
        let metadata = metadata_of(d);
        std::fs::write(self.root.path().join("files").join(&filename), &bytes).unwrap();
        std::fs::write(
            self.root
                .path()
                .join("files")
                .join(format!("{filename}.metadata")),
            &metadata,
        )
        .unwrap();
        let mut file = serde_json::json!({
            "filename": filename,
            "url": format!("../../files/{filename}"),
            "hashes": { "sha256": sha256_hex(&bytes) },
            "core-metadata": { "sha256": sha256_hex(metadata.as_bytes()) },
        });
        if let Some(python) = d.requires_python {
            file["requires-python"] = python.into();
        }
        self.add(d.name, file);
        filename
    }

    pub(crate) fn publish_raw(&mut self, project: &str, filename: &str, bytes: &[u8]) {
        std::fs::write(self.root.path().join("files").join(filename), bytes).unwrap();
        let file = serde_json::json!({
            "filename": filename,
            "url": format!("../../files/{filename}"),
            "hashes": { "sha256": sha256_hex(bytes) },
        });
        self.add(project, file);
    }

    /// Lists `file` (a PEP 691 file object, as it is) on the project's page.
    pub(crate) fn add(&mut self, project: &str, file: serde_json::Value) {
        let files = self.pages.entry(project.to_owned()).or_default();
        files.push(file);
        let page = serde_json::json!({
            "meta": { "api-version": "1.1" },
            "name": project,
            "files": files,
        });
        let dir = self.root.path().join("simple").join(project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.json"), page.to_string()).unwrap();
    }

    /// Where the index's files and `.metadata` files are served from.
    pub(crate) fn files_dir(&self) -> std::path::PathBuf {
        self.root.path().join("files")
    }

    /// Serves `html` as the project's PEP 503 page instead of a JSON one.
    pub(crate) fn html_page(&self, project: &str, html: &str) {
        let dir = self.root.path().join("simple").join(project);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("index.json"));
        std::fs::write(dir.join("index.html"), html).unwrap();
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.server.requests()
    }
}

/// A project whose `base` is the fake Debian Python and whose `app` adds `pip_layers` on it.
pub(crate) fn project(index: &Index, platforms: &str, pip_layers: &[&str]) -> Project {
    let project = Project::new();
    project.write("fixtures/status", STATUS);
    project.recipe(
        "base",
        &format!(
            "platforms = {platforms}\n[[layer]]\nfiles = [{{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }}]\n"
        ),
    );
    let mut app = "image = \"test/app:1\"\nfrom = \"base\"\n".to_owned();
    for layer in pip_layers {
        app.push_str(&format!(
            "[[layer]]\npip = {{ index_url = \"{}\", {layer} }}\n",
            index.url()
        ));
    }
    project.recipe("app", &app);
    project
}

fn lock_text(project: &Project) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(project.path("recipes/recipes.lock")).unwrap()).unwrap()
}

pub(crate) fn locked(project: &Project, layer: i64) -> BTreeMap<String, (String, String)> {
    lock_text(project)["pip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["layer"].as_integer() == Some(layer))
        .flat_map(|l| l["packages"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                (
                    p["version"].as_str().unwrap().to_owned(),
                    p["filename"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// The layer entry at `path` (directories with or without their trailing `/`).
fn entry<'a>(entries: &'a [crate::common::TarEntry], path: &str) -> &'a crate::common::TarEntry {
    entries
        .iter()
        .find(|e| e.path.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("{path} not in the layer"))
}

/// Builds `app` into `layout`, which must fail; its message.
fn failed_build(project: &Project, layout: &std::path::Path) -> String {
    let out = project.run(&[
        "build",
        "app",
        "--output",
        &format!("oci:{}", layout.display()),
    ]);
    assert!(!out.status.success());
    stderr(&out)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn locks_for_a_foreign_target_with_markers_extras_and_metadata_files() {
    let mut index = Index::new();
    let mut app = dist("app", "1.0");
    app.requires = vec![
        "native>=1; platform_machine == \"aarch64\"",
        "x86-only; platform_machine == \"x86_64\"",
        "soup",
        "fast-dep; extra == \"fast\"",
        "old-python-only; python_full_version < \"3.11.5\"",
        "new-python-only; python_full_version >= \"3.11.5\"",
    ];
    index.publish(&app);
    for tag in [
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux_2_17_aarch64",
    ] {
        let mut native = dist("native", "2.0");
        native.tag = tag;
        index.publish(&native);
    }
    // Newer glibc than the image's 2.36: unusable, so 1.5 is taken.
    let mut too_new = dist("native", "3.0");
    too_new.tag = "cp311-cp311-manylinux_2_38_aarch64";
    index.publish(&too_new);
    index.publish(&dist("x86-only", "1.0"));
    index.publish(&dist("fast-dep", "1.0"));
    index.publish(&dist("old-python-only", "1.0"));
    index.publish(&dist("new-python-only", "1.0"));
    // The soupsieve case: the newest needs Python >=3.11.5, the image has 3.11.2.
    index.publish(&dist("soup", "1.0"));
    let mut soup2 = dist("soup", "2.0");
    soup2.requires_python = Some(">=3.11.5");
    index.publish(&soup2);

    let project = project(&index, "[\"linux/arm64\"]", &["packages = [\"app[fast]\"]"]);
    let out = project.run(&["lock", "app"]);
    assert_success(&out, "oci-build lock app");
    let pins = locked(&project, 1);
    let names: Vec<&str> = pins.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["app", "fast-dep", "native", "old-python-only", "soup"]
    );
    assert_eq!(
        pins["native"].1,
        "native-2.0-cp311-cp311-manylinux_2_17_aarch64.whl"
    );
    assert_eq!(pins["soup"].0, "1.0");
    let lock = lock_text(&project);
    assert_eq!(lock["pip"][0]["platform"].as_str(), Some("linux/arm64"));
    // Locking read metadata files and never a wheel.
    let requests = index.requests();
    assert!(
        requests.iter().any(|r| r.ends_with(".whl.metadata")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.ends_with(".whl")),
        "{requests:?}"
    );
}

#[test]
fn installs_wheels_like_pip_and_refuses_a_changed_file() {
    let mut index = Index::new();
    let mut tool = dist("demo-tool", "1.2");
    tool.requires = vec!["helper"];
    tool.files = vec![(
        "demo_tool/__init__.py".to_owned(),
        b"def main():\n    return 0\n".to_vec(),
    )];
    tool.entry_points = Some("[console_scripts]\ndemo-tool = demo_tool:main\n");
    index.publish(&tool);
    let mut helper = dist("helper", "0.1");
    helper.files = vec![("helper.py".to_owned(), b"X = 1\n".to_vec())];
    let helper_file = index.publish(&helper);

    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"demo-tool\"]"]);
    let layout = project.tmp.path().join("out");
    let report = project.build(&["app", "--output", &format!("oci:{}", layout.display())]);
    let layers = layer_paths(&layout, &report);
    let entries = read_layer(&layers[1]);
    let get = |path: &str| entry(&entries, path);
    let site = "usr/local/lib/python3.11/dist-packages";
    assert_eq!(get(&format!("{site}/helper.py")).content, b"X = 1\n");
    let script = get("usr/local/bin/demo-tool");
    assert_eq!(script.mode, 0o755);
    let script_text = String::from_utf8_lossy(&script.content);
    assert!(
        script_text.starts_with("#!/usr/bin/python3.11\n"),
        "{script_text}"
    );
    assert!(script_text.contains("demo_tool"), "{script_text}");
    assert_eq!(
        get(&format!("{site}/demo_tool-1.2.dist-info/INSTALLER")).content,
        b"oci-build\n"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.path == format!("{site}/demo_tool-1.2.dist-info/REQUESTED"))
    );
    assert!(
        !entries
            .iter()
            .any(|e| e.path == format!("{site}/helper-0.1.dist-info/REQUESTED"))
    );
    let record =
        String::from_utf8_lossy(&get(&format!("{site}/demo_tool-1.2.dist-info/RECORD")).content)
            .into_owned();
    assert!(
        record.contains("../../../bin/demo-tool,sha256="),
        "{record}"
    );

    // The index now serves other bytes under the locked name: refused, with the file named.
    let mut changed = dist("helper", "0.1");
    changed.files = vec![("helper.py".to_owned(), b"X = 2\n".to_vec())];
    let (_, bytes) = wheel(&changed);
    std::fs::write(index.root.path().join("files").join(&helper_file), bytes).unwrap();
    std::fs::remove_dir_all(project.cache()).unwrap();
    let message = failed_build(&project, &layout);
    assert!(
        message.contains(&helper_file) && message.contains("does not match its hash"),
        "{message}"
    );
}

#[test]
fn refuses_a_wheel_that_escapes_its_root() {
    let mut index = Index::new();
    let mut evil = dist("evil", "1.0");
    evil.files = vec![(
        "../../../etc/cron.d/evil".to_owned(),
        b"* * * * * root true\n".to_vec(),
    )];
    let (filename, bytes) = wheel(&evil);
    index.publish_raw("evil", &filename, &bytes);
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"evil\"]"]);
    let layout = project.tmp.path().join("out");
    let message = failed_build(&project, &layout);
    assert!(
        message.contains(&filename) && message.contains("etc/cron.d/evil"),
        "{message}"
    );
    assert!(!layout.exists(), "a refused build wrote its output");
}

#[test]
fn a_conflict_names_the_packages_and_versions() {
    let mut index = Index::new();
    let mut left = dist("left", "1.0");
    left.requires = vec!["shared<2"];
    index.publish(&left);
    let mut right = dist("right", "1.0");
    right.requires = vec!["shared>=2"];
    index.publish(&right);
    index.publish(&dist("shared", "1.0"));
    index.publish(&dist("shared", "2.0"));
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"left\", \"right\"]"],
    );
    let out = project.run(&["lock", "app"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    for name in ["left", "right", "shared"] {
        assert!(message.contains(name), "{name} missing from: {message}");
    }
    assert!(message.contains("cannot be satisfied"), "{message}");
}

/// An sdist whose in-tree PEP 517 backend writes the wheel with the standard library, so the
/// build needs nothing from an index.
pub(crate) fn sdist_bytes(tag: &str) -> Vec<u8> {
    sdist_running(tag, "")
}

/// `sdist_bytes` whose backend module runs `prelude` (Python) when a hook imports it.
pub(crate) fn sdist_running(tag: &str, prelude: &str) -> Vec<u8> {
    let backend = r#"
import base64, hashlib, os, zipfile
NAME, VERSION = "srconly", "0.3"
def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{NAME}-{VERSION}.dist-info"
    files = {
        "srconly.py": b"ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: TAG\n",
    }
    record = "".join(_record_line(p, d) for p, d in files.items()) + f"{info}/RECORD,,\n"
    name = f"{NAME}-{VERSION}-TAG.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{info}/RECORD", record)
    return name
"#;
    let backend = format!("{}\n{prelude}\n", backend.replace("TAG", tag));
    let pyproject =
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n";
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, text) in [
        ("srconly-0.3/pyproject.toml", pyproject),
        ("srconly-0.3/backend.py", &backend),
        (
            "srconly-0.3/PKG-INFO",
            "Metadata-Version: 2.1\nName: srconly\nVersion: 0.3\n",
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn builds_a_package_that_ships_only_an_sdist() {
    let mut index = Index::new();
    let bytes = sdist_bytes("py3-none-any");
    index.publish_raw("srconly", "srconly-0.3.tar.gz", &bytes);
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"srconly\"]"]);
    let layout = project.tmp.path().join("out");
    let report = project.build(&["app", "--output", &format!("oci:{}", layout.display())]);
    let entries = read_layer(&layer_paths(&layout, &report)[1]);
    let module = entries
        .iter()
        .find(|e| e.path == "usr/local/lib/python3.11/dist-packages/srconly.py")
        .expect("the built wheel is installed");
    assert_eq!(module.content, b"ANSWER = 42\n");
    let pins = locked(&project, 1);
    assert_eq!(
        pins["srconly"],
        ("0.3".to_owned(), "srconly-0.3.tar.gz".to_owned())
    );
    let lock = std::fs::read_to_string(project.path("recipes/recipes.lock")).unwrap();
    assert!(
        lock.contains(&sha256_hex(&bytes)),
        "the lock pins the sdist's hash: {lock}"
    );
}

#[test]
fn a_split_rebuilds_only_the_layer_whose_pins_changed() {
    let mut index = Index::new();
    index.publish(&dist("heavy", "1.0"));
    index.publish(&dist("appcode", "1.0"));
    index.publish(&dist("appcode", "2.0"));
    let layers = ["packages = [\"heavy\"]", "packages = [\"appcode==1.0\"]"];
    let project = project(&index, "[\"linux/amd64\"]", &layers);
    let layout = project.tmp.path().join("out");
    let output = format!("oci:{}", layout.display());
    let first = project.build(&["app", "--output", &output]);
    let app = std::fs::read_to_string(project.path("recipes/app.toml")).unwrap();
    project.recipe("app", &app.replace("appcode==1.0", "appcode==2.0"));
    let second = project.build(&["app", "--output", &output]);
    assert_eq!(second["layers_built"], 1, "{second}");
    let digests = |report: &serde_json::Value| -> Vec<String> {
        report["manifests"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let (before, after) = (digests(&first), digests(&second));
    assert_eq!(
        before[..2],
        after[..2],
        "the base and heavy layers are unchanged"
    );
    assert_ne!(before[2], after[2]);
    assert_eq!(locked(&project, 2)["appcode"].0, "2.0");
    assert_eq!(locked(&project, 1)["heavy"].0, "1.0");
}

#[test]
fn an_sdist_that_compiles_for_the_host_is_refused_for_another_target() {
    let mut index = Index::new();
    // What a compiled package's build on this x86_64 host gives: a wheel only the host can use.
    index.publish_raw(
        "srconly",
        "srconly-0.3.tar.gz",
        &sdist_bytes("cp311-cp311-linux_x86_64"),
    );
    let project = project(&index, "[\"linux/arm64\"]", &["packages = [\"srconly\"]"]);
    let out = project.run(&["lock", "app"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("srconly 0.3")
            && message.contains("aarch64")
            && message.contains("wheelhouse"),
        "{message}"
    );
}

#[test]
fn a_venv_layer_installs_into_its_own_prefix() {
    let mut index = Index::new();
    let mut tool = dist("demo-tool", "1.2");
    tool.files = vec![(
        "demo_tool.py".to_owned(),
        b"def main():\n    return 0\n".to_vec(),
    )];
    tool.entry_points = Some("[console_scripts]\ndemo-tool = demo_tool:main\n");
    index.publish(&tool);
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"demo-tool\"], venv = \"/opt/venv\""],
    );
    let layout = project.tmp.path().join("out");
    let report = project.build(&["app", "--output", &format!("oci:{}", layout.display())]);
    let entries = read_layer(&layer_paths(&layout, &report)[1]);
    let get = |path: &str| entry(&entries, path);
    assert!(get("opt/venv/lib/python3.11/site-packages/demo_tool.py").kind == 'f');
    let config = String::from_utf8_lossy(&get("opt/venv/pyvenv.cfg").content).into_owned();
    assert!(
        config.contains("home = /usr/bin") && config.contains("version = 3.11.2"),
        "{config}"
    );
    assert_eq!(
        get("opt/venv/bin/python").link.as_deref(),
        Some("/usr/bin/python3.11")
    );
    let script = String::from_utf8_lossy(&get("opt/venv/bin/demo-tool").content).into_owned();
    assert!(script.starts_with("#!/opt/venv/bin/python\n"), "{script}");
    assert!(
        !entries.iter().any(|e| e.path.starts_with("usr/local")),
        "nothing goes to the system site"
    );
}
