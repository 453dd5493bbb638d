//! Hostile servers: every network client gives up on a server that stalls, and no download
//! grows past the size its index or descriptor states.
//!
//! A server that fails only the first try of a file (a flaky [`StaticServer`]) is retried
//! through: the build succeeds, having asked twice.
//!
//! The stalled servers are [`StallingServer`]s (they accept and never answer, or send a
//! response head and then nothing); the idle timeout is set to 1 s through
//! `OCI_BUILD_HTTP_IDLE_TIMEOUT` so that each test takes seconds. The oversized files are served
//! by the Debian, conda and registry test servers of the other suites, grown after their index
//! was written. Each test checks the refusal (exit code 1, one sentence naming the URL) and
//! that the sentinel tree beside the project is untouched.

use std::fs;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Project, Sentinel, refused};
use crate::fixtures::conda::{Channel, Pkg as CondaPkg, conda_recipe};
use crate::fixtures::debian::{Pkg as DebPkg, Repo};
use crate::fixtures::http::{Fault, StallingServer, StaticServer};
use crate::fixtures::sha256_hex;

const IDLE_TIMEOUT_ENV: &str = "OCI_BUILD_HTTP_IDLE_TIMEOUT";

/// Far above what the bounded retries take with a 1 s idle timeout, far below the stalling
/// server's hold: a client that waited for the server would be caught here.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(40);

/// `build NAME --output oci:out` with a 1 s idle timeout, quiet (a base target's progress
/// would be a line of its own); the output and how long it took.
fn build(p: &Project, target: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = p
        .command(&["--quiet", "build", target, "--output", "oci:out"])
        .env(IDLE_TIMEOUT_ENV, "1")
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// Asserts a refusal for a stall: named, in bounded time, explained as a stall.
fn given_up(out: &Output, took: Duration, names: &str) -> String {
    let line = refused(out, names);
    assert!(
        line.contains(&format!(
            "the server sent nothing for 1 s (set {IDLE_TIMEOUT_ENV}"
        )),
        "{line}"
    );
    assert!(took < GIVE_UP_WITHIN, "it took {took:?} to give up: {line}");
    line
}

/// A project whose `pulled` target adds a files layer to `<host>/<repository>/base:1`.
fn pulling_project(host: &str, repository: &str) -> (Project, Sentinel) {
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    p.write("x/y.txt", "y\n");
    p.recipe(
        "pulled",
        &format!(
            "from = \"docker://{host}/{repository}/base:1\"\nplatforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"x\", dest = \"/x\" }}]\n"
        ),
    );
    (p, sentinel)
}

#[test]
fn a_stalled_registry_is_given_up_on_after_bounded_retries() {
    let server = StallingServer::silent();
    let host = server.addr.to_string();
    let (p, sentinel) = pulling_project(&host, "stalled");
    let (out, took) = build(&p, "pulled");
    given_up(
        &out,
        took,
        &format!("{host}: GET /v2/stalled/base/manifests/1"),
    );
    // The scheme probe, then each try of the manifest request.
    assert!(server.connections() >= 3, "{} tries", server.connections());
    sentinel.assert_untouched();
}

#[test]
fn a_stalled_debian_archive_is_given_up_on() {
    // A real archive key, so that the build gets as far as asking the archive.
    let repo = Repo::new();
    let server = StallingServer::after_headers(4096, 100);
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    repo.trust(&p);
    p.recipe(
        "stalled",
        &format!(
            "platforms = [\"linux/amd64\"]\n[[layer]]\ndebian = {{ packages = [\"app\"], sources = [{{ uri = \"{}/debian\", suites = [\"test\"], components = [\"main\"], keyring = \"keys/archive.gpg\" }}] }}\n",
            server.uri()
        ),
    );
    let (out, took) = build(&p, "stalled");
    given_up(
        &out,
        took,
        &format!("{}/debian/dists/test/InRelease", server.uri()),
    );
    // A stall is tried again like a failed connection, a bounded number of times.
    assert_eq!(server.connections(), 4);
    sentinel.assert_untouched();
}

#[test]
fn a_stalled_package_index_is_given_up_on_after_bounded_retries() {
    let server = StallingServer::after_headers(4096, 100);
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    p.write("fixtures/status", crate::fixtures::pypi::STATUS);
    p.recipe(
        "base",
        "platforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }]\n",
    );
    // Credentials in the index URL must not reach the message.
    let index = format!("http://user:secret@{}/simple", server.addr);
    p.recipe(
        "app",
        &format!(
            "from = \"base\"\n[[layer]]\npip = {{ index_url = \"{index}\", packages = [\"demo\"] }}\n"
        ),
    );
    let (out, took) = build(&p, "app");
    let line = given_up(
        &out,
        took,
        &format!("http://***@{}/simple/demo/", server.addr),
    );
    assert!(!line.contains("secret"), "{line}");
    // A body that stalls is tried again, as a failed connection is (four tries per read of
    // the page; the resolver may read it more than once).
    assert!(server.connections() >= 4, "{} tries", server.connections());
    sentinel.assert_untouched();
}

#[test]
fn a_stalled_conda_channel_is_given_up_on() {
    // No body byte at all: any would be taken for the start of a zstd frame.
    let server = StallingServer::after_headers(4096, 0);
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    let channel = format!("{}/conda-forge", server.uri());
    conda_recipe(&p, &channel, &["textpre"]);
    let (out, took) = build(&p, "env");
    given_up(&out, took, &format!("{channel}/linux-64/repodata.json.zst"));
    assert_eq!(server.connections(), 4);
    sentinel.assert_untouched();
}

/// Asserts a build's success.
fn built(out: &Output) {
    assert!(
        out.status.success(),
        "the build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Debian archive with `app`, served by a server that fails the first GET of the files
/// `faults` name; the project that installs `app` from it.
fn flaky_debian_archive(faults: &[(&'static str, Fault)]) -> (Repo, StaticServer, Project) {
    let mut repo = Repo::new();
    repo.add(DebPkg::new("app", "1.0"));
    repo.publish();
    let server = StaticServer::flaky(repo.root(), "debian", faults);
    let p = Project::new();
    repo.trust(&p);
    p.recipe(
        "flaky",
        &format!(
            "platforms = [\"linux/amd64\"]\n[[layer]]\ndebian = {{ packages = [\"app\"], sources = [{{ uri = \"{}\", suites = [\"test\"], components = [\"main\"], keyring = \"keys/archive.gpg\" }}] }}\n",
            server.uri()
        ),
    );
    (repo, server, p)
}

#[test]
fn a_debian_archive_that_fails_once_is_retried() {
    let (_repo, server, p) = flaky_debian_archive(&[
        ("/InRelease", Fault::Stall),
        ("/Packages.gz", Fault::Unavailable),
        (".deb", Fault::Drop),
    ]);
    let (out, took) = build(&p, "flaky");
    built(&out);
    let dists = format!("{}/dists/test", server.uri());
    let deb = format!(
        "{}/{}",
        server.uri(),
        Repo::pool_name("app", "1.0", "amd64")
    );
    for url in [
        format!("{dists}/InRelease"),
        format!("{dists}/main/binary-amd64/Packages.gz"),
        deb,
    ] {
        assert_eq!(server.gets_of(&url), 2, "{url}: {:#?}", server.requests());
    }
    assert!(took < GIVE_UP_WITHIN, "it took {took:?}");
}

#[test]
fn a_deb_the_archive_does_not_have_is_not_asked_for_again() {
    let (_repo, server, p) = flaky_debian_archive(&[(".deb", Fault::NotFound)]);
    let (out, _) = build(&p, "flaky");
    let deb = format!(
        "{}/{}",
        server.uri(),
        Repo::pool_name("app", "1.0", "amd64")
    );
    let line = refused(&out, &deb);
    assert!(line.contains("the server answered 404"), "{line}");
    assert_eq!(server.gets_of(&deb), 1, "{:#?}", server.requests());
}

#[test]
fn a_conda_channel_that_fails_once_is_retried() {
    let mut channel = Channel::new();
    channel.add(CondaPkg::new("textpre", "1.0", "0").file("etc/textpre.conf", b"x\n", 0o644));
    let server = StaticServer::flaky(
        channel.path().to_owned(),
        "channel",
        &[
            ("/repodata.json.zst", Fault::Stall),
            (".tar.bz2", Fault::Drop),
        ],
    );
    let p = Project::new();
    conda_recipe(&p, &server.uri(), &["textpre"]);
    let (out, took) = build(&p, "env");
    built(&out);
    for url in [
        format!("{}/linux-64/repodata.json.zst", server.uri()),
        format!("{}/linux-64/textpre-1.0-0.tar.bz2", server.uri()),
    ] {
        assert_eq!(server.gets_of(&url), 2, "{url}: {:#?}", server.requests());
    }
    assert!(took < GIVE_UP_WITHIN, "it took {took:?}");
}

#[test]
fn a_deb_larger_than_its_packages_size_is_refused() {
    let mut repo = Repo::new();
    repo.add(DebPkg::new("app", "1.0"));
    repo.publish();
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    repo.trust(&p);
    p.recipe("big", &repo.recipe(&["packages = [\"app\"]"]));
    // The archive serves more than its signed index promised.
    let deb = repo.root().join(Repo::pool_name("app", "1.0", "amd64"));
    let mut bytes = fs::read(&deb).unwrap();
    let size = bytes.len();
    bytes.resize(size + (1 << 20), 0);
    fs::write(&deb, &bytes).unwrap();

    let (out, _) = build(&p, "big");
    let line = refused(&out, &repo.deb_url("app", "1.0", "amd64"));
    assert!(
        line.contains(&format!("{} bytes or more", bytes.len()))
            && line.contains(&format!("the {size} bytes its index entry states")),
        "{line}"
    );
    sentinel.assert_untouched();
}

#[test]
fn a_conda_package_larger_than_its_repodata_size_is_refused() {
    let mut channel = Channel::new();
    channel.add(CondaPkg::new("textpre", "1.0", "0").file("etc/textpre.conf", b"x\n", 0o644));
    let file = channel.path().join("linux-64/textpre-1.0-0.tar.bz2");
    let mut bytes = fs::read(&file).unwrap();
    let size = bytes.len();
    bytes.resize(size + (1 << 20), 0);
    fs::write(&file, &bytes).unwrap();
    let server = StaticServer::start(channel.path().to_owned(), "channel");
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    conda_recipe(&p, &server.uri(), &["textpre"]);

    let (out, _) = build(&p, "env");
    let url = format!("{}/linux-64/textpre-1.0-0.tar.bz2", server.uri());
    let line = refused(&out, &url);
    assert!(
        line.contains(&format!("{} bytes or more", size + 1))
            && line.contains(&format!("the {size} bytes its repodata entry")),
        "{line}"
    );
    // Too large is what the channel serves, not a failed connection: not asked again.
    assert_eq!(server.gets_of(&url), 1, "{:#?}", server.requests());
    sentinel.assert_untouched();
}

#[test]
fn a_remote_conda_channel_pointing_at_local_files_is_refused() {
    let mut channel = Channel::new();
    channel.add(CondaPkg::new("textpre", "1.0", "0").file("etc/textpre.conf", b"x\n", 0o644));
    let p = Project::new();
    let sentinel = Sentinel::plant(p.tmp.path());
    // The package itself sits among the sentinel's files, where the repodata points.
    fs::copy(
        channel.path().join("linux-64/textpre-1.0-0.tar.bz2"),
        sentinel.root.join("textpre-1.0-0.tar.bz2"),
    )
    .unwrap();
    // Planted again, to record the package among the sentinel's files.
    let sentinel = Sentinel::plant(p.tmp.path());
    let repodata = channel.path().join("linux-64/repodata.json");
    let mut document: Value = serde_json::from_slice(&fs::read(&repodata).unwrap()).unwrap();
    document["info"]["base_url"] = json!(format!("file://{}/", sentinel.root.display()));
    fs::write(&repodata, serde_json::to_vec(&document).unwrap()).unwrap();
    fs::remove_file(channel.path().join("linux-64/repodata.json.zst")).unwrap();
    let server = StaticServer::start(channel.path().to_owned(), "channel");
    conda_recipe(&p, &server.uri(), &["textpre"]);

    let (out, _) = build(&p, "env");
    let line = refused(&out, &format!("conda channel `{}`", server.uri()));
    assert!(line.contains("file://"), "{line}");
    sentinel.assert_untouched();
}

#[test]
fn a_registry_blob_larger_than_its_descriptor_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("big/base");
    fs::create_dir_all(repo.join("manifests")).unwrap();
    fs::create_dir_all(repo.join("blobs")).unwrap();
    // The layer is served whole; its descriptor claims a tenth of it.
    let layer = vec![7u8; 64 << 10];
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let stated = layer.len() as u64 / 10;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": stated}],
    });
    fs::write(
        repo.join("manifests/1"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    fs::write(repo.join(format!("blobs/{config_digest}")), &config).unwrap();
    fs::write(repo.join(format!("blobs/{layer_digest}")), &layer).unwrap();
    let server = StaticServer::start(root.path().to_owned(), "v2");

    let host = server.addr.to_string();
    let (p, sentinel) = pulling_project(&host, "big");
    let (out, _) = build(&p, "pulled");
    let line = refused(&out, &format!("registry {host} sent blob {layer_digest}"));
    assert!(
        line.contains(&format!("{} bytes or more", layer.len()))
            && line.contains(&format!("the {stated} bytes its descriptor states")),
        "{line}"
    );
    assert!(
        !walkdir::WalkDir::new(p.cache())
            .into_iter()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(&layer_digest[7..])),
        "the oversized blob was kept in the cache"
    );
    sentinel.assert_untouched();
}
