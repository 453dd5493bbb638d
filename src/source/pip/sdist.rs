//! Source distributions built into wheels on the build host, as pip and uv do: a PEP 517
//! build in an isolated environment made with the host's Python. The wheel is cached by the
//! sdist's SHA256, so a package is built once per sdist, and only its wheel enters the image.
//!
//! An sdist is code from outside, so its build can do little. Its build requirements are
//! checked as PEP 508 requirements and installed from wheels only, with network access; index
//! addresses reach pip through its environment, never its command line, where `ps` would show
//! their credentials. Then the backend's hooks run in a bubblewrap (`bwrap`) sandbox: no
//! network, no capabilities, the host read-only and only the build's own directory writable,
//! with a small fixed environment. Where bubblewrap cannot run, a warning says so once and the
//! hooks run unconfined.
//!
//! A built wheel is reproducible, since the lock pins its hash: the backend runs with the hash
//! seed, time, locale, time zone and umask fixed, in a directory the sandbox shows at one fixed
//! path (without a sandbox, a path named after the sdist), and its wheel is rewritten with its
//! entries in a fixed order, time and mode and its RECORD written anew.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;

use pep508_rs::{Requirement, VerbatimUrl, VersionOrUrl};

use super::index::Sources;
use crate::digest::Digest;
use crate::layer::cache::{Bucket, Cache};
#[derive(Debug, thiserror::Error)]
pub enum SdistError {
    #[error("cannot unpack source distribution {file}: {reason}")]
    Unpack { file: String, reason: String },
    #[error("cannot unpack source distribution {file}")]
    Zip {
        file: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("cannot unpack source distribution {file}")]
    Tar {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building {file} into a wheel failed ({step}): {output}")]
    Build {
        file: String,
        step: &'static str,
        output: String,
    },
    #[error("cannot run the host's Python `{python}` to build {file}")]
    Python {
        python: PathBuf,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file} asks for the build requirement `{requirement}`, which is not a package on an index ({message})"
    )]
    BuildRequirement {
        file: String,
        requirement: String,
        message: String,
    },
    #[error(
        "{file} would have to be built into a wheel, but an offline build builds nothing; fetch its inputs with `oci-build fetch`, which carries the built wheel"
    )]
    Offline { file: String },
    #[error("the wheel built from {file} is not a wheel that can be installed")]
    Wheel {
        file: String,
        #[source]
        source: Box<super::wheel::WheelError>,
    },
    #[error(transparent)]
    Local(Box<super::local::LocalError>),
    #[error("cannot read or write the files of an sdist build in the cache")]
    Io(#[from] std::io::Error),
}

/// The interpreter that builds sdists: `OCI_BUILD_PYTHON`, else `python3` on PATH.
pub(crate) fn host_python() -> PathBuf {
    std::env::var_os("OCI_BUILD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs the PEP 517 hooks of a backend; the backend comes from the unpacked tree's
/// pyproject.toml (or setuptools' legacy backend).
const HOOK_RUNNER: &str = r#"
import importlib, json, os, sys
os.umask(0o022)
tree, hook, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(tree)
backend_name, backend_path = "setuptools.build_meta:__legacy__", []
if os.path.exists("pyproject.toml"):
    try:
        import tomllib
    except ImportError:
        tomllib = None
    if tomllib is not None:
        with open("pyproject.toml", "rb") as f:
            system = tomllib.load(f).get("build-system", {})
        backend_name = system.get("build-backend", backend_name)
        backend_path = [os.path.join(tree, p) for p in system.get("backend-path", [])]
sys.path[:0] = backend_path
module, _, attribute = backend_name.partition(":")
backend = importlib.import_module(module)
for part in filter(None, attribute.split(".")):
    backend = getattr(backend, part)
if hook == "requires":
    hook_fn = getattr(backend, "get_requires_for_build_wheel", None)
    with open(out, "w") as f:
        json.dump(hook_fn({}) if hook_fn else [], f)
else:
    print(backend.build_wheel(out, {}))
"#;

/// What `pyproject.toml` asks to have installed before the backend can run.
const BUILD_REQUIRES: &str = r#"
import json, os, sys
os.umask(0o022)
requires = ["setuptools>=40.8.0"]
if os.path.exists(os.path.join(sys.argv[1], "pyproject.toml")):
    import tomllib
    with open(os.path.join(sys.argv[1], "pyproject.toml"), "rb") as f:
        system = tomllib.load(f).get("build-system")
    if system is not None:
        requires = system.get("requires", [])
print(json.dumps(requires))
"#;

/// What an sdist's backend is told the time is (`SOURCE_DATE_EPOCH`), and the time of every
/// entry of the wheel: 1980-01-01 00:00:00 UTC, the earliest a zip can hold. Not the build's own
/// epoch: the built wheel is cached and pinned in the lock by the sdist's hash alone, so nothing
/// of the build that asked for it may show in its bytes.
pub(crate) const BUILD_EPOCH: u64 = 315_532_800;

/// Where the sandbox shows the build directory to the backend: the same path for every user,
/// cache and host, since backends record where they built (paths in compiled extensions,
/// generated files).
const SANDBOX_WORK: &str = "/tmp/oci-build-sdist";

/// Builds the sdist at `sdist` (verified, `sha256`) into a wheel; returns the wheel's path.
///
/// The backend runs with what reproducible-builds practice fixes (see [`hook_command`]), and its
/// wheel is then rewritten by [`super::wheel::normalize_wheel`], so the same sdist gives the
/// same wheel bytes whoever builds it, wherever and whenever, as long as its build
/// requirements resolve to the same versions.
pub(crate) fn build_wheel(
    sdist: &Sdist<'_>,
    sources: &Sources,
    cache: &Cache,
    pinned_requires: &[String],
) -> Result<(PathBuf, Vec<String>), SdistError> {
    let Sdist {
        path: sdist,
        filename,
        sha256,
    } = *sdist;
    build_keyed(sha256, filename, sources, cache, pinned_requires, &|into| {
        unpack(sdist, filename, into)
    })
}

/// Builds the project directory `tree` (its content hash `tree_sha256`) into a wheel, from a
/// private copy of it with the tree's `write` files in it, cached by that hash; `shown` names
/// it in messages. Returns the wheel's path and the build requirements it was built with.
pub(crate) fn build_tree_wheel(
    tree: &super::local::LocalTree,
    tree_sha256: &Digest,
    shown: &str,
    sources: &Sources,
    cache: &Cache,
    pinned_requires: &[String],
) -> Result<(PathBuf, Vec<String>), SdistError> {
    build_keyed(
        tree_sha256,
        shown,
        sources,
        cache,
        pinned_requires,
        &|into| {
            // One fixed name, so that the wheel does not depend on what the user's directory is called.
            let copy = into.join("project");
            tree.copy_to(&copy, tree_sha256)
                .map_err(|e| SdistError::Local(Box::new(e)))?;
            Ok(copy)
        },
    )
}

/// Makes the build tree under the directory it is given and returns the tree's top.
type MakeTree<'a> = dyn Fn(&Path) -> Result<PathBuf, SdistError> + 'a;

/// Builds into a wheel what `make_tree` lays out, cached under `key` (an sdist's SHA256, or a
/// project directory's content hash); `filename` names it in messages.
fn build_keyed(
    sha256: &Digest,
    filename: &str,
    sources: &Sources,
    cache: &Cache,
    pinned_requires: &[String],
    make_tree: &MakeTree<'_>,
) -> Result<(PathBuf, Vec<String>), SdistError> {
    let bucket = cache.bucket(Bucket::PipBuilt);
    let done = bucket.join(sha256.hex());
    let built = |wheel: PathBuf| -> Result<(PathBuf, Vec<String>), SdistError> {
        let requires = read_build_requires(&done)?;
        Ok((wheel, requires))
    };
    if let Some(wheel) = find_wheel(&done) {
        return built(wheel);
    }
    if sources.offline {
        return Err(SdistError::Offline {
            file: filename.to_owned(),
        });
    }
    // Named after the sdist rather than random, so that where there is no sandbox the backend
    // still builds in the same place each time; locked, so one build of an sdist runs at a time.
    let work = bucket.join(format!("{}.build", sha256.hex()));
    std::fs::create_dir_all(&work)?;
    let _lock = crate::fsutil::DirLock::acquire(&work)?;
    if let Some(wheel) = find_wheel(&done) {
        return built(wheel); // another build of the same sdist finished while this one waited
    }
    clear_dir(&work)?; // what a killed build left
    let wheel = build_in(&work, make_tree, filename, sources, pinned_requires)?;
    // The directory is removed only after a success: a build waiting for the lock then finds
    // the wheel and does not need the directory.
    if std::fs::rename(wheel.parent().expect("a wheel in a directory"), &done).is_err()
        && find_wheel(&done).is_none()
    {
        return Err(SdistError::Build {
            file: filename.to_owned(),
            step: "storing the wheel",
            output: format!("cannot move the wheel to {}", done.display()),
        });
    }
    let _ = std::fs::remove_dir_all(&work);
    let wheel = find_wheel(&done).ok_or_else(|| SdistError::Build {
        file: filename.to_owned(),
        step: "storing the wheel",
        output: format!("no wheel in {}", done.display()),
    })?;
    built(wheel)
}

/// An sdist to build: its file, its name on the index and its SHA256.
pub(crate) struct Sdist<'a> {
    pub(crate) path: &'a Path,
    pub(crate) filename: &'a str,
    pub(crate) sha256: &'a Digest,
}

/// Beside each built wheel: the build requirements it was built with, one `name==version` a
/// line (none for a wheel built before they were recorded).
const BUILD_REQUIRES_FILE: &str = "build-requires.txt";

fn read_build_requires(done: &Path) -> Result<Vec<String>, SdistError> {
    match std::fs::read_to_string(done.join(BUILD_REQUIRES_FILE)) {
        Ok(text) => Ok(text
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// `pip list --format=freeze` of a build environment, as the lock pins it: sorted, without pip
/// itself (the host's venv brings it; it builds nothing).
fn frozen_requirements(freeze: &str) -> Vec<String> {
    let mut pins: Vec<String> = freeze
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("==") && !line.to_ascii_lowercase().starts_with("pip=="))
        .map(str::to_owned)
        .collect();
    pins.sort();
    pins
}

/// Removes everything in `dir`, but not `dir`, which other builds may be waiting to lock.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Builds the sdist in the empty directory `work`; returns the normalised wheel, alone in its
/// directory.
fn build_in(
    work: &Path,
    make_tree: &MakeTree<'_>,
    filename: &str,
    sources: &Sources,
    pinned_requires: &[String],
) -> Result<PathBuf, SdistError> {
    std::fs::create_dir_all(work.join("src"))?;
    let tree = make_tree(&work.join("src"))?;
    for dir in ["home", "tmp", "out", "wheel", "scratch"] {
        std::fs::create_dir(work.join(dir))?;
    }
    let python = host_python();
    let env_dir = work.join("env");
    let run = |step: &'static str, command: &mut Command| -> Result<String, SdistError> {
        command.env("SOURCE_DATE_EPOCH", BUILD_EPOCH.to_string());
        command.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        // The host's would change which build requirements are installed, or hide a
        // setuptools from the uninstall step that the backend (run without them) cannot see.
        for name in ["PIP_CONSTRAINT", "PYTHONPATH", "PYTHONHOME"] {
            command.env_remove(name);
        }
        command.stdin(Stdio::null());
        let output = command.output().map_err(|source| SdistError::Python {
            python: python.clone(),
            file: filename.to_owned(),
            source,
        })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            if text.trim().is_empty() {
                text = String::from_utf8_lossy(&output.stdout).into_owned();
            }
            return Err(SdistError::Build {
                file: filename.to_owned(),
                step,
                output: output_tail(&text),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(
        "creating the build environment",
        Command::new(&python).arg("-m").arg("venv").arg(&env_dir),
    )?;
    let env_python = env_dir.join("bin/python");
    let constraints = work.join("build-constraints.txt");
    std::fs::write(&constraints, pinned_requires.join("\n"))?;
    // Some Pythons' venv brings its own setuptools (3.11's bundles one, Debian's another
    // version than pyenv's), which would satisfy `setuptools>=40.8.0` and decide the wheel's
    // bytes by which Python the build machine has: build requirements come from the layer's
    // sources only.
    run(
        "emptying the build environment",
        Command::new(&env_python).args([
            "-m",
            "pip",
            "uninstall",
            "--yes",
            "--quiet",
            "setuptools",
            "wheel",
        ]),
    )?;
    let install = |step: &'static str, requirements: &[String]| -> Result<(), SdistError> {
        if requirements.is_empty() {
            return Ok(());
        }
        let requirements = build_requirements(requirements, filename)?;
        // What the lock pins is what gets installed, whatever the index holds today.
        let pinned = (!pinned_requires.is_empty()).then_some(constraints.as_path());
        run(
            step,
            &mut pip_install_command(&env_python, sources, &requirements, pinned),
        )
        .map(|_| ())
    };
    let sandbox = sandbox();
    // The paths the backend sees: in the sandbox the build directory is at SANDBOX_WORK.
    let seen = |path: &Path| -> OsString {
        match (sandbox, path.strip_prefix(work)) {
            (Some(_), Ok(inner)) => Path::new(SANDBOX_WORK).join(inner).into(),
            _ => path.into(),
        }
    };
    let hook = |script: &str, args: &[OsString]| {
        let mut command = hook_command(sandbox, work, &seen, &env_dir, &tree);
        command.arg("-c").arg(script).args(args);
        command
    };
    let requires = run(
        "reading build-system.requires",
        &mut hook(BUILD_REQUIRES, &[seen(&tree)]),
    )?;
    install(
        "installing build-system.requires",
        &string_list(
            requires.trim().as_bytes(),
            filename,
            "build-system.requires",
        )?,
    )?;
    let extra_file = work.join("requires.json");
    run(
        "get_requires_for_build_wheel",
        &mut hook(
            HOOK_RUNNER,
            &[seen(&tree), "requires".into(), seen(&extra_file)],
        ),
    )?;
    let extra = std::fs::read(&extra_file)?;
    install(
        "installing get_requires_for_build_wheel",
        &string_list(&extra, filename, "get_requires_for_build_wheel")?,
    )?;
    let out = work.join("out");
    run(
        "build_wheel",
        &mut hook(HOOK_RUNNER, &[seen(&tree), "wheel".into(), seen(&out)]),
    )?;
    let Some(built) = find_wheel(&out) else {
        return Err(SdistError::Build {
            file: filename.to_owned(),
            step: "build_wheel",
            output: "the backend wrote no wheel".to_owned(),
        });
    };
    let name = built
        .file_name()
        .expect("a file found in a directory")
        .to_string_lossy()
        .into_owned();
    let freeze = run(
        "listing the build requirements",
        Command::new(&env_python).args(["-m", "pip", "list", "--format=freeze"]),
    )?;
    let mut requires = frozen_requirements(&freeze).join("\n");
    requires.push('\n');
    std::fs::write(work.join("wheel").join(BUILD_REQUIRES_FILE), requires)?;
    let normal = work.join("wheel").join(&name);
    super::wheel::normalize_wheel(&built, &name, &normal, &work.join("scratch")).map_err(
        |source| SdistError::Wheel {
            file: filename.to_owned(),
            source: Box::new(source),
        },
    )?;
    Ok(normal)
}

/// The last lines of a failed step's output on one line, without control characters: the
/// text comes from the sdist's own code and ends up on the user's terminal.
fn output_tail(text: &str) -> String {
    let lines: Vec<String> = text
        .trim()
        .lines()
        .rev()
        .take(6)
        .map(|line| {
            line.chars()
                .take(400)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        })
        .collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// A JSON list of strings that the sdist's pyproject.toml or backend gave.
fn string_list(json: &[u8], file: &str, what: &str) -> Result<Vec<String>, SdistError> {
    serde_json::from_slice(json).map_err(|e| SdistError::Build {
        file: file.to_owned(),
        step: "reading the build requirements",
        output: format!("{what} is not a list of strings: {e}"),
    })
}

/// Build requirements as pip gets them: each one a PEP 508 requirement on a named package,
/// written back in its normal form, so that none can be read as an option, a URL or a path.
fn build_requirements(requirements: &[String], file: &str) -> Result<Vec<String>, SdistError> {
    requirements
        .iter()
        .map(|line| {
            let refuse = |message: String| SdistError::BuildRequirement {
                file: file.to_owned(),
                requirement: line.escape_default().to_string(),
                message,
            };
            let requirement = Requirement::<VerbatimUrl>::from_str(line.trim())
                .map_err(|e| refuse(e.message.to_string()))?;
            if matches!(requirement.version_or_url, Some(VersionOrUrl::Url(_))) {
                return Err(refuse("it installs from a URL or path".to_owned()));
            }
            Ok(requirement.to_string())
        })
        .collect()
}

/// `python -m pip install` of build requirements. Index addresses may hold credentials, so they
/// go through pip's environment (readable only by the user), not its command line. Wheels
/// only: pip would build an sdist among them outside the sandbox.
/// `constraints`, where given, is a file of the versions to install (a lock's pins).
fn pip_install_command(
    python: &Path,
    sources: &Sources,
    requirements: &[String],
    constraints: Option<&Path>,
) -> Command {
    let mut command = Command::new(python);
    command.args(["-m", "pip", "install", "--quiet"]);
    // The host's own settings of these would add to, or undo, the layer's sources.
    for name in [
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_NO_INDEX",
        "PIP_FIND_LINKS",
        "PIP_NO_BINARY",
    ] {
        command.env_remove(name);
    }
    command.env("PIP_ONLY_BINARY", ":all:");
    match sources.index_urls.split_first() {
        Some((primary, extra)) => {
            command.env("PIP_INDEX_URL", primary);
            if !extra.is_empty() {
                command.env("PIP_EXTRA_INDEX_URL", extra.join(" "));
            }
        }
        None => {
            command.env("PIP_NO_INDEX", "1");
        }
    }
    // pip splits PIP_FIND_LINKS at whitespace, which a local directory may hold; a directory
    // holds no credentials, so it stays an argument.
    let (urls, dirs): (Vec<&String>, Vec<&String>) = sources
        .find_links
        .iter()
        .partition(|location| location.contains("://"));
    if !urls.is_empty() {
        let urls: Vec<&str> = urls.into_iter().map(String::as_str).collect();
        command.env("PIP_FIND_LINKS", urls.join(" "));
    }
    for dir in dirs {
        command.arg("--find-links").arg(dir);
    }
    if let Some(constraints) = constraints {
        command.arg("--constraint").arg(constraints);
    }
    command.arg("--").args(requirements);
    command
}

/// Where `bwrap` is, if it can make a sandbox on this host; probed once per run.
fn sandbox() -> Option<&'static Path> {
    static BWRAP: OnceLock<Option<PathBuf>> = OnceLock::new();
    BWRAP
        .get_or_init(|| {
            let found = std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("bwrap"))
                        .find(|p| p.is_file())
                })
                .unwrap_or_default()
                .filter(|bwrap| {
                    tempfile::tempdir().is_ok_and(|dir| {
                        Command::new(bwrap)
                            .args(bwrap_args(dir.path(), Path::new(SANDBOX_WORK)))
                            .arg("true")
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|status| status.success())
                    })
                });
            if found.is_none() {
                tracing::warn!(
                    "bubblewrap (`bwrap`) cannot make a sandbox here, so source distributions' build backends run unconfined, with network access and write access to the host; install bubblewrap (Debian package `bubblewrap`) where user namespaces are allowed"
                );
            }
            found
        })
        .as_deref()
}

/// No network, no capabilities (root in the sandbox could remount `/` writable otherwise), no
/// view of the host's processes, the host read-only and `work` writable, both where it is and at
/// [`SANDBOX_WORK`] (over a private `/tmp`), where the backend runs in `chdir`.
fn bwrap_args(work: &Path, chdir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    // At its own path too: the build environment's scripts name it in their `#!` lines.
    args.extend([
        "--bind".into(),
        work.into(),
        work.into(),
        "--bind".into(),
        work.into(),
        SANDBOX_WORK.into(),
        "--chdir".into(),
        chdir.into(),
    ]);
    args
}

/// The backend's Python, in the sandbox where there is one, with a small fixed environment:
/// nothing of the user's reaches the backend, and its builds do not vary with it. What
/// reproducible-builds practice fixes is fixed here: the hash seed (setuptools orders some
/// metadata by set iteration), the time (`SOURCE_DATE_EPOCH`), the locale and time zone, and the
/// build directory's path; the scripts set the umask. `seen` maps a path under `work` to where
/// the backend sees it.
fn hook_command(
    sandbox: Option<&Path>,
    work: &Path,
    seen: &dyn Fn(&Path) -> OsString,
    env_dir: &Path,
    tree: &Path,
) -> Command {
    let python = seen(&env_dir.join("bin/python"));
    let mut command = match sandbox {
        Some(bwrap) => {
            let mut command = Command::new(bwrap);
            command
                .args(bwrap_args(work, Path::new(&seen(tree))))
                .arg("--")
                .arg(python);
            command
        }
        None => Command::new(python),
    };
    let mut path = seen(&env_dir.join("bin"));
    path.push(":/usr/local/bin:/usr/bin:/bin");
    command
        .current_dir(tree)
        .env_clear()
        .env("PATH", path)
        .env("HOME", seen(&work.join("home")))
        .env("TMPDIR", seen(&work.join("tmp")))
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SOURCE_DATE_EPOCH", BUILD_EPOCH.to_string());
    command
}

/// The wheel built from the sdist whose SHA256 is `sdist_sha256`, if the cache has one.
pub(crate) fn built_wheel(cache: &Cache, sdist_sha256: &Digest) -> Option<PathBuf> {
    find_wheel(&cache.bucket(Bucket::PipBuilt).join(sdist_sha256.hex()))
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    wheels.into_iter().next()
}

/// Unpacks a .tar.gz or .zip sdist and returns its top directory.
fn unpack(sdist: &Path, filename: &str, into: &Path) -> Result<PathBuf, SdistError> {
    let fail = |reason: String| SdistError::Unpack {
        file: filename.to_owned(),
        reason,
    };
    let zip_err = |source| SdistError::Zip {
        file: filename.to_owned(),
        source,
    };
    let tar_err = |source| SdistError::Tar {
        file: filename.to_owned(),
        source,
    };
    std::fs::create_dir_all(into)?;
    let file = std::fs::File::open(sdist)?;
    if filename.ends_with(".zip") {
        let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(zip_err)?;
            let Some(relative) = entry.enclosed_name() else {
                return Err(fail(format!(
                    "entry `{}` escapes the archive",
                    entry.name_raw().escape_ascii()
                )));
            };
            let path = into.join(relative);
            if entry.is_dir() {
                std::fs::create_dir_all(&path)?;
            } else {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut out = std::fs::File::create(&path)?;
                std::io::copy(&mut entry, &mut out)?;
            }
        }
    } else {
        let decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        let mut archive = tar::Archive::new(decoder);
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            let kind = entry.header().entry_type();
            if !(kind.is_file()
                || kind.is_dir()
                || kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions())
            {
                continue; // links and devices have no place in a build tree
            }
            // unpack_in refuses paths that leave `into`.
            if !entry.unpack_in(into).map_err(tar_err)? {
                return Err(fail("an entry escapes the archive".to_owned()));
            }
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(into)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(fail(
            "it does not hold exactly one top-level directory".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_requirements_are_pinned_as_pip_froze_them_without_pip() {
        let freeze = "wheel==0.45.1\npip==23.2.1\nsetuptools==80.9.0\n\n";
        assert_eq!(
            frozen_requirements(freeze),
            ["setuptools==80.9.0", "wheel==0.45.1"]
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(read_build_requires(dir.path()).unwrap().is_empty());
        std::fs::write(
            dir.path().join(BUILD_REQUIRES_FILE),
            "setuptools==80.9.0\nwheel==0.45.1\n",
        )
        .unwrap();
        assert_eq!(
            read_build_requires(dir.path()).unwrap(),
            ["setuptools==80.9.0", "wheel==0.45.1"]
        );
    }

    #[test]
    fn pip_gets_index_addresses_through_its_environment_only() {
        let sources = Sources {
            index_urls: vec![
                "https://user:secret1@index.invalid/simple".to_owned(),
                "https://user:secret2@mirror.invalid/simple".to_owned(),
                "https://token@third.invalid/simple".to_owned(),
            ],
            find_links: vec![
                "https://user:secret3@links.invalid/wheels/".to_owned(),
                "/srv/a wheel dir".to_owned(),
            ],
            offline: false,
        };
        let command = pip_install_command(
            Path::new("/env/bin/python"),
            &sources,
            &["setuptools>=40".to_owned()],
            None,
        );
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for arg in &args {
            assert!(
                !arg.contains("://") && !arg.contains("secret") && !arg.contains("token"),
                "an index address is on pip's command line: {args:?}"
            );
        }
        assert_eq!(
            args,
            [
                "-m",
                "pip",
                "install",
                "--quiet",
                "--find-links",
                "/srv/a wheel dir",
                "--",
                "setuptools>=40"
            ]
        );
        let env = |name: &str| {
            command
                .get_envs()
                .find(|(key, _)| *key == name)
                .and_then(|(_, value)| value)
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(
            env("PIP_INDEX_URL").as_deref(),
            Some(&*sources.index_urls[0])
        );
        assert_eq!(
            env("PIP_EXTRA_INDEX_URL").as_deref(),
            Some("https://user:secret2@mirror.invalid/simple https://token@third.invalid/simple")
        );
        assert_eq!(
            env("PIP_FIND_LINKS").as_deref(),
            Some(&*sources.find_links[0])
        );
        assert_eq!(env("PIP_ONLY_BINARY").as_deref(), Some(":all:"));
        // No index configured: the host's PIP_INDEX_URL is removed, not inherited.
        let none = pip_install_command(Path::new("python"), &Sources::default(), &[], None);
        assert!(
            none.get_envs()
                .any(|(key, value)| key == "PIP_INDEX_URL" && value.is_none())
        );
    }

    #[test]
    fn build_requirements_are_named_packages_only() {
        let ok = build_requirements(&["Setuptools >= 40".to_owned()], "x-1.tar.gz").unwrap();
        assert_eq!(ok, ["setuptools>=40"]);
        for hostile in [
            "--index-url=http://127.0.0.1:1/simple",
            "-e /",
            "pkg @ file:///etc",
            "pkg @ https://example.invalid/pkg.whl",
        ] {
            let err = build_requirements(&[hostile.to_owned()], "x-1.tar.gz").unwrap_err();
            assert!(
                matches!(err, SdistError::BuildRequirement { .. })
                    && err.to_string().starts_with("x-1.tar.gz asks for"),
                "{hostile}: {err}"
            );
        }
    }

    #[test]
    fn output_tails_are_one_line_without_control_characters() {
        let tail = output_tail("a\nb\x1b[2Jc\n\n");
        assert_eq!(tail, "a | b [2Jc");
    }
}
