//! Broken recipes: one line on stderr naming the file (and line), exit code 1, no output.

use crate::common::{Project, build_error};

fn project_with(recipe: &str) -> Project {
    let p = Project::new();
    p.write("files/hello.txt", "hello\n");
    p.recipe("bad", recipe);
    p
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let p = project_with("platforms = [\"linux/amd64\"]\n\ncolour = \"red\"\n");
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:3:1: unknown field `colour`, expected one of"),
        "{error}"
    );
}

#[test]
fn wrong_type_names_file_and_line() {
    let p = project_with("\nplatforms = \"linux/amd64\"\n");
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:2:13: invalid type: string"),
        "{error}"
    );
}

#[test]
fn missing_file_names_file_line_and_path() {
    let p = project_with(
        "[[layer]]\ncomment = \"x\"\nfiles = [{ src = \"files/nope.txt\", dest = \"/etc/nope\" }]\n",
    );
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:3: `src = \"files/nope.txt\"` does not exist"),
        "{error}"
    );
}

#[test]
fn source_outside_the_project_is_refused() {
    let p = project_with(
        "[[layer]]\nfiles = [{ src = \"../outside/secret\", dest = \"/etc/secret\" }]\n",
    );
    std::fs::create_dir_all(p.tmp.path().join("outside")).unwrap();
    std::fs::write(p.tmp.path().join("outside/secret"), "s").unwrap();
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:2: `src = \"../outside/secret\"` leads outside the project directory"),
        "{error}"
    );
}

#[test]
fn symlink_leading_outside_the_project_is_refused() {
    let p = project_with("[[layer]]\nfiles = [{ src = \"files/escape\", dest = \"/etc/x\" }]\n");
    std::os::unix::fs::symlink("/etc/hostname", p.path("files/escape")).unwrap();
    let error = build_error(&p, "bad");
    assert!(
        error.contains("leads outside the project directory"),
        "{error}"
    );
}

#[test]
fn destination_climbing_out_is_refused() {
    let p =
        project_with("[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/../etc/x\" }]\n");
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:2: `dest = \"/../etc/x\"` climbs out"),
        "{error}"
    );
}

#[test]
fn unknown_variable_names_the_variable_and_line() {
    let p = project_with("\n\nimage = \"repo/x:${NO_SUCH_VAR}\"\n");
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:3: unknown variable `NO_SUCH_VAR`"),
        "{error}"
    );
}

#[test]
fn unknown_base_lists_what_exists() {
    let p = project_with("from = \"python-9\"\n");
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:1: `from = \"python-9\"` names no recipe or layers/ definition (known: bad)"),
        "{error}"
    );
}

#[test]
fn cycles_are_named() {
    let p = project_with("from = \"other\"\n[[layer]]\nremove = [\"/x\"]\n");
    p.recipe("other", "from = \"bad\"\n[[layer]]\nremove = [\"/y\"]\n");
    let error = build_error(&p, "bad");
    assert_eq!(error, "error: recipes form a cycle: bad -> other -> bad");
}

#[test]
fn unknown_target_lists_targets() {
    let p = project_with("[[layer]]\nremove = [\"/x\"]\n");
    let out = p.run(&["build", "nothing-here"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: no target `nothing-here` in"),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("(targets: bad)"), "{stderr}");
}

#[test]
fn a_failing_target_leaves_an_existing_output_untouched() {
    let p = project_with("[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/hello\" }]\n");
    p.recipe(
        "good",
        "[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/hello\" }]\n",
    );
    p.build(&["good", "--output", "oci:out"]);
    let before = std::fs::read(p.tmp.path().join("out/index.json")).unwrap();
    p.recipe(
        "broken",
        "[[layer]]\nfiles = [{ src = \"files/gone\", dest = \"/x\" }]\n",
    );
    let out = p.run(&["build", "good", "broken", "--output", "oci:out"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(p.tmp.path().join("out/index.json")).unwrap(),
        before
    );
}

#[test]
fn several_targets_are_refused_for_a_single_image_archive() {
    let p = project_with("[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/hello\" }]\n");
    p.recipe(
        "other",
        "[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/x\" }]\n",
    );
    let out = p.run(&["build", "--all", "--output", "oci-archive:all.tar"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("is a single-image archive, but 2 targets"),
        "{stderr}"
    );
    assert!(!p.tmp.path().join("all.tar").exists());
}

#[test]
fn removing_a_directory_the_same_layer_fills_is_refused() {
    let p = project_with(
        "[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/opt/app/\" }]\nremove = [\"/opt/app\"]\n",
    );
    let error = build_error(&p, "bad");
    assert!(
        error.contains("both adds and removes /opt/app (or something under it)"),
        "{error}"
    );
}

#[test]
fn docker_media_types_refuse_a_zstd_base() {
    let p = project_with("[[layer]]\nfiles = [{ src = \"files/hello.txt\", dest = \"/hello\" }]\n");
    p.build(&["bad", "--compression", "zstd", "--output", "oci:base"]);
    std::fs::rename(p.tmp.path().join("base"), p.dir().join("base")).unwrap();
    p.recipe(
        "derived",
        "from = \"oci:base:bad:latest\"\n[[layer]]\nremove = [\"/hello\"]\n",
    );
    let out = p.run(&[
        "build",
        "derived",
        "--docker-media-types",
        "--output",
        "oci:out2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("have no zstd layer type (for this build's layers or its base's)"),
        "{stderr}"
    );
}

/// A `[[layer]]` reads the keys of every registered package kind; anything else is named with
/// its line and the keys there are.
#[test]
fn unknown_layer_key_names_line_and_every_kind() {
    let p = project_with("from = \"scratch\"\n\n[[layer]]\napk = { packages = [\"musl\"] }\n");
    let error = build_error(&p, "bad");
    assert!(
        error.starts_with("error: recipes/bad.toml:4:1: unknown field `apk`"),
        "{error}"
    );
    for key in ["files", "debian", "pip", "conda", "accounts", "remove"] {
        assert!(error.contains(&format!("`{key}`")), "{key}: {error}");
    }
}

#[test]
fn two_package_kinds_in_one_layer_are_refused() {
    let p = project_with(
        "from = \"scratch\"\n[[layer]]\ndebian = { packages = [\"python3\"] }\npip = { packages = [\"six\"] }\n",
    );
    let error = build_error(&p, "bad");
    assert!(
        error.contains("layer 1 has both `debian` and `pip`"),
        "{error}"
    );
}

#[test]
fn a_layer_without_content_names_every_kind() {
    let p = project_with("from = \"scratch\"\n[[layer]]\ncomment = \"empty\"\n");
    let error = build_error(&p, "bad");
    assert!(
        error.contains(
            "layer 1 has no content: give it `files`, `debian`, `pip`, `conda`, `accounts`, `remove` or `replace`"
        ),
        "{error}"
    );
}

/// A kind's own checks run where the recipe is read: a debian request that does not parse.
#[test]
fn a_kind_checks_its_spec_with_the_recipe() {
    let p =
        project_with("from = \"scratch\"\n[[layer]]\ndebian = { packages = [\"python3 (>> \"] }\n");
    let error = build_error(&p, "bad");
    assert!(error.contains("package request `python3 (>> `"), "{error}");
}
