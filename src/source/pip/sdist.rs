//! Source distributions built into wheels on the build host, as pip and uv do: a PEP 517
//! build in an isolated environment made with the host's Python. The wheel is cached by the
//! sdist's SHA256, so a package is built once per sdist, and only its wheel enters the image.
//!
//! An sdist is code from outside, so its build can do little. Its build requirements are
//! checked as PEP 508 requirements and installed from wheels only, with network access; index
//! addresses reach pip through its environment, never its command line, where `ps` would show
//! their credentials. Then the backend's hooks run in a bubblewrap (`bwrap`) sandbox: no
//! network, no capabilities, the host read-only and only the build's own temporary directory
//! writable, with a small fixed environment. Where bubblewrap cannot run, a warning says so
//! once and the hooks run unconfined.

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
    #[error("cannot read or write the files of an sdist build in the cache")]
    Io(#[from] std::io::Error),
}

/// The interpreter that builds sdists: `OCI_BUILD_PYTHON`, else `python3` on PATH.
pub fn host_python() -> PathBuf {
    std::env::var_os("OCI_BUILD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs the PEP 517 hooks of a backend; the backend comes from the unpacked tree's
/// pyproject.toml (or setuptools' legacy backend).
const HOOK_RUNNER: &str = r#"
import importlib, json, os, sys
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
requires = ["setuptools>=40.8.0"]
if os.path.exists(os.path.join(sys.argv[1], "pyproject.toml")):
    import tomllib
    with open(os.path.join(sys.argv[1], "pyproject.toml"), "rb") as f:
        system = tomllib.load(f).get("build-system")
    if system is not None:
        requires = system.get("requires", [])
print(json.dumps(requires))
"#;

/// Builds the sdist at `sdist` (verified, `sha256`) into a wheel; returns the wheel's path.
pub fn build_wheel(
    sdist: &Path,
    filename: &str,
    sha256: &Digest,
    sources: &Sources,
    cache: &Cache,
    source_date_epoch: u64,
) -> Result<PathBuf, SdistError> {
    let done = cache.bucket(Bucket::PipBuilt).join(sha256.hex());
    if let Some(wheel) = find_wheel(&done) {
        return Ok(wheel);
    }
    if sources.offline {
        return Err(SdistError::Offline {
            file: filename.to_owned(),
        });
    }
    std::fs::create_dir_all(cache.bucket(Bucket::PipBuilt))?;
    let work = tempfile::tempdir_in(cache.bucket(Bucket::PipBuilt))?;
    let tree = unpack(sdist, filename, &work.path().join("src"))?;
    for dir in ["home", "tmp"] {
        std::fs::create_dir(work.path().join(dir))?;
    }
    let python = host_python();
    let env_dir = work.path().join("env");
    let run = |step: &'static str, command: &mut Command| -> Result<String, SdistError> {
        command.env("SOURCE_DATE_EPOCH", source_date_epoch.to_string());
        command.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
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
    let install = |step: &'static str, requirements: &[String]| -> Result<(), SdistError> {
        if requirements.is_empty() {
            return Ok(());
        }
        let requirements = build_requirements(requirements, filename)?;
        run(
            step,
            &mut pip_install_command(&env_python, sources, &requirements),
        )
        .map(|_| ())
    };
    let sandbox = sandbox();
    let hook = |args: &[OsString]| {
        hook_command(
            sandbox,
            work.path(),
            &env_dir,
            &tree,
            source_date_epoch,
            args,
        )
    };
    let requires = run(
        "reading build-system.requires",
        &mut hook(&["-c".into(), BUILD_REQUIRES.into(), tree.clone().into()]),
    )?;
    install(
        "installing build-system.requires",
        &string_list(
            requires.trim().as_bytes(),
            filename,
            "build-system.requires",
        )?,
    )?;
    let extra_file = work.path().join("requires.json");
    run(
        "get_requires_for_build_wheel",
        &mut hook(&[
            "-c".into(),
            HOOK_RUNNER.into(),
            tree.clone().into(),
            "requires".into(),
            extra_file.clone().into(),
        ]),
    )?;
    let extra = std::fs::read(&extra_file)?;
    install(
        "installing get_requires_for_build_wheel",
        &string_list(&extra, filename, "get_requires_for_build_wheel")?,
    )?;
    let out = work.path().join("out");
    std::fs::create_dir_all(&out)?;
    run(
        "build_wheel",
        &mut hook(&[
            "-c".into(),
            HOOK_RUNNER.into(),
            tree.clone().into(),
            "wheel".into(),
            out.clone().into(),
        ]),
    )?;
    if find_wheel(&out).is_none() {
        return Err(SdistError::Build {
            file: filename.to_owned(),
            step: "build_wheel",
            output: "the backend wrote no wheel".to_owned(),
        });
    }
    if std::fs::rename(&out, &done).is_err() && find_wheel(&done).is_none() {
        return Err(SdistError::Build {
            file: filename.to_owned(),
            step: "storing the wheel",
            output: format!("cannot move the wheel to {}", done.display()),
        });
    }
    find_wheel(&done).ok_or_else(|| SdistError::Build {
        file: filename.to_owned(),
        step: "storing the wheel",
        output: format!("no wheel in {}", done.display()),
    })
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
fn pip_install_command(python: &Path, sources: &Sources, requirements: &[String]) -> Command {
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
                            .args(bwrap_args(dir.path(), dir.path()))
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
/// view of the host's processes, the host read-only and `writable` writable.
fn bwrap_args(writable: &Path, chdir: &Path) -> Vec<OsString> {
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
        "--bind",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.extend([
        writable.into(),
        writable.into(),
        "--chdir".into(),
        chdir.into(),
    ]);
    args
}

/// The backend's Python with `args`, in the sandbox where there is one, with a small fixed
/// environment: nothing of the user's reaches the backend, and its builds do not vary with it.
fn hook_command(
    sandbox: Option<&Path>,
    work: &Path,
    env_dir: &Path,
    tree: &Path,
    source_date_epoch: u64,
    args: &[OsString],
) -> Command {
    let python = env_dir.join("bin/python");
    let mut command = match sandbox {
        Some(bwrap) => {
            let mut command = Command::new(bwrap);
            command.args(bwrap_args(work, tree)).arg("--").arg(python);
            command
        }
        None => Command::new(python),
    };
    let mut path = OsString::from(env_dir.join("bin"));
    path.push(":/usr/local/bin:/usr/bin:/bin");
    command
        .args(args)
        .current_dir(tree)
        .env_clear()
        .env("PATH", path)
        .env("HOME", work.join("home"))
        .env("TMPDIR", work.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string());
    command
}

/// The wheel built from the sdist whose SHA256 is `sdist_sha256`, if the cache has one.
pub fn built_wheel(cache: &Cache, sdist_sha256: &Digest) -> Option<PathBuf> {
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
        let none = pip_install_command(Path::new("python"), &Sources::default(), &[]);
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
