//! The `conda` layer source: conda packages solved, locked and installed into a prefix of the
//! image, the way conda itself would leave them, without conda.
//!
//! Pipeline: channels (recipe URLs, or names through the configured channel alias,
//! [`channel`]) → `repodata.json(.zst)` of the image's subdir and `noarch` → solve with
//! rattler's resolvo backend ([`solve`]) → packages downloaded into the cache and checked
//! against their SHA256 → extracted once per package ([`archive`]) → placed into the prefix
//! with prefix replacement, noarch python relocation and `conda-meta` records ([`install`]).
//!
//! A lock pins name, version, build, subdir, channel-relative file name and SHA256; a build
//! from the lock reads no repodata.

#[cfg(feature = "conda")]
pub(crate) mod archive;
pub(crate) mod channel;
pub(crate) mod install;
pub(crate) mod kind;
#[cfg(feature = "conda")]
pub(crate) mod solve;

pub(crate) use kind::Conda;

use std::path::PathBuf;

use crate::digest::Digest;

use serde::{Deserialize, Serialize};

use crate::layer::LayerTree;
use crate::layer::cache::Cache;
use crate::name::{FileName, NameFault};

/// `conda = { … }` in a `[[layer]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CondaSpec {
    /// Channel URLs (`https://…`, `file:///…`) or names resolved through the configured
    /// channel alias (`conda-forge`). Empty: the `channels` of the host's `.condarc`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Match specs, as conda takes them: `python=3.11`, `openmpi=4.1.5`, `numpy >=1.26`.
    pub specs: Vec<String>,
    /// Where the environment lives in the image.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "/opt/conda".to_owned()
}

/// A package as the lock file pins it: enough to fetch, verify and install it with no
/// repodata. Where it is fetched from comes from configuration (the channel's URL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedConda {
    pub name: String,
    pub version: String,
    pub build: String,
    pub subdir: String,
    /// The layer's channel that serves it, as the recipe (or .condarc) names it: a name
    /// (resolved through configuration when fetching) or the recipe's own URL.
    pub channel: String,
    /// The package file, relative to `<channel>/<subdir>/`.
    pub filename: String,
    /// Only when the repodata put the file somewhere else than next to it (`base_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(with = "crate::digest::bare_hex")]
    pub sha256: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    #[error(
        "this oci-build was built without the `conda` feature; rebuild it with `--features conda` to build conda layers"
    )]
    NotBuiltIn,
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    #[error("conda spec `{spec}` cannot be read")]
    BadSpec {
        spec: String,
        #[source]
        source: rattler_conda_types::ParseMatchSpecError,
    },
    #[error("conda spec `{spec}` cannot be read")]
    BadVersion {
        spec: String,
        #[source]
        source: rattler_conda_types::ParseVersionError,
    },
    #[error("conda specs {specs} cannot be satisfied: {conflict}")]
    Unsatisfiable { specs: String, conflict: String },
    #[error("solving conda specs {specs} failed")]
    Solve {
        specs: String,
        #[source]
        source: rattler_solve::SolveError,
    },
    #[error("conda package {package} (from {url}) cannot be read: {reason}")]
    Archive {
        package: String,
        url: String,
        reason: String,
    },
    #[error("conda package {package} (from {url}) cannot be read")]
    ArchiveRead {
        package: String,
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "conda package {package} has an entry {entry:?} that escapes its prefix; the package is damaged or malicious"
    )]
    Escapes { package: String, entry: String },
    #[error(
        "conda package {package} from {channel} has no SHA256 in its repodata, so it cannot be verified"
    )]
    NoSha256 { package: String, channel: String },
    #[error(
        "conda package {package} has {what} {name:?}, which {fault}; the package is damaged or malicious"
    )]
    BadName {
        package: String,
        what: &'static str,
        name: String,
        fault: NameFault,
    },
    #[error(
        "conda package {package}: its {what} {value:?} {problem}; the repodata or lock file that lists it is damaged or malicious"
    )]
    BadRecord {
        package: String,
        what: &'static str,
        value: String,
        problem: String,
    },
    #[error(
        "conda package {package} at `{path}` changed in the cache since it was verified (delete it to fetch it again)"
    )]
    Changed {
        package: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching conda package {package} stopped with an internal error; please report it")]
    Worker { package: String },
    #[error(transparent)]
    Install(#[from] install::InstallError),
    #[error("cannot store conda package {package} in the cache")]
    Cache {
        package: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "image platform {0} has no conda subdir (supported: linux/amd64, linux/arm64, linux/ppc64le, linux/s390x)"
    )]
    Platform(String),
}

/// Conda's subdir of an OCI platform: `linux/amd64` is `linux-64`, `linux/arm64` is
/// `linux-aarch64`.
pub(crate) fn conda_subdir(os: &str, arch: &str) -> Result<String, CondaError> {
    let subdir = match (os, arch) {
        ("linux", "amd64") => "linux-64",
        ("linux", "arm64") => "linux-aarch64",
        ("linux", "ppc64le") => "linux-ppc64le",
        ("linux", "s390x") => "linux-s390x",
        _ => return Err(CondaError::Platform(format!("{os}/{arch}"))),
    };
    Ok(subdir.to_owned())
}

/// The virtual packages the solve assumes of the image: conda detects them on the machine it
/// runs on, and an image is not that machine. `CONDA_OVERRIDE_GLIBC`, `CONDA_OVERRIDE_LINUX`
/// and `CONDA_OVERRIDE_CUDA` set them, as they do for conda.
pub(crate) fn virtual_packages(subdir: &str) -> Vec<(String, String)> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut packages = vec![
        ("__unix".to_owned(), "0".to_owned()),
        (
            "__linux".to_owned(),
            env("CONDA_OVERRIDE_LINUX").unwrap_or_else(|| "5.10".to_owned()),
        ),
        (
            "__glibc".to_owned(),
            env("CONDA_OVERRIDE_GLIBC").unwrap_or_else(|| "2.28".to_owned()),
        ),
    ];
    let archspec = match subdir {
        "linux-64" => "x86_64",
        "linux-aarch64" => "aarch64",
        "linux-ppc64le" => "ppc64le",
        _ => "s390x",
    };
    packages.push(("__archspec".to_owned(), format!("1={archspec}")));
    if let Some(cuda) = env("CONDA_OVERRIDE_CUDA") {
        packages.push(("__cuda".to_owned(), cuda));
    }
    packages
}

/// What a `conda` layer's solve depends on besides its spec: the subdir and the virtual
/// packages (part of the lock's inputs hash).
pub(crate) fn solve_inputs(subdir: &str) -> String {
    virtual_packages(subdir)
        .iter()
        .map(|(name, version)| format!("{name}={version}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One package fetched and extracted, ready to be placed in the prefix.
pub(crate) struct Unpacked {
    pub locked: LockedConda,
    /// The URL it was fetched from (recorded in conda-meta).
    pub url: String,
    /// The channel's URL (recorded in conda-meta).
    pub channel_url: String,
    /// `conda-v1/<sha256>/` in the cache.
    pub dir: PathBuf,
    pub listing: install::Listing,
}

/// Builds the tree of a `conda` layer for one subdir: from `pinned` packages (a lock file; no
/// repodata is read), or solved from the channels' repodata. Returns the tree and the packages
/// it holds, as a lock pins them.
pub(crate) fn layer_tree(
    spec: &CondaSpec,
    subdir: &str,
    cache: &Cache,
    pinned: Option<&[LockedConda]>,
    source_date_epoch: u64,
) -> Result<(LayerTree, Vec<LockedConda>), CondaError> {
    #[cfg(not(feature = "conda"))]
    {
        let _ = (spec, subdir, cache, pinned, source_date_epoch);
        Err(CondaError::NotBuiltIn)
    }
    #[cfg(feature = "conda")]
    {
        let config = channel::ChannelConfig::from_host();
        let channels = config.resolve(&spec.channels)?;
        let http = channel::http_client()?;
        let selected = match pinned {
            Some(pinned) => pinned.to_vec(),
            None => solve::solve(spec, subdir, &channels, &http)?,
        };
        let unpacked = fetch_all(&selected, &channels, &http, cache)?;
        let tree = install::install(spec, &unpacked, source_date_epoch)?;
        Ok((tree, selected))
    }
}

/// Downloads and extracts the packages, a few at a time, keeping their order.
#[cfg(feature = "conda")]
fn fetch_all(
    selected: &[LockedConda],
    channels: &[channel::ResolvedChannel],
    http: &reqwest::blocking::Client,
    cache: &Cache,
) -> Result<Vec<Unpacked>, CondaError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // Names become URL and cache paths below: all of them are checked before any is used.
    for locked in selected {
        locked.check()?;
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Unpacked, CondaError>)>> = Mutex::new(Vec::new());
    // A worker's panic leaves its package without a result: an error naming it, below.
    let _ = crate::workers::run(4, || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(locked) = selected.get(i) else {
                return;
            };
            let result = (|| {
                let (url, channel_url) = channel::package_url(channels, locked)?;
                let path = channel::fetch_package(http, cache, locked, &url)?;
                let (dir, listing) = archive::extract_cached(cache, &path, locked, &url)?;
                Ok(Unpacked {
                    locked: locked.clone(),
                    url,
                    channel_url,
                    dir,
                    listing,
                })
            })();
            if let Ok(mut results) = results.lock() {
                results.push((i, result));
            }
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(i, _)| *i);
    let mut by_index = results.into_iter().peekable();
    let mut unpacked = Vec::with_capacity(selected.len());
    for (i, locked) in selected.iter().enumerate() {
        match by_index.next_if(|(at, _)| *at == i) {
            Some((_, result)) => unpacked.push(result?),
            None => {
                return Err(CondaError::Worker {
                    package: dist_name(locked),
                });
            }
        }
    }
    Ok(unpacked)
}

impl LockedConda {
    /// Checks the names that become URL paths, cache paths and image paths (`conda-meta/`)
    /// before any is used: name, version and build are single names without control
    /// characters, the subdir is one plain name, the file name is `<name>-<version>-<build>`
    /// with `.conda` or `.tar.bz2`, and the SHA256 is 64 hex digits.
    pub fn check(&self) -> Result<(), CondaError> {
        let package = dist_name(self).escape_debug().to_string();
        let bad = |what, value: &str, problem: &str| CondaError::BadRecord {
            package: package.clone(),
            what,
            value: value.to_owned(),
            problem: problem.to_owned(),
        };
        let plain = |s: &str, extra: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        if FileName::new(&self.name).is_err() || !plain(&self.name, "-_.") {
            return Err(bad("name", &self.name, "is not a conda package name"));
        }
        for (what, value) in [("version", &self.version), ("build", &self.build)] {
            if FileName::new(value).is_err() || value.contains(['-', ' ']) {
                return Err(bad(
                    what,
                    value,
                    "is not one name without `-`, `/` or control characters",
                ));
            }
        }
        if FileName::new(&self.subdir).is_err() || !plain(&self.subdir, "-_") {
            return Err(bad("subdir", &self.subdir, "is not a conda subdir name"));
        }
        let stem = self
            .filename
            .strip_suffix(".conda")
            .or_else(|| self.filename.strip_suffix(".tar.bz2"));
        if !stem.is_some_and(|stem| stem.eq_ignore_ascii_case(&dist_name(self))) {
            return Err(bad(
                "file name",
                &self.filename,
                "is not `<name>-<version>-<build>.conda` or `.tar.bz2` for this package",
            ));
        }
        // The SHA256 is a `Digest` since the lock was read.
        Ok(())
    }
}

/// `name-version-build` of a package, as conda names it.
pub(crate) fn dist_name(locked: &LockedConda) -> String {
    format!("{}-{}-{}", locked.name, locked.version, locked.build)
}

#[cfg(test)]
mod tests {
    use super::Conda;
    use super::*;
    use crate::lock::{LayerLock, Lockfile};

    #[test]
    fn platforms_map_to_subdirs() {
        assert_eq!(conda_subdir("linux", "amd64").unwrap(), "linux-64");
        assert_eq!(conda_subdir("linux", "arm64").unwrap(), "linux-aarch64");
        assert!(conda_subdir("windows", "amd64").is_err());
    }

    #[test]
    fn conda_lock_entries_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipes/recipes.lock");
        let mut lock = Lockfile::load(&path).unwrap();
        let package = LockedConda {
            name: "python".into(),
            version: "3.11.2".into(),
            build: "h0".into(),
            subdir: "linux-64".into(),
            channel: "conda-forge".into(),
            filename: "python-3.11.2-h0.conda".into(),
            url: None,
            sha256: Digest::from_hex(&"ab".repeat(32)).unwrap(),
            md5: None,
            size: Some(1),
        };
        let entry = |inputs: &str| LayerLock {
            target: "env".into(),
            layer: 1,
            key: "linux-64".into(),
            inputs: inputs.into(),
            packages: vec![package.clone()],
        };
        lock.record::<Conda>(entry("one"));
        lock.record::<Conda>(entry("two"));
        lock.save(&path).unwrap();
        let back = Lockfile::load(&path).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.layers::<Conda>(), 1);
        assert!(back.pins::<Conda>("env", 1, "linux-64", "one").is_none());
        assert_eq!(
            back.pins::<Conda>("env", 1, "linux-64", "two").unwrap(),
            [package]
        );
    }
}
