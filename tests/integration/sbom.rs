//! SBOMs and provenance: a hermetic image (a fake Debian Python, a signed test archive, wheels
//! on a test index) built with its SPDX or CycloneDX SBOM and in-toto provenance attached to its
//! platform manifest as OCI 1.1 referrers; checked with the peers' own validators (spdx-tools'
//! `pyspdxtools`, cyclonedx-python-lib, installed by `.ci/run`), read back with skopeo, pushed to
//! docker-registry and mirrored with the referrers found by their fallback tag; the same bytes
//! twice; `--no-sbom`; a bundle that carries them and back; and the SBOM of an image oci-build
//! did not build (made by umoci) and of one built on it.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{Project, assert_success, json, json_of, tool};
use crate::fixtures::debian::{Pkg, Repo};
use crate::fixtures::pypi::{Index, STATUS, dist, wheel};
use crate::fixtures::registry::{Auth, Registry, http_request};
use crate::fixtures::sha256_hex;

const SPDX: &str = "application/spdx+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A machine-readable copyright file whose `Files: *` paragraph says Expat (MIT).
const DEP5: &str = "Format: https://example.invalid/copyright-format/1.0/\nUpstream-Name: hello\n\nFiles: *\nCopyright: 2026 Someone\nLicense: Expat\n\nFiles: debian/*\nCopyright: 2026 Someone Else\nLicense: GPL-2+\n\nLicense: Expat\n Permission is hereby granted...\n";

/// The hermetic image and where its inputs are served.
struct Fixture {
    repo: Repo,
    index: Index,
    project: Project,
    /// SHA256 of the `.deb` of hello and of the sbom-app wheel.
    hello_sha256: String,
    app_sha256: String,
}

/// `app`: a dpkg status saying libc6 and libpython3.11-minimal are there, `hello` (and its
/// dependency `greet`) from the test archive, and `sbom-app` (and `dep-lib`) from the index.
fn fixture() -> Fixture {
    let mut repo = Repo::new();
    repo.add(
        Pkg::new("hello", "1.0-1")
            .field("Source", "hello-src (1.0-1)")
            .field("Depends", "nothere | greet (>= 0.5)")
            .file("/usr/share/doc/hello/copyright", DEP5, 0o644),
    );
    repo.add(Pkg::new("greet", "0.5-3+b1").file(
        "/usr/share/doc/greet/copyright",
        "Greet is copyright its authors and free to share.\n",
        0o644,
    ));
    repo.publish();
    let hello_sha256 = sha256_hex(
        &fs::read(repo.root().join(Repo::pool_name("hello", "1.0-1", "amd64"))).unwrap(),
    );

    let mut index = Index::new();
    let mut app = dist("sbom-app", "1.0");
    app.requires = vec!["dep-lib>=2", "unused; extra == \"more\""];
    app.license = Some("Apache-2.0");
    index.publish(&app);
    index.publish(&dist("dep-lib", "2.0"));
    let app_sha256 = sha256_hex(&wheel(&app).1);

    let project = Project::new();
    repo.trust(&project);
    project.write("fixtures/status", STATUS);
    project.recipe(
        "app",
        &format!(
            "image = \"test/app:1\"\nplatforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"fixtures/status\", dest = \"/var/lib/dpkg/status\" }}]\n{}[[layer]]\npip = {{ index_url = \"{}\", packages = [\"sbom-app\"] }}\n",
            repo.layer("packages = [\"hello\"]"),
            index.url()
        ),
    );
    Fixture {
        repo,
        index,
        project,
        hello_sha256,
        app_sha256,
    }
}

/// A layout file's JSON.
fn read_json(path: &Path) -> Value {
    json(&fs::read_to_string(path).unwrap())
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// The referrers the layout lists for `subject` beside the image `name`: (artifactType, the
/// artifact manifest's digest, its one layer's bytes).
fn layout_referrers(layout: &Path, name: &str, subject: &str) -> Vec<(String, String, Vec<u8>)> {
    let repository = name.rsplit_once(':').unwrap().0;
    let wanted = format!("{repository}:{}", subject.replace(':', "-"));
    let index = read_json(&layout.join("index.json"));
    let listing = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == wanted.as_str())
        .unwrap_or_else(|| panic!("index.json lists no `{wanted}`: {index}"));
    let listed: Value =
        serde_json::from_slice(&blob(layout, listing["digest"].as_str().unwrap())).unwrap();
    listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let digest = d["digest"].as_str().unwrap().to_owned();
            let manifest: Value = serde_json::from_slice(&blob(layout, &digest)).unwrap();
            assert_eq!(manifest["subject"]["digest"], subject, "{manifest}");
            assert_eq!(manifest["artifactType"], d["artifactType"], "{manifest}");
            let content = blob(layout, manifest["layers"][0]["digest"].as_str().unwrap());
            (
                d["artifactType"].as_str().unwrap().to_owned(),
                digest,
                content,
            )
        })
        .collect()
}

fn referrer<'a>(
    referrers: &'a [(String, String, Vec<u8>)],
    kind: &str,
) -> &'a (String, String, Vec<u8>) {
    referrers
        .iter()
        .find(|(t, _, _)| t == kind)
        .unwrap_or_else(|| panic!("no {kind} referrer"))
}

/// Runs a validator that `.ci/run` installs with pip; a missing one fails with that said.
fn validator(program: &str, args: &[&str], package: &str) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}); .ci/run installs it with `pip install {package}`")
        });
    assert_success(
        &out,
        &format!("{program} {} (from {package})", args.join(" ")),
    );
}

/// spdx-tools' validator: exits non-zero, listing the problems, for an invalid document.
pub fn validate_spdx(file: &Path) {
    validator("pyspdxtools", &["-i", file.to_str().unwrap()], "spdx-tools");
}

/// cyclonedx-python-lib's strict JSON schema validation for CycloneDX 1.6.
pub fn validate_cyclonedx(file: &Path) {
    let script = "import sys\ntry:\n    from cyclonedx.validation.json import JsonStrictValidator\n    from cyclonedx.schema import SchemaVersion\nexcept ImportError as e:\n    sys.exit(f'cyclonedx-python-lib is missing ({e}); .ci/run installs it with pip')\nerror = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nif error is not None:\n    sys.exit(f'invalid CycloneDX: {error}')\n";
    validator(
        "python3",
        &["-c", script, file.to_str().unwrap()],
        "cyclonedx-python-lib[json-validation]",
    );
}

/// (name, version) of every package (not the image or its layers) an SPDX document lists.
pub fn spdx_packages(document: &Value) -> BTreeSet<(String, String)> {
    document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["externalRefs"].is_array())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn spdx_package<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("the SBOM lists no {name}"))
}

fn depends_on(document: &Value, from: &str, to: &str) -> bool {
    let id = |name: &str| spdx_package(document, name)["SPDXID"].clone();
    document["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| {
            r["relationshipType"] == "DEPENDS_ON"
                && r["spdxElementId"] == id(from)
                && r["relatedSpdxElement"] == id(to)
        })
}

fn owned(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_build_attaches_a_valid_sbom_and_provenance_of_every_package_to_its_manifest() {
    let f = fixture();
    let p = &f.project;
    // Locked first, so the provenance names the lock the build reads.
    assert_success(&p.run(&["lock", "app"]), "lock");
    let report = p.build(&["app", "--locked", "--output", "oci:out"]);
    let layout = p.tmp.path().join("out");
    let name = report["output"]
        .as_str()
        .unwrap()
        .rsplit_once("out:")
        .unwrap()
        .1
        .to_owned();
    let manifest = report["manifests"][0]["manifest"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let referrers = layout_referrers(&layout, &name, &manifest);
    assert_eq!(referrers.len(), 2, "an SBOM and a provenance statement");

    // The SBOM: valid to spdx-tools, every package with its version, license, purl and hash.
    let (_, _, sbom_bytes) = referrer(&referrers, SPDX);
    let sbom_file = p.tmp.path().join("sbom.spdx.json");
    fs::write(&sbom_file, sbom_bytes).unwrap();
    validate_spdx(&sbom_file);
    let sbom: Value = serde_json::from_slice(sbom_bytes).unwrap();
    assert_eq!(
        spdx_packages(&sbom),
        owned(&[
            ("dep-lib", "2.0"),
            ("greet", "0.5-3+b1"),
            ("hello", "1.0-1"),
            ("libc6", "2.36-9+deb12u7"),
            ("libpython3.11-minimal", "3.11.2-6+deb12u6"),
            ("sbom-app", "1.0"),
        ])
    );
    let hello = spdx_package(&sbom, "hello");
    assert_eq!(hello["licenseDeclared"], "MIT", "Expat is MIT: {hello}");
    assert_eq!(hello["checksums"][0]["checksumValue"], f.hello_sha256);
    assert_eq!(hello["sourceInfo"], "built package from: hello-src 1.0-1");
    assert_eq!(
        hello["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/hello@1.0-1?arch=amd64"
    );
    assert_eq!(
        spdx_package(&sbom, "greet")["licenseDeclared"],
        "NOASSERTION"
    );
    let app = spdx_package(&sbom, "sbom-app");
    assert_eq!(app["licenseDeclared"], "Apache-2.0");
    assert_eq!(app["checksums"][0]["checksumValue"], f.app_sha256);
    assert_eq!(
        app["externalRefs"][0]["referenceLocator"],
        "pkg:pypi/sbom-app@1.0"
    );
    assert!(
        depends_on(&sbom, "hello", "greet"),
        "{}",
        sbom["relationships"]
    );
    assert!(depends_on(&sbom, "sbom-app", "dep-lib"));
    assert!(!depends_on(&sbom, "dep-lib", "sbom-app"));
    // The image and its three layers are in it too.
    let layers = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["primaryPackagePurpose"] == "ARCHIVE")
        .count();
    assert_eq!(layers, 3);

    // Provenance: the manifest as subject; recipe, lock and every package file with its hash.
    let (_, _, statement) = referrer(&referrers, IN_TOTO);
    let statement: Value = serde_json::from_slice(statement).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        manifest
    );
    let dependencies: Vec<(String, String)> =
        statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["uri"].as_str().unwrap().to_owned(),
                    d["digest"]["sha256"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    let recipe = sha256_hex(&fs::read(p.path("recipes/app.toml")).unwrap());
    let lock = sha256_hex(&fs::read(p.path("recipes/recipes.lock")).unwrap());
    for expected in [
        ("file:recipes/app.toml".to_owned(), recipe),
        ("file:recipes/recipes.lock".to_owned(), lock),
        (
            "pkg:deb/debian/hello@1.0-1".to_owned(),
            f.hello_sha256.clone(),
        ),
        ("pkg:pypi/sbom-app@1.0".to_owned(), f.app_sha256.clone()),
    ] {
        assert!(
            dependencies.contains(&expected),
            "{expected:?} not in {dependencies:?}"
        );
    }
    assert_eq!(
        dependencies.len(),
        2 + 4,
        "recipe, lock, two debs, two wheels"
    );

    // skopeo reads the referrers index and the artifact manifests from the layout.
    let listing = format!("oci:{}:{}", layout.display(), layout_ref(&name, &manifest));
    let raw = json(&tool("skopeo", &["inspect", "--raw", &listing]));
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");

    // `oci-build sbom` prints the attached SBOM as it is.
    let out = p.run(&["sbom", &format!("oci:{}:{name}", layout.display())]);
    assert_success(&out, "oci-build sbom");
    assert_eq!(&out.stdout, sbom_bytes);
    assert!(String::from_utf8_lossy(&out.stderr).contains("attached"));
    crate::common::validate_image(p.tmp.path(), report["output"].as_str().unwrap());
    drop((f.repo, f.index));
}

/// The ref name of the referrers index of `subject` beside the image `name`.
fn layout_ref(name: &str, subject: &str) -> String {
    format!(
        "{}:{}",
        name.rsplit_once(':').unwrap().0,
        subject.replace(':', "-")
    )
}

#[test]
fn the_same_build_gives_the_same_sbom_and_provenance_bytes_and_no_sbom_leaves_them_out() {
    let f = fixture();
    let p = &f.project;
    assert_success(&p.run(&["lock", "app"]), "lock");
    let first = p.build(&["app", "--output", "oci:one"]);
    // From the lock, with another cache: the same image, the same referrers, byte for byte.
    let again = Command::new(crate::common::bin_path())
        .arg("-C")
        .arg(p.dir())
        .arg("--cache-dir")
        .arg(p.tmp.path().join("cache2"))
        .args(["build", "--json", "--locked", "app", "--output", "oci:two"])
        .env_remove("SOURCE_DATE_EPOCH")
        .current_dir(p.tmp.path())
        .output()
        .unwrap();
    let again = json_of(&again, "second build")[0].clone();
    assert_eq!(first["digest"], again["digest"]);
    let manifest = first["manifests"][0]["manifest"]["digest"]
        .as_str()
        .unwrap();
    let name = "test/app:1";
    let one = layout_referrers(&p.tmp.path().join("one"), name, manifest);
    let two = layout_referrers(&p.tmp.path().join("two"), name, manifest);
    assert_eq!(one, two);

    // CycloneDX instead of SPDX: valid to cyclonedx-python-lib, the same packages.
    let cdx = p.build(&["app", "--sbom-format", "cyclonedx", "--output", "oci:cdx"]);
    assert_eq!(
        cdx["digest"], first["digest"],
        "the SBOM is beside the image, not in it"
    );
    let referrers = layout_referrers(&p.tmp.path().join("cdx"), name, manifest);
    let (_, _, bom) = referrer(&referrers, CYCLONEDX);
    let file = p.tmp.path().join("bom.json");
    fs::write(&file, bom).unwrap();
    validate_cyclonedx(&file);
    let bom: Value = serde_json::from_slice(bom).unwrap();
    let components: BTreeSet<String> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str().map(str::to_owned))
        .collect();
    assert!(
        components.contains("pkg:deb/debian/greet@0.5-3%2Bb1?arch=amd64"),
        "{components:?}"
    );
    assert!(
        components.contains("pkg:pypi/dep-lib@2.0"),
        "{components:?}"
    );
    assert_eq!(components.len(), 6, "{components:?}");

    // --no-sbom: the same image and nothing beside it.
    let bare = p.build(&["app", "--no-sbom", "--output", "oci:bare"]);
    assert_eq!(bare["digest"], first["digest"]);
    let index = read_json(&p.tmp.path().join("bare/index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    // …so `oci-build sbom` makes one from its layers: the same packages.
    let out = p.run(&["sbom", "oci:bare"]);
    assert_success(&out, "oci-build sbom of an image without one");
    assert!(String::from_utf8_lossy(&out.stderr).contains("made from its layers"));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let attached: Value = serde_json::from_slice(&referrer(&one, SPDX).2).unwrap();
    assert_eq!(spdx_packages(&made), spdx_packages(&attached));
    drop((f.repo, f.index));
}

#[test]
fn pushed_and_mirrored_images_keep_their_referrers() {
    let f = fixture();
    let p = &f.project;
    let a = Registry::start(Auth::None);
    let b = Registry::start(Auth::None);
    assert_success(&p.run(&["lock", "app"]), "lock");
    let report = p.build(&["app", "--output", "oci:out"]);
    let manifest = report["manifests"][0]["manifest"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let local = layout_referrers(&p.tmp.path().join("out"), "test/app:1", &manifest);
    let expected: BTreeSet<String> = local.iter().map(|(_, d, _)| d.clone()).collect();

    // push: docker-registry 2.8 has no referrers API, so the fallback tag lists them.
    let image = format!("{}/test/app:1", a.url());
    let out = p.run(&[
        "--insecure-registry",
        &a.url(),
        "push",
        &format!("oci:{}:test/app:1", p.tmp.path().join("out").display()),
        &format!("docker://{image}"),
    ]);
    assert_success(&out, "push");
    let at_a = fallback_referrers(&a, "test/app", &manifest);
    assert_eq!(at_a, expected);
    // skopeo reads an artifact manifest back byte for byte.
    for (_, digest, _) in &local {
        let raw = tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/test/app@{digest}", a.url()),
            ],
        );
        assert_eq!(
            sha256_hex(raw.as_bytes()),
            digest.trim_start_matches("sha256:")
        );
    }

    // mirror to a second registry: the same referrers, the same digests.
    let out = p.run(&[
        "--insecure-registry",
        &a.url(),
        "--insecure-registry",
        &b.url(),
        "mirror",
        &format!("docker://{image}"),
        "--to",
        &b.url(),
    ]);
    assert_success(&out, "mirror");
    assert_eq!(fallback_referrers(&b, "app", &manifest), expected);

    // …into a bundle, which lists them as a build's layout does, and back out of it.
    let bundle = p.tmp.path().join("bundle");
    let out = p.run(&[
        "--insecure-registry",
        &a.url(),
        "mirror",
        &format!("docker://{image}"),
        "--to",
        &format!("dir:{}", bundle.display()),
    ]);
    assert_success(&out, "mirror into a bundle");
    let carried = layout_referrers(&bundle, "test/app:1", &manifest);
    assert_eq!(carried, local);
    let out = p.run(&["sbom", &format!("oci:{}:test/app:1", bundle.display())]);
    assert_success(&out, "oci-build sbom of a bundle");
    assert_eq!(out.stdout, referrer(&local, SPDX).2);
    // Straight from the registry, as syft reads one: the attached SBOM.
    let out = p.run(&[
        "--insecure-registry",
        &a.url(),
        "sbom",
        &format!("docker://{image}"),
    ]);
    assert_success(&out, "oci-build sbom of a registry image");
    assert_eq!(out.stdout, referrer(&local, SPDX).2);
    let out = p.run(&[
        "--insecure-registry",
        &b.url(),
        "mirror",
        &format!("dir:{}", bundle.display()),
        "--to",
        &format!("{}/back", b.url()),
    ]);
    assert_success(&out, "mirror out of the bundle");
    assert_eq!(fallback_referrers(&b, "back/app", &manifest), expected);

    // build --push attaches them too.
    let out = p.run(&[
        "--insecure-registry",
        &b.url(),
        "build",
        "app",
        "--output",
        &format!("docker://{}/built/app:1", b.url()),
    ]);
    assert_success(&out, "build to a registry");
    assert_eq!(fallback_referrers(&b, "built/app", &manifest), expected);
    drop((f.repo, f.index));
}

/// The referrers that `registry`'s fallback tag of `subject` lists in `repository`.
fn fallback_referrers(registry: &Registry, repository: &str, subject: &str) -> BTreeSet<String> {
    let url = format!(
        "{}/v2/{repository}/manifests/{}",
        registry.base_url(),
        subject.replace(':', "-")
    );
    let response = http_request(
        "GET",
        &url,
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    )
    .unwrap();
    let (status, body) = (response.status, response.body);
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    let index: Value = serde_json::from_slice(&body).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_sbom_of_an_image_oci_build_did_not_build_lists_its_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("foreign");
    let layout_arg = format!("{}:base", layout.display());
    tool("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    tool("umoci", &["new", "--image", &layout_arg]);
    // One layer with a dpkg database, a Python distribution and a conda package…
    let root = tmp.path().join("root");
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("var/lib/dpkg/status", STATUS);
    write(
        "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nClassifier: License :: OSI Approved :: MIT License\n",
    );
    write(
        "usr/lib/python3/dist-packages/gone-1.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: gone\nVersion: 1.0\n",
    );
    write(
        "opt/conda/conda-meta/zlib-1.3.1-h4ab18f5_1.json",
        r#"{"name":"zlib","version":"1.3.1","build":"h4ab18f5_1","subdir":"linux-64","license":"Zlib","sha256":"57d7dc0e0f5dd6fb8ef6e2f3f5a1a5b1c7d4b8c0a4dbb3c0e8fb5b0d1b4e2a11","depends":["libgcc-ng >=12"]}"#,
    );
    for dir in ["var", "usr", "opt"] {
        tool(
            "umoci",
            &[
                "insert",
                "--image",
                &layout_arg,
                root.join(dir).to_str().unwrap(),
                &format!("/{dir}"),
            ],
        );
    }
    // …and one that removes a distribution.
    tool(
        "umoci",
        &[
            "insert",
            "--image",
            &layout_arg,
            "--whiteout",
            "/usr/lib/python3/dist-packages/gone-1.0.dist-info",
        ],
    );

    let out = Command::new(crate::common::bin_path())
        .args(["sbom", &format!("oci:{layout_arg}"), "--output"])
        .arg(tmp.path().join("sbom.json"))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert_success(&out, "oci-build sbom of a umoci image");
    validate_spdx(&tmp.path().join("sbom.json"));
    let sbom = read_json(&tmp.path().join("sbom.json"));
    assert_eq!(
        spdx_packages(&sbom),
        owned(&[
            ("libc6", "2.36-9+deb12u7"),
            ("libpython3.11-minimal", "3.11.2-6+deb12u6"),
            ("six", "1.16.0"),
            ("zlib", "1.3.1"),
        ])
    );
    assert_eq!(spdx_package(&sbom, "six")["licenseDeclared"], "MIT");
    let zlib = spdx_package(&sbom, "zlib");
    assert_eq!(zlib["licenseDeclared"], "Zlib");
    assert_eq!(
        zlib["externalRefs"][0]["referenceLocator"],
        "pkg:conda/zlib@1.3.1?build=h4ab18f5_1&subdir=linux-64"
    );
    assert_eq!(
        zlib["checksums"][0]["checksumValue"],
        "57d7dc0e0f5dd6fb8ef6e2f3f5a1a5b1c7d4b8c0a4dbb3c0e8fb5b0d1b4e2a11"
    );

    // An image built on it: its SBOM holds the base's packages, read from the base's layers.
    let p = Project::new();
    p.write("note.txt", "on top\n");
    p.recipe(
        "derived",
        &format!(
            "from = \"oci:{layout_arg}\"\nplatforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"note.txt\", dest = \"/note.txt\" }}]\n"
        ),
    );
    let report = p.build(&["derived", "--output", "oci:out"]);
    let manifest = report["manifests"][0]["manifest"]["digest"]
        .as_str()
        .unwrap();
    let referrers = layout_referrers(&p.tmp.path().join("out"), "derived:latest", manifest);
    let attached: Value = serde_json::from_slice(&referrer(&referrers, SPDX).2).unwrap();
    assert_eq!(spdx_packages(&attached), spdx_packages(&sbom));
}
