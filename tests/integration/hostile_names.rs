//! Hostile names from conda packages and wheels: entry point names with a NUL, a control
//! character or `../`, paths.json paths that climb or are absolute, links out of the image
//! root, members below a link of the package (in either order), a repodata `fn` with `../`,
//! `.data/../` in a wheel and a zip symlink. Each build must fail with exit code 1 (never a
//! thread panic's 101) and one sentence naming the package and the bad name, Debug-escaped,
//! and leave a sentinel tree beside the cache as it was. Channels are file:// directories and
//! the index is served on 127.0.0.1, both made by the test.

use std::io::Write;

use crate::common::{Project, Sentinel, refused};
use crate::fixtures::conda::{Channel, Pkg, conda_recipe};
use crate::fixtures::pypi::{Index, dist, project, wheel};

/// Builds the conda recipe `env` of `p`, which must be refused for `package`; returns the line.
fn refused_conda(p: &Project, sentinel: &Sentinel, package: &str) -> String {
    let out = p.run(&["build", "env", "--output", "oci:out"]);
    let line = refused(&out, package);
    assert!(!p.tmp.path().join("out").exists(), "refused, yet wrote out");
    sentinel.assert_untouched();
    line
}

/// A channel with a python and `pkg` (named `evil`), and a project that asks for `evil`; the
/// sentinel is planted beside the project's cache, where `../` chains from it lead.
fn conda_case(pkgs: Vec<Pkg>) -> (Channel, Project, Sentinel) {
    let mut channel = Channel::new();
    channel.add(Pkg::new("python", "3.11.2", "h0"));
    for pkg in pkgs {
        channel.add(pkg);
    }
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    conda_recipe(&p, &channel.file_url(), &["evil"]);
    (channel, p, sentinel)
}

fn noarch_evil(entry_point: &str) -> Pkg {
    Pkg::new("evil", "1.0", "0")
        .depends("python")
        .file(
            "site-packages/evil/__init__.py",
            b"def main(): pass\n",
            0o644,
        )
        .noarch_python(entry_point)
}

#[test]
fn conda_entry_points_with_a_nul_or_a_path_are_refused() {
    for (name, shown) in [
        ("evil\u{0}x", "\"evil\\0x\""),
        ("../../../../sentinel/x", "\"../../../../sentinel/x\""),
        ("evil\u{1b}[2Jx", "\"evil\\u{1b}[2Jx\""),
    ] {
        let (_channel, p, sentinel) = conda_case(vec![noarch_evil(&format!("{name} = evil:main"))]);
        let line = refused_conda(&p, &sentinel, "evil-1.0-0");
        assert!(line.contains(shown), "{line}");
    }
}

#[test]
fn conda_paths_json_paths_that_climb_or_are_absolute_are_refused() {
    let p = Project::new();
    let absolute = p.tmp.path().join("sentinel/keep.txt").display().to_string();
    for path in ["../../../../sentinel/keep.txt", absolute.as_str()] {
        let (_channel, p, sentinel) = conda_case(vec![
            Pkg::new("evil", "1.0", "0")
                .file("share/ok", b"ok\n", 0o644)
                .paths_only(path),
        ]);
        let line = refused_conda(&p, &sentinel, "evil-1.0-0");
        assert!(line.contains(&format!("{path:?}")), "{line}");
    }
}

#[test]
fn conda_links_out_of_the_image_root_are_refused() {
    for target in ["../../../../../../sentinel", "/opt/conda/../../../sentinel"] {
        let (_channel, p, sentinel) = conda_case(vec![
            Pkg::new("evil", "1.0", "0").symlink("lib/out", target),
        ]);
        let line = refused_conda(&p, &sentinel, "evil-1.0-0");
        assert!(line.contains(target), "{line}");
    }
}

#[test]
fn conda_members_below_a_link_of_the_layer_are_refused_in_any_order() {
    let probe = Project::new();
    let outside = probe.tmp.path().join("sentinel").display().to_string();
    for (what, pkgs) in [
        (
            "file before its link",
            vec![
                Pkg::new("evil", "1.0", "0")
                    .file("lib/etc/keep.txt", b"owned\n", 0o644)
                    .symlink("lib/etc", &outside),
            ],
        ),
        (
            "link in one package, file in another",
            vec![
                Pkg::new("evil", "1.0", "0")
                    .depends("helper")
                    .symlink("lib/etc", &outside),
                Pkg::new("helper", "1.0", "0").file("lib/etc/keep.txt", b"owned\n", 0o644),
            ],
        ),
    ] {
        let (_channel, p, sentinel) = conda_case(pkgs);
        let out = p.run(&["build", "env", "--output", "oci:out"]);
        let line = refused(&out, "-1.0-0");
        assert!(line.contains("lib/etc/keep.txt"), "{what}: {line}");
        sentinel.assert_untouched();
    }
}

#[test]
fn a_repodata_file_name_with_a_path_is_refused() {
    let mut channel = Channel::new();
    // The file is where the `fn` points, so only the check stands between it and the build.
    channel.add_as(
        Pkg::new("evil", "1.0", "0").file("share/x", b"x\n", 0o644),
        "../evil-1.0-0.tar.bz2",
    );
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    conda_recipe(&p, &channel.file_url(), &["evil"]);
    let line = refused_conda(&p, &sentinel, "evil-1.0-0");
    assert!(line.contains("\"../evil-1.0-0.tar.bz2\""), "{line}");
}

/// Publishes `bytes` as `filename` of project `evil` and builds a pip layer asking for it,
/// which must be refused for that wheel; returns the line.
fn refused_wheel(mut index: Index, filename: &str, bytes: &[u8]) -> String {
    index.publish_raw("evil", filename, bytes);
    let p = project(&index, "[\"linux/amd64\"]", &["packages = [\"evil\"]"]);
    let sentinel = Sentinel::plant(p.tmp.path());
    let layout = p.tmp.path().join("out");
    // Quiet: the base target's progress line is not part of the refusal.
    let out = p.run(&[
        "--quiet",
        "build",
        "app",
        "--output",
        &format!("oci:{}", layout.display()),
    ]);
    let line = refused(&out, filename);
    assert!(!layout.exists(), "refused, yet wrote out");
    sentinel.assert_untouched();
    line
}

#[test]
fn wheel_script_names_with_a_path_or_a_control_character_are_refused() {
    for (points, shown) in [
        ("[console_scripts]\n../../x = evil:main\n", "\"../../x\""),
        (
            "[gui_scripts]\nevil\u{1b}[2Jx = evil:main\n",
            "\"evil\\u{1b}[2Jx\"",
        ),
    ] {
        let mut evil = dist("evil", "1.0");
        evil.files = vec![(
            "evil/__init__.py".to_owned(),
            b"def main(): pass\n".to_vec(),
        )];
        evil.entry_points = Some(points);
        let (filename, bytes) = wheel(&evil);
        let line = refused_wheel(Index::new(), &filename, &bytes);
        assert!(line.contains(shown), "{line}");
        assert!(!line.contains(char::is_control), "{line:?}");
    }
}

#[test]
fn a_wheel_data_scheme_that_climbs_is_refused() {
    let mut evil = dist("evil", "1.0");
    let entry = "evil-1.0.data/../../../../sentinel/keep.txt";
    evil.files = vec![(entry.to_owned(), b"owned\n".to_vec())];
    let (filename, bytes) = wheel(&evil);
    let line = refused_wheel(Index::new(), &filename, &bytes);
    assert!(line.contains(&format!("{entry:?}")), "{line}");
}

#[test]
fn a_zip_symlink_in_a_wheel_is_refused() {
    let mut evil = dist("evil", "1.0");
    evil.files = vec![("evil/__init__.py".to_owned(), b"".to_vec())];
    let (filename, bytes) = wheel(&evil);
    let probe = Project::new();
    let outside = probe.tmp.path().join("sentinel").display().to_string();
    // An entry whose external attributes say S_IFLNK, pointing outside.
    let mut zip = zip::ZipWriter::new_append(std::io::Cursor::new(bytes)).unwrap();
    zip.add_symlink(
        "evil/out",
        outside,
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.flush().unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let line = refused_wheel(Index::new(), &filename, &bytes);
    assert!(
        line.contains("\"evil/out\"") && line.contains("symbolic link"),
        "{line}"
    );
}
