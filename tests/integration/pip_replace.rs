//! Hermetic: a `pip` layer that needs another version of a distribution a layer below
//! installed replaces it as pip does (the old version's RECORD whited out, the new one
//! installed, the change printed and locked), and is refused, in one sentence naming the
//! installed distribution and its requirement, where one that stays forbids the version.

use crate::common::{assert_success, layer_paths, refused, tool, umoci_unpack};
use crate::fixtures::pypi::{Dist, Index, dist, lock_text, locked, project};

const SITE: &str = "usr/local/lib/python3.11/dist-packages";

fn dep(version: &'static str, own_file: &str, script: bool) -> Dist {
    let mut dep = dist("dep", version);
    dep.files = vec![
        (
            "dep/__init__.py".to_owned(),
            format!("VERSION = \"{version}\"\n").into_bytes(),
        ),
        (format!("dep/{own_file}"), b"X = 1\n".to_vec()),
    ];
    if script {
        dep.entry_points = Some("[console_scripts]\ndep-tool = dep:main\n");
    }
    dep
}

/// `app` (requiring `dep>=1,<3`) and `dep` 1.5, 2.0 and 3.0.
fn index() -> Index {
    let mut index = Index::new();
    let mut app = dist("app", "1.0");
    app.requires = vec!["dep>=1,<3"];
    app.files = vec![("app.py".to_owned(), b"import dep\n".to_vec())];
    index.publish(&app);
    index.publish(&dep("1.5", "only15.py", false));
    index.publish(&dep("2.0", "only20.py", true));
    index.publish(&dep("3.0", "only30.py", false));
    index
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_pin_replaces_the_version_below_and_the_lock_records_it() {
    let index = index();
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &[
            "packages = [\"app\", \"dep==2.0\"]",
            "packages = [\"dep==1.5\"]",
        ],
    );
    let layout = project.tmp.path().join("out");
    let output = format!("oci:{}", layout.display());
    let out = project.run(&["build", "--json", "app", "--output", &output]);
    assert_success(&out, "build app");
    let said = stderr(&out);
    assert!(
        said.contains("app: dep 2.0 \u{2192} 1.5 (in app layer 1)"),
        "{said}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = layer_paths(&layout, &report[0]);

    // GNU tar sees the whiteouts of what 2.0 installed and 1.5 does not write again.
    let listing = tool("tar", &["-tzf", layers[2].to_str().unwrap()]);
    for whiteout in [
        format!("{SITE}/.wh.dep-2.0.dist-info"),
        format!("{SITE}/dep/.wh.only20.py"),
        "usr/local/bin/.wh.dep-tool".to_owned(),
    ] {
        assert!(
            listing.lines().any(|l| l.trim_end_matches('/') == whiteout),
            "{whiteout} missing from the layer:\n{listing}"
        );
    }
    assert!(
        !listing.contains(".wh.__init__.py"),
        "a file 1.5 writes again was whited out:\n{listing}"
    );

    // Unpacked, the image holds 1.5 only.
    let rootfs = umoci_unpack(&layout, "test/app:1", &project.tmp.path().join("bundle"));
    let site = rootfs.join(SITE);
    let mut dist_infos: Vec<String> = std::fs::read_dir(&site)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dist-info"))
        .collect();
    dist_infos.sort();
    assert_eq!(dist_infos, ["app-1.0.dist-info", "dep-1.5.dist-info"]);
    assert_eq!(
        std::fs::read_to_string(site.join("dep/__init__.py")).unwrap(),
        "VERSION = \"1.5\"\n"
    );
    assert!(site.join("dep/only15.py").exists());
    assert!(!site.join("dep/only20.py").exists());
    assert!(!rootfs.join("usr/local/bin/dep-tool").exists());

    // The lock records the replacement.
    let pins = locked(&project, 2);
    assert_eq!(pins["dep"].0, "1.5");
    let lock = lock_text(&project);
    let layer2 = lock["pip"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"].as_integer() == Some(2))
        .unwrap();
    let dep_pin = layer2["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("dep"))
        .unwrap();
    assert_eq!(dep_pin["replaces"].as_str(), Some("2.0"), "{layer2}");

    // A `--locked` build does the same from the lock: the same layer, the same line.
    let again = project.tmp.path().join("again");
    let out = project.run(&[
        "build",
        "--json",
        "--locked",
        "app",
        "--output",
        &format!("oci:{}", again.display()),
    ]);
    assert_success(&out, "build app --locked");
    assert!(
        stderr(&out).contains("dep 2.0 \u{2192} 1.5"),
        "{}",
        stderr(&out)
    );
    let relocked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        relocked[0]["manifests"][0]["layers"],
        report[0]["manifests"][0]["layers"]
    );
    // Quiet: no line.
    let out = project.run(&[
        "-q",
        "build",
        "--locked",
        "app",
        "--output",
        &format!("oci:{}", again.display()),
    ]);
    assert_success(&out, "build app -q");
    assert!(!stderr(&out).contains('\u{2192}'), "{}", stderr(&out));
}

#[test]
fn a_version_that_an_installed_distribution_forbids_is_one_sentence() {
    let index = index();
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &[
            "packages = [\"app\", \"dep==2.0\"]",
            "packages = [\"dep==3.0\"]",
        ],
    );
    let out = project.run(&["lock", "app"]);
    let line = refused(&out, "app 1.0");
    assert!(
        line.ends_with(
            "app 1.0 (installed in app layer 1) requires dep>=1,<3, but the layer asks for dep==3.0"
        ),
        "{line}"
    );
    assert!(!line.contains('\u{2205}'), "{line}");
}

/// A base whose RECORD lists a file outside the install prefix (a pulled base is outside
/// input): replacing that distribution is refused naming it, and nothing is whited out.
#[test]
fn a_record_below_that_leaves_the_prefix_is_refused() {
    let index = index();
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"dep==1.5\"]"]);
    let dist_info = "fixtures/dep-2.0.dist-info";
    project.write(
        &format!("{dist_info}/METADATA"),
        "Metadata-Version: 2.1\nName: dep\nVersion: 2.0\n",
    );
    project.write(
        &format!("{dist_info}/RECORD"),
        "dep/__init__.py,,\n../../../../../etc/passwd,,\n",
    );
    project.recipe(
        "base",
        &format!(
            "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }}, {{ src = \"{dist_info}\", dest = \"/{SITE}/dep-2.0.dist-info\" }}]\n"
        ),
    );
    let layout = project.tmp.path().join("out");
    let out = project.run(&[
        "build",
        "app",
        "--output",
        &format!("oci:{}", layout.display()),
    ]);
    let line = refused(&out, "dep 2.0 (installed in base layer 1)");
    assert!(
        line.contains("`../../../../../etc/passwd`") && line.contains("outside /usr/local"),
        "{line}"
    );
    assert!(!layout.exists(), "a refused build wrote its output");
}
