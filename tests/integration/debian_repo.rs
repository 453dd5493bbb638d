//! Hermetic `debian` layers: each test makes a tiny apt repository (packages built with
//! `dpkg-deb`, or written byte by byte where dpkg-deb refuses), signs its `InRelease` with a key
//! generated for the test (`gpg`), serves it on 127.0.0.1 and builds a recipe that names it as
//! its own archive. Nothing else is contacted.
//!
//! Covered: dependency resolution (versions, alternatives, virtual packages, Pre-Depends),
//! modes and owners from the `.deb`, the dpkg database, a second Debian layer on the first,
//! downloads cached across builds, an unprivileged build, bad signatures, an expired Release,
//! hashes that do not match, unsatisfiable and conflicting dependencies, packages that try to
//! write outside their root, and reproducibility.
//!
//! Tools: `dpkg-deb` (dpkg), `gpg` and `gpgconf` (gnupg), `md5sum` (coreutils), GNU `tar`, and
//! `setpriv` (util-linux) when the tests run as root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixtures::debian::{Gpg, PACKAGES, Pkg, Repo, write_key};
use crate::fixtures::gzip_exactly;

use crate::common::{
    Project, TarEntry, TarListing, build_error, is_root, layer_paths, read_layer, tool,
};

// ---------------------------------------------------------------------------------------------
// Checking results

/// Builds `target` into `oci:out` and returns the entries of each layer.
fn build_layers(p: &Project, target: &str) -> (serde_json::Value, Vec<Vec<TarEntry>>) {
    let report = p.build(&[target, "--output", "oci:out"]);
    let layout = p.tmp.path().join("out");
    let layers = layer_paths(&layout, &report)
        .iter()
        .map(|path| read_layer(path))
        .collect();
    (report, layers)
}

fn entry<'a>(layer: &'a [TarEntry], path: &str) -> &'a TarEntry {
    layer
        .iter()
        .find(|e| e.path.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("the layer has no `{path}`"))
}

/// Regular files of the layer outside the dpkg database and /etc.
fn package_files(layer: &[TarEntry]) -> BTreeSet<String> {
    layer
        .iter()
        .filter(|e| e.kind == 'f' && e.path.starts_with("usr/"))
        .map(|e| e.path.clone())
        .collect()
}

fn text(entry: &TarEntry) -> String {
    String::from_utf8(entry.content.clone()).unwrap()
}

/// `var/lib/dpkg/status` as (package → fields).
fn dpkg_status(layer: &[TarEntry]) -> BTreeMap<String, BTreeMap<String, String>> {
    text(entry(layer, "var/lib/dpkg/status"))
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|stanza| {
            let fields: BTreeMap<String, String> = stanza
                .lines()
                .filter(|l| !l.starts_with([' ', '\t']))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect();
            (fields["Package"].clone(), fields)
        })
        .collect()
}

/// Checks that `status` lists exactly `expected` (name, version), each installed.
fn assert_installed(
    status: &BTreeMap<String, BTreeMap<String, String>>,
    expected: &[(&str, &str)],
) {
    let names: Vec<&str> = status.keys().map(String::as_str).collect();
    let mut wanted: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    wanted.sort();
    assert_eq!(names, wanted, "packages in var/lib/dpkg/status");
    for (name, version) in expected {
        let fields = &status[*name];
        assert_eq!(fields["Status"], "install ok installed", "{name}");
        assert_eq!(fields["Version"], *version, "{name}");
        assert!(!fields.contains_key("Filename"), "{name}: {fields:?}");
    }
}

/// The archive of the resolution test: alternatives, two versions, a virtual package with two
/// providers, a Pre-Depends.
fn resolution_repo() -> Repo {
    let mut repo = Repo::new();
    repo.add(
        Pkg::new("app", "1.0")
            .field("Pre-Depends", "prelib")
            .field("Depends", "libfoo (>= 2.0) | libbar, mta")
            .file("/usr/bin/app", "#!/bin/sh\necho app\n", 0o755)
            .file("/usr/bin/app-helper", "#!/bin/sh\nexit 0\n", 0o4755),
    )
    .add(Pkg::new("prelib", "0.5"))
    // The newer libfoo comes first and the older last: the index order must not matter.
    .add(Pkg::new("libfoo", "2.1"))
    .add(Pkg::new("libbar", "1.0").arch("all"))
    // postfix-tiny comes first in the index, exim-tiny first by name: exim-tiny is chosen.
    .add(
        Pkg::new("postfix-tiny", "3.0")
            .field("Provides", "mta")
            .field("Conflicts", "mta"),
    )
    .add(
        Pkg::new("exim-tiny", "4.0")
            .field("Provides", "mta")
            .field("Conflicts", "mta"),
    )
    .add(Pkg::new("libfoo", "1.0"));
    repo.publish();
    repo
}

/// Every file and directory under `root`, relative, leaving out `skip` (relative too).
fn tree_of(root: &Path, skip: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(root).unwrap() != skip)
        .map(|e| e.unwrap().path().strip_prefix(root).unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn resolves_versions_alternatives_virtual_packages_and_pre_depends() {
    let repo = resolution_repo();
    let p = Project::new();
    repo.trust(&p);
    p.recipe("app", &repo.recipe(&["packages = [\"app\"]"]));

    let (first, layers) = build_layers(&p, "app");
    assert_eq!(layers.len(), 1);
    let layer = &layers[0];

    // Exactly app, prelib, libfoo 2.1 and exim-tiny: not libbar (libfoo satisfies the first
    // alternative), not postfix-tiny, not libfoo 1.0.
    assert_eq!(
        package_files(layer),
        BTreeSet::from(
            [
                "usr/bin/app",
                "usr/bin/app-helper",
                "usr/share/app/marker",
                "usr/share/exim-tiny/marker",
                "usr/share/libfoo/marker",
                "usr/share/prelib/marker",
            ]
            .map(String::from)
        )
    );
    assert_eq!(
        text(entry(layer, "usr/share/libfoo/marker")),
        "libfoo 2.1\n"
    );

    // Modes come from the .deb; owners are root although the files dpkg-deb packed, and
    // those extracted into the cache, belong to whoever runs the test; times are clamped.
    let modes: BTreeMap<&str, (char, u32)> = [
        ("usr/bin/app", ('f', 0o755)),
        ("usr/bin/app-helper", ('f', 0o4755)),
        ("usr/share/app/marker", ('f', 0o644)),
        ("usr/share/app", ('d', 0o755)),
        ("var/lib/dpkg/status", ('f', 0o644)),
    ]
    .into();
    for (path, (kind, mode)) in modes {
        let e = entry(layer, path);
        assert_eq!((e.kind, e.mode), (kind, mode), "{path}");
    }
    for e in layer {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0), "{}", e.path);
    }
    assert_eq!(text(entry(layer, "usr/bin/app")), "#!/bin/sh\necho app\n");

    // The dpkg database lists what was installed, and each package's files.
    assert_installed(
        &dpkg_status(layer),
        &[
            ("app", "1.0"),
            ("exim-tiny", "4.0"),
            ("libfoo", "2.1"),
            ("prelib", "0.5"),
        ],
    );
    let status = text(entry(layer, "var/lib/dpkg/status"));
    assert!(
        status.contains("Depends: libfoo (>= 2.0) | libbar, mta\n"),
        "{status}"
    );
    assert!(status.contains("Pre-Depends: prelib\n"), "{status}");
    for name in ["app", "exim-tiny", "libfoo", "prelib"] {
        let list = text(entry(layer, &format!("var/lib/dpkg/info/{name}.list")));
        assert!(
            list.lines()
                .any(|l| l == format!("/usr/share/{name}/marker")),
            "{name}.list:\n{list}"
        );
    }
    let list = text(entry(layer, "var/lib/dpkg/info/app.list"));
    assert!(list.lines().any(|l| l == "/usr/bin/app-helper"), "{list}");
    for name in ["libbar", "postfix-tiny"] {
        assert!(
            !layer.iter().any(|e| e.path.contains(name)),
            "{name} was installed"
        );
    }

    // Every selected package was downloaded once; the others never.
    let requests = repo.requests();
    let debs: BTreeSet<&str> = requests
        .iter()
        .filter(|r| r.ends_with(".deb"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        debs,
        BTreeSet::from([
            "GET /debian/pool/main/app_1.0_amd64.deb",
            "GET /debian/pool/main/exim-tiny_4.0_amd64.deb",
            "GET /debian/pool/main/libfoo_2.1_amd64.deb",
            "GET /debian/pool/main/prelib_0.5_amd64.deb",
        ]),
        "{requests:#?}"
    );
    assert_eq!(
        requests.iter().filter(|r| r.ends_with(".deb")).count(),
        4,
        "{requests:#?}"
    );

    // A second build downloads no package and no index again: they come from the cache (or
    // the lock file); at most InRelease is asked for, to learn whether the archive changed.
    let seen = requests.len();
    let second = p.build(&["app", "--output", "oci:out"]);
    assert_eq!(first["digest"], second["digest"]);
    let again = &repo.requests()[seen..];
    assert!(
        again
            .iter()
            .all(|r| r == "GET /debian/dists/test/InRelease"),
        "{again:#?}"
    );
}

#[test]
fn a_second_debian_layer_holds_only_its_new_packages() {
    let mut repo = Repo::new();
    repo.add(
        Pkg::new("base-tiny", "1")
            .field("Essential", "yes")
            .field("Priority", "required"),
    )
    .add(Pkg::new("libfoo", "2.1"))
    .add(Pkg::new("unwanted", "1"))
    .add(
        Pkg::new("app-b", "1.0")
            .field("Depends", "libfoo (>= 2.0), base-tiny")
            .file("/usr/bin/app-b", "#!/bin/sh\n", 0o755),
    );
    repo.publish();
    let p = Project::new();
    repo.trust(&p);
    p.recipe(
        "two",
        &repo.recipe(&[
            "required = true, packages = [\"libfoo\"]",
            "packages = [\"app-b\"]",
        ]),
    );

    let (_, layers) = build_layers(&p, "two");
    assert_eq!(layers.len(), 2);
    let (lower, upper) = (&layers[0], &layers[1]);

    // `required = true` brings the Essential package along.
    assert_eq!(
        package_files(lower),
        BTreeSet::from(["usr/share/base-tiny/marker", "usr/share/libfoo/marker"].map(String::from))
    );
    assert_installed(
        &dpkg_status(lower),
        &[("base-tiny", "1"), ("libfoo", "2.1")],
    );

    // The upper layer has app-b alone, but its status lists everything installed.
    assert_eq!(
        package_files(upper),
        BTreeSet::from(["usr/bin/app-b", "usr/share/app-b/marker"].map(String::from))
    );
    for e in upper {
        assert!(
            !e.path.contains("libfoo") && !e.path.contains("base-tiny"),
            "the upper layer repeats {}",
            e.path
        );
    }
    assert!(
        upper
            .iter()
            .any(|e| e.path == "var/lib/dpkg/info/app-b.list")
    );
    assert_installed(
        &dpkg_status(upper),
        &[("app-b", "1.0"), ("base-tiny", "1"), ("libfoo", "2.1")],
    );
    assert!(
        !repo.requests().iter().any(|r| r.contains("unwanted")),
        "{:#?}",
        repo.requests()
    );
}

#[test]
fn an_inrelease_signed_by_another_key_is_refused() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("app", "1.0"));
    repo.publish();
    let p = Project::new();
    // The project trusts a key that did not sign the archive.
    let other = Gpg::new(
        repo.tmp.path().join("other-gnupg"),
        "Other Key <other@archive.invalid>",
        "ed25519",
    );
    write_key(&p, &other.public_key());
    p.recipe("bad", &repo.recipe(&["packages = [\"app\"]"]));

    let error = build_error(&p, "bad");
    let url = format!("{}/dists/test/InRelease", repo.server.uri());
    assert!(error.starts_with("error: "), "{error}");
    assert!(error.contains(&format!("`{url}`")), "{error}");
    assert!(
        error.contains("signed only by keys that are not in the keyrings"),
        "{error}"
    );
    // Nothing past InRelease was fetched.
    let requests = repo.requests();
    assert_eq!(
        requests,
        ["GET /debian/dists/test/InRelease"],
        "{requests:#?}"
    );
}

#[test]
fn an_inrelease_changed_after_signing_is_refused() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("app", "1.0"));
    let p = repo.published_project("bad", "packages = [\"app\"]");
    let inrelease = repo.dists().join("InRelease");
    let signed = fs::read_to_string(&inrelease).unwrap();
    fs::write(&inrelease, signed.replace("Label: Test", "Label: Evil")).unwrap();

    let error = build_error(&p, "bad");
    let url = format!("{}/dists/test/InRelease", repo.server.uri());
    assert!(
        error.contains(&format!("`{url}` has a BAD signature")),
        "{error}"
    );
}

#[test]
fn a_packages_index_that_does_not_match_the_release_is_refused() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("app", "1.0"));
    let p = repo.published_project("bad", "packages = [\"app\"]");
    // A mirror serving another index than the one signed: one byte of Packages differs, in
    // both the plain and the compressed file.
    let dir = repo.dists().join("main/binary-amd64");
    let index = fs::read_to_string(dir.join("Packages")).unwrap();
    let changed = index.replacen("Version: 1.0", "Version: 1.1", 1);
    assert_ne!(index, changed);
    fs::write(dir.join("Packages"), &changed).unwrap();
    // The same size as the signed file, so that the digest, not the size, tells them apart.
    let signed_len = fs::metadata(dir.join("Packages.gz")).unwrap().len();
    let changed_gz = gzip_exactly(changed.as_bytes(), signed_len as usize)
        .expect("the changed index compresses to the signed size");
    fs::write(dir.join("Packages.gz"), changed_gz).unwrap();

    let error = build_error(&p, "bad");
    assert!(
        error.contains(&format!("`{PACKAGES}.gz` does not match the Release file")),
        "{error}"
    );
    assert!(
        !repo.requests().iter().any(|r| r.ends_with(".deb")),
        "{:#?}",
        repo.requests()
    );

    // The plain index alone (the Release lists no compressed one): named just the same.
    fs::remove_file(dir.join("Packages.gz")).unwrap();
    let release = fs::read_to_string(repo.dists().join("Release")).unwrap();
    let release: String = release
        .lines()
        .filter(|l| !l.ends_with("Packages.gz"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(repo.dists().join("Release"), release).unwrap();
    repo.key.clearsign(
        &repo.dists().join("Release"),
        &repo.dists().join("InRelease"),
    );
    let error = build_error(&p, "bad");
    assert!(
        error.contains(&format!("`{PACKAGES}` does not match the Release file")),
        "{error}"
    );
}

#[test]
fn a_deb_that_does_not_match_its_index_entry_is_refused() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("libfoo", "2.1"))
        .add(Pkg::new("app", "1.0").field("Depends", "libfoo"));
    let p = repo.published_project("bad", "packages = [\"app\"]");
    // Same size, one byte different.
    let deb = repo.root().join(Repo::pool_name("libfoo", "2.1", "amd64"));
    let mut bytes = fs::read(&deb).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&deb, bytes).unwrap();

    let error = build_error(&p, "bad");
    let url = repo.deb_url("libfoo", "2.1", "amd64");
    assert!(
        error.contains(&format!(
            "{url} does not match the SHA256 of its index entry"
        )),
        "{error}"
    );
    // Nothing of it was kept for a later build to trust.
    let cached = walkdir::WalkDir::new(p.cache())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .any(|e| fs::read(e.path()).is_ok_and(|b| b == fs::read(&deb).unwrap()));
    assert!(!cached, "the damaged .deb was kept in the cache");
}

#[test]
fn an_unsatisfiable_dependency_names_the_chain_and_what_is_available() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("libmissing", "1.0"))
        .add(Pkg::new("app2", "2.0").field("Depends", "libmissing (>= 3)"));
    let p = repo.published_project("bad", "packages = [\"app2\"]");

    let error = build_error(&p, "bad");
    assert!(
        error.contains(
            "cannot install app2 2.0 → libmissing (>= 3): libmissing is available only as 1.0"
        ),
        "{error}"
    );
    assert!(error.contains("recipes/bad.toml"), "{error}");
    assert!(
        !repo.requests().iter().any(|r| r.ends_with(".deb")),
        "{:#?}",
        repo.requests()
    );
}

#[test]
fn a_deb_with_entries_outside_its_root_is_refused() {
    let mut repo = Repo::new();
    let p = Project::new();
    // Where the entries would land if they were followed: `..` climbs from
    // <cache>/debs-v1/<tmp>/files/ to the test's directory; the absolute one names it.
    let absolute = p.tmp.path().join("evil-absolute");
    let absolute = absolute.to_str().unwrap();
    let dotdot = "./../../../../evil-dotdot";
    let payload: &[u8] = b"evil\n";
    repo.add_raw(
        Pkg::new("evil-dotdot", "1"),
        &[
            ("./", tar::EntryType::Directory, b"", 0o755),
            ("./usr/", tar::EntryType::Directory, b"", 0o755),
            ("./usr/share/", tar::EntryType::Directory, b"", 0o755),
            ("./usr/share/ok", tar::EntryType::Regular, b"ok\n", 0o644),
            (dotdot, tar::EntryType::Regular, payload, 0o644),
        ],
    )
    .add_raw(
        Pkg::new("evil-absolute", "1"),
        &[
            ("./", tar::EntryType::Directory, b"", 0o755),
            (absolute, tar::EntryType::Regular, payload, 0o644),
        ],
    )
    .add(Pkg::new("innocent", "1").field("Depends", "evil-dotdot"))
    .add(Pkg::new("harmless", "1").field("Depends", "evil-absolute"));
    repo.publish();
    repo.trust(&p);

    let mut unnamed = Vec::new();
    for (request, deb, entry) in [
        ("innocent", "evil-dotdot", dotdot),
        ("harmless", "evil-absolute", absolute),
    ] {
        p.recipe(
            "bad",
            &repo.recipe(&[&format!("packages = [\"{request}\"]")]),
        );
        let before = tree_of(p.tmp.path(), Path::new("cache"));
        let error = build_error(&p, "bad");
        // Outside the cache, nothing appeared.
        assert_eq!(tree_of(p.tmp.path(), Path::new("cache")), before);
        assert!(
            error.contains(&format!("entry `{entry}` leaves the package root")),
            "{error}"
        );
        // The error says which package (a dependency here, not the one the recipe names):
        // its name or the URL it came from, not only the cache file it was stored in.
        let url = repo.deb_url(deb, "1", "amd64");
        if !error.contains(&url) && !error.contains(&format!("package {deb}")) {
            unnamed.push(format!("{deb} ({url}): {error}"));
        }
    }
    assert!(!p.tmp.path().join("evil-dotdot").exists());
    assert!(!Path::new(absolute).exists());
    // Inside the cache, no file holds the payload.
    for e in walkdir::WalkDir::new(p.cache())
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            assert_ne!(
                fs::read(e.path()).unwrap(),
                payload,
                "{}",
                e.path().display()
            );
        }
    }
    assert!(
        unnamed.is_empty(),
        "the error does not name the package at fault:\n{}",
        unnamed.join("\n")
    );
}

#[test]
fn the_same_recipe_and_archive_give_the_same_image() {
    let repo = resolution_repo();
    let recipe = repo.recipe(&["packages = [\"app\"]", "packages = [\"libbar\"]"]);
    let build = || {
        let p = Project::new();
        repo.trust(&p);
        p.recipe("app", &recipe);
        let (report, layers) = build_layers(&p, "app");
        (p, report, layers)
    };
    let (p1, first, layers1) = build();
    let (p2, second, layers2) = build();
    assert_ne!(p1.cache(), p2.cache());
    assert_eq!(first["layers_built"].as_u64(), Some(2));
    assert_eq!(second["layers_built"].as_u64(), Some(2));
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(
        first["manifests"][0]["layers"],
        second["manifests"][0]["layers"]
    );
    assert_eq!(layers1, layers2);
    assert!(
        layers1[1]
            .iter()
            .any(|e| e.path == "usr/share/libbar/marker")
    );
}

#[test]
fn the_test_archive_is_well_formed() {
    // The repository builder itself: dpkg-deb reads back what it (and the hand-made writer)
    // packed, and the Packages index agrees with the pool.
    let mut repo = Repo::new();
    repo.add(Pkg::new("app", "1.0").file("/usr/bin/app", "x", 0o4755))
        .add_raw(
            Pkg::new("raw", "1"),
            &[("./usr/share/raw", tar::EntryType::Regular, b"raw\n", 0o644)],
        );
    repo.publish();
    for (name, version) in [("app", "1.0"), ("raw", "1")] {
        let deb = repo.root().join(Repo::pool_name(name, version, "amd64"));
        let out = Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .arg("Package")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);
    }
    let contents = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(repo.root().join(Repo::pool_name("app", "1.0", "amd64")))
        .output()
        .unwrap();
    let listing = String::from_utf8(contents.stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwsr-xr-x root/root") && l.ends_with("./usr/bin/app")),
        "{listing}"
    );
    let index = fs::read_to_string(repo.dists().join(PACKAGES)).unwrap();
    assert_eq!(index.matches("\n\n").count(), 1, "{index}");
    let mut served = Vec::new();
    TcpStream::connect(repo.server.addr)
        .and_then(|mut s| {
            s.write_all(b"GET /debian/dists/test/InRelease HTTP/1.1\r\nHost: x\r\n\r\n")?;
            s.read_to_end(&mut served)
        })
        .unwrap();
    let served = String::from_utf8(served).unwrap();
    assert!(served.starts_with("HTTP/1.1 200 OK\r\n"), "{served}");
    assert!(
        served.contains("-----BEGIN PGP SIGNED MESSAGE-----"),
        "{served}"
    );
}

#[test]
fn an_expired_release_is_refused() {
    // A mirror replaying an old, validly signed Release: apt refuses it once Valid-Until has
    // passed.
    let mut repo = Repo::new();
    repo.add(Pkg::new("app", "1.0"));
    repo.valid_until = Some("Sun, 02 Jan 2000 00:00:00 UTC".to_owned());
    let p = repo.published_project("bad", "packages = [\"app\"]");

    let error = build_error(&p, "bad");
    assert!(
        error.contains("expired on Sun, 02 Jan 2000 00:00:00 UTC (Valid-Until)"),
        "{error}"
    );
    assert!(
        !repo.requests().iter().any(|r| r.ends_with(".deb")),
        "{:#?}",
        repo.requests()
    );

    // The same archive, valid until far in the future, builds.
    repo.valid_until = Some("Fri, 01 Jan 2100 00:00:00 UTC".to_owned());
    repo.publish();
    p.recipe("good", &repo.recipe(&["packages = [\"app\"]"]));
    p.build(&["good", "--output", "oci:out"]);
}

#[test]
fn conflicting_packages_are_refused() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("postfix-tiny", "3.0").field("Provides", "mta"))
        .add(
            Pkg::new("exim-tiny", "4.0")
                .field("Provides", "mta")
                .field("Conflicts", "mta"),
        )
        .add(Pkg::new("sendmail-tiny", "8.0").field("Conflicts", "postfix-tiny"))
        .add(Pkg::new("app", "1.0").field("Depends", "postfix-tiny, sendmail-tiny"));
    repo.publish();
    let p = Project::new();
    repo.trust(&p);

    // Each case: the layers, and the two packages the error must name. apt refuses them all.
    let cases: [(&str, &[&str], [&str; 2]); 3] = [
        (
            "a conflict between two packages of one layer",
            &["packages = [\"app\"]"],
            ["sendmail-tiny 8.0", "postfix-tiny 3.0"],
        ),
        (
            "a conflict with a virtual package another one provides",
            &["packages = [\"exim-tiny\", \"postfix-tiny\"]"],
            ["exim-tiny", "postfix-tiny"],
        ),
        (
            "a conflict with a package of a lower layer",
            &[
                "packages = [\"postfix-tiny\"]",
                "packages = [\"sendmail-tiny\"]",
            ],
            ["sendmail-tiny", "postfix-tiny"],
        ),
    ];
    let mut wrong = Vec::new();
    for (case, layers, names) in cases {
        p.recipe("bad", &repo.recipe(layers));
        let out = p.run(&["build", "bad", "--output", "oci:out"]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        if out.status.code() != Some(1) {
            wrong.push(format!("{case}: the build did not fail ({})", out.status));
            let _ = fs::remove_dir_all(p.tmp.path().join("out"));
            continue;
        }
        // Layers below the failing one may have reported progress; the error is one line.
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{case}: {stderr}");
        assert!(!p.tmp.path().join("out").exists(), "{case}");
        if !stderr.contains("conflicts with") || !names.iter().all(|n| stderr.contains(n)) {
            wrong.push(format!("{case}: {stderr}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_unprivileged_build_installs_root_owned_setuid_files() {
    // The packages' files are extracted into the cache by whoever builds (nobody, when the
    // tests run as root); the layer still says root and keeps the setuid bit. GNU tar reads it.
    let mut repo = Repo::new();
    repo.add(
        Pkg::new("app", "1.0")
            .file("/usr/bin/app", "#!/bin/sh\n", 0o755)
            .file("/usr/bin/app-helper", "#!/bin/sh\n", 0o4755)
            .file("/etc/app.conf", "secret\n", 0o600),
    );
    let p = repo.published_project("app", "packages = [\"app\"]");
    let (report, out) = p.unprivileged_build("app");
    let layer = &layer_paths(&out, &report)[0];

    // The extracted copy in the cache belongs to the builder, not to root.
    let extracted = walkdir::WalkDir::new(p.cache())
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.path().ends_with("files/usr/bin/app-helper"))
        .expect("the package is extracted in the cache");
    {
        use std::os::unix::fs::MetadataExt;
        let builder = if is_root() {
            crate::common::NOBODY
        } else {
            tool("id", &["-u"]).trim().parse().unwrap()
        };
        assert_eq!(extracted.metadata().unwrap().uid(), builder);
    }

    let listing = TarListing::of(layer);
    let line = |path: &str| listing.mode_owner(path);
    assert_eq!(line("usr/bin/app"), ["-rwxr-xr-x", "0/0"]);
    assert_eq!(line("usr/bin/app-helper"), ["-rwsr-xr-x", "0/0"]);
    assert_eq!(line("etc/app.conf"), ["-rw-------", "0/0"]);
    assert_eq!(line("usr/share/app/marker"), ["-rw-r--r--", "0/0"]);
    assert_eq!(line("usr/bin/"), ["drwxr-xr-x", "0/0"]);
    assert_eq!(line("var/lib/dpkg/status"), ["-rw-r--r--", "0/0"]);
}
