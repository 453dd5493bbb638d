//! Hermetic local projects and direct references in `pip` layers: a project directory of the
//! checkout (`./app[api]`) built with its in-tree PEP 517 backend (`fixtures::pypi`) and
//! installed with its dependencies and its extra's from the test index; a wheel by
//! `file://` and by address with its hash; the lock pinning the built wheel and the tree's
//! hash, so that `--locked` refuses changed code naming the directory; `sources` taking a
//! distribution from a directory (or, empty, from the index), with `write` files that reach
//! only the build's private copy of the tree.

use crate::common::{Project, TarEntry, assert_success, layer_paths, read_layer, refused};
use crate::fixtures::offline::{build_and_fetch, offline_build};
use crate::fixtures::pypi::{Index, dist, local_project, lock_text, project, wheel};
use crate::fixtures::sha256_hex;

const SITE: &str = "usr/local/lib/python3.11/dist-packages";

/// Builds `app` into a layout named `name` under the project's temp dir; the pip layer's
/// entries.
fn built_layer(project: &Project, name: &str, extra: &[&str]) -> Vec<TarEntry> {
    built_layer_with(project, name, extra, &[])
}

/// [`built_layer`] with environment variables set.
fn built_layer_with(
    project: &Project,
    name: &str,
    extra: &[&str],
    env: &[(&str, &std::path::Path)],
) -> Vec<TarEntry> {
    let layout = project.tmp.path().join(name);
    let output = format!("oci:{}", layout.display());
    let mut args = vec!["build", "--json", "app", "--output", output.as_str()];
    args.extend_from_slice(extra);
    let mut command = project.command(&args);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert_success(&out, "oci-build build");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    read_layer(&layer_paths(&layout, &reports[0])[1])
}

fn content(entries: &[TarEntry], path: &str) -> String {
    let entry = entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the layer"));
    String::from_utf8_lossy(&entry.content).into_owned()
}

fn has(entries: &[TarEntry], path: &str) -> bool {
    entries.iter().any(|e| e.path.trim_end_matches('/') == path)
}

/// The lock's pip entry of `package`.
fn pin(project: &Project, package: &str) -> toml::Value {
    lock_text(project)["pip"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["packages"].as_array().unwrap().clone())
        .find(|p| p["name"].as_str() == Some(package))
        .unwrap_or_else(|| panic!("{package} is not locked"))
}

#[test]
fn a_project_directory_is_built_installed_with_its_extra_and_pinned_by_its_tree() {
    let mut index = Index::new();
    let mut helper = dist("helper", "0.1");
    helper.files = vec![("helper.py".to_owned(), b"X = 1\n".to_vec())];
    index.publish(&helper);
    let mut api = dist("apilib", "2.0");
    api.files = vec![("apilib.py".to_owned(), b"API = 2\n".to_vec())];
    index.publish(&api);
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"./app[api]\"]"],
    );
    local_project(
        &project.path("app"),
        "app",
        "1.0",
        &["helper"],
        &[("api", "apilib>=2")],
        "ANSWER = 1\n",
    );

    let entries = built_layer(&project, "first", &[]);
    assert_eq!(
        content(&entries, &format!("{SITE}/app/__init__.py")),
        "ANSWER = 1\n"
    );
    let record = content(&entries, &format!("{SITE}/app-1.0.dist-info/RECORD"));
    assert!(record.contains("app/__init__.py,sha256="), "{record}");
    assert!(has(
        &entries,
        &format!("{SITE}/app-1.0.dist-info/REQUESTED")
    ));
    // Its dependency and its extra's, from the index.
    assert_eq!(content(&entries, &format!("{SITE}/helper.py")), "X = 1\n");
    assert_eq!(content(&entries, &format!("{SITE}/apilib.py")), "API = 2\n");

    let pinned = pin(&project, "app");
    assert_eq!(pinned["direct"].as_str(), Some("./app"));
    assert_eq!(
        pinned["filename"].as_str(),
        Some("app-1.0-py3-none-any.whl")
    );
    let tree = pinned["tree_sha256"].as_str().unwrap().to_owned();
    assert_eq!(tree.len(), 64);
    // The index was never asked for the local project's name.
    assert!(
        !index.requests().iter().any(|r| r.contains("/simple/app/")),
        "{:?}",
        index.requests()
    );

    // Unchanged code: `--locked` builds the same image.
    built_layer(&project, "again", &["--locked"]);

    // Changed code without a new lock: refused naming the directory, nothing written.
    std::fs::write(project.path("app/app/__init__.py"), "ANSWER = 2\n").unwrap();
    let lock_before = std::fs::read(project.path("recipes/recipes.lock")).unwrap();
    let out = project.run(&["build", "app", "--locked", "--output", "oci:refused"]);
    let line = refused(&out, "the project directory ./app changed since");
    assert!(line.contains("oci-build lock"), "{line}");
    assert!(!project.tmp.path().join("refused").exists());
    assert_eq!(
        std::fs::read(project.path("recipes/recipes.lock")).unwrap(),
        lock_before
    );

    // A plain build takes the new code and pins its tree.
    let entries = built_layer(&project, "changed", &[]);
    assert_eq!(
        content(&entries, &format!("{SITE}/app/__init__.py")),
        "ANSWER = 2\n"
    );
    let repinned = pin(&project, "app");
    assert_ne!(repinned["tree_sha256"].as_str(), Some(tree.as_str()));
    assert_ne!(repinned["sha256"], pinned["sha256"]);
    built_layer(&project, "locked-again", &["--locked"]);
}

#[test]
fn wheels_by_file_url_and_by_address_with_their_hash() {
    let mut index = Index::new();
    let mut by_file = dist("byfile", "1.0");
    by_file.files = vec![("byfile.py".to_owned(), b"F = 1\n".to_vec())];
    let (file_name, file_bytes) = wheel(&by_file);
    let mut by_url = dist("byurl", "3.1");
    by_url.files = vec![("byurl.py".to_owned(), b"U = 1\n".to_vec())];
    let (url_name, url_bytes) = wheel(&by_url);
    std::fs::write(index.files_dir().join(&url_name), &url_bytes).unwrap();
    // Something on the index under the same name must not be taken instead.
    index.publish(&dist("byurl", "9.0"));
    let address = format!("{}/files/{url_name}", index.server.uri());

    let layer = |hash: &str| {
        format!("packages = [\"byfile @ file://{{FILE}}\", \"byurl @ {address}{hash}\"]")
    };
    let project = project(
        &index,
        "[\"linux/amd64\"]",
        &[&layer(&format!("#sha256={}", sha256_hex(&url_bytes)))],
    );
    let file_path = project.path(&format!("wheels/{file_name}"));
    std::fs::create_dir_all(file_path.parent().unwrap()).unwrap();
    std::fs::write(&file_path, &file_bytes).unwrap();
    let recipe = std::fs::read_to_string(project.path("recipes/app.toml")).unwrap();
    let with_file = recipe.replace("{FILE}", &file_path.display().to_string());
    project.recipe("app", &with_file);

    let entries = built_layer(&project, "out", &[]);
    assert_eq!(content(&entries, &format!("{SITE}/byfile.py")), "F = 1\n");
    assert_eq!(content(&entries, &format!("{SITE}/byurl.py")), "U = 1\n");
    assert!(has(&entries, &format!("{SITE}/byurl-3.1.dist-info")));
    assert_eq!(
        pin(&project, "byfile")["direct"].as_str(),
        Some(&*format!("./wheels/{file_name}"))
    );
    assert_eq!(
        pin(&project, "byurl")["direct"].as_str(),
        Some(address.as_str())
    );
    assert_eq!(
        pin(&project, "byurl")["sha256"].as_str(),
        Some(&*sha256_hex(&url_bytes))
    );

    // Without a hash: refused where the recipe says it.
    project.recipe(
        "app",
        &with_file.replace(&format!("#sha256={}", sha256_hex(&url_bytes)), ""),
    );
    let out = project.run(&["build", "app", "--output", "oci:nohash"]);
    let line = refused(&out, "has no hash");
    assert!(
        line.contains("recipes/app.toml:") && line.contains(&url_name),
        "{line}"
    );

    // With another hash: refused when the file does not match it, naming the file.
    let wrong = "0".repeat(64);
    project.recipe("app", &with_file.replace(&sha256_hex(&url_bytes), &wrong));
    let out = project.run(&["build", "app", "--output", "oci:wronghash"]);
    let line = refused(&out, &url_name);
    assert!(line.contains("does not match its hash"), "{line}");
    assert!(!project.tmp.path().join("wronghash").exists());
}

/// A recipe whose pip layer takes `mlrun` from `${MLRUN_SOURCE_DIR}`, empty by default.
fn sources_project(index: &Index, source: &str) -> Project {
    let project = project(index, "[\"linux/amd64\"]", &[]);
    project.recipe(
        "app",
        &format!(
            "image = \"test/app:1\"\nfrom = \"base\"\n[vars]\nMLRUN_SOURCE_DIR = \"\"\n[[layer]]\npip = {{ index_url = \"{}\", packages = [\"mlrun\"], sources = {{ mlrun = {source} }} }}\n",
            index.url()
        ),
    );
    project
}

#[test]
fn sources_take_a_distribution_from_a_directory_or_else_the_index() {
    let mut index = Index::new();
    let mut released = dist("mlrun", "1.0");
    released.files = vec![("mlrun/__init__.py".to_owned(), b"FROM = 'index'\n".to_vec())];
    index.publish(&released);
    let project = sources_project(&index, "\"${MLRUN_SOURCE_DIR}\"");
    let checkout = project.tmp.path().join("mlrun-checkout");
    local_project(
        &checkout,
        "mlrun",
        "1.1.0.dev0",
        &[],
        &[],
        "FROM = 'tree'\n",
    );

    // Empty: the index, as without the entry.
    let entries = built_layer(&project, "index", &[]);
    assert_eq!(
        content(&entries, &format!("{SITE}/mlrun/__init__.py")),
        "FROM = 'index'\n"
    );
    assert!(pin(&project, "mlrun").get("direct").is_none());

    // A directory: its tree, built.
    let entries = built_layer_with(&project, "tree", &[], &[("MLRUN_SOURCE_DIR", &checkout)]);
    assert_eq!(
        content(&entries, &format!("{SITE}/mlrun/__init__.py")),
        "FROM = 'tree'\n"
    );
    assert!(has(&entries, &format!("{SITE}/mlrun-1.1.0.dev0.dist-info")));
    let pinned = pin(&project, "mlrun");
    assert_eq!(pinned["version"].as_str(), Some("1.1.0.dev0"));
    assert_eq!(
        pinned["direct"].as_str(),
        Some(
            &*std::fs::canonicalize(&checkout)
                .unwrap()
                .display()
                .to_string()
        )
    );
    assert!(pinned.get("tree_sha256").is_some());
}

/// `subdirectory`: one variable names a checkout that holds several projects (MLRun and its
/// pipeline adapters); empty, the index, whatever the subdirectory; one that leaves the
/// checkout is refused.
#[test]
fn a_subdirectory_of_a_checkout_is_a_project_of_its_own() {
    let mut index = Index::new();
    let mut released = dist("mlrun", "1.0");
    released.files = vec![("mlrun/__init__.py".to_owned(), b"FROM = 'index'\n".to_vec())];
    index.publish(&released);
    let project = sources_project(
        &index,
        "{ path = \"${MLRUN_SOURCE_DIR}\", subdirectory = \"adapters/mlrun\" }",
    );
    let checkout = project.tmp.path().join("checkout");
    local_project(
        &checkout.join("adapters/mlrun"),
        "mlrun",
        "1.2",
        &[],
        &[],
        "FROM = 'subdirectory'\n",
    );
    let entries = built_layer(&project, "index", &[]);
    assert_eq!(
        content(&entries, &format!("{SITE}/mlrun/__init__.py")),
        "FROM = 'index'\n"
    );
    let entries = built_layer_with(&project, "tree", &[], &[("MLRUN_SOURCE_DIR", &checkout)]);
    assert_eq!(
        content(&entries, &format!("{SITE}/mlrun/__init__.py")),
        "FROM = 'subdirectory'\n"
    );

    let escaping = sources_project(
        &index,
        "{ path = \"${MLRUN_SOURCE_DIR}\", subdirectory = \"../outside\" }",
    );
    std::fs::create_dir_all(escaping.tmp.path().join("outside")).unwrap();
    let out = escaping
        .command(&["build", "app", "--output", "oci:out"])
        .env("MLRUN_SOURCE_DIR", escaping.tmp.path().join("project"))
        .output()
        .unwrap();
    let line = refused(&out, "`subdirectory` `../outside`");
    assert!(line.contains("`..`"), "{line}");
}

#[test]
fn written_files_reach_the_built_wheel_and_not_the_users_tree() {
    let index = Index::new();
    let project = sources_project(
        &index,
        "{ path = \"src/mlrun\", write = { \"mlrun/utils/version.json\" = '{\"version\": \"1.11.0\"}' } }",
    );
    local_project(
        &project.path("src/mlrun"),
        "mlrun",
        "1.11.0",
        &[],
        &[],
        "X = 1\n",
    );
    let entries = built_layer(&project, "out", &[]);
    assert_eq!(
        content(&entries, &format!("{SITE}/mlrun/utils/version.json")),
        "{\"version\": \"1.11.0\"}"
    );
    let record = content(&entries, &format!("{SITE}/mlrun-1.11.0.dist-info/RECORD"));
    assert!(
        record.contains("mlrun/utils/version.json,sha256="),
        "{record}"
    );
    assert!(!project.path("src/mlrun/mlrun/utils").exists());
    assert_eq!(
        pin(&project, "mlrun")["direct"].as_str(),
        Some("./src/mlrun")
    );

    // Other written content is other code: `--locked` refuses it.
    let written = std::fs::read_to_string(project.path("recipes/app.toml")).unwrap();
    project.recipe("app", &written.replace("1.11.0", "1.11.1"));
    let out = project.run(&["build", "app", "--locked", "--output", "oci:refused"]);
    refused(&out, "not pinned");
}

#[test]
fn a_write_path_that_leaves_the_tree_is_refused_at_its_line() {
    let index = Index::new();
    let project = sources_project(
        &index,
        "{ path = \"src/mlrun\", write = { \"../escaped.py\" = \"X = 1\" } }",
    );
    local_project(
        &project.path("src/mlrun"),
        "mlrun",
        "1.0",
        &[],
        &[],
        "X = 1\n",
    );
    let out = project.run(&["build", "app", "--output", "oci:out"]);
    let line = refused(&out, "recipes/app.toml:6:");
    assert!(
        line.contains("`../escaped.py`") && line.contains("`..`"),
        "{line}"
    );
    assert!(!project.path("src/escaped.py").exists());
    assert!(!project.tmp.path().join("out").exists());
}

/// `fetch` carries the wheel built from a project directory, so an offline build with an empty
/// cache and no index installs it without building; changed code is refused there too.
#[test]
fn an_offline_build_installs_the_carried_wheel_of_a_project_directory() {
    let mut index = Index::new();
    index.publish(&dist("helper", "0.1"));
    let project = project(&index, "[\"linux/amd64\"]", &["packages = [\"./app\"]"]);
    local_project(
        &project.path("app"),
        "app",
        "1.0",
        &["helper"],
        &[],
        "A = 1\n",
    );
    let (online, inputs) = build_and_fetch(&project);
    let inputs = format!("dir:{}", inputs.display());
    drop(index);
    std::fs::remove_dir_all(project.cache()).unwrap();

    let offline = project.build(&[
        "app",
        "--offline",
        "--inputs",
        &inputs,
        "--output",
        "oci:offline",
    ]);
    assert_eq!(offline["digest"].as_str(), Some(online.as_str()));

    std::fs::write(project.path("app/app/__init__.py"), "A = 2\n").unwrap();
    let out = offline_build(&project, &inputs, "oci:changed");
    refused(&out, "the project directory ./app changed since");
}
