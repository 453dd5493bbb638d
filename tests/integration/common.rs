//! Shared helpers: a project in a temp dir, running the binary, running peer tools.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The uid and gid of `nobody`, who builds in the unprivileged tests when they run as root.
pub const NOBODY: u32 = 65534;

impl Project {
    /// A command that runs a copy of the binary (placed in the project's temp dir, where an
    /// unprivileged user can reach it) as an unprivileged user: as `nobody` through `setpriv`,
    /// having given it everything under the temp dir, when the tests run as root (CI), else as
    /// the current user.
    pub fn unprivileged_command(&self) -> Command {
        let tmp = self.tmp.path();
        let bin = tmp.join("oci-build");
        fs::copy(bin_path(), &bin).unwrap();
        if !is_root() {
            return Command::new(&bin);
        }
        for entry in walkdir::WalkDir::new(tmp) {
            let entry = entry.unwrap();
            std::os::unix::fs::lchown(entry.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .args(["--clear-groups", "--"])
            .arg(&bin);
        c
    }
}

impl Project {
    /// Builds `target` as [`Project::unprivileged_command`] does, into the OCI layout
    /// `<tmp>/out` with a HOME of its own; asserts success and returns the target's report and
    /// the layout.
    pub fn unprivileged_build(&self, target: &str) -> (Value, PathBuf) {
        let tmp = self.tmp.path();
        let out = tmp.join("out");
        let home = tmp.join("home");
        fs::create_dir_all(&home).unwrap();
        let mut command = self.unprivileged_command();
        let output = command
            .arg("-C")
            .arg(self.dir())
            .arg("--cache-dir")
            .arg(self.cache())
            .args(["build", "--json", target, "--output"])
            .arg(format!("oci:{}", out.display()))
            .env("HOME", &home)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert_success(&output, "unprivileged build");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        (report[0].clone(), out)
    }
}

/// A gzip layer as GNU tar lists it (`tar --numeric-owner -tvzf`): our reader does not get to
/// say what the layer holds.
pub struct TarListing(String);

impl TarListing {
    pub fn of(layer: &Path) -> TarListing {
        TarListing(tool(
            "tar",
            &["--numeric-owner", "-tvzf", layer.to_str().unwrap()],
        ))
    }

    /// `[mode, uid/gid]` of the member named `path`; panics if there is none.
    pub fn mode_owner(&self, path: &str) -> Vec<String> {
        self.0
            .lines()
            .find(|l| l.split_whitespace().nth(5) == Some(path))
            .unwrap_or_else(|| panic!("{path} missing from layer:\n{}", self.0))
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
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

/// Runs `build <target> --output oci:out`, which must fail with exit code 1, print nothing on
/// stdout and one line on stderr, and write no output; returns the line.
pub fn build_error(p: &Project, target: &str) -> String {
    let out = p.run(&["build", target, "--output", "oci:out"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a failure with exit code 1, got:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "a failed build printed a result");
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got:\n{stderr}"
    );
    assert!(
        !p.tmp.path().join("out").exists(),
        "a failed build wrote its output"
    );
    stderr.trim_end().to_owned()
}

/// The one `error: ` line of a run that failed with exit code 1 (progress lines may precede
/// it).
pub fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_owned()
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

/// `oci-image-tool validate` of the image a build wrote to `output` (`oci:DIR:NAME`, as its
/// report says). Only that image: the tool predates OCI 1.1 and refuses the artifact
/// manifests (SBOM, provenance) that the layout lists beside it.
/// A relative DIR is taken from `cwd`, where the build ran.
pub fn validate_image(cwd: &Path, output: &str) -> String {
    let rest = output.strip_prefix("oci:").expect("an oci: output");
    let (dir, name) = rest.split_once(':').expect("an oci:DIR:NAME output");
    let dir = cwd.join(dir);
    // oci-image-tool 1.0's filter drops index.json entries while it walks them and so skips
    // the one after each it drops: given again, it drops what the previous pass skipped.
    let wanted = format!("name={name}");
    let mut args = vec!["validate", "--type", "image"];
    for _ in 0..8 {
        args.extend(["--ref", &wanted]);
    }
    args.push(dir.to_str().unwrap());
    let validated = tool("oci-image-tool", &args);
    assert!(validated.contains("Validation succeeded"), "{validated}");
    validated
}

/// `skopeo --override-arch arm64 copy ARGS oci:<into>:arm`: the arm64 image of an index, as a
/// peer picks it; `args` end with the source.
pub fn skopeo_copy_arm64(args: &[&str], into: &Path) -> String {
    let dest = format!("oci:{}:arm", into.display());
    let mut all = vec!["--override-arch", "arm64", "copy"];
    all.extend_from_slice(args);
    all.push(&dest);
    tool("skopeo", &all)
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

/// Asserts that `out` succeeded and returns its stdout as JSON (a `--json` report).
pub fn json_of(out: &Output, what: &str) -> Value {
    assert_success(out, what);
    json(&String::from_utf8_lossy(&out.stdout))
}

/// How many layers the first manifest of a build report's target has.
pub fn layer_count(report: &Value) -> usize {
    report["manifests"][0]["layers"].as_array().unwrap().len()
}

/// `oci-build -C <project> --cache-dir <cache>`, with SOURCE_DATE_EPOCH unset, for projects
/// outside a [`Project`] (the repository itself, or one the live tests lay out).
pub fn oci_build_at(project: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(bin_path());
    cmd.arg("-C")
        .arg(project)
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

// Live tests: they build from the Debian archive the host's apt configuration names. Built
// with OCI_BUILD_OFFLINE set they carry `ignore` (see build.rs), so that a machine without the
// archive reports them as not run.

/// The cache the live tests share, across tests and runs: the Debian layers are large.
pub fn live_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-cache")
}

/// Fails a live test at once, saying why, when the host has no apt sources at all: without
/// them it could only fail later, less clearly, or be mistaken for a pass.
pub fn require_apt_sources() {
    let etc = Path::new("/etc/apt");
    let in_main = fs::read_to_string(etc.join("sources.list")).is_ok_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|l| !l.is_empty() && !l.starts_with('#'))
    });
    let in_dir = fs::read_dir(etc.join("sources.list.d")).is_ok_and(|dir| {
        dir.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".list") || name.ends_with(".sources")
        })
    });
    assert!(
        in_main || in_dir,
        "live test: the host has no apt sources (/etc/apt/sources.list, sources.list.d/); on a \
         machine without the Debian archive build the tests with OCI_BUILD_OFFLINE=1, which \
         marks the live tests ignored"
    );
}

/// [`require_apt_sources`], then a temp dir holding a [`layer_project`] at `<tmp>/project`.
pub fn live_project(layer: &str, recipe: &str) -> (TempDir, PathBuf) {
    require_apt_sources();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    layer_project(&dir, layer, recipe);
    (tmp, dir)
}

/// Lays out a project at `dir` with the repository's `layers/<layer>.toml` and `recipe` as
/// `recipes/app.toml`, so that the lock file a build writes stays out of the repository.
pub fn layer_project(dir: &Path, layer: &str, recipe: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = format!("layers/{layer}.toml");
    fs::create_dir_all(dir.join("layers")).unwrap();
    fs::create_dir_all(dir.join("recipes")).unwrap();
    fs::copy(repo.join(&file), dir.join(&file)).unwrap();
    fs::write(dir.join("recipes/app.toml"), recipe).unwrap();
}

/// The PATH of a Debian root.
pub const DEBIAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `script` with `/bin/sh` in a chroot of `rootfs` (needs root) with PATH `path` and a
/// clean environment; asserts success and returns its stdout.
pub fn chroot_with_path(rootfs: &Path, path: &str, script: &str) -> String {
    let out = Command::new("chroot")
        .arg(rootfs)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", path)
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    assert_success(&out, &format!("chroot: {script}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`chroot_with_path`] with Debian's PATH.
pub fn chroot(rootfs: &Path, script: &str) -> String {
    chroot_with_path(rootfs, DEBIAN_PATH, script)
}

// The MLRun family of this repository (recipes/ and layers/), as the family tests build it.

/// The repository's own project directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The variables that name and shape the family's images; a test sets the ones it means and
/// the host's never leak in.
pub const FAMILY_VARIABLES: [&str; 9] = [
    "MLRUN_VERSION",
    "MLRUN_DOCKER_REPO",
    "MLRUN_DOCKER_REGISTRY",
    "MLRUN_SOURCE_DIR",
    "MLRUN_DEMOS_DIR",
    "MLRUN_UI_DIR",
    "OCI_BUILD_VERSION",
    "OCI_BUILD_TARGET_DIR",
    "OCI_BUILD_PROFILE",
];

/// Copies what the mlrun recipe reads (recipes/ and layers/) into `dir`.
pub fn copy_project(dir: &Path) {
    for top in ["recipes", "layers"] {
        copy_tree(&repo().join(top), &dir.join(top));
    }
}

/// Copies the directory `from` to `to`, newest-named first, so that the copy's directories
/// are filled in another order than the original's.
pub fn copy_tree(from: &Path, to: &Path) {
    let mut entries: Vec<_> = walkdir::WalkDir::new(from)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    entries.sort_by(|a, b| b.path().cmp(a.path()));
    for entry in entries {
        let into = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&into).unwrap();
        } else {
            std::fs::create_dir_all(into.parent().unwrap()).unwrap();
            std::fs::copy(entry.path(), &into).unwrap();
        }
    }
}

/// `oci-build -C <repo> ARGS` with the MLRun variables set as given (others unset).
pub fn in_repo(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(bin_path());
    command.arg("-C").arg(repo()).args(args);
    // The image's times come from the lock's recipes alone, as in CI.
    command.env_remove("SOURCE_DATE_EPOCH");
    for name in FAMILY_VARIABLES {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// [`in_repo`] with the live cache, returning the `--json` report.
pub fn build_in_repo(args: &[&str], vars: &[(&str, &str)]) -> Value {
    let mut all = vec!["--cache-dir"];
    let cache = live_cache().display().to_string();
    all.push(&cache);
    all.extend_from_slice(args);
    let out = in_repo(&all, vars);
    json_of(&out, &format!("oci-build {}", args.join(" ")))
}

/// Builds the family's `mlrun` image from the committed lock (with the live cache) and pushes
/// it to `registry` as `<registry>/mlrun/mlrun:unstable`; the `--json` report.
pub fn push_mlrun_from_the_lock(registry: &crate::fixtures::registry::Registry) -> Value {
    let prefix = format!("{}/", registry.url());
    let insecure = registry.url();
    let report = build_in_repo(
        &[
            "--insecure-registry",
            &insecure,
            "build",
            "--json",
            "--locked",
            "--push",
            "mlrun",
        ],
        &[("MLRUN_DOCKER_REGISTRY", prefix.as_str())],
    );
    assert_eq!(
        report[0]["reference"].as_str(),
        Some(format!("{prefix}mlrun/mlrun:unstable").as_str())
    );
    report
}

/// A shell command printing, as JSON, `pip list` of each site directory of the image's Python
/// on its own, so that a distribution one directory shadows in another is listed too.
pub const PIP_LIST_EACH_SITE: &str = r#"python3 -c 'import json, subprocess, sys
listed = []
for path in sys.path:
    if path.endswith("-packages"):
        run = subprocess.run([sys.executable, "-m", "pip", "list", "--path", path, "--format=json"], capture_output=True, check=True)
        listed += json.loads(run.stdout)
print(json.dumps(listed))'"#;

/// `(name, version)` of each distribution [`PIP_LIST_EACH_SITE`] printed, as pip names them;
/// one per copy installed.
pub fn site_distributions(listed: &str) -> Vec<(String, String)> {
    json(listed)
        .as_array()
        .expect("pip list prints a JSON array")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A blocking HTTP client builder for talking to a started image. oci-build's rustls uses ring,
/// which reqwest takes as the process default: installed here as the binary does.
pub fn http_client() -> reqwest::blocking::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
}
