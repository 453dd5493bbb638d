//! Real registries for tests, and a proxy that breaks them on purpose.
//!
//! - [`Registry`]: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, with no auth,
//!   htpasswd (bcrypt) auth, or token auth backed by a token server in this process that signs
//!   RS256 JWTs with a throwaway key (made with the `openssl` CLI).
//! - [`FaultProxy`]: an HTTP/1.1 proxy in front of a registry that answers a chosen request
//!   with an error status, a 429, a dropped connection or a truncated body, and counts the
//!   request body bytes it saw.
//! - [`http_get`] / [`http_request`]: a tiny HTTP/1.1 client on `TcpStream`, and skopeo helpers.
//!
//! Everything listens on 127.0.0.1 only, lives in a temporary directory, and stops (processes
//! killed, threads told to end, sockets shut) when its handle is dropped. Needs the Debian
//! packages `docker-registry`, `openssl` (token auth), `apache2-utils` (htpasswd auth) and
//! `skopeo` (the skopeo helpers).

// A library for the registry tests: not every helper is used by every test binary build.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;

/// The `service` of token auth: the registry's `auth.token.service` and the tokens' `aud`.
pub const TOKEN_SERVICE: &str = "test-registry";
/// The `issuer` of token auth: the registry's `auth.token.issuer` and the tokens' `iss`.
pub const TOKEN_ISSUER: &str = "test-issuer";
/// Token auth: a second account that may pull but never push.
pub const READER: (&str, &str) = ("reader", "reader-pa55");
/// Seconds of clock skew distribution allows past a token's `exp` (registry/auth/token).
const REGISTRY_TOKEN_LEEWAY: i64 = 60;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Registry

/// How a [`Registry`] authenticates clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP Basic auth against a bcrypt htpasswd file holding one user.
    Htpasswd { user: String, password: String },
    /// Bearer tokens from the harness token server; `user`/`password` is its only account.
    Token { user: String, password: String },
}

impl Auth {
    pub fn htpasswd(user: &str, password: &str) -> Auth {
        Auth::Htpasswd {
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    pub fn token(user: &str, password: &str) -> Auth {
        Auth::Token {
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// The account's user and password, `None` for [`Auth::None`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Auth::None => None,
            Auth::Htpasswd { user, password } | Auth::Token { user, password } => {
                Some((user, password))
            }
        }
    }
}

/// A running `docker-registry serve` with filesystem storage in a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    auth: Auth,
    token: Option<TokenServer>,
    dir: TempDir,
    tls: bool,
}

impl Registry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until `GET /v2/` answers 200
    /// (no auth) or 401 (auth). Panics with the registry's log after 20 s.
    pub fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, false)
    }

    /// Like [`Registry::start`], serving HTTPS with a self-signed certificate for 127.0.0.1
    /// (see [`Registry::ca_cert`]).
    pub fn start_tls(auth: Auth) -> Registry {
        Registry::start_with(auth, true)
    }

    /// The CA (PEM) that signed a TLS registry's certificate.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.pem"))
    }

    fn start_with(auth: Auth, tls: bool) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("registry-harness-")
            .tempdir()
            .unwrap();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap();
        let log_path = dir.path().join("registry.log");
        // A marker header the registry adds to every response, so the harness knows the
        // server answering on the port is this one and not a neighbour that won a port race.
        let id = format!(
            "{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );

        let mut token = None;
        let auth_section = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let htpasswd = dir.path().join("htpasswd");
                fs::write(&htpasswd, htpasswd_line(user, password)).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: {TOKEN_SERVICE}\n    path: \"{}\"\n",
                    htpasswd.display()
                )
            }
            Auth::Token { user, password } => {
                let server = TokenServer::start(dir.path(), user, password);
                let section = format!(
                    "auth:\n  token:\n    realm: \"{}\"\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: \"{}\"\n",
                    server.realm(),
                    server.state.cert.display()
                );
                token = Some(server);
                section
            }
        };

        let tls_section = if tls {
            // A CA and a server certificate it signed, as a private registry would have.
            let path = |name: &str| dir.path().join(name);
            let ext = path("tls-ext.cnf");
            fs::write(
                &ext,
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(dir.path())
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("cannot run `openssl` ({e}); apt-get install openssl")
                    });
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=harness test CA",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "tls-key.pem",
                "-out",
                "tls.csr",
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                "tls.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "tls-ext.cnf",
                "-out",
                "tls-cert.pem",
            ]);
            format!(
                "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
                path("tls-cert.pem").display(),
                path("tls-key.pem").display()
            )
        } else {
            String::new()
        };

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  formatter: text\n\
                     storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: harness-secret-{id}\n  \
                     headers:\n    X-Harness-Registry: [\"{id}\"]\n\
                     {tls_section}\
                     {auth_section}",
                    storage.display()
                ),
            )
            .unwrap();
            let log = fs::File::create(&log_path).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run `docker-registry` ({e}); apt-get install docker-registry")
                });
            match wait_ready(&mut child, port, &id, &log_path, tls) {
                Ok(()) => {
                    return Registry {
                        child,
                        port,
                        auth,
                        token,
                        dir,
                        tls,
                    };
                }
                Err(retry) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = read_lossy(&log_path);
                    if !retry {
                        panic!(
                            "docker-registry did not answer GET http://127.0.0.1:{port}/v2/ \
                             within {START_TIMEOUT:?}; its log:\n{last_log}"
                        );
                    }
                    // The port was taken between free_port() and the registry's bind: retry.
                }
            }
        }
        panic!("docker-registry could not bind a free port in 5 tries; last log:\n{last_log}");
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> String {
        "127.0.0.1".to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/NAME`, e.g. `image("team/app:1.0")`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.url())
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The account's user and password, `None` without auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.credentials()
    }

    /// The registry's stdout and stderr so far (warnings, errors and the access log).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("registry.log"))
    }

    /// The filesystem storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Token auth: `http://127.0.0.1:TPORT/token`, the realm the registry sends clients to.
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(|t| t.realm())
    }

    /// Token auth: every request the token server got, as `PATH?QUERY` exactly as sent
    /// (skopeo sends `/token?account=USER&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&service=…`).
    /// Empty for the other auth modes.
    pub fn token_requests(&self) -> Vec<String> {
        self.token_request_log()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect()
    }

    /// Token auth: every request the token server got, with who asked and what it answered.
    pub fn token_request_log(&self) -> Vec<TokenRequest> {
        match &self.token {
            Some(t) => t.state.requests.lock().unwrap().clone(),
            None => Vec::new(),
        }
    }

    /// Token auth: how long tokens issued from now on are accepted by the registry (default
    /// 300 s), also their `expires_in`. Distribution accepts a token until 60 s past its `exp`
    /// claim, so the claim is set to `iat + secs - 60`: with `secs = 1` a token stops working
    /// about 1 s after it is issued. No effect without token auth.
    pub fn set_token_lifetime(&self, secs: u64) {
        if let Some(t) = &self.token {
            t.state.lifetime.store(secs, Ordering::SeqCst);
        }
    }

    /// Token auth: a token for `scopes` (e.g. `repository:team/app:pull`) as the token server
    /// would hand it to `user`/`password`, fetched over HTTP. Panics unless the server says 200.
    pub fn fetch_token(&self, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let realm = self.token_realm().expect("fetch_token needs Auth::Token");
        let mut url = format!("{realm}?service={TOKEN_SERVICE}");
        for scope in scopes {
            url.push_str("&scope=");
            url.push_str(&percent_encode(scope));
        }
        let auth;
        let mut headers = Vec::new();
        if let Some((user, password)) = creds {
            auth = basic_auth(user, password);
            headers.push(("Authorization", auth.as_str()));
        }
        let resp = http_request("GET", &url, &headers, b"").unwrap();
        assert_eq!(resp.status, 200, "token server: {}", resp.text());
        let body: Value = serde_json::from_slice(&resp.body).unwrap();
        body["token"].as_str().unwrap().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `token` drops next (its threads stop), then `dir` is removed.
    }
}

/// Ok when our registry answers; Err(true) when it lost a port race (retry), else Err(false).
fn wait_ready(child: &mut Child, port: u16, id: &str, log: &Path, tls: bool) -> Result<(), bool> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("http://127.0.0.1:{port}/v2/");
    while Instant::now() < deadline {
        if let Ok(Some(_status)) = child.try_wait() {
            return Err(read_lossy(log).contains("address already in use"));
        }
        // Someone else answering on our port lacks our marker; ours will fail to bind.
        match http_request("GET", &url, &[], b"") {
            Ok(resp)
                if (resp.status == 200 || resp.status == 401)
                    && resp.header("X-Harness-Registry") == Some(id) =>
            {
                return Ok(());
            }
            // Go's TLS server answers plain HTTP with this 400 (and no marker header).
            Ok(resp) if tls && resp.status == 400 && resp.text().contains("HTTPS server") => {
                return Ok(());
            }
            _ => {}
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(false)
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `user:bcrypt-hash` from `htpasswd -Bbn` (Debian package apache2-utils).
fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `htpasswd` ({e}); apt-get install apache2-utils"));
    assert!(
        out.status.success(),
        "htpasswd -Bbn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    format!("{}\n", text.trim())
}

// ---------------------------------------------------------------------------------------------
// Token server

/// One request to the harness token server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: String,
    /// `PATH?QUERY` exactly as the client sent it.
    pub path_and_query: String,
    /// The Basic auth user the client sent, right password or not.
    pub user: Option<String>,
    /// What the token server answered.
    pub status: u16,
    /// The `access` claim of the token handed out (empty unless authenticated).
    pub granted: Vec<String>,
}

struct TokenState {
    user: String,
    password: String,
    key: PathBuf,
    cert: PathBuf,
    /// The certificate, base64 DER, for the JWT header's `x5c`.
    x5c: String,
    lifetime: AtomicU64,
    serial: AtomicU64,
    requests: Mutex<Vec<TokenRequest>>,
}

struct TokenServer {
    port: u16,
    state: Arc<TokenState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            ])
            .args(["-subj", "/CN=harness token issuer"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `openssl` ({e}); apt-get install openssl"));
        assert!(
            out.status.success(),
            "openssl req -x509 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The body of a PEM certificate is the base64 of its DER: exactly what x5c wants.
        let pem = fs::read_to_string(&cert).unwrap();
        let x5c: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(TokenState {
            user: user.to_string(),
            password: password.to_string(),
            key,
            cert,
            x5c,
            lifetime: AtomicU64::new(300),
            serial: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    thread::spawn(move || {
                        let _ = serve_token_request(conn, &state);
                    });
                }
            })
        };
        TokenServer {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes accept()
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_token_request(conn: TcpStream, state: &TokenState) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = head.start_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    // Drain a body, if any; the token server reads GET only.
    let framing = request_framing(&head.headers);
    transfer_body(&mut reader, framing, &mut io::sink(), &mut io::sink())?;

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params = parse_query(query);
    let given = header(&head.headers, "Authorization").and_then(parse_basic_auth);
    let mut record = TokenRequest {
        method: method.clone(),
        path_and_query: target.clone(),
        user: given.as_ref().map(|(u, _)| u.clone()),
        status: 200,
        granted: Vec::new(),
    };

    let error = |code: &str, message: &str| {
        json!({"errors": [{"code": code, "message": message, "detail": null}]}).to_string()
    };
    let (status, extra, body) = if path != "/token" {
        (
            404,
            vec![],
            error("NOT_FOUND", "the harness token server serves /token only"),
        )
    } else if method != "GET" {
        (
            405,
            vec![],
            error(
                "UNSUPPORTED",
                "the harness token server implements GET /token only",
            ),
        )
    } else {
        match given {
            Some((u, p))
                if (u != state.user || p != state.password) && (u != READER.0 || p != READER.1) =>
            {
                (
                    401,
                    vec![(
                        "WWW-Authenticate",
                        "Basic realm=\"harness token server\"".to_string(),
                    )],
                    error("UNAUTHORIZED", "invalid username or password"),
                )
            }
            given => {
                let scopes: Vec<&str> = params
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .flat_map(|(_, v)| v.split(' '))
                    .filter(|s| !s.is_empty())
                    .collect();
                let user = given.map(|(u, _)| u);
                let (body, granted) = issue_token(state, user.as_deref(), &scopes);
                record.granted = granted;
                (200, vec![], body)
            }
        }
    };
    record.status = status;
    state.requests.lock().unwrap().push(record);

    let mut headers = vec![("Content-Type", "application/json".to_string())];
    headers.extend(extra);
    write_simple_response(&mut writer, status, &headers, body.as_bytes(), true)?;
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// The token response body and the access granted (`type:name:actions` strings).
fn issue_token(state: &TokenState, user: Option<&str>, scopes: &[&str]) -> (String, Vec<String>) {
    let now = unix_now() as i64;
    let lifetime = state.lifetime.load(Ordering::SeqCst) as i64;
    let mut access = Vec::new();
    let mut granted = Vec::new();
    // Anonymous clients get a valid token that grants nothing; the user gets what it asks.
    if user.is_some() {
        for scope in scopes {
            let Some((kind, rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| !a.is_empty())
                .filter(|a| user != Some(READER.0) || *a == "pull")
                .collect();
            access.push(json!({"type": kind, "name": name, "actions": actions}));
            granted.push(format!("{kind}:{name}:{}", actions.join(",")));
        }
    }
    let serial = state.serial.fetch_add(1, Ordering::SeqCst);
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [state.x5c]});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": user.unwrap_or(""),
        "aud": TOKEN_SERVICE,
        "exp": now + lifetime - REGISTRY_TOKEN_LEEWAY,
        "nbf": now,
        "iat": now,
        "jti": format!("harness-{}-{serial}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let signature = openssl_sign(&state.key, signing_input.as_bytes());
    let jwt = format!("{signing_input}.{}", base64url_encode(&signature));
    let body = json!({
        "token": jwt,
        "access_token": jwt,
        "expires_in": lifetime,
        "issued_at": oci_build::time::rfc3339(now as u64),
    });
    (body.to_string(), granted)
}

/// RS256: `openssl dgst -sha256 -sign KEY`, PKCS#1 v1.5 signature bytes.
fn openssl_sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run openssl");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl dgst -sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// Fault proxy

/// What a [`Fault`] does to the request it fires on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer this status with an empty body, without forwarding.
    Status(u16),
    /// Answer 429 with `Retry-After` and a distribution-style JSON error, without forwarding.
    TooManyRequests { retry_after_secs: u64 },
    /// Read the request, then close the socket without answering.
    DropConnection,
    /// Forward, then send the response head (Content-Length = the full body) and only the first
    /// `after_bytes` bytes of the body, then close.
    TruncateResponseBody { after_bytes: usize },
}

/// Fires `action` once, on the `nth` (1-based) request whose method is `method` (any when
/// `None`, case-insensitive) and whose `PATH?QUERY` contains `path_contains`. When several
/// rules fire on one request, the first in the list acts and the others are used up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub nth: usize,
    pub action: Action,
}

impl Fault {
    pub fn new(method: Option<&str>, path_contains: &str, nth: usize, action: Action) -> Fault {
        Fault {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
            nth,
            action,
        }
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }
}

/// One request the proxy handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// `PATH?QUERY` as the client sent it.
    pub path: String,
    /// The status the client got: the upstream's, the fault's, or 0 for a dropped connection.
    pub status: u16,
    /// Request body bytes (payload, without chunk framing) read from the client.
    pub body_bytes: u64,
    /// The fault that fired on this request, if any.
    pub fault: Option<Action>,
}

struct ProxyState {
    upstream: String,
    me: String,
    rules: Mutex<Vec<(Fault, usize)>>,
    log: Mutex<Vec<ProxiedRequest>>,
    /// Open client connections, to shut them when the proxy is dropped.
    clients: Mutex<HashMap<u64, TcpStream>>,
    next_client: AtomicU64,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of `upstream`, injecting [`Fault`]s.
///
/// Client connections are kept alive; every request goes upstream on a fresh connection with
/// `Connection: close`, keeping the client's `Host` (so distribution builds `Location` URLs
/// for the proxy), and absolute `Location` URLs naming the upstream are rewritten to the proxy.
/// A connection whose first byte is not an HTTP method (a TLS probe) gets a 400 and is closed.
pub struct FaultProxy {
    port: u16,
    state: Arc<ProxyState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// `upstream` is `HOST:PORT`, e.g. `registry.url()`.
    pub fn start(upstream: &str, rules: Vec<Fault>) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream,
            me: format!("127.0.0.1:{port}"),
            rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()),
            log: Mutex::new(Vec::new()),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let Ok(clone) = conn.try_clone() else {
                        continue;
                    };
                    let id = state.next_client.fetch_add(1, Ordering::SeqCst);
                    state.clients.lock().unwrap().insert(id, clone);
                    let state = state.clone();
                    thread::spawn(move || {
                        let _ = serve_proxy_client(conn, &state);
                        // Whatever ended the conversation, the client sees the socket close.
                        if let Some(c) = state.clients.lock().unwrap().remove(&id) {
                            let _ = c.shutdown(Shutdown::Both);
                        }
                    });
                }
            })
        };
        FaultProxy {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, to use in place of the registry's.
    pub fn url(&self) -> String {
        self.state.me.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT/NAME`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.url())
    }

    /// Adds a rule; it counts matching requests from now on.
    pub fn add_fault(&self, fault: Fault) {
        self.state.rules.lock().unwrap().push((fault, 0));
    }

    /// `(method, PATH?QUERY, status returned to the client)` of every request, in order.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.request_log()
            .into_iter()
            .map(|r| (r.method, r.path, r.status))
            .collect()
    }

    pub fn request_log(&self) -> Vec<ProxiedRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// Request body bytes read from clients (forwarded, or swallowed by a fault) for requests
    /// with method `method_filter` (any when `None`) whose `PATH?QUERY` contains `path_contains`.
    pub fn request_body_bytes(&self, method_filter: Option<&str>, path_contains: &str) -> u64 {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| method_filter.is_none_or(|m| m.eq_ignore_ascii_case(&r.method)))
            .filter(|r| r.path.contains(path_contains))
            .map(|r| r.body_bytes)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes accept()
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, client) in self.state.clients.lock().unwrap().drain() {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

impl ProxyState {
    fn take_fault(&self, method: &str, target: &str) -> Option<Action> {
        let mut chosen = None;
        for (rule, seen) in self.rules.lock().unwrap().iter_mut() {
            if rule.matches(method, target) {
                *seen += 1;
                if *seen == rule.nth && chosen.is_none() {
                    chosen = Some(rule.action.clone());
                }
            }
        }
        chosen
    }

    fn record(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body_bytes: u64,
        fault: Option<Action>,
    ) {
        self.log.lock().unwrap().push(ProxiedRequest {
            method: method.to_string(),
            path: path.to_string(),
            status,
            body_bytes,
            fault,
        });
    }
}

fn serve_proxy_client(client: TcpStream, state: &ProxyState) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    loop {
        let first = reader.fill_buf()?;
        if first.is_empty() {
            return Ok(());
        }
        if !first[0].is_ascii_uppercase() {
            // Not HTTP (skopeo probes https first): answer like an HTTP server and hang up.
            let _ = write_simple_response(&mut writer, 400, &[], b"", true);
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut parts = head.start_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").to_string();
        let connection = header(&head.headers, "Connection")
            .unwrap_or("")
            .to_ascii_lowercase();
        let client_closes = connection.contains("close")
            || (version == "HTTP/1.0" && !connection.contains("keep-alive"));
        let expect_continue =
            header(&head.headers, "Expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        let framing = request_framing(&head.headers);
        let fault = state.take_fault(&method, &target);

        if expect_continue {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            writer.flush()?;
        }

        // Faults answered without forwarding: read the body, then answer or hang up.
        if let Some(
            action @ (Action::Status(_) | Action::TooManyRequests { .. } | Action::DropConnection),
        ) = &fault
        {
            let body_bytes = transfer_body(&mut reader, framing, &mut io::sink(), &mut io::sink())?;
            let head_only = method == "HEAD";
            match action {
                Action::DropConnection => {
                    state.record(&method, &target, 0, body_bytes, fault.clone());
                    let _ = writer.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Action::Status(code) => {
                    state.record(&method, &target, *code, body_bytes, fault.clone());
                    write_simple_response(&mut writer, *code, &[], b"", client_closes)?;
                }
                Action::TooManyRequests { retry_after_secs } => {
                    state.record(&method, &target, 429, body_bytes, fault.clone());
                    let body = json!({"errors": [{
                        "code": "TOOMANYREQUESTS",
                        "message": "harness fault proxy: too many requests",
                        "detail": null,
                    }]})
                    .to_string();
                    let headers = [
                        ("Retry-After", retry_after_secs.to_string()),
                        ("Content-Type", "application/json".to_string()),
                    ];
                    let body = if head_only { &b""[..] } else { body.as_bytes() };
                    write_simple_response(&mut writer, 429, &headers, body, client_closes)?;
                }
                Action::TruncateResponseBody { .. } => unreachable!(),
            }
            if client_closes {
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            continue;
        }

        // Forward.
        let upstream = match TcpStream::connect(&state.upstream) {
            Ok(u) => u,
            Err(_) => {
                let body_bytes =
                    transfer_body(&mut reader, framing, &mut io::sink(), &mut io::sink())?;
                state.record(&method, &target, 502, body_bytes, fault);
                write_simple_response(&mut writer, 502, &[], b"", true)?;
                return Ok(());
            }
        };
        upstream.set_read_timeout(Some(IO_TIMEOUT))?;
        upstream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut up_writer = Lenient {
            inner: BufWriter::new(upstream.try_clone()?),
            failed: false,
        };
        let mut request = format!("{}\r\n", head.start_line);
        for (name, value) in &head.headers {
            if is_hop_by_hop(name) || name.eq_ignore_ascii_case("Expect") {
                continue;
            }
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        up_writer.write_all(request.as_bytes())?;
        let body_bytes = transfer_body(&mut reader, framing, &mut up_writer, &mut io::sink())?;
        up_writer.flush()?;

        let mut up_reader = BufReader::new(upstream);
        let response = loop {
            match read_head(&mut up_reader) {
                Ok(Some(h))
                    if h.start_line
                        .split_whitespace()
                        .nth(1)
                        .is_some_and(|s| s.starts_with('1')) =>
                {
                    continue;
                }
                Ok(Some(h)) => break Some(h),
                _ => break None,
            }
        };
        let Some(mut response) = response else {
            state.record(&method, &target, 502, body_bytes, fault);
            write_simple_response(&mut writer, 502, &[], b"", true)?;
            return Ok(());
        };
        let status: u16 = response
            .start_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        for (name, value) in response.headers.iter_mut() {
            if name.eq_ignore_ascii_case("Location") {
                *value =
                    value.replace(&format!("//{}", state.upstream), &format!("//{}", state.me));
            }
        }
        let resp_framing = response_framing(&method, status, &response.headers);
        state.record(&method, &target, status, body_bytes, fault.clone());

        if let Some(Action::TruncateResponseBody { after_bytes }) = fault {
            let mut body = Vec::new();
            transfer_body(&mut up_reader, resp_framing, &mut io::sink(), &mut body)?;
            let mut out = format!("{}\r\n", response.start_line);
            for (name, value) in &response.headers {
                if is_hop_by_hop(name) || name.eq_ignore_ascii_case("Content-Length") {
                    continue;
                }
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            if method != "HEAD" {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            out.push_str("Connection: close\r\n\r\n");
            writer.write_all(out.as_bytes())?;
            writer.write_all(&body[..after_bytes.min(body.len())])?;
            writer.flush()?;
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }

        let close_after = client_closes || resp_framing == Framing::UntilClose;
        let mut out = format!("{}\r\n", response.start_line);
        for (name, value) in &response.headers {
            if is_hop_by_hop(name) {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if close_after {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut client_out = BufWriter::new(&mut writer);
        client_out.write_all(out.as_bytes())?;
        transfer_body(
            &mut up_reader,
            resp_framing,
            &mut client_out,
            &mut io::sink(),
        )?;
        client_out.flush()?;
        drop(client_out);
        if close_after {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Connection-level headers a proxy must not pass on (`Transfer-Encoding` is kept: bodies are
/// relayed with their framing).
fn is_hop_by_hop(name: &str) -> bool {
    ["Connection", "Keep-Alive", "Proxy-Connection"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// A writer that swallows everything after its first error (an upstream that answered early
/// and hung up), so the client's body can still be read to the end.
struct Lenient<W: Write> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Lenient<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.failed && self.inner.write_all(buf).is_err() {
            self.failed = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.failed && self.inner.flush().is_err() {
            self.failed = true;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 on TcpStream

/// A response from [`http_request`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET url` (`http://HOST:PORT/PATH`); panics if the server cannot be reached.
pub fn http_get(url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let resp = http_request("GET", url, &[], b"").unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (resp.status, resp.headers, resp.body)
}

/// One HTTP/1.1 request with `Connection: close` on a fresh `TcpStream`. `Host` (unless given),
/// `Content-Length` when there is a body or the method is POST/PUT/PATCH, are added. The body
/// of the answer is read by Content-Length, chunked encoding or until close (none for HEAD);
/// a body cut short is an error.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("Host")) {
        request.push_str(&format!("Host: {authority}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut writer = BufWriter::new(stream.try_clone()?);
    writer.write_all(request.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()?;

    let mut reader = BufReader::new(stream);
    let head = loop {
        let head = read_head(&mut reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed without a response",
            )
        })?;
        if !head
            .start_line
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('1'))
        {
            break head;
        }
    };
    let status: u16 = head
        .start_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, head.start_line.clone()))?;
    let framing = response_framing(method, status, &head.headers);
    let mut body = Vec::new();
    transfer_body(&mut reader, framing, &mut io::sink(), &mut body)?;
    Ok(HttpResponse {
        status,
        headers: head.headers,
        body,
    })
}

/// `Basic base64(user:password)`, the value of an `Authorization` header.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

struct Head {
    start_line: String,
    headers: Vec<(String, String)>,
}

/// The first header of that name (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One CRLF- (or LF-) terminated line, without the terminator; `None` at end of stream.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "HTTP line too long or cut short",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A request or status line and its headers; `None` when the stream ends before a byte.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(start_line) = read_line(r)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside HTTP headers",
            )
        })?;
        if line.is_empty() {
            break;
        }
        if headers.len() > 200 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many headers",
            ));
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(Some(Head {
        start_line,
        headers,
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "Transfer-Encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
}

fn content_length(headers: &[(String, String)]) -> Option<u64> {
    header(headers, "Content-Length").and_then(|v| v.parse().ok())
}

fn request_framing(headers: &[(String, String)]) -> Framing {
    if is_chunked(headers) {
        Framing::Chunked
    } else {
        match content_length(headers) {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    }
}

fn response_framing(method: &str, status: u16, headers: &[(String, String)]) -> Framing {
    if method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if is_chunked(headers) {
        Framing::Chunked
    } else {
        match content_length(headers) {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }
}

/// Moves one message body: `raw` gets it as framed on the wire, `payload` the data only.
/// Returns the number of payload bytes; a body cut short is an `UnexpectedEof` error.
fn transfer_body(
    r: &mut impl BufRead,
    framing: Framing,
    raw: &mut dyn Write,
    payload: &mut dyn Write,
) -> io::Result<u64> {
    match framing {
        Framing::Empty => Ok(0),
        Framing::Length(n) => copy_exact(r, n, raw, payload),
        Framing::UntilClose => {
            let mut total = 0;
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                raw.write_all(&buf[..n])?;
                payload.write_all(&buf[..n])?;
                total += n as u64;
            }
        }
        Framing::Chunked => {
            let mut total = 0;
            loop {
                let line = read_line(r)?.ok_or_else(eof)?;
                raw.write_all(format!("{line}\r\n").as_bytes())?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let line = read_line(r)?.ok_or_else(eof)?;
                        raw.write_all(format!("{line}\r\n").as_bytes())?;
                        if line.is_empty() {
                            return Ok(total);
                        }
                    }
                }
                total += copy_exact(r, size, raw, payload)?;
                let end = read_line(r)?.ok_or_else(eof)?;
                raw.write_all(format!("{end}\r\n").as_bytes())?;
            }
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "HTTP body cut short")
}

fn copy_exact(
    r: &mut impl BufRead,
    mut n: u64,
    raw: &mut dyn Write,
    payload: &mut dyn Write,
) -> io::Result<u64> {
    let total = n;
    let mut buf = vec![0; 64 * 1024];
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(eof());
        }
        raw.write_all(&buf[..got])?;
        payload.write_all(&buf[..got])?;
        n -= got as u64;
    }
    Ok(total)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn write_simple_response(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

// ---------------------------------------------------------------------------------------------
// Small encoders

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_with(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            out.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    out
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    base64_with(data, B64_STD, true)
}

/// base64url without padding, as JWTs use it.
pub fn base64url_encode(data: &[u8]) -> String {
    base64_with(data, B64_URL, false)
}

/// Decodes standard or url-safe base64, padded or not; `None` on a stray character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn parse_basic_auth(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `k=v&k=v` with `%XX` and `+` decoded, in order, repeats kept.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Ports and skopeo

/// A port of 127.0.0.1 that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of skopeo's `--creds`, `--src-creds` and `--dest-creds`.
pub fn skopeo_creds(user: &str, password: &str) -> String {
    format!("{user}:{password}")
}

/// `skopeo` that reads no stored credentials (no auth.json, no docker config).
pub fn skopeo_command() -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.env(
        "REGISTRY_AUTH_FILE",
        "/nonexistent/registry-harness/auth.json",
    )
    .env("DOCKER_CONFIG", "/nonexistent/registry-harness/docker");
    cmd
}

fn docker_ref(image: &str) -> String {
    if image.starts_with("docker://") {
        image.to_string()
    } else {
        format!("docker://{image}")
    }
}

/// `skopeo copy --dest-tls-verify=false [--dest-creds C] SRC docker://DEST`; `src` is any
/// skopeo transport (`oci:DIR:REF`, `docker://…`), `dest` is `HOST:PORT/NAME:TAG`.
pub fn skopeo_copy(src: &str, dest: &str, dest_creds: Option<&str>) -> Output {
    let mut cmd = skopeo_command();
    cmd.args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"]);
    if let Some(c) = dest_creds {
        cmd.args(["--dest-creds", c]);
    }
    cmd.arg(src).arg(docker_ref(dest));
    cmd.output()
        .expect("cannot run `skopeo`; apt-get install skopeo")
}

/// `skopeo inspect --raw --tls-verify=false [--creds C] docker://IMAGE`: the manifest bytes
/// as the registry serves them. Panics with skopeo's stderr on failure.
pub fn skopeo_inspect_raw(image: &str, creds: Option<&str>) -> String {
    let out = skopeo_inspect_raw_output(image, creds);
    assert!(
        out.status.success(),
        "skopeo inspect --raw {image} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`skopeo_inspect_raw`] without the success check.
pub fn skopeo_inspect_raw_output(image: &str, creds: Option<&str>) -> Output {
    let mut cmd = skopeo_command();
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--creds", c]);
    }
    cmd.arg(docker_ref(image));
    cmd.output()
        .expect("cannot run `skopeo`; apt-get install skopeo")
}
