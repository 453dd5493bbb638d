//! The registry harness checked with skopeo as the client: each auth mode takes a push and
//! serves it back, tokens are accepted (and expire), and the fault proxy injects, counts and
//! relays what it says.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Project, assert_success, json};
use crate::fixtures::registry::{
    Action, Auth, Fault, FaultProxy, Registry, basic_auth, http_get, http_request, skopeo_copy,
    skopeo_creds, skopeo_inspect_raw, skopeo_inspect_raw_output,
};

const IMAGE: &str = "team/app:1.0";

/// A one-layer image built by oci-build into an OCI layout.
struct Layout {
    _project: Project,
    /// `oci:DIR:app:latest`, a skopeo source.
    source: String,
    /// The manifest blob, byte for byte.
    manifest: Vec<u8>,
    layer_bytes: u64,
    config_bytes: u64,
}

fn built_layout() -> Layout {
    let p = Project::new();
    p.write("app/hello.txt", "hello from the registry harness\n");
    // 256 KiB that gzip cannot shrink, so uploads are big enough to count.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(p.path("app/noise.bin"), noise).unwrap();
    p.recipe(
        "app",
        r#"
platforms = ["linux/amd64"]

[[layer]]
files = [{ src = "app", dest = "/opt/app" }]
"#,
    );
    let out: PathBuf = p.tmp.path().join("layout");
    let report = p.build(&["app", "--output", &format!("oci:{}", out.display())]);
    let source = report["output"].as_str().unwrap().to_string();
    let digest = report["digest"].as_str().unwrap();
    let manifest = fs::read(out.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    let parsed: Value = serde_json::from_slice(&manifest).unwrap();
    let layer_bytes = parsed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let config_bytes = parsed["config"]["size"].as_u64().unwrap();
    Layout {
        _project: p,
        source,
        manifest,
        layer_bytes,
        config_bytes,
    }
}

fn assert_fails(out: &std::process::Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} unexpectedly succeeded");
    stderr
}

#[test]
fn registry_without_auth_takes_a_skopeo_push_and_serves_the_manifest_back() {
    let layout = built_layout();
    let registry = Registry::start(Auth::None);
    let (status, _, body) = http_get(&format!("{}/v2/", registry.base_url()));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let out = skopeo_copy(&layout.source, &registry.image(IMAGE), None);
    assert_success(&out, "skopeo copy to the registry");
    let raw = skopeo_inspect_raw(&registry.image(IMAGE), None);
    assert_eq!(raw.as_bytes(), &layout.manifest[..], "{}", registry.log());
}

#[test]
fn htpasswd_registry_refuses_anonymous_and_wrong_password_and_takes_the_user() {
    let layout = built_layout();
    let registry = Registry::start(Auth::htpasswd("alice", "s3cret pass"));
    let base = format!("{}/v2/", registry.base_url());

    let anonymous = http_request("GET", &base, &[], b"").unwrap();
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("WWW-Authenticate").unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let alice = basic_auth("alice", "s3cret pass");
    let authed = http_request("GET", &base, &[("Authorization", &alice)], b"").unwrap();
    assert_eq!(authed.status, 200);

    let dest = registry.image(IMAGE);
    assert_fails(&skopeo_copy(&layout.source, &dest, None), "anonymous push");
    let wrong = skopeo_creds("alice", "wrong");
    assert_fails(
        &skopeo_copy(&layout.source, &dest, Some(&wrong)),
        "push, wrong password",
    );
    let creds = skopeo_creds("alice", "s3cret pass");
    assert_success(
        &skopeo_copy(&layout.source, &dest, Some(&creds)),
        "skopeo copy with --dest-creds",
    );

    let raw = skopeo_inspect_raw(&dest, Some(&creds));
    assert_eq!(raw.as_bytes(), &layout.manifest[..]);
    assert_fails(&skopeo_inspect_raw_output(&dest, None), "anonymous pull");
}

#[test]
fn token_registry_accepts_harness_tokens_and_records_the_scopes_skopeo_asks_for() {
    let layout = built_layout();
    let registry = Registry::start(Auth::token("bob", "hunter2"));
    let realm = registry.token_realm().unwrap();

    let anonymous = http_request("GET", &format!("{}/v2/", registry.base_url()), &[], b"").unwrap();
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("WWW-Authenticate").unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{realm}\""))
            && challenge.contains("service=\"test-registry\""),
        "{challenge}"
    );

    let dest = registry.image(IMAGE);
    let stderr = assert_fails(&skopeo_copy(&layout.source, &dest, None), "anonymous push");
    assert!(
        stderr.contains("authentication required") || stderr.contains("denied"),
        "{stderr}"
    );
    let wrong = skopeo_creds("bob", "wrong");
    assert_fails(
        &skopeo_copy(&layout.source, &dest, Some(&wrong)),
        "push, wrong password",
    );
    let log = registry.token_request_log();
    assert!(
        log.iter()
            .any(|r| r.status == 401 && r.user.as_deref() == Some("bob")),
        "{log:#?}"
    );
    // Anonymous token requests get a token that grants nothing.
    assert!(
        log.iter()
            .any(|r| r.status == 200 && r.user.is_none() && r.granted.is_empty()),
        "{log:#?}"
    );

    let before = registry.token_requests().len();
    let creds = skopeo_creds("bob", "hunter2");
    assert_success(
        &skopeo_copy(&layout.source, &dest, Some(&creds)),
        "skopeo copy with --dest-creds",
    );
    let requests = registry.token_requests()[before..].to_vec();
    eprintln!("token requests of an authenticated skopeo push: {requests:#?}");
    assert!(
        requests.iter().any(|r| {
            r.starts_with("/token?")
                && (r.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
                    || r.contains("scope=repository:team/app:pull,push"))
                && r.contains("service=test-registry")
        }),
        "{requests:#?}"
    );

    let raw = skopeo_inspect_raw(&dest, Some(&creds));
    assert_eq!(raw.as_bytes(), &layout.manifest[..], "{}", registry.log());
}

#[test]
fn token_lifetime_can_be_cut_so_the_registry_rejects_tokens_seconds_later() {
    let registry = Registry::start(Auth::token("bob", "hunter2"));
    let tags = format!("{}/v2/team/app/tags/list", registry.base_url());
    let get_with = |token: &str| {
        let bearer = format!("Bearer {token}");
        http_request("GET", &tags, &[("Authorization", &bearer)], b"")
            .unwrap()
            .status
    };
    // Authorised but absent: 404 NAME_UNKNOWN; unauthorised: 401.
    let scope = ["repository:team/app:pull"];
    let token = registry.fetch_token(Some(("bob", "hunter2")), &scope);
    assert_eq!(get_with(&token), 404, "{}", registry.log());
    let anonymous = registry.fetch_token(None, &scope);
    assert_eq!(get_with(&anonymous), 401);

    registry.set_token_lifetime(2);
    let short = registry.fetch_token(Some(("bob", "hunter2")), &scope);
    assert_eq!(get_with(&short), 404);
    thread::sleep(Duration::from_millis(3100));
    assert_eq!(get_with(&short), 401, "a 2 s token still works after 3 s");
    assert_eq!(get_with(&token), 404, "the 300 s token stopped working");
}

#[test]
fn fault_proxy_fails_the_first_blob_upload_with_500_and_a_second_push_succeeds() {
    let layout = built_layout();
    let registry = Registry::start(Auth::None);
    let proxy = FaultProxy::start(
        &registry.url(),
        vec![Fault::new(
            Some("PATCH"),
            "/blobs/uploads/",
            1,
            Action::Status(500),
        )],
    );
    let first = skopeo_copy(&layout.source, &proxy.image(IMAGE), None);
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|(m, p, s)| m == "PATCH" && p.contains("/blobs/uploads/") && *s == 500),
        "{requests:#?}"
    );
    // skopeo 1.9 does not retry a 500 on its own: the first copy fails.
    assert_fails(&first, "a push that got a 500");

    let second = skopeo_copy(&layout.source, &proxy.image(IMAGE), None);
    assert_success(&second, "the second push through the proxy");
    let raw = skopeo_inspect_raw(&proxy.image(IMAGE), None);
    assert_eq!(raw.as_bytes(), &layout.manifest[..]);
    let direct = skopeo_inspect_raw(&registry.image(IMAGE), None);
    assert_eq!(direct.as_bytes(), &layout.manifest[..]);
}

#[test]
fn fault_proxy_answers_429_with_retry_after_once() {
    let layout = built_layout();
    let registry = Registry::start(Auth::None);
    let proxy = FaultProxy::start(
        &registry.url(),
        vec![Fault::new(
            Some("HEAD"),
            "/blobs/",
            1,
            Action::TooManyRequests {
                retry_after_secs: 1,
            },
        )],
    );
    let out = skopeo_copy(&layout.source, &proxy.image(IMAGE), None);
    eprintln!(
        "skopeo copy after a 429 on its first blob HEAD: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let heads: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m == "HEAD" && p.contains("/blobs/"))
        .collect();
    assert_eq!(heads[0].2, 429, "{heads:#?}");
    assert!(heads[1..].iter().all(|h| h.2 != 429), "{heads:#?}");

    proxy.add_fault(Fault::new(
        None,
        "/v2/",
        1,
        Action::TooManyRequests {
            retry_after_secs: 7,
        },
    ));
    let url = format!("http://{}/v2/", proxy.url());
    let limited = http_request("GET", &url, &[], b"").unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("Retry-After"), Some("7"));
    assert_eq!(
        json(&limited.text())["errors"][0]["code"],
        "TOOMANYREQUESTS"
    );
    assert_eq!(http_request("GET", &url, &[], b"").unwrap().status, 200);
}

#[test]
fn fault_proxy_counts_uploaded_bytes_and_a_repeated_push_uploads_nothing() {
    let layout = built_layout();
    let registry = Registry::start(Auth::None);
    let proxy = FaultProxy::start(&registry.url(), vec![]);

    assert_success(
        &skopeo_copy(&layout.source, &proxy.image(IMAGE), None),
        "push through the proxy",
    );
    let uploaded = proxy.request_body_bytes(None, "/blobs/uploads/");
    assert!(
        uploaded >= layout.layer_bytes,
        "{uploaded} < {}",
        layout.layer_bytes
    );
    assert_eq!(
        uploaded,
        layout.layer_bytes + layout.config_bytes,
        "{:#?}",
        proxy.request_log()
    );
    assert_eq!(
        proxy.request_body_bytes(Some("PUT"), "/manifests/"),
        layout.manifest.len() as u64
    );

    assert_success(
        &skopeo_copy(&layout.source, &proxy.image(IMAGE), None),
        "second push through the proxy",
    );
    assert_eq!(proxy.request_body_bytes(None, "/blobs/uploads/"), uploaded);
}

#[test]
fn fault_proxy_drops_and_truncates_and_points_locations_at_itself() {
    let layout = built_layout();
    let registry = Registry::start(Auth::None);
    assert_success(
        &skopeo_copy(&layout.source, &registry.image(IMAGE), None),
        "push",
    );
    let proxy = FaultProxy::start(
        &registry.url(),
        vec![
            Fault::new(Some("GET"), "/manifests/1.0", 1, Action::DropConnection),
            Fault::new(
                Some("GET"),
                "/manifests/1.0",
                2,
                Action::TruncateResponseBody { after_bytes: 10 },
            ),
        ],
    );
    let manifest = format!("http://{}/v2/team/app/manifests/1.0", proxy.url());
    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
    let dropped = http_request("GET", &manifest, &accept, b"");
    assert!(dropped.is_err(), "{dropped:?}");
    let cut = http_request("GET", &manifest, &accept, b"").unwrap_err();
    assert_eq!(cut.kind(), std::io::ErrorKind::UnexpectedEof, "{cut}");
    let whole = http_request("GET", &manifest, &accept, b"").unwrap();
    assert_eq!((whole.status, &whole.body[..]), (200, &layout.manifest[..]));
    let statuses: Vec<u16> = proxy.requests().iter().map(|r| r.2).collect();
    assert_eq!(statuses, [0, 200, 200]);

    // A client that names the registry in Host still gets a Location on the proxy.
    let uploads = format!("http://{}/v2/team/app/blobs/uploads/", proxy.url());
    let upstream_host = registry.url();
    let started = http_request("POST", &uploads, &[("Host", &upstream_host)], b"").unwrap();
    assert_eq!(started.status, 202, "{}", started.text());
    let location = started.header("Location").unwrap();
    assert!(location.starts_with(&uploads), "{location}");
}
