//! The `debian` layer source: packages from a Debian archive, installed the way apt and dpkg
//! would, without apt, dpkg, root or emulation.
//!
//! Pipeline: apt sources (recipe or host configuration, [`apt_config`]) → `InRelease` verified
//! against its keyring ([`signature`]) → its `Release` read ([`release`]) → `Packages` indexes
//! checked against the Release hashes ([`index`], parsed with [`deb822`] and [`version`]) →
//! dependency resolution ([`resolve`]) → `.deb` files checked against their SHA256 and
//! extracted once ([`deb`]) → installed into a layer tree, with a dpkg database ([`install`]).

pub(crate) mod apt_config;
pub(crate) mod deb;
pub(crate) mod deb822;
pub(crate) mod index;
pub(crate) mod install;
pub(crate) mod kind;
pub(crate) mod release;
pub(crate) mod resolve;
pub(crate) mod signature;
#[cfg(test)]
mod test_keys;
pub(crate) mod version;

pub(crate) use kind::Debian;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layer::LayerTree;
use crate::layer::cache::Cache;
use apt_config::AptSource;
use index::IndexedPackage;
use resolve::{Installed, Universe};

/// `debian = { … }` in a `[[layer]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSpec {
    /// Packages to install, with optional version relations (`python3 (>= 3.11)`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Also install the Essential and Priority: required set (a base image from scratch).
    #[serde(default)]
    pub required: bool,
    /// The Debian release (codename) to install from, replacing the host configuration's
    /// (`bullseye` turns `bookworm`, `bookworm-updates`, `bookworm-security` into the same
    /// suites of bullseye). Default: the host's.
    pub release: Option<String>,
    /// Archives to use instead of the host's apt configuration.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
}

/// `sources = [{ uri = "…", suites = ["bookworm"], components = ["main"], keyring = "…" }]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub uri: String,
    pub suites: Vec<String>,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// The keyring (binary or armored) that signs the archive's InRelease; relative to the
    /// project directory. A recipe's own archive always names its key.
    pub keyring: PathBuf,
}

/// A package as the lock file pins it: enough to fetch and verify it with no index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedDeb {
    pub name: String,
    pub version: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_arch: Option<String>,
    /// Relative to the archive's base URI, which comes from configuration when fetching.
    pub filename: String,
    pub size: u64,
    #[serde(with = "crate::digest::bare_hex")]
    pub sha256: Digest,
}

impl LockedDeb {
    /// How messages name the package: `name version (pool file)`.
    pub fn label(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.filename)
    }
}

impl From<&IndexedPackage> for LockedDeb {
    fn from(indexed: &IndexedPackage) -> LockedDeb {
        LockedDeb {
            name: indexed.package.name.clone(),
            version: indexed.package.version.to_string(),
            architecture: indexed.package.architecture.clone(),
            multi_arch: indexed.multi_arch.clone(),
            filename: indexed.filename.clone(),
            size: indexed.size,
            sha256: indexed.sha256.clone(),
        }
    }
}

fn default_components() -> Vec<String> {
    vec!["main".to_owned()]
}

#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error(transparent)]
    Worker(#[from] crate::workers::WorkerPanicked),
    #[error(transparent)]
    AptConfig(#[from] apt_config::AptConfigError),
    #[error("no Debian archive is configured: the host has no apt sources under /etc/apt")]
    NoSources,
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error("package request `{request}`")]
    BadRequest {
        request: String,
        #[source]
        source: version::VersionError,
    },
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Install(#[from] install::InstallError),
    #[error("cannot set up HTTP for the Debian archive")]
    Http(#[source] crate::http::HttpError),
    #[error("the base image's /var/lib/dpkg/status is damaged")]
    BaseStatus(#[source] deb822::Deb822Error),
    #[error(
        "an offline build reads no Debian archive or index; pin the layer with `oci-build lock` where the archive is reachable"
    )]
    Offline,
}

/// The sources (as text) and architecture an index set was loaded for.
type IndexKey = (String, String);

/// Archive indexes, loaded once per (release, architecture) in a build.
pub struct Archives {
    root: PathBuf,
    http: reqwest::blocking::Client,
    loaded: Mutex<HashMap<IndexKey, std::sync::Arc<Vec<IndexedPackage>>>>,
    /// `build --offline`: no apt configuration is read and no archive is contacted; locked
    /// packages come from the cache alone.
    offline: bool,
}

impl Archives {
    /// Reads apt's configuration under `root` (`/` for the host).
    pub fn new(root: &Path) -> Result<Archives, DebianError> {
        let http = crate::http::download_client().map_err(DebianError::Http)?;
        Ok(Archives {
            root: root.to_owned(),
            http,
            loaded: Mutex::new(HashMap::new()),
            offline: false,
        })
    }

    /// Archives for an offline build: none. Package files must be in the cache.
    pub fn offline() -> Result<Archives, DebianError> {
        Ok(Archives {
            offline: true,
            ..Archives::new(Path::new("/"))?
        })
    }

    /// The recipe's own sources, else the host's with the release substituted.
    fn sources(&self, spec: &DebianSpec) -> Result<Vec<AptSource>, DebianError> {
        if self.offline {
            return Ok(Vec::new());
        }
        if !spec.sources.is_empty() {
            return Ok(spec
                .sources
                .iter()
                .map(|s| AptSource {
                    uris: vec![s.uri.clone()],
                    suites: s.suites.clone(),
                    components: s.components.clone(),
                    signed_by: apt_config::SignedBy::Keyrings(vec![s.keyring.clone()]),
                    architectures: None,
                    origin: "the recipe".to_owned(),
                })
                .collect());
        }
        let release = spec.release.as_deref();
        let mut sources = apt_config::read_host_sources(&self.root)?;
        if sources.is_empty() {
            return Err(DebianError::NoSources);
        }
        if let Some(release) = release {
            // The host's codename is the suite that has no `-` suffix.
            let host = sources
                .iter()
                .flat_map(|s| s.suites.iter())
                .find(|s| !s.contains('-') && !s.ends_with('/'))
                .cloned();
            if let Some(host) = host {
                for source in &mut sources {
                    for suite in &mut source.suites {
                        if suite == &host || suite.starts_with(&format!("{host}-")) {
                            *suite = suite.replacen(&host, release, 1);
                        }
                    }
                }
            }
        }
        Ok(sources)
    }

    fn packages(
        &self,
        spec: &DebianSpec,
        arch: &str,
        cache: &Cache,
    ) -> Result<std::sync::Arc<Vec<IndexedPackage>>, DebianError> {
        if self.offline {
            return Err(DebianError::Offline);
        }
        let sources = self.sources(spec)?;
        let described: Vec<String> = sources
            .iter()
            .map(|s| format!("{:?} {:?} {:?}", s.uris, s.suites, s.components))
            .collect();
        let key = (described.join("; "), arch.to_owned());
        if let Some(found) = self.loaded.lock().expect("archives lock").get(&key) {
            return Ok(found.clone());
        }
        let packages =
            std::sync::Arc::new(index::load(&self.http, &sources, arch, cache, &self.root)?);
        self.loaded
            .lock()
            .expect("archives lock")
            .insert(key, packages.clone());
        Ok(packages)
    }
}

/// Debian architecture name of an OCI platform architecture.
pub(crate) fn debian_arch(oci_arch: &str, variant: Option<&str>) -> String {
    match (oci_arch, variant) {
        ("arm", Some("v7")) | ("arm", None) => "armhf".to_owned(),
        ("arm", Some(_)) => "armel".to_owned(),
        ("386", _) => "i386".to_owned(),
        (other, _) => other.to_owned(),
    }
}

/// The packages of a dpkg status file that are installed, by name.
pub(crate) fn installed_from_status(
    status: &str,
) -> Result<BTreeMap<String, Installed>, DebianError> {
    let mut installed = BTreeMap::new();
    for stanza in deb822::parse(status).map_err(DebianError::BaseStatus)? {
        let installed_ok = stanza
            .get("Status")
            .is_some_and(|s| s.trim().ends_with("installed") && !s.contains("not-installed"));
        let (Some(name), Some(version)) = (stanza.get("Package"), stanza.get("Version")) else {
            continue;
        };
        let Ok(version) = version.trim().parse() else {
            continue;
        };
        if !installed_ok {
            continue;
        }
        let relations = |field: &str| -> Vec<version::Dependency> {
            version::parse_relations(stanza.get(field).unwrap_or(""))
                .map(|groups| groups.into_iter().flatten().collect())
                .unwrap_or_default()
        };
        let mut conflicts = relations("Conflicts");
        conflicts.extend(relations("Breaks"));
        installed.insert(
            name.trim().to_owned(),
            Installed {
                version,
                provides: relations("Provides"),
                conflicts,
            },
        );
    }
    Ok(installed)
}

/// Builds the tree of a `debian` layer for one architecture on top of a base whose dpkg status
/// is `base_status` and whose symlinks are `base_links`: from `pinned` packages (a lock file; no
/// index is read), or resolved from the archive's indexes. Returns the tree and the packages it
/// holds, as a lock pins them.
pub(crate) fn layer_tree(
    spec: &DebianSpec,
    arch: &str,
    base_status: &str,
    base_links: &BTreeMap<String, String>,
    archives: &Archives,
    cache: &Cache,
    pinned: Option<&[LockedDeb]>,
) -> Result<(LayerTree, Vec<LockedDeb>), DebianError> {
    let selected: Vec<LockedDeb> = match pinned {
        Some(pinned) => pinned.to_vec(),
        None => resolve_packages(spec, arch, base_status, archives, cache)?,
    };
    let bases = archive_bases(spec, archives)?;

    // Downloads a few at a time; extraction happens once per package file.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<install::Unpacked, DebianError>)>> =
        Mutex::new(Vec::new());
    crate::workers::run(4, || {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some(deb) = selected.get(i) else {
                return;
            };
            let result = fetch_unpacked(archives, cache, deb, &bases);
            results.lock().expect("results lock").push((i, result));
        }
    })?;
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, _)| *i);
    let unpacked = results
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>, _>>()?;

    let mut tree = LayerTree::default();
    install::install(&mut tree, &unpacked, base_status, base_links)?;
    Ok((tree, selected))
}

/// A pinned package downloaded (checked against its SHA256) and extracted into the cache, or
/// found there; one thread at a time per package, so a prefetch and a layer's worker that
/// reach it together do the work once.
pub(crate) fn fetch_unpacked(
    archives: &Archives,
    cache: &Cache,
    deb: &LockedDeb,
    bases: &[String],
) -> Result<install::Unpacked, DebianError> {
    crate::workers::exclusive(&cache.blob_path(&deb.sha256), || {
        let path = install::fetch(&archives.http, cache, deb, bases)?;
        let (dir, extracted) =
            crate::workers::extraction(|| install::extract_cached(cache, &path, deb))?;
        Ok(install::Unpacked {
            deb: deb.clone(),
            dir,
            extracted,
        })
    })
}

/// The base URIs a layer's package files are fetched from, in order: a lock pins what, the
/// configuration says where.
pub(crate) fn archive_bases(
    spec: &DebianSpec,
    archives: &Archives,
) -> Result<Vec<String>, DebianError> {
    Ok(archives
        .sources(spec)?
        .iter()
        .flat_map(|s| s.uris.iter().map(|u| u.trim_end_matches('/').to_owned()))
        .collect())
}

/// Resolves the layer's requests against the archive indexes.
fn resolve_packages(
    spec: &DebianSpec,
    arch: &str,
    base_status: &str,
    archives: &Archives,
    cache: &Cache,
) -> Result<Vec<LockedDeb>, DebianError> {
    let packages = archives.packages(spec, arch, cache)?;
    let universe = Universe::new(packages.iter().map(|p| p.package.clone()), arch);
    let mut requests = Vec::new();
    for request in &spec.packages {
        let parsed =
            version::parse_relations(request).map_err(|source| DebianError::BadRequest {
                request: request.clone(),
                source,
            })?;
        requests.extend(parsed.into_iter().flatten());
    }
    let installed = installed_from_status(base_status)?;
    let chosen = resolve::resolve(&universe, &requests, &installed, spec.required)?;
    // Where to fetch each chosen version: the first source that has it.
    let mut by_key: HashMap<(&str, String), &IndexedPackage> = HashMap::new();
    for indexed in packages.iter() {
        if indexed.package.architecture == arch || indexed.package.architecture == "all" {
            by_key
                .entry((
                    indexed.package.name.as_str(),
                    indexed.package.version.to_string(),
                ))
                .or_insert(indexed);
        }
    }
    Ok(chosen
        .iter()
        .map(|p| LockedDeb::from(by_key[&(p.name.as_str(), p.version.to_string())]))
        .collect())
}
