//! Integration tests of the `oci-build` binary. Each test makes its own project in a temporary
//! directory, builds it, and checks the result with tools nobody here wrote (skopeo, umoci,
//! oci-image-tool, GNU tar). `.ci/run` installs those tools; a missing one fails its test.
//!
//! The inputs the tests build from (a signed apt archive, wheels, sdists and a PEP 691 index,
//! conda channels, raw tars, real registries with a token server and a fault proxy, and the
//! HTTP servers that serve them) are made by the builders in the top-level `fixtures/`, shared
//! by every test; `common` holds the project, running the binary and the assertions. The
//! files below hold only tests and helpers of their own.
//!
//! - `peers`: layouts, archives and media types read back by skopeo, umoci, oci-image-tool.
//! - `reproducible`: byte-identical output from differing checkouts; SOURCE_DATE_EPOCH; one
//!   wheel and one image from an sdist built under two varied build environments.
//! - `rootless`: a build as an unprivileged user still writes root-owned files.
//! - `bad_input`: broken recipes fail with one sentence naming file and line, writing nothing.
//! - `cache`: unchanged layers come from the cache; damaged or interrupted entries do not stick.
//! - `cli`: targets, inspect, --json and --help.
//! - `cold`: a cold build from the lock asks for later packages while earlier ones are on
//!   their way (downloads overlap the build instead of running as a stage).
//! - `contexts`: directories outside the project through `[project] contexts` variables,
//!   `[requires]` variables, a default from the working directory, empty volume directories.
//! - `conda`: hermetic conda channels (`fixtures::conda`) on 127.0.0.1 and file://; live, a
//!   conda entry point run in a chroot of the Debian Python base.
//! - `debian`: live, the Python 3.11 base from the real archive, run in a chroot.
//! - `debian_repo`: hermetic, a tiny signed apt archive (`fixtures::debian`) on 127.0.0.1.
//! - `hostile_names`: names and members of conda packages and wheels that would write outside
//!   the build (NUL, control characters, `../`, links) refused in one sentence, nothing touched.
//! - `pip_index`: hermetic, wheels and an sdist on a PEP 691 index (`fixtures::pypi`); a
//!   built wheel other than the lock pins refused.
//! - `pip_local`: hermetic, local project directories (`fixtures::pypi::local_project`) built
//!   with their backend, direct `file://` and hashed-address references, `sources` and their
//!   `write` files; `--locked` refusing changed code.
//! - `pip_replace`: hermetic, a layer replacing a distribution installed below (whiteouts from
//!   its RECORD, the change printed and locked), refused in one sentence where one that stays
//!   forbids the version.
//! - `pip_resolver`: hermetic, a resolution that revises an early decision instead of walking
//!   into old releases; METADATA read through range requests where no PEP 658 file is served.
//! - `hostile_sdist`: `--only-binary`/`only_binary` keep sdists unbuilt, even when locked;
//!   a build backend gets no network and no write access outside its build (bubblewrap).
//! - `pip_live`: live, real wheels on the Python base run in a chroot; mlrun locked like uv.
//! - `family`: the MLRun recipes: names, resolve, the committed lock (and the CUDA libraries its
//!   GPU frameworks declare); live, mlrun pushed and run.
//! - `family_run`: live, jupyter and ui started as a runtime starts them (`runtime`), doing
//!   their job as their own users.
//! - `production`: live, examples/production built from its lock on the family's mlrun image
//!   pushed to a registry, pushed, pulled and run; a pin mlrun forbids refused.
//! - `harness_selftest`: the registry harness (`fixtures::registry`) checked with skopeo.
//! - `hostile_inputs`: index hashes and inputs-directory file names that try to be paths, and a
//!   swapped cache blob: refused in one sentence, nothing outside the cache written.
//! - `registry`: push, pull, auth, credentials and network faults against real registries.
//! - `registry_cache`: runners sharing a layer cache in a registry (--cache-from, --cache-to):
//!   nothing rebuilt or downloaded, only mounts; damaged records rebuilt; concurrent writers.
//! - `mirror`: mirror and verify between two real registries and bundles, killed and resumed.
//! - `hostile_archive`: packages, base layers and bundles whose members escape (`..`, absolute
//!   names, symlinks and hard links out, devices) are refused, touching nothing outside.
//! - `hostile_http`: stalled registries, archives, indexes and channels are given up on;
//!   downloads larger than their index or descriptor states are refused.
//! - `oci_build_image`: live, the oci-build image built from this checkout's binary and run as
//!   its non-root user in a chroot, building and pushing a function image with a docker
//!   config's credentials.
//! - `offline`: fetch the inputs of a target, then build it with no server and an empty cache.
//! - `sbom`: SBOM (SPDX, CycloneDX) and provenance attached as OCI referrers, validated by the
//!   peers' validators, pushed and mirrored with the image; the SBOM of an image made by umoci.
//! - `implied`: directories a layer only implies keep the owner and mode of the layers below;
//!   `replace` writes opaque whiteouts (umoci, GNU tar).

mod bad_input;
mod cache;
mod cli;
mod cold;
mod common;
mod conda;
mod contexts;
mod debian;
mod debian_repo;
mod family;
mod family_run;
#[path = "../../fixtures/mod.rs"]
mod fixtures;
mod harness_selftest;
mod hostile_archive;
mod hostile_http;
mod hostile_inputs;
mod hostile_names;
mod hostile_sdist;
mod implied;
mod mirror;
mod noop;
mod oci_build_image;
mod offline;
mod peers;
mod pip_index;
mod pip_live;
mod pip_local;
mod pip_replace;
mod pip_resolver;
mod production;
mod registry;
mod registry_cache;
mod reproducible;
mod rootless;
mod runtime;
mod sbom;
