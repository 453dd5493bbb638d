//! Shared helpers: a project in a temp dir, running the binary, running peer tools.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oci-build"))
}

/// A project directory with its own cache and output area.
pub struct Project {
    pub tmp: TempDir,
}

impl Project {
    pub fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("project/recipes")).unwrap();
        Project { tmp }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("project")
    }

    pub fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    pub fn write_mode(&self, rel: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.write(rel, contents);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    pub fn recipe(&self, name: &str, toml: &str) {
        self.write(&format!("recipes/{name}.toml"), toml);
    }

    /// `oci-build -C <project> --cache-dir <cache> ARGS`, with SOURCE_DATE_EPOCH unset.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path());
        cmd.arg("-C")
            .arg(self.dir())
            .arg("--cache-dir")
            .arg(self.cache())
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.tmp.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `build ARGS --json` and returns the report of the first target.
    pub fn build(&self, args: &[&str]) -> Value {
        let mut all = vec!["build", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_success(&out, "oci-build build");
        let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
        reports[0].clone()
    }
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a peer tool and returns its stdout; the tool must be installed (`.ci/run` does it).
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}); .ci/run installs it with apt-get")
        });
    assert_success(&out, &format!("{program} {}", args.join(" ")));
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

/// Every blob of a layout: file name → bytes.
pub fn blobs(layout: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The layer blob paths of the single-platform image in a build report.
pub fn layer_paths(layout: &Path, report: &Value) -> Vec<PathBuf> {
    report["manifests"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap();
            layout.join("blobs/sha256").join(&digest["sha256:".len()..])
        })
        .collect()
}

/// One tar entry as a test compares it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct TarEntry {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub content: Vec<u8>,
}

/// Reads a gzip-compressed layer with the tar crate's reader.
pub fn read_layer(path: &Path) -> Vec<TarEntry> {
    let file = fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let header = e.header().clone();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            TarEntry {
                path: e.path().unwrap().to_string_lossy().into_owned(),
                kind: match header.entry_type() {
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    tar::EntryType::Link => 'h',
                    _ => 'f',
                },
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                link: e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
                content,
            }
        })
        .collect()
}

/// Unpacks `layout:name` with umoci and returns the rootfs.
pub fn umoci_unpack(layout: &Path, name: &str, into: &Path) -> PathBuf {
    let image = format!("{}:{name}", layout.display());
    let mut args = vec!["unpack", "--image", &image];
    if !is_root() {
        args.push("--rootless");
    }
    let bundle = into.display().to_string();
    args.push(&bundle);
    tool("umoci", &args);
    into.join("rootfs")
}

// A static-file HTTP/1.1 server on 127.0.0.1, for package archives and indexes.

/// Serves `root` under `/<prefix>/` (GET and HEAD, 404 otherwise) and records every request.
/// A directory URL (`…/`) serves its `index.json` as a PEP 691 page, else its `index.html`.
/// Made [`StaticServer::flaky`], it fails the first GET of some files, as a mirror does now
/// and then.
pub struct StaticServer {
    pub addr: SocketAddr,
    prefix: &'static str,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How a flaky [`StaticServer`] fails the first GET of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The response head and half the body, then nothing (until the client gives up, the
    /// server is dropped, or [`Fault::STALL`] has passed).
    Stall,
    /// The response head and half the body, then the connection is closed.
    Drop,
    /// 503 Service Unavailable.
    Unavailable,
    /// 404 Not Found, although the file is there: not a connection failure.
    NotFound,
}

impl Fault {
    /// Longer than any test's idle timeout, short enough to end a forgotten connection.
    pub const STALL: Duration = Duration::from_secs(30);
}

impl StaticServer {
    pub fn start(root: PathBuf, prefix: &'static str) -> StaticServer {
        StaticServer::flaky(root, prefix, &[])
    }

    /// Serves as [`StaticServer::start`] does, except the first GET of a file whose path ends
    /// in one of `faults`' suffixes, which meets that fault.
    pub fn flaky(
        root: PathBuf,
        prefix: &'static str,
        faults: &[(&'static str, Fault)],
    ) -> StaticServer {
        let faults = faults.to_vec();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (root, requests) = (root.clone(), requests.clone());
                    let (faults, stop) = (faults.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let _ = answer(stream, &root, prefix, &requests, &faults, &stop);
                    });
                }
            })
        };
        StaticServer {
            addr,
            prefix,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL of the served root.
    pub fn uri(&self) -> String {
        format!("http://{}/{}", self.addr, self.prefix)
    }

    /// `METHOD /path` of every request so far, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// How many GETs of `url` (one this server serves) came so far.
    pub fn gets_of(&self, url: &str) -> usize {
        let path = url
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or_else(|| panic!("{url} is not served here"));
        let request = format!("GET {path}");
        self.requests().iter().filter(|r| **r == request).count()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(
    stream: TcpStream,
    root: &Path,
    prefix: &str,
    requests: &Mutex<Vec<String>>,
    faults: &[(&'static str, Fault)],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Ok(());
    };
    let path = target.split('?').next().unwrap_or("");
    let first = {
        let mut requests = requests.lock().unwrap();
        let request = format!("{method} {path}");
        let first = !requests.contains(&request);
        requests.push(request);
        first
    };
    let fault = faults
        .iter()
        .find(|(suffix, _)| method == "GET" && first && path.ends_with(suffix))
        .map(|(_, fault)| *fault);
    let file = path
        .strip_prefix(&format!("/{prefix}/"))
        .filter(|rel| !rel.split('/').any(|c| c == ".."))
        .and_then(|rel| {
            let at = root.join(rel);
            if rel.is_empty() || rel.ends_with('/') {
                [at.join("index.json"), at.join("index.html")]
                    .into_iter()
                    .find(|f| f.is_file())
            } else {
                Some(at).filter(|f| f.is_file())
            }
        });
    let content_type = match file.as_ref().and_then(|f| f.extension()) {
        Some(e) if e == "json" => "application/vnd.pypi.simple.v1+json",
        Some(e) if e == "html" => "text/html",
        _ => "application/octet-stream",
    };
    let mut stream = stream;
    let (status, body) = match (method, file, fault) {
        (_, _, Some(Fault::Unavailable)) => ("503 Service Unavailable", Vec::new()),
        (_, _, Some(Fault::NotFound)) => ("404 Not Found", b"not found\n".to_vec()),
        ("GET" | "HEAD", Some(file), _) => ("200 OK", fs::read(file)?),
        ("GET" | "HEAD", None, _) => ("404 Not Found", b"not found\n".to_vec()),
        _ => ("405 Method Not Allowed", Vec::new()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method == "HEAD" {
        return stream.flush();
    }
    match fault {
        Some(Fault::Stall | Fault::Drop) => {
            stream.write_all(&body[..body.len() / 2])?;
            stream.flush()?;
            let held = std::time::Instant::now();
            while fault == Some(Fault::Stall)
                && !stop.load(Ordering::SeqCst)
                && held.elapsed() < Fault::STALL
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Dropping the stream closes the connection with the body unfinished.
            Ok(())
        }
        _ => {
            stream.write_all(&body)?;
            stream.flush()
        }
    }
}

// A server that stalls, for clients that must give up on one.

/// Accepts on 127.0.0.1, reads each request's head, writes its `reply` (nothing, or a response
/// head and the start of a body) and then sends nothing more, holding the connection open.
/// Bounded: at most [`StallingServer::MAX_CONNECTIONS`] connections, each held at most
/// [`StallingServer::HOLD`], and everything ends when it is dropped.
pub struct StallingServer {
    pub addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StallingServer {
    pub const MAX_CONNECTIONS: usize = 32;
    /// Longer than any client here should wait, so that a client that does not give up is
    /// caught by a test's own time bound rather than freed by the server.
    pub const HOLD: Duration = Duration::from_secs(60);

    /// Accepts, reads the request and never answers.
    pub fn silent() -> StallingServer {
        StallingServer::start(Vec::new())
    }

    /// Answers 200 with a `Content-Length` of `length` and `sent` bytes of body, then stalls.
    pub fn after_headers(length: usize, sent: usize) -> StallingServer {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        reply.resize(reply.len() + sent.min(length), b'x');
        StallingServer::start(reply)
    }

    fn start(reply: Vec<u8>) -> StallingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst)
                    && started.elapsed() < Self::HOLD
                    && connections.load(Ordering::SeqCst) < Self::MAX_CONNECTIONS
                {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (reply, stop) = (reply.clone(), stop.clone());
                    held.push(std::thread::spawn(move || {
                        let _ = stall(stream, &reply, &stop);
                    }));
                }
                for thread in held {
                    let _ = thread.join();
                }
            })
        };
        StallingServer {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far (each try of a client is one).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for StallingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stall(mut stream: TcpStream, reply: &[u8], stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    // The request head, as far as it comes within a second (a TLS probe sends no blank line).
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    stream.write_all(reply)?;
    stream.flush()?;
    let held = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) && held.elapsed() < StallingServer::HOLD {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

// Hostile inputs: what a refused input must leave behind.

/// A tree of files outside the cache and the output, which no input may reach. Tests point
/// attacks at it (`../../sentinel/…`, absolute paths, symlinks) and check it afterwards.
pub struct Sentinel {
    pub root: PathBuf,
    before: Vec<(String, Vec<u8>)>,
}

impl Sentinel {
    /// Makes `<dir>/sentinel` with a file and a subdirectory, and records their contents.
    pub fn plant(dir: &Path) -> Sentinel {
        let root = dir.join("sentinel");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("keep.txt"), b"sentinel\n").unwrap();
        fs::write(root.join("sub/keep.txt"), b"sentinel too\n").unwrap();
        let before = Self::snapshot(&root);
        Sentinel { root, before }
    }

    fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap())
            .map(|e| {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                let content = if e.file_type().is_file() {
                    fs::read(e.path()).unwrap()
                } else if e.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(e.path()).unwrap().display()).into_bytes()
                } else {
                    b"<dir>".to_vec()
                };
                (rel, content)
            })
            .collect();
        files.sort();
        files
    }

    /// Panics when anything under the sentinel was added, removed or changed.
    pub fn assert_untouched(&self) {
        assert_eq!(
            Self::snapshot(&self.root),
            self.before,
            "a hostile input changed files outside the cache and output ({})",
            self.root.display()
        );
    }
}

/// Asserts that a command failed as a refused input must: exit code 1 (not a panic's 101),
/// nothing on stdout, and one `error:` line on stderr (progress lines of the layers built
/// before may precede it) that names `names`. Returns that line.
pub fn refused(out: &Output, names: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a hostile input must fail with exit code 1; stderr:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "a refused input printed a result");
    assert!(
        !stderr.contains("panicked"),
        "a hostile input panicked:\n{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error sentence, got:\n{stderr}"
    );
    assert!(
        errors[0].contains(names),
        "the error does not name `{names}`: {stderr}"
    );
    errors[0].to_owned()
}
