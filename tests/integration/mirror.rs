//! `oci-build mirror` and `verify` against two real registries (Debian's docker-registry 2.8,
//! which has no referrers API), read back with skopeo. Images are crafted here over plain HTTP
//! so that their bytes, platforms and referrers are exactly known.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{assert_success, bin_path, one_line_error, tool};
use crate::fixtures::registry::{Auth, FaultProxy, Registry, http_get, http_request};
use oci_build::digest::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest(bytes: &[u8]) -> String {
    Digest::of_bytes(bytes).to_string()
}

/// Uploads a blob with POST then PUT (docker-registry 2.8 stores nothing for a lone POST).
fn put_blob(registry: &str, repository: &str, bytes: &[u8]) -> Value {
    let start = http_request(
        "POST",
        &format!("http://{registry}/v2/{repository}/blobs/uploads/"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(start.status, 202, "{}", start.text());
    let location = start.header("Location").unwrap().to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{registry}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = http_request(
        "PUT",
        &format!("{location}{sep}digest={}", digest(bytes)),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )
    .unwrap();
    assert_eq!(done.status, 201, "{}", done.text());
    json!({ "digest": digest(bytes), "size": bytes.len() })
}

fn put_manifest(registry: &str, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let out = http_request(
        "PUT",
        &format!("http://{registry}/v2/{repository}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        bytes,
    )
    .unwrap();
    assert_eq!(out.status, 201, "PUT {reference}: {}", out.text());
}

/// Puts an OCI image manifest by its digest; returns its descriptor.
fn put_oci_manifest(registry: &str, repository: &str, manifest: &[u8]) -> Value {
    put_manifest(
        registry,
        repository,
        &digest(manifest),
        OCI_MANIFEST,
        manifest,
    );
    descriptor(OCI_MANIFEST, manifest)
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": digest(bytes), "size": bytes.len() })
}

/// Poorly compressible bytes, different per seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// What [`craft_image`] pushed.
struct Crafted {
    index: Vec<u8>,
    manifests: Vec<Vec<u8>>,
    layers: Vec<Vec<u8>>,
}

/// Pushes a two-platform image (linux/amd64 and linux/arm64, `layers_per_platform` layers of
/// `layer_size` bytes each) under each of `tags`.
fn craft_image(
    registry: &str,
    repository: &str,
    tags: &[&str],
    seed: u64,
    layers_per_platform: usize,
    layer_size: usize,
) -> Crafted {
    let mut manifests = Vec::new();
    let mut descriptors = Vec::new();
    let mut all_layers = Vec::new();
    for (n, arch) in ["amd64", "arm64"].iter().enumerate() {
        let layers: Vec<Vec<u8>> = (0..layers_per_platform)
            .map(|i| noise(seed * 100 + (n * 10 + i) as u64, layer_size))
            .collect();
        let layer_descriptors: Vec<Value> = layers
            .iter()
            .map(|l| {
                put_blob(registry, repository, l);
                descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l)
            })
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>() },
        }))
        .unwrap();
        put_blob(registry, repository, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": layer_descriptors,
        }))
        .unwrap();
        let mut d = put_oci_manifest(registry, repository, &manifest);
        d["platform"] = json!({ "architecture": arch, "os": "linux" });
        descriptors.push(d);
        manifests.push(manifest);
        all_layers.extend(layers);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors,
    }))
    .unwrap();
    for tag in tags {
        put_manifest(registry, repository, tag, OCI_INDEX, &index);
    }
    Crafted {
        index,
        manifests,
        layers: all_layers,
    }
}

/// Attaches an SBOM-like artifact to `subject` (a document of `subject_type`), recorded the
/// way registries without the referrers API keep it: in the index tagged `sha256-<hex>`.
/// Returns the referrer manifest's bytes.
fn attach_referrer(
    registry: &str,
    repository: &str,
    subject_type: &str,
    subject: &[u8],
    content: &[u8],
) -> Vec<u8> {
    let empty = b"{}";
    put_blob(registry, repository, empty);
    put_blob(registry, repository, content);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom+json",
        "config": descriptor("application/vnd.oci.empty.v1+json", empty),
        "layers": [descriptor("application/vnd.example.sbom+json", content)],
        "subject": descriptor(subject_type, subject),
    }))
    .unwrap();
    let mut entry = put_oci_manifest(registry, repository, &manifest);
    entry["artifactType"] = json!("application/vnd.example.sbom+json");
    let fallback = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry],
    }))
    .unwrap();
    let tag = digest(subject).replace(':', "-");
    put_manifest(registry, repository, &tag, OCI_INDEX, &fallback);
    manifest
}

/// `oci-build --cache-dir CACHE ARGS` with no stored credentials.
fn oci_build(tmp: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_path());
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    cmd.arg("--cache-dir")
        .arg(tmp.join("cache"))
        .args(args)
        .current_dir(tmp)
        .env("HOME", &home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    cmd
}

fn mirror_json(tmp: &Path, args: &[&str]) -> Value {
    let mut all = vec!["mirror", "--json"];
    all.extend_from_slice(args);
    let out = oci_build(tmp, &all).output().unwrap();
    assert_success(&out, &format!("oci-build {}", all.join(" ")));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The manifest bytes skopeo reads for `image` (`HOST:PORT/REPO:TAG` or `…@DIGEST`).
fn skopeo_raw(image: &str) -> Vec<u8> {
    tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ],
    )
    .into_bytes()
}

/// The referrers of `subject` that the fallback tag at `image_repo` lists.
fn fallback_referrers(image_repo: &str, subject: &[u8]) -> Vec<String> {
    let tag = digest(subject).replace(':', "-");
    let index: Value = serde_json::from_slice(&skopeo_raw(&format!("{image_repo}:{tag}"))).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn tags_of(registry: &Registry, repository: &str) -> Vec<String> {
    let (status, _, body) = http_get(&format!(
        "{}/v2/{repository}/tags/list",
        registry.base_url()
    ));
    if status == 404 {
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&body).unwrap();
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// A crafted image with referrers on the index and on the amd64 manifest, at A.
fn image_with_referrers(a: &Registry) -> (Crafted, Vec<u8>, Vec<u8>) {
    let image = craft_image(&a.url(), "team/app", &["1.0"], 1, 2, 4096);
    let on_index = attach_referrer(
        &a.url(),
        "team/app",
        OCI_INDEX,
        &image.index,
        b"{\"sbom\":1}",
    );
    let on_amd64 = attach_referrer(
        &a.url(),
        "team/app",
        OCI_MANIFEST,
        &image.manifests[0],
        b"{\"sbom\":\"amd64\"}",
    );
    (image, on_index, on_amd64)
}

#[test]
fn registry_to_registry_keeps_digests_platforms_and_referrers() {
    let a = Registry::start(Auth::None);
    let b = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let (image, on_index, on_amd64) = image_with_referrers(&a);

    let report = mirror_json(
        tmp.path(),
        &[
            &format!("docker://{}", a.image("team/app:1.0")),
            "--to",
            &b.image("site"),
        ],
    );
    assert_eq!(
        report[0]["destination"],
        format!("docker://{}", b.image("site/app:1.0"))
    );
    assert_eq!(report[0]["referrers"], 2, "{report}");

    // The same index, byte for byte, under the rewritten name; each platform manifest too.
    let raw = skopeo_raw(&b.image("site/app:1.0"));
    assert_eq!(digest(&raw), digest(&image.index));
    for manifest in &image.manifests {
        let raw = skopeo_raw(&format!("{}@{}", b.image("site/app"), digest(manifest)));
        assert_eq!(raw, *manifest);
    }
    let inspected: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "--override-arch",
            "arm64",
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}", b.image("site/app:1.0")),
        ],
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], digest(&image.index));
    assert_eq!(inspected["Architecture"], "arm64");

    // Both referrers are found at B the way 2.8 needs: by the fallback tag of their subject.
    let at_b = b.image("site/app");
    assert_eq!(
        fallback_referrers(&at_b, &image.index),
        vec![digest(&on_index)]
    );
    assert_eq!(
        fallback_referrers(&at_b, &image.manifests[0]),
        vec![digest(&on_amd64)]
    );
    assert_eq!(
        skopeo_raw(&format!("{at_b}@{}", digest(&on_index))),
        on_index
    );

    // Again: nothing left to send, and the fallback index is not duplicated.
    let again = mirror_json(
        tmp.path(),
        &[&a.image("team/app:1.0"), "--to", &b.image("site")],
    );
    assert_eq!(again[0]["blobs_copied"], 0, "{again}");
    assert_eq!(
        fallback_referrers(&at_b, &image.index),
        vec![digest(&on_index)]
    );

    // Within one registry, blobs are mounted from the source repository, not downloaded.
    let within = mirror_json(
        tmp.path(),
        &[&b.image("site/app:1.0"), "--to", &b.image("other")],
    );
    assert_eq!(within[0]["blobs_mounted"], within[0]["blobs"], "{within}");
    assert_eq!(within[0]["blobs_copied"], 0, "{within}");
    assert_eq!(
        digest(&skopeo_raw(&b.image("other/app:1.0"))),
        digest(&image.index)
    );
}

#[test]
fn bundles_round_trip_verify_and_refuse_a_corrupt_blob() {
    let a = Registry::start(Auth::None);
    let b = Registry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let (image, on_index, _) = image_with_referrers(&a);
    let bundle = tmp.path().join("bundle");
    let dir = format!("dir:{}", bundle.display());

    mirror_json(tmp.path(), &[&a.image("team/app:1.0"), "--to", &dir]);
    let index: Value =
        serde_json::from_slice(&fs::read(bundle.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "team/app:1.0")
        .unwrap_or_else(|| panic!("{index}"));
    assert_eq!(entry["digest"], digest(&image.index));
    assert_eq!(
        entry["annotations"]["io.oci-build.mirror.reference"],
        a.image("team/app:1.0")
    );
    // skopeo reads the image out of the bundle with the same digest.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:team/app:1.0", bundle.display()),
        ],
    );
    assert_eq!(digest(raw.as_bytes()), digest(&image.index));
    let out = oci_build(tmp.path(), &["verify", &dir]).output().unwrap();
    assert_success(&out, "verify");

    // Bundle to B: same digests, the referrer along.
    mirror_json(tmp.path(), &[&dir, "--to", &b.image("loaded")]);
    assert_eq!(
        digest(&skopeo_raw(&b.image("loaded/app:1.0"))),
        digest(&image.index)
    );
    assert_eq!(
        fallback_referrers(&b.image("loaded/app"), &image.index),
        vec![digest(&on_index)]
    );

    // The same through an archive.
    let archive = format!("oci-archive:{}", tmp.path().join("bundle.tar").display());
    mirror_json(tmp.path(), &[&a.image("team/app:1.0"), "--to", &archive]);
    assert!(!tmp.path().join("bundle.tar.mirror-staging").exists());
    assert_success(
        &oci_build(tmp.path(), &["verify", &archive])
            .output()
            .unwrap(),
        "verify archive",
    );
    mirror_json(tmp.path(), &[&archive, "--to", &b.image("unpacked")]);
    assert_eq!(
        digest(&skopeo_raw(&b.image("unpacked/app:1.0"))),
        digest(&image.index)
    );

    // One flipped byte in a layer: verify names the blob and its file, and loading refuses it.
    let layer = digest(&image.layers[1]);
    let file = bundle.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut bytes = fs::read(&file).unwrap();
    bytes[100] ^= 0x40;
    fs::write(&file, bytes).unwrap();
    let error = one_line_error(&oci_build(tmp.path(), &["verify", &dir]).output().unwrap());
    let member = format!("blobs/sha256/{}", &layer["sha256:".len()..]);
    assert!(
        error.contains(&layer) && error.contains(&member) && error.contains("corrupt"),
        "{error}"
    );
    let out = oci_build(tmp.path(), &["mirror", &dir, "--to", &b.image("refused")])
        .output()
        .unwrap();
    let error = one_line_error(&out);
    assert!(
        error.contains(&member) && error.contains("corrupt"),
        "{error}"
    );
    assert!(tags_of(&b, "refused/app").is_empty());
}

#[test]
fn a_killed_mirror_is_completed_by_a_rerun_without_sending_blobs_again() {
    let a = Registry::start(Auth::None);
    let b = Registry::start(Auth::None);
    let proxy = FaultProxy::start(&b.url(), Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    // 16 layers of 2 MiB, uploaded in 64 KiB chunks: long enough to be killed half way.
    let image = craft_image(&a.url(), "big/data", &["1"], 7, 8, 2 << 20);
    let total: usize = image.layers.iter().map(Vec::len).sum();

    let finished = |log: &[crate::fixtures::registry::ProxiedRequest]| -> Vec<String> {
        log.iter()
            .filter(|r| r.method == "PUT" && r.status == 201 && r.path.contains("digest=sha256"))
            .map(|r| {
                let at = r
                    .path
                    .find("digest=sha256%3A")
                    .or_else(|| r.path.find("digest=sha256:"))
                    .unwrap();
                let hex = r.path[at..]
                    .trim_start_matches("digest=sha256%3A")
                    .trim_start_matches("digest=sha256:");
                format!("sha256:{}", &hex[..64])
            })
            .collect()
    };
    let mut child = oci_build(
        tmp.path(),
        &[
            "--upload-chunk-size",
            "65536",
            "mirror",
            &a.image("big/data:1"),
            "--to",
            &proxy.image("copy"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished(&proxy.request_log()).len() < 3 {
        assert!(Instant::now() < deadline, "the mirror made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the mirror finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first_run = proxy.request_log();
    let sent_before = finished(&first_run);
    assert!(
        sent_before.len() < image.layers.len() + 2,
        "the mirror completed before the kill"
    );
    assert!(
        tags_of(&b, "copy/data").is_empty(),
        "a tag appeared before its image was complete"
    );

    let report = mirror_json(
        tmp.path(),
        &[
            "--upload-chunk-size",
            "65536",
            &a.image("big/data:1"),
            "--to",
            &proxy.image("copy"),
        ],
    );
    assert_eq!(
        digest(&skopeo_raw(&b.image("copy/data:1"))),
        digest(&image.index)
    );
    assert!(
        report[0]["blobs_present"].as_u64().unwrap() >= sent_before.len() as u64,
        "{report}"
    );

    // No blob finished in the first run was uploaded again, and the second run sent less than
    // everything.
    let second_run = &proxy.request_log()[first_run.len()..];
    let sent_after = finished(second_run);
    for blob in &sent_before {
        assert!(!sent_after.contains(blob), "{blob} was sent twice");
    }
    let bytes_after: u64 = second_run
        .iter()
        .filter(|r| r.path.contains("/blobs/uploads/"))
        .map(|r| r.body_bytes)
        .sum();
    let bytes_before: u64 = first_run
        .iter()
        .filter(|r| r.path.contains("/blobs/uploads/"))
        .map(|r| r.body_bytes)
        .sum();
    assert!(bytes_before > 0);
    assert!(
        bytes_after < total as u64 - (2 << 20),
        "the rerun sent {bytes_after} of {total} bytes"
    );
}

#[test]
fn tags_are_selected_by_regex_and_latest_semver_and_dry_run_writes_nothing() {
    let a = Registry::start(Auth::None);
    let b = Registry::start(Auth::None);
    let proxy = FaultProxy::start(&b.url(), Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    craft_image(
        &a.url(),
        "team/tool",
        &[
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0-rc.1",
            "latest",
            "feature-x",
        ],
        3,
        1,
        1024,
    );
    let source = a.image("team/tool");

    mirror_json(
        tmp.path(),
        &[&source, "--latest", "2", "--to", &b.image("latest")],
    );
    assert_eq!(tags_of(&b, "latest/tool"), ["1.10.0", "2.0.0-rc.1"]);
    mirror_json(
        tmp.path(),
        &[&source, "--tags-regex", r"^1\.", "--to", &b.image("ones")],
    );
    assert_eq!(tags_of(&b, "ones/tool"), ["1.0.0", "1.10.0", "1.2.0"]);
    mirror_json(
        tmp.path(),
        &[
            &source,
            "--tags-regex",
            r"^\d+\.\d+\.\d+$",
            "--latest",
            "1",
            "--to",
            &b.image("rel"),
        ],
    );
    assert_eq!(tags_of(&b, "rel/tool"), ["1.10.0"]);

    // A list file with a comment, in dry-run: the plan is printed, nothing reaches B.
    let list = tmp.path().join("images.txt");
    fs::write(&list, format!("# to copy\n{source}:1.2.0\n")).unwrap();
    let out = oci_build(
        tmp.path(),
        &[
            "mirror",
            "--dry-run",
            &format!("@{}", list.display()),
            "--to",
            &proxy.image("dry"),
        ],
    )
    .output()
    .unwrap();
    assert_success(&out, "mirror --dry-run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "would copy docker://{source}:1.2.0 -> docker://{}",
            proxy.image("dry/tool:1.2.0")
        )) && stderr.contains("4 blobs"),
        "{stderr}"
    );
    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(method, _, _)| method != "GET" && method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(tags_of(&b, "dry/tool").is_empty());

    // Two different images that one bundle would name alike are refused before copying.
    craft_image(&b.url(), "team/tool", &["1.0.0"], 4, 1, 1024);
    let bundle = tmp.path().join("clash");
    let out = oci_build(
        tmp.path(),
        &[
            "mirror",
            &format!("{source}:1.0.0"),
            &b.image("team/tool:1.0.0"),
            "--to",
            &format!("dir:{}", bundle.display()),
        ],
    )
    .output()
    .unwrap();
    let error = one_line_error(&out);
    assert!(error.contains("would both be copied to"), "{error}");
    assert!(!bundle.exists());
}
