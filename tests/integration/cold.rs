//! A cold build (an empty cache, a lock) overlaps downloads with the rest of the build instead
//! of running them as stages: the packages of a later layer are asked for while an earlier
//! layer's are still on their way, in Debian layers (a prefetch of the whole lock) and within
//! a pip layer (wheels fetched and extracted a few ahead of the install). The fixture servers
//! hold one response until the request that shows the overlap arrives, so the tests read an
//! order of requests, not a time.

use crate::common::{Project, assert_success};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::pypi::{Index, dist, project};

/// Builds `target` once to write the lock, then again `--locked` into an empty cache: the
/// cold build the tests look at. Both give the same image.
fn cold_build_from_the_lock(p: &Project, target: &str, before_cold: impl FnOnce()) {
    let first = p.build(&[target, "--output", "oci:out"]);
    std::fs::remove_dir_all(p.cache()).unwrap();
    before_cold();
    let out = p.run(&["build", "--json", "--locked", target, "--output", "oci:out"]);
    assert_success(&out, "oci-build build --locked, cold");
    let cold: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cold[0]["digest"], first["digest"]);
}

#[test]
fn a_later_debian_layers_packages_are_fetched_while_an_earlier_ones_are_on_their_way() {
    let mut repo = Repo::new();
    repo.add(Pkg::new("lower", "1").file("/usr/bin/lower", "#!/bin/sh\n", 0o755))
        .add(Pkg::new("upper", "1").file("/usr/bin/upper", "#!/bin/sh\n", 0o755));
    repo.publish();
    let p = Project::new();
    repo.trust(&p);
    p.recipe(
        "two",
        &repo.recipe(&["packages = [\"lower\"]", "packages = [\"upper\"]"]),
    );
    cold_build_from_the_lock(&p, "two", || {
        repo.server
            .hold_until("/lower_1_amd64.deb", "/upper_1_amd64.deb");
    });
    // Built layer by layer as stages, the second layer's package would be asked for only
    // once the first layer was written, long after the held response gave up waiting.
    assert_eq!(
        repo.server.held_responses_waited_out(),
        0,
        "the second layer's package was not asked for while the first's was on its way: {:#?}",
        repo.requests()
    );
}

#[test]
fn a_pip_layers_wheels_are_fetched_while_an_earlier_one_is_on_its_way() {
    let mut index = Index::new();
    let first = index.publish(&dist("first", "1.0"));
    let second = index.publish(&dist("second", "1.0"));
    let p = project(
        &index,
        "[\"linux/amd64\"]",
        &["packages = [\"first\", \"second\"]"],
    );
    cold_build_from_the_lock(&p, "app", || {
        index
            .server
            .hold_until(&format!("/{first}"), &format!("/{second}"));
    });
    assert_eq!(
        index.server.held_responses_waited_out(),
        0,
        "the second wheel was not asked for while the first was on its way: {:#?}",
        index.requests()
    );
}
