//! Pushing and pulling against real registries (Debian's docker-registry 2.8) in three set-ups
//! — no auth, htpasswd Basic, token auth with a test token server — read back by skopeo, with
//! a fault-injecting proxy in between where the network is to misbehave.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::common::{Project, assert_success, json, one_line_error, skopeo_copy_arm64, tool};
use crate::fixtures::registry::{Action, Auth, Fault, FaultProxy, Registry};

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-pa55word";

/// A project with a two-layer recipe for two platforms, built into `out` once.
fn image_project() -> Project {
    let p = Project::new();
    p.write("app/main.py", "print('hello')\n");
    // Poorly compressible, so that the layer is larger than the small upload chunks below.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let table: String = (0..3000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{state:x}\n")
        })
        .collect();
    p.write("data/table.csv", &table);
    p.recipe(
        "app",
        r#"
platforms = ["linux/amd64", "linux/arm64"]
[[layer]]
files = [{ src = "app", dest = "/app" }]
[[layer]]
files = [{ src = "data", dest = "/data" }]
[config]
cmd = ["python3", "/app/main.py"]
"#,
    );
    // The image alone: these tests count the blobs a push sends; pushing the SBOM and
    // provenance referrers is `sbom`'s.
    p.build(&["app", "--no-sbom", "--output", "oci:out"]);
    p
}

fn layout(p: &Project) -> String {
    format!("oci:{}:app:latest", p.tmp.path().join("out").display())
}

/// Runs oci-build with a clean credential environment under the project's temp dir.
fn oci_build(p: &Project, args: &[&str]) -> Command {
    let mut cmd = p.command(args);
    let home = p.tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    cmd.env("HOME", &home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn push_json(cmd: &mut Command) -> Value {
    let out = run(cmd);
    assert_success(&out, "push");
    json(&String::from_utf8(out.stdout).unwrap())
}

fn skopeo_raw(image: &str, creds: Option<&str>) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    let target = format!("docker://{image}");
    args.push(&target);
    tool("skopeo", &args)
}

fn sha256_of(text: &str) -> String {
    let sum = tool(
        "sh",
        &[
            "-c",
            &format!("printf %s '{}' | sha256sum", text.replace('\'', "'\\''")),
        ],
    );
    format!("sha256:{}", &sum[..64])
}

fn write_docker_config(
    p: &Project,
    registry: &str,
    user: &str,
    password: &str,
) -> std::path::PathBuf {
    let dir = p.tmp.path().join("docker-config");
    fs::create_dir_all(&dir).unwrap();
    let auth = STANDARD.encode(format!("{user}:{password}").as_bytes());
    fs::write(
        dir.join("config.json"),
        serde_json::json!({ "auths": { registry: { "auth": auth } } }).to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn push_without_auth_reads_back_identically_and_a_second_push_sends_nothing() {
    let registry = Registry::start(Auth::None);
    let proxy = FaultProxy::start(&registry.url(), Vec::new());
    let p = image_project();
    let dest = format!("docker://{}", proxy.image("team/app:1.0"));
    let first = push_json(&mut oci_build(&p, &["push", "--json", &layout(&p), &dest]));
    assert_eq!(first["blobs_uploaded"], 4, "{first}");

    // skopeo sees the exact index we wrote, and each platform can be copied out of it.
    let raw = skopeo_raw(&registry.image("team/app:1.0"), None);
    assert_eq!(sha256_of(&raw), first["digest"].as_str().unwrap());
    let index = json(&raw);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    skopeo_copy_arm64(
        &[
            "--src-tls-verify=false",
            &format!("docker://{}", registry.image("team/app:1.0")),
        ],
        &p.tmp.path().join("arm"),
    );

    let uploaded_before = proxy.request_body_bytes(None, "/blobs/uploads/");
    assert!(uploaded_before >= first["bytes_uploaded"].as_u64().unwrap());
    let second = push_json(&mut oci_build(&p, &["push", "--json", &layout(&p), &dest]));
    assert_eq!(second["blobs_uploaded"], 0);
    assert_eq!(second["blobs_present"], 4);
    assert_eq!(
        proxy.request_body_bytes(None, "/blobs/uploads/"),
        uploaded_before
    );
}

#[test]
fn basic_auth_uses_docker_config_and_wrong_passwords_fail_in_one_sentence() {
    let registry = Registry::start(Auth::htpasswd(USER, PASSWORD));
    let p = image_project();
    let dest = format!("docker://{}", registry.image("team/app:2.0"));

    // Without credentials: refused, and the message says how to log in.
    let out = run(&mut oci_build(&p, &["push", &layout(&p), &dest]));
    let error = one_line_error(&out);
    assert!(
        error.contains(&format!(
            "registry {} refused anonymous access; log in with `oci-build login {}`",
            registry.url(),
            registry.url()
        )),
        "{error}"
    );

    // From docker's config.json.
    let config = write_docker_config(&p, &registry.url(), USER, PASSWORD);
    let pushed = push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &dest]).env("DOCKER_CONFIG", &config),
    );
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        sha256_of(&skopeo_raw(&registry.image("team/app:2.0"), Some(&creds))),
        pushed["digest"].as_str().unwrap()
    );

    // A wrong password: one sentence naming the registry and where the credential came from,
    // and never the password.
    let config = write_docker_config(&p, &registry.url(), USER, "wrong-password-123");
    let out = run(oci_build(&p, &["push", &layout(&p), &dest]).env("DOCKER_CONFIG", &config));
    let error = one_line_error(&out);
    assert!(error.contains(&registry.url()), "{error}");
    assert!(
        error.contains("docker-config/config.json (auths)"),
        "{error}"
    );
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!everything.contains("wrong-password-123"));
    assert!(!everything.contains(&STANDARD.encode(b"builder:wrong-password-123")));
}

/// Runs a `login … --password-stdin` command, writing `password` to its standard input.
fn login_with_stdin(command: &mut Command, password: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_checks_and_stores_credentials_in_docker_format() {
    let registry = Registry::start(Auth::token(USER, PASSWORD));
    let p = image_project();
    let config_dir = p.tmp.path().join("login-config");
    let login = |password: &str| {
        login_with_stdin(
            oci_build(
                &p,
                &["login", &registry.url(), "-u", USER, "--password-stdin"],
            )
            .env("DOCKER_CONFIG", &config_dir),
            password,
        )
    };
    let refused = login("not-the-password");
    let error = one_line_error(&refused);
    assert!(error.contains(&registry.url()), "{error}");
    assert!(
        !config_dir.join("config.json").exists(),
        "a refused login stored something"
    );

    assert_success(&login(PASSWORD), "login");
    let config_file = config_dir.join("config.json");
    let config = json(&fs::read_to_string(&config_file).unwrap());
    let auth = config["auths"][registry.url()]["auth"].as_str().unwrap();
    assert_eq!(
        STANDARD.decode(auth).unwrap(),
        format!("{USER}:{PASSWORD}").as_bytes()
    );
    assert_eq!(
        fs::metadata(&config_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let dest = format!("docker://{}", registry.image("team/app:3.0"));
    push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &dest]).env("DOCKER_CONFIG", &config_dir),
    );
}

/// A stale podman login (the containers auth file under XDG_RUNTIME_DIR) does not shadow a
/// fresh `oci-build login`: login writes the file lookup reads first. With REGISTRY_AUTH_FILE
/// set, login writes that file and it wins over a stale docker config.
#[test]
fn the_credential_login_stores_is_the_one_the_next_command_uses() {
    let registry = Registry::start(Auth::htpasswd(USER, PASSWORD));
    let p = image_project();
    let stale = serde_json::json!({
        "auths": { registry.url(): { "auth": STANDARD.encode(b"builder:an-old-password") } }
    })
    .to_string();
    let runtime = p.tmp.path().join("runtime");
    fs::create_dir_all(runtime.join("containers")).unwrap();
    fs::write(runtime.join("containers/auth.json"), &stale).unwrap();
    let with_podman_login = |args: &[&str]| {
        let mut cmd = oci_build(&p, args);
        cmd.env("XDG_RUNTIME_DIR", &runtime);
        cmd
    };
    let dest = format!("docker://{}", registry.image("team/relogin:1"));
    // The stale credential is refused before the login, naming where it came from.
    let out = run(&mut with_podman_login(&["push", &layout(&p), &dest]));
    let error = one_line_error(&out);
    assert!(error.contains("containers/auth.json"), "{error}");

    let out = login_with_stdin(
        &mut with_podman_login(&["login", &registry.url(), "-u", USER, "--password-stdin"]),
        PASSWORD,
    );
    assert_success(&out, "login");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(".docker/config.json"), "{said}");
    push_json(&mut with_podman_login(&[
        "push",
        "--json",
        &layout(&p),
        &dest,
    ]));

    // REGISTRY_AUTH_FILE names one file for login and lookup; a stale docker config loses.
    let auth_file = p.tmp.path().join("named-auth.json");
    let home_config = p.tmp.path().join("home/.docker/config.json");
    fs::write(&home_config, &stale).unwrap();
    let with_auth_file = |args: &[&str]| {
        let mut cmd = oci_build(&p, args);
        cmd.env("REGISTRY_AUTH_FILE", &auth_file);
        cmd
    };
    let out = run(&mut with_auth_file(&["push", &layout(&p), &dest]));
    let error = one_line_error(&out);
    assert!(error.contains(".docker/config.json"), "{error}");
    let out = login_with_stdin(
        &mut with_auth_file(&["login", &registry.url(), "-u", USER, "--password-stdin"]),
        PASSWORD,
    );
    assert_success(&out, "login with REGISTRY_AUTH_FILE");
    let stored = json(&fs::read_to_string(&auth_file).unwrap());
    assert!(
        stored["auths"][registry.url()]["auth"].is_string(),
        "{stored}"
    );
    push_json(&mut with_auth_file(&["push", "--json", &layout(&p), &dest]));
}

/// With `credsStore` in config.json, login stores through the helper as docker does: the
/// secret goes to the helper on stdin, config.json lists the registry without it, and a push
/// finds the credential through the same helper.
#[test]
fn login_stores_through_the_configured_credential_helper() {
    let registry = Registry::start(Auth::token(USER, PASSWORD));
    let p = image_project();
    let config_dir = p.tmp.path().join("helper-config");
    let bin = p.tmp.path().join("helper-bin");
    fs::create_dir_all(&config_dir).unwrap();
    fs::create_dir_all(&bin).unwrap();
    // A stand-in for docker-credential-pass & co.: `store` keeps the request, `get` answers it.
    let helper = bin.join("docker-credential-testing");
    fs::write(
        &helper,
        "#!/bin/sh
store=\"$(dirname \"$0\")/stored.json\"\ncase \"$1\" in\n  store) cat > \"$store\" ;;\n  get) cat > /dev/null; cat \"$store\" ;;\n  *) exit 1 ;;\nesac\n",
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let stale = STANDARD.encode(b"builder:an-old-password");
    fs::write(
        config_dir.join("config.json"),
        serde_json::json!({
            "credsStore": "testing",
            "auths": { registry.url(): { "auth": stale } },
        })
        .to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = login_with_stdin(
        oci_build(
            &p,
            &["login", &registry.url(), "-u", USER, "--password-stdin"],
        )
        .env("DOCKER_CONFIG", &config_dir)
        .env("PATH", &path),
        PASSWORD,
    );
    assert_success(&out, "login");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("docker-credential-testing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = json(&fs::read_to_string(bin.join("stored.json")).unwrap());
    assert_eq!(stored["ServerURL"], registry.url());
    assert_eq!(stored["Username"], USER);
    assert_eq!(stored["Secret"], PASSWORD);
    let config = fs::read_to_string(config_dir.join("config.json")).unwrap();
    assert!(
        !config.contains(&stale) && !config.contains("\"auth\""),
        "{config}"
    );
    assert_eq!(
        json(&config)["auths"][registry.url()],
        serde_json::json!({})
    );

    let dest = format!("docker://{}", registry.image("team/helper:1"));
    push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &dest])
            .env("DOCKER_CONFIG", &config_dir)
            .env("PATH", &path),
    );
}

#[test]
fn token_auth_pulls_a_base_mounts_its_layers_and_pushes_with_scoped_tokens() {
    let registry = Registry::start(Auth::token(USER, PASSWORD));
    let p = image_project();
    // The containers auth file, as podman writes it.
    let auth_file = p.tmp.path().join("auth.json");
    let auth = STANDARD.encode(format!("{USER}:{PASSWORD}").as_bytes());
    fs::write(
        &auth_file,
        serde_json::json!({ "auths": { registry.url(): { "auth": auth } } }).to_string(),
    )
    .unwrap();

    let base = format!("docker://{}", registry.image("team/base:1.0"));
    let pushed = push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &base])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );
    assert!(
        registry
            .token_requests()
            .iter()
            .any(|r| r.contains("scope=repository%3Ateam%2Fbase%3Apull%2Cpush")),
        "{:?}",
        registry.token_requests()
    );

    p.write("extra/notes.txt", "derived\n");
    p.recipe(
        "derived",
        &format!(
            r#"
from = "{base}"
image = "{}"
platforms = ["linux/arm64"]
[[layer]]
files = [{{ src = "extra", dest = "/extra" }}]
"#,
            registry.image("team/derived:1.0")
        ),
    );
    let out = run(
        oci_build(&p, &["build", "--json", "--no-sbom", "derived", "--push"])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );
    assert_success(&out, "build --push from a registry base");
    let report = json(&String::from_utf8(out.stdout).unwrap());
    let push = &report[0]["pushed"][0];
    // The two base layers are mounted from team/base, only the new layer and config travel.
    assert_eq!(push["blobs_mounted"], 2, "{push}");
    assert_eq!(push["blobs_uploaded"], 2, "{push}");
    assert!(
        registry
            .token_requests()
            .iter()
            .any(|r| r.contains("scope=repository%3Ateam%2Fbase%3Apull")
                && r.contains("team%2Fderived%3Apull%2Cpush")),
        "mount needs pull scope on the source: {:?}",
        registry.token_requests()
    );
    assert_eq!(pushed["blobs_uploaded"], 4);
    let creds = format!("{USER}:{PASSWORD}");
    let derived = json(&skopeo_raw(
        &registry.image("team/derived:1.0"),
        Some(&creds),
    ));
    assert_eq!(derived["layers"].as_array().unwrap().len(), 3);
    let base_arm = json(&tool(
        "skopeo",
        &[
            "--override-arch",
            "arm64",
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &base,
        ],
    ));
    assert_eq!(derived["layers"][0]["digest"], base_arm["Layers"][0]);
    assert_eq!(derived["layers"][1]["digest"], base_arm["Layers"][1]);

    // Tokens that expire are fetched again (5 s: long enough for a loaded machine to use one).
    registry.set_token_lifetime(5);
    let again = format!("docker://{}", registry.image("team/base:1.1"));
    push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &again])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );
    std::thread::sleep(std::time::Duration::from_secs(6));
    let later = format!("docker://{}", registry.image("team/base:1.2"));
    push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &later])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );

    // Anonymous users get a token without access: refused in one sentence.
    let out = run(&mut oci_build(&p, &["push", &layout(&p), &later]));
    let error = one_line_error(&out);
    assert!(error.contains("refused anonymous access"), "{error}");
}

#[test]
fn credential_helpers_are_asked_through_their_protocol() {
    let registry = Registry::start(Auth::htpasswd(USER, PASSWORD));
    let p = image_project();
    let bin = p.tmp.path().join("helper-bin");
    fs::create_dir_all(&bin).unwrap();
    let asked = p.tmp.path().join("helper-asked");
    let helper = bin.join("docker-credential-oci-build-test");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat > '{}'\nprintf '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n",
            asked.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let config = p.tmp.path().join("helper-config");
    fs::create_dir_all(&config).unwrap();
    fs::write(
        config.join("config.json"),
        serde_json::json!({ "credHelpers": { registry.url(): "oci-build-test" } }).to_string(),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let dest = format!("docker://{}", registry.image("team/app:4.0"));
    push_json(
        oci_build(&p, &["push", "--json", &layout(&p), &dest])
            .env("DOCKER_CONFIG", &config)
            .env("PATH", path),
    );
    assert_eq!(fs::read_to_string(&asked).unwrap(), registry.url());
}

#[test]
fn network_faults_are_retried_and_the_push_completes() {
    let registry = Registry::start(Auth::None);
    let proxy = FaultProxy::start(
        &registry.url(),
        vec![
            Fault::new(
                Some("HEAD"),
                "/blobs/",
                1,
                Action::TooManyRequests {
                    retry_after_secs: 1,
                },
            ),
            Fault::new(Some("POST"), "/blobs/uploads/", 2, Action::DropConnection),
            Fault::new(Some("PUT"), "/blobs/uploads/", 1, Action::Status(500)),
            Fault::new(Some("PATCH"), "/blobs/uploads/", 2, Action::DropConnection),
            Fault::new(Some("PUT"), "/manifests/", 1, Action::Status(503)),
        ],
    );
    let p = image_project();
    let dest = format!("docker://{}", proxy.image("team/app:5.0"));
    let pushed = push_json(&mut oci_build(
        &p,
        &[
            "--upload-chunk-size",
            "4096",
            "push",
            "--json",
            &layout(&p),
            &dest,
        ],
    ));
    let statuses: Vec<u16> = proxy.requests().iter().map(|r| r.2).collect();
    for expected in [429, 0, 500, 503] {
        assert!(
            statuses.contains(&expected),
            "fault {expected} did not fire: {:?}",
            proxy.requests()
        );
    }
    assert!(
        proxy.requests().iter().any(|r| r.0 == "PATCH"),
        "no chunked upload seen"
    );
    let raw = skopeo_raw(&registry.image("team/app:5.0"), None);
    assert_eq!(sha256_of(&raw), pushed["digest"].as_str().unwrap());

    // A pull whose blob download is cut short fetches it again and verifies it.
    let puller = Project::new();
    puller.write("x/y.txt", "y\n");
    puller.recipe(
        "pulled",
        &format!(
            "from = \"docker://{}\"\nplatforms = [\"linux/amd64\"]\n[[layer]]\nfiles = [{{ src = \"x\", dest = \"/x\" }}]\n",
            proxy.image("team/app:5.0")
        ),
    );
    proxy.add_fault(Fault::new(
        Some("GET"),
        "/blobs/sha256:",
        2,
        Action::TruncateResponseBody { after_bytes: 100 },
    ));
    let built = puller.build(&["pulled", "--output", "oci:pulled"]);
    assert_eq!(built["manifests"][0]["layers"].as_array().unwrap().len(), 3);
    assert!(
        proxy
            .request_log()
            .iter()
            .any(|r| matches!(r.fault, Some(Action::TruncateResponseBody { .. })))
    );
    crate::common::validate_image(puller.tmp.path(), built["output"].as_str().unwrap());
}

#[test]
fn an_interrupted_push_is_finished_by_a_rerun_without_resending_blobs() {
    let registry = Registry::start(Auth::None);
    // Every manifest PUT fails for longer than the retries last: the push stops after its blobs.
    let rules = (1..=5)
        .map(|n| Fault::new(Some("PUT"), "/manifests/", n, Action::Status(500)))
        .collect();
    let proxy = FaultProxy::start(&registry.url(), rules);
    let p = image_project();
    let dest = format!("docker://{}", proxy.image("team/app:6.0"));
    let out = run(&mut oci_build(&p, &["push", &layout(&p), &dest]));
    let error = one_line_error(&out);
    assert!(
        error.contains(&format!(
            "registry {} answered 500 Internal Server Error",
            proxy.url()
        )),
        "{error}"
    );

    let blob_bytes = proxy.request_body_bytes(None, "/blobs/uploads/");
    assert!(blob_bytes > 0);
    let rerun = push_json(&mut oci_build(&p, &["push", "--json", &layout(&p), &dest]));
    assert_eq!(rerun["blobs_uploaded"], 0, "{rerun}");
    assert_eq!(
        proxy.request_body_bytes(None, "/blobs/uploads/"),
        blob_bytes
    );
    assert_eq!(
        sha256_of(&skopeo_raw(&registry.image("team/app:6.0"), None)),
        rerun["digest"].as_str().unwrap()
    );
}

#[test]
fn unknown_repositories_and_unreachable_registries_are_one_sentence() {
    let registry = Registry::start(Auth::None);
    let p = Project::new();
    p.write("x/y", "y\n");
    p.recipe(
        "missing",
        &format!(
            "from = \"docker://{}\"\n[[layer]]\nfiles = [{{ src = \"x\", dest = \"/x\" }}]\n",
            registry.image("nobody/nothing:1")
        ),
    );
    let out = run(&mut oci_build(&p, &["build", "missing"]));
    let error = one_line_error(&out);
    assert!(
        error.contains(&format!(
            "registry {} has no image nobody/nothing:1",
            registry.url()
        )),
        "{error}"
    );
    // A base named by tag and digest is looked up by its digest, and named so.
    let digest = format!("sha256:{}", "ab".repeat(32));
    p.recipe(
        "missing",
        &format!(
            "from = \"docker://{}@{digest}\"\n[[layer]]\nfiles = [{{ src = \"x\", dest = \"/x\" }}]\n",
            registry.image("nobody/nothing:1")
        ),
    );
    let error = one_line_error(&run(&mut oci_build(&p, &["build", "missing"])));
    assert!(
        error.contains(&format!(
            "registry {} has no image nobody/nothing@{digest}",
            registry.url()
        )),
        "{error}"
    );

    let port = crate::fixtures::registry::free_port();
    let dest = format!("docker://127.0.0.1:{port}/team/app:1");
    let q = image_project();
    let out = run(&mut oci_build(&q, &["push", &layout(&q), &dest]));
    let error = one_line_error(&out);
    assert!(
        error.contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{error}"
    );
}

#[test]
fn tls_registries_need_their_ca_and_never_fall_back_to_plain_http() {
    let registry = Registry::start_tls(Auth::None);
    let ca = registry.ca_cert().unwrap();
    let p = image_project();
    let dest = format!("docker://{}", registry.image("team/app:7.0"));
    let out = run(&mut oci_build(&p, &["push", &layout(&p), &dest]));
    let error = one_line_error(&out);
    assert!(error.contains("certificate is not trusted"), "{error}");
    assert!(error.contains("--ca-cert"), "{error}");

    let pushed = push_json(&mut oci_build(
        &p,
        &[
            "--ca-cert",
            ca.to_str().unwrap(),
            "push",
            "--json",
            &layout(&p),
            &dest,
        ],
    ));
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}", registry.image("team/app:7.0")),
        ],
    );
    assert_eq!(sha256_of(&raw), pushed["digest"].as_str().unwrap());
}

#[test]
fn an_account_without_push_permission_is_told_so() {
    let registry = Registry::start(Auth::token(USER, PASSWORD));
    let p = image_project();
    let (reader, reader_password) = crate::fixtures::registry::READER;
    let config = write_docker_config(&p, &registry.url(), reader, reader_password);
    let dest = format!("docker://{}", registry.image("team/app:8.0"));
    let out = run(oci_build(&p, &["push", &layout(&p), &dest]).env("DOCKER_CONFIG", &config));
    let error = one_line_error(&out);
    assert!(
        error.contains(&format!(
            "registry {} denied push access to team/app for the credentials from",
            registry.url()
        )),
        "{error}"
    );
    assert!(
        error.contains("the account needs that permission"),
        "{error}"
    );
    assert!(!error.contains(reader_password));
}
