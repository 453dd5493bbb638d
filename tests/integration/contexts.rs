//! What a recipe may read and what it needs: `[project] contexts` (directories outside the
//! project that named variables point at, like a build context given on the command line),
//! `[requires]` (a variable the target cannot be built without, said in one sentence; `--all`
//! leaves such a target out and says so), a `[vars]` default taken from the working
//! directory when it holds a marker, and a `files` entry without `src` (an empty directory
//! owned as given, for a volume). Hermetic: files layers only.

use std::fs;

use crate::common::{Project, TarListing, layer_paths, one_line_error};

/// A project whose `app` target copies `${SRC_DIR}/server` and needs SRC_DIR, next to a
/// `plain` target that needs nothing; SRC_DIR is a context variable defaulting to empty, or
/// to the working directory where that holds `server/main.py`.
fn project_with_source_var() -> Project {
    let p = Project::new();
    p.write(
        "recipes/_vars.toml",
        r#"
[vars]
SRC_DIR = { default = "", cwd_with = "server/main.py" }

[project]
contexts = ["SRC_DIR"]
"#,
    );
    p.recipe(
        "app",
        r#"
platforms = ["linux/amd64"]

[requires]
SRC_DIR = "the server is not packaged: set SRC_DIR to a checkout of it"

[[layer]]
files = [
  { src = "${SRC_DIR}/server", dest = "/srv/app" },
  { dest = "/srv/data", uid = 1000, gid = 1000, dir_mode = "0750" },
]

[config]
volumes = ["/srv/data"]
"#,
    );
    p.write("plain.txt", "plain\n");
    p.recipe(
        "plain",
        r#"
platforms = ["linux/amd64"]

[[layer]]
files = [{ src = "plain.txt", dest = "/plain.txt" }]
"#,
    );
    p
}

/// A checkout outside the project: `server/main.py`.
fn checkout(p: &Project) -> std::path::PathBuf {
    let dir = p.tmp.path().join("checkout");
    fs::create_dir_all(dir.join("server")).unwrap();
    fs::write(dir.join("server/main.py"), "print('served')\n").unwrap();
    dir
}

#[test]
fn a_target_names_the_variable_it_needs_and_all_leaves_it_out() {
    let p = project_with_source_var();
    let out = p.run(&["build", "app"]);
    assert!(!out.status.success());
    assert_eq!(
        one_line_error(&out),
        "error: app (recipes/app.toml) needs SRC_DIR: the server is not packaged: set SRC_DIR \
         to a checkout of it"
    );
    let out = p.run(&["lock", "app"]);
    assert!(one_line_error(&out).contains("needs SRC_DIR"), "{out:?}");

    // --all builds what it can and says what it left out.
    let layout = p.tmp.path().join("all");
    let out = p.run(&[
        "build",
        "--json",
        "--all",
        "--output",
        &format!("oci:{}", layout.display()),
    ]);
    crate::common::assert_success(&out, "build --all");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let built: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(built, ["plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipping app (recipes/app.toml) needs SRC_DIR"),
        "{stderr}"
    );
    // `targets` still lists it: only building needs the variable.
    let out = p.run(&["targets"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("app"));
}

#[test]
fn a_context_variable_lets_files_come_from_outside_the_project() {
    let p = project_with_source_var();
    let source = checkout(&p);
    let layout = p.tmp.path().join("out");
    let out = p
        .command(&[
            "build",
            "--json",
            "app",
            "--output",
            &format!("oci:{}", layout.display()),
        ])
        .env("SRC_DIR", &source)
        .output()
        .unwrap();
    crate::common::assert_success(&out, "build app with SRC_DIR");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = layer_paths(&layout, &reports[0]).pop().unwrap();
    let listing = TarListing::of(&layer);
    assert_eq!(listing.mode_owner("srv/app/main.py"), ["-rw-r--r--", "0/0"]);
    // The volume's directory exists in the image, owned by its user, as given.
    assert_eq!(listing.mode_owner("srv/data/"), ["drwxr-x---", "1000/1000"]);

    // Anywhere else outside the project stays refused, naming the variables that open it.
    let elsewhere = p.tmp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(elsewhere.join("secret"), "no\n").unwrap();
    p.recipe(
        "leak",
        &format!(
            "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"{}\", dest = \"/x\" }}]\n",
            elsewhere.join("secret").display()
        ),
    );
    let out = p
        .command(&["build", "leak"])
        .env("SRC_DIR", &source)
        .output()
        .unwrap();
    let error = one_line_error(&out);
    assert!(
        error.contains("leads outside the project directory")
            && error.contains("the directories its variables SRC_DIR name"),
        "{error}"
    );
}

#[test]
fn run_in_the_root_of_a_checkout_a_detected_variable_takes_it() {
    let p = project_with_source_var();
    let source = checkout(&p);
    let layout = p.tmp.path().join("out");
    let out = p
        .command(&[
            "build",
            "--json",
            "app",
            "--output",
            &format!("oci:{}", layout.display()),
        ])
        .current_dir(&source)
        .env_remove("SRC_DIR")
        .output()
        .unwrap();
    crate::common::assert_success(&out, "build app in the checkout's root");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = layer_paths(&layout, &reports[0]).pop().unwrap();
    TarListing::of(&layer).mode_owner("srv/app/main.py");

    // The environment still has the last word, and an empty value is unset.
    let out = p
        .command(&["build", "app"])
        .current_dir(&source)
        .env("SRC_DIR", "")
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("needs SRC_DIR"));
}
