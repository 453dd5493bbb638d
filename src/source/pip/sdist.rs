//! Source distributions built into wheels on the build host, as pip and uv do: a PEP 517
//! build in an isolated environment made with the host's Python. The wheel is cached by the
//! sdist's SHA256, so a package is built once per sdist, and only its wheel enters the image.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::index::Sources;
use crate::digest::Digest;
use crate::layer::cache::Cache;

#[derive(Debug, thiserror::Error)]
pub enum SdistError {
    #[error("cannot unpack source distribution {file}: {message}")]
    Unpack { file: String, message: String },
    #[error("building {file} into a wheel failed ({step}): {output}")]
    Build {
        file: String,
        step: &'static str,
        output: String,
    },
    #[error("cannot run the host's Python `{python}` to build {file}: {source}")]
    Python {
        python: PathBuf,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file} would have to be built into a wheel, but an offline build builds nothing; fetch its inputs with `oci-build fetch`, which carries the built wheel"
    )]
    Offline { file: String },
    #[error("cache: {0}")]
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
    let done = cache.root().join("pip-built-v1").join(sha256.hex());
    if let Some(wheel) = find_wheel(&done) {
        return Ok(wheel);
    }
    if sources.offline {
        return Err(SdistError::Offline {
            file: filename.to_owned(),
        });
    }
    std::fs::create_dir_all(cache.root().join("pip-built-v1"))?;
    let work = tempfile::tempdir_in(cache.root().join("pip-built-v1"))?;
    let tree = unpack(sdist, filename, &work.path().join("src"))?;
    let python = host_python();
    let env_dir = work.path().join("env");
    let run = |step: &'static str, command: &mut Command| -> Result<String, SdistError> {
        command.env("SOURCE_DATE_EPOCH", source_date_epoch.to_string());
        command.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
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
            let tail: Vec<&str> = text.trim().lines().rev().take(6).collect();
            return Err(SdistError::Build {
                file: filename.to_owned(),
                step,
                output: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
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
        let mut command = Command::new(&env_python);
        command.args(["-m", "pip", "install", "--quiet"]);
        match sources.index_urls.split_first() {
            Some((primary, extra)) => {
                command.arg("--index-url").arg(primary);
                for url in extra {
                    command.arg("--extra-index-url").arg(url);
                }
            }
            None => {
                command.arg("--no-index");
            }
        }
        for location in &sources.find_links {
            command.arg("--find-links").arg(location);
        }
        command.args(requirements);
        run(step, &mut command).map(|_| ())
    };
    let requires = run(
        "reading build-system.requires",
        Command::new(&env_python)
            .arg("-c")
            .arg(BUILD_REQUIRES)
            .arg(&tree),
    )?;
    let requires: Vec<String> = serde_json::from_str(requires.trim()).unwrap_or_default();
    install("installing build-system.requires", &requires)?;
    let extra_file = work.path().join("requires.json");
    run(
        "get_requires_for_build_wheel",
        Command::new(&env_python)
            .arg("-c")
            .arg(HOOK_RUNNER)
            .arg(&tree)
            .arg("requires")
            .arg(&extra_file),
    )?;
    let extra: Vec<String> = std::fs::read(&extra_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    install("installing get_requires_for_build_wheel", &extra)?;
    let out = work.path().join("out");
    std::fs::create_dir_all(&out)?;
    run(
        "build_wheel",
        Command::new(&env_python)
            .arg("-c")
            .arg(HOOK_RUNNER)
            .arg(&tree)
            .arg("wheel")
            .arg(&out),
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
    Ok(find_wheel(&done).expect("the wheel was just stored"))
}

/// The wheel built from the sdist whose SHA256 is `sdist_sha256`, if the cache has one.
pub fn built_wheel(cache: &Cache, sdist_sha256: &Digest) -> Option<PathBuf> {
    find_wheel(&cache.root().join("pip-built-v1").join(sdist_sha256.hex()))
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
    let fail = |message: String| SdistError::Unpack {
        file: filename.to_owned(),
        message,
    };
    std::fs::create_dir_all(into)?;
    let file = std::fs::File::open(sdist)?;
    if filename.ends_with(".zip") {
        let mut archive = zip::ZipArchive::new(file).map_err(|e| fail(e.to_string()))?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|e| fail(e.to_string()))?;
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
        for entry in archive.entries().map_err(|e| fail(e.to_string()))? {
            let mut entry = entry.map_err(|e| fail(e.to_string()))?;
            let kind = entry.header().entry_type();
            if !(kind.is_file()
                || kind.is_dir()
                || kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions())
            {
                continue; // links and devices have no place in a build tree
            }
            // unpack_in refuses paths that leave `into`.
            if !entry.unpack_in(into).map_err(|e| fail(e.to_string()))? {
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
