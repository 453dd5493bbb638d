//! Direct references in a pip layer's requirements, as pip and uv take them: a project
//! directory (`./app`, `./app[api]`, `/src/app`, `app @ file:///src/app`), a wheel or sdist
//! file (`app @ file:///dist/app-1.0-py3-none-any.whl`), a wheel or sdist at an address with
//! its SHA256 (`app @ https://host/app-1.0-py3-none-any.whl#sha256=…`), and the layer's
//! `sources` entries, which take a distribution from a directory instead of the index.
//!
//! Each is parsed here into a checked [`Direct`], then turned into one wheel before resolving
//! ([`wheel_of`]): a directory or an sdist built with its PEP 517 backend ([`super::sdist`]), a
//! wheel taken as it is. The resolver offers that wheel's version as the only one of its
//! distribution, with the dependencies of its METADATA.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::{ExtraName, MarkerTree, VerbatimUrl, VersionOrUrl};

use super::index::{DistFile, DistKind, PackageIndex};
use super::local::LocalTree;
use super::target::PythonTarget;
use super::{LockedWheel, PipError, wheel};
use crate::digest::Digest;
use crate::layer::cache::Cache;

/// Where a direct reference's distribution comes from.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// A project directory, built into a wheel.
    Tree(LocalTree),
    /// A wheel or sdist file on this machine.
    File { path: PathBuf, filename: String },
    /// A wheel or sdist at an http(s) address, with the SHA256 it must have.
    Url {
        url: String,
        filename: String,
        sha256: Digest,
    },
}

/// A requirement that names its distribution's location rather than versions on an index.
#[derive(Clone, Debug)]
pub(crate) struct Direct {
    /// Normalised; None for a bare path (`./app`), whose name its built wheel says.
    pub(crate) name: Option<String>,
    pub(crate) extras: Vec<ExtraName>,
    pub(crate) marker: MarkerTree,
    pub(crate) location: Location,
    /// How the lock and messages name it: a path inside the project directory as `./path`
    /// (the same on every checkout), else the absolute path or the address.
    pub(crate) shown: String,
    /// A requirement of the layer (a line), not only a `sources` entry that stands in for the
    /// index where something requires the distribution.
    pub(crate) requested: bool,
}

impl Direct {
    /// What the layer's lock key holds of it.
    pub(crate) fn key_text(&self) -> String {
        let extras: Vec<&str> = self.extras.iter().map(AsRef::as_ref).collect();
        format!(
            "{} @ {} [{}] ; {} ; {}",
            self.name.as_deref().unwrap_or(""),
            self.shown,
            extras.join(","),
            self.marker.try_to_string().unwrap_or_default(),
            self.requested
        )
    }

    /// A `sources` entry: `name` from the directory `path` (relative to `root`).
    pub(crate) fn source(name: &str, tree: LocalTree) -> Direct {
        Direct {
            name: Some(wheel::normalize_name(name)),
            extras: Vec::new(),
            marker: MarkerTree::TRUE,
            shown: tree.shown.clone(),
            location: Location::Tree(tree),
            requested: false,
        }
    }
}

/// How a path is named in the lock: `./relative` inside the project directory `root`.
pub(crate) fn shown_path(path: &Path, root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    match path.strip_prefix(&root) {
        Ok(inner) if inner.as_os_str().is_empty() => ".".to_owned(),
        Ok(inner) => format!("./{}", inner.display()),
        Err(_) => path.display().to_string(),
    }
}

/// Parses one requirement line (its `--hash` options in `hashes`) if it is a direct
/// reference; Ok(None) where it names a package on an index. Relative paths are relative to
/// `base` (the project directory for recipe lines, a requirements file's directory for its
/// lines). Err is why it is refused, to follow "`line` …".
pub(crate) fn parse(
    line: &str,
    hashes: &[Digest],
    base: &Path,
    root: &Path,
) -> Result<Option<Direct>, String> {
    if line.starts_with('.') || line.starts_with('/') {
        return parse_path_line(line, hashes, base, root).map(Some);
    }
    // A name with a URL has an `@` before any `;`: other lines are left to the caller's parse.
    let before_marker = line.split(';').next().unwrap_or_default();
    if !before_marker.contains('@') {
        return Ok(None);
    }
    let requirement = super::requirements::parse_requirement(line)?;
    let Some(VersionOrUrl::Url(url)) = &requirement.version_or_url else {
        return Ok(None);
    };
    let name = wheel::normalize_name(requirement.name.as_ref());
    let location = url_location(url, hashes, base)?;
    let shown = match &location {
        Location::Url { url, .. } => url.clone(),
        Location::File { path, .. } => shown_path(path, root),
        Location::Tree(tree) => shown_path(&tree.dir, root),
    };
    let location = match location {
        Location::Tree(tree) => Location::Tree(LocalTree {
            shown: shown.clone(),
            ..tree
        }),
        other => other,
    };
    if let Location::File { filename, .. } | Location::Url { filename, .. } = &location {
        check_file_name(filename, Some(&name))?;
    }
    Ok(Some(Direct {
        name: Some(name),
        extras: requirement.extras.clone(),
        marker: requirement.marker.clone(),
        location,
        shown,
        requested: true,
    }))
}

/// `./app`, `./app[api,db]`, `/src/app ; python_version >= "3.10"`, `./dist/x.whl`.
fn parse_path_line(
    line: &str,
    hashes: &[Digest],
    base: &Path,
    root: &Path,
) -> Result<Direct, String> {
    let (body, marker) = match line.split_once(';') {
        Some((body, marker)) => (
            body.trim(),
            MarkerTree::from_str(marker.trim())
                .map_err(|e| format!("has a marker that does not parse: {}", e.message))?,
        ),
        None => (line.trim(), MarkerTree::TRUE),
    };
    let (path, extras) = match body.strip_suffix(']').and_then(|b| b.rsplit_once('[')) {
        Some((path, extras)) => (
            path.trim_end(),
            extras
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| ExtraName::from_str(e).map_err(|e| format!("names an invalid extra: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => (body, Vec::new()),
    };
    let (path, filename) = existing(&base.join(path))?;
    let shown = shown_path(&path, root);
    let location = match filename {
        None => Location::Tree(LocalTree {
            dir: path,
            shown: shown.clone(),
            writes: Vec::new(),
        }),
        Some(filename) => {
            check_file_name(&filename, None)?;
            if !hashes.is_empty() {
                return Err(
                    "is a local file; `--hash` is for files from an index or an address".to_owned(),
                );
            }
            Location::File { path, filename }
        }
    };
    Ok(Direct {
        name: None,
        extras,
        marker,
        location,
        shown,
        requested: true,
    })
}

/// The canonical path of an existing directory (None) or file (its file name).
fn existing(path: &Path) -> Result<(PathBuf, Option<String>), String> {
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| format!("names `{}`, which cannot be read: {e}", path.display()))?;
    if canonical.is_dir() {
        return Ok((canonical, None));
    }
    if !canonical.is_file() {
        return Err(format!(
            "names `{}`, which is neither a directory nor a file",
            path.display()
        ));
    }
    let filename = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((canonical, Some(filename)))
}

fn url_location(url: &VerbatimUrl, hashes: &[Digest], base: &Path) -> Result<Location, String> {
    let given = url.given().unwrap_or(url.raw().as_str());
    // pep508_rs fills `${NAME}` in from the process environment: not what was written.
    if given.contains("${") {
        return Err("holds `${…}`; write the reference out in full".to_owned());
    }
    let parsed = reqwest::Url::parse(given).map_err(|e| format!("is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "file" => {
            // `file:./app` parses as `/app`: a relative file URL is not what it seems.
            if !given.starts_with("file://") {
                return Err(
                    "is a relative file: URL; write `file:///absolute/path`, or the path itself (`./app`)".to_owned(),
                );
            }
            if parsed
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err("is a file:// URL of another host".to_owned());
            }
            let path = parsed
                .to_file_path()
                .map_err(|()| "is a file:// URL that is no absolute path".to_owned())?;
            let (path, filename) = existing(&base.join(path))?;
            match filename {
                None => Ok(Location::Tree(LocalTree {
                    dir: path,
                    shown: String::new(), // set by the caller
                    writes: Vec::new(),
                })),
                Some(filename) => {
                    if !hashes.is_empty() {
                        return Err(
                            "is a local file; `--hash` is for files from an index or an address"
                                .to_owned(),
                        );
                    }
                    Ok(Location::File { path, filename })
                }
            }
        }
        "https" | "http" => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(
                    "holds credentials, which would be written into the lock file; serve the file without them or from an index".to_owned(),
                );
            }
            let from_fragment = match parsed.fragment() {
                Some(fragment) => match fragment.strip_prefix("sha256=") {
                    Some(hex) => Some(
                        Digest::from_hex(&hex.to_ascii_lowercase())
                            .map_err(|_| "has a `#sha256=` that is not 64 hex digits".to_owned())?,
                    ),
                    None => {
                        return Err("has a fragment other than `#sha256=<hex>`".to_owned());
                    }
                },
                None => None,
            };
            let sha256 = match (from_fragment, hashes) {
                (Some(digest), []) => digest,
                (Some(digest), [given]) if *given == digest => digest,
                (Some(_), _) => {
                    return Err("has a `#sha256=` and a `--hash` that differ".to_owned());
                }
                (None, [given]) => given.clone(),
                (None, []) => {
                    return Err(
                        "has no hash; add `#sha256=<64 hex digits>` to the address (or one `--hash=sha256:…`), so that what it serves is checked".to_owned(),
                    );
                }
                (None, _) => return Err("has more than one `--hash`; give exactly one".to_owned()),
            };
            let filename = parsed
                .path_segments()
                .and_then(|mut segments| segments.next_back())
                .unwrap_or_default()
                .to_owned();
            let mut url = parsed.clone();
            url.set_fragment(None);
            Ok(Location::Url {
                url: url.to_string(),
                filename,
                sha256,
            })
        }
        other => Err(format!(
            "is a `{other}:` reference; only project directories, file:// and https:// references are supported"
        )),
    }
}

/// A file's name must say a wheel or an sdist (of `name`, where given).
fn check_file_name(filename: &str, name: Option<&str>) -> Result<(), String> {
    if filename.ends_with(".whl") {
        let parsed = wheel::parse_wheel_filename(filename)
            .map_err(|_| format!("names `{filename}`, which is no valid wheel file name"))?;
        if let Some(name) = name
            && wheel::normalize_name(&parsed.name) != name
        {
            return Err(format!(
                "names `{filename}`, a wheel of another distribution"
            ));
        }
        return Ok(());
    }
    if sdist_name_version(filename, name).is_none() {
        return Err(format!(
            "names `{filename}`, which is neither a wheel nor an sdist (`NAME-VERSION.tar.gz` or `.zip`)"
        ));
    }
    Ok(())
}

/// An sdist file name's distribution (normalised) and version.
fn sdist_name_version(filename: &str, name: Option<&str>) -> Option<(String, Version)> {
    match name {
        Some(name) => Some((
            name.to_owned(),
            super::index::sdist_version(filename, name)?,
        )),
        None => {
            let stem = filename
                .strip_suffix(".tar.gz")
                .or_else(|| filename.strip_suffix(".zip"))?;
            let (name, version) = stem.rsplit_once('-')?;
            Some((
                wheel::normalize_name(name),
                Version::from_str(version).ok()?,
            ))
        }
    }
}

/// The wheel a direct reference gives, ready to install, and its pin.
pub(crate) struct DirectWheel {
    /// Normalised.
    pub(crate) name: String,
    /// The wheel, with its SHA256.
    pub(crate) file: DistFile,
    pub(crate) pin: LockedWheel,
}

/// Builds or fetches what `direct` names into one wheel for `target`, checked against its name.
pub(crate) fn wheel_of(
    direct: &Direct,
    index: &PackageIndex<'_>,
    target: &PythonTarget,
    cache: &Cache,
) -> Result<DirectWheel, PipError> {
    let mut pin = LockedWheel {
        name: String::new(),
        version: String::new(),
        filename: String::new(),
        sha256: Digest::of_bytes(b""),
        built_sha256: None,
        build_requires: Vec::new(),
        requested: direct.requested,
        direct: Some(direct.shown.clone()),
        tree_sha256: None,
        replaces: None,
    };
    let wheel = match &direct.location {
        Location::Tree(tree) => {
            let hash = tree.content_hash()?;
            let (path, requires) = super::sdist::build_tree_wheel(
                tree,
                &hash,
                &format!("the project directory {}", tree.shown),
                index.sources(),
                cache,
                &[],
            )?;
            let file = super::fitting_wheel(&path, target)?;
            let (_, sha256) = index.download(&file)?;
            pin.filename = file.filename.clone();
            pin.sha256 = sha256.clone();
            pin.tree_sha256 = Some(hash);
            pin.build_requires = requires;
            DistFile {
                sha256: Some(sha256),
                ..file
            }
        }
        Location::File { path, filename } => file_wheel(
            direct,
            path.display().to_string(),
            filename,
            None,
            index,
            target,
            cache,
            &mut pin,
        )?,
        Location::Url {
            url,
            filename,
            sha256,
        } => file_wheel(
            direct,
            url.clone(),
            filename,
            Some(sha256.clone()),
            index,
            target,
            cache,
            &mut pin,
        )?,
    };
    let DistKind::Wheel(name) = &wheel.kind else {
        unreachable!("direct references are turned into wheels")
    };
    let built_name = wheel::normalize_name(&name.name);
    if let Some(named) = &direct.name
        && *named != built_name
    {
        return Err(PipError::DirectName {
            shown: direct.shown.clone(),
            named: named.clone(),
            holds: built_name,
        });
    }
    pin.name = built_name.clone();
    pin.version = wheel.version.to_string();
    Ok(DirectWheel {
        name: built_name,
        file: wheel,
        pin,
    })
}

/// A wheel or sdist file (at a path or an address): the wheel to install, and `pin` filled in.
#[allow(clippy::too_many_arguments)]
fn file_wheel(
    direct: &Direct,
    url: String,
    filename: &str,
    sha256: Option<Digest>,
    index: &PackageIndex<'_>,
    target: &PythonTarget,
    cache: &Cache,
    pin: &mut LockedWheel,
) -> Result<DistFile, PipError> {
    let file = dist_file(url, filename, sha256, direct.name.as_deref())?;
    let (_, sha256) = index.download(&file)?;
    pin.filename = filename.to_owned();
    pin.sha256 = sha256.clone();
    let file = DistFile {
        sha256: Some(sha256),
        ..file
    };
    match file.kind {
        DistKind::Wheel(_) => {
            super::check_fits(&file, target)?;
            Ok(file)
        }
        DistKind::Sdist => {
            let (built, built_sha256, requires) =
                super::built_wheel(index, &file, target, cache, &[])?;
            pin.built_sha256 = Some(built_sha256);
            pin.build_requires = requires;
            Ok(built)
        }
    }
}

/// A DistFile for a direct wheel or sdist, from its file name.
fn dist_file(
    url: String,
    filename: &str,
    sha256: Option<Digest>,
    name: Option<&str>,
) -> Result<DistFile, PipError> {
    let (version, kind) = if filename.ends_with(".whl") {
        let parsed = wheel::parse_wheel_filename(filename)?;
        let version = Version::from_str(&parsed.version).map_err(|_| PipError::DirectFileName {
            filename: filename.to_owned(),
        })?;
        (version, DistKind::Wheel(parsed))
    } else {
        let (_, version) =
            sdist_name_version(filename, name).ok_or_else(|| PipError::DirectFileName {
                filename: filename.to_owned(),
            })?;
        (version, DistKind::Sdist)
    };
    Ok(DistFile {
        filename: filename.to_owned(),
        url,
        sha256,
        requires_python: None,
        yanked: false,
        metadata: None,
        version,
        kind,
    })
}

/// The file a lock entry of a direct reference pins: for a project directory the wheel built
/// from it (from the cache, else built again and checked against the pin), else the wheel or
/// sdist, to be verified against the pinned SHA256.
pub(crate) fn pinned_file(
    direct: &Direct,
    pin: &LockedWheel,
    index: &PackageIndex<'_>,
    target: &PythonTarget,
    cache: &Cache,
) -> Result<DistFile, PipError> {
    match &direct.location {
        Location::Tree(tree) => {
            let cached = cache.blob_path(&pin.sha256);
            let path = if cached.is_file() {
                cached
            } else {
                let hash = tree.content_hash()?;
                let (path, _) = super::sdist::build_tree_wheel(
                    tree,
                    &hash,
                    &format!("the project directory {}", tree.shown),
                    index.sources(),
                    cache,
                    &pin.build_requires,
                )?;
                path
            };
            let file = super::fitting_named_wheel(&path, pin.filename.clone(), target)?;
            let (_, built) = index.download(&file)?;
            if built != pin.sha256 {
                return Err(PipError::TreeBuiltDiffers {
                    dir: tree.shown.clone(),
                    built: built.hex().to_owned(),
                    pinned: pin.sha256.hex().to_owned(),
                });
            }
            Ok(DistFile {
                sha256: Some(built),
                ..file
            })
        }
        Location::File { path, .. } => dist_file(
            path.display().to_string(),
            &pin.filename,
            Some(pin.sha256.clone()),
            Some(&pin.name),
        ),
        Location::Url { url, .. } => dist_file(
            url.clone(),
            &pin.filename,
            Some(pin.sha256.clone()),
            Some(&pin.name),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str, base: &Path) -> Result<Option<Direct>, String> {
        parse(line, &[], base, base)
    }

    #[test]
    fn paths_extras_and_markers_parse_into_checked_references() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("app")).unwrap();
        let direct = parsed("./app[api, db] ; python_version >= \"3.8\"", &root)
            .unwrap()
            .unwrap();
        assert_eq!(direct.shown, "./app");
        assert!(direct.name.is_none());
        assert_eq!(direct.extras.len(), 2);
        assert!(matches!(direct.location, Location::Tree(_)));
        let url = format!("App @ file://{}", root.join("app").display());
        let direct = parsed(&url, &root).unwrap().unwrap();
        assert_eq!(direct.name.as_deref(), Some("app"));
        assert_eq!(direct.shown, "./app");
        assert!(parsed("requests>=2", &root).unwrap().is_none());
        let err = parsed("./missing", &root).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
    }

    #[test]
    fn addresses_need_one_hash_and_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "a".repeat(64);
        let ok = format!("demo @ https://host.invalid/f/demo-1.0-py3-none-any.whl#sha256={hex}");
        let direct = parsed(&ok, dir.path()).unwrap().unwrap();
        let Location::Url { url, sha256, .. } = &direct.location else {
            panic!("{direct:?}")
        };
        assert_eq!(url, "https://host.invalid/f/demo-1.0-py3-none-any.whl");
        assert_eq!(sha256.hex(), hex);
        for (line, problem) in [
            (
                "demo @ https://host.invalid/demo-1.0-py3-none-any.whl".to_owned(),
                "has no hash",
            ),
            (
                format!("demo @ https://u:p@host.invalid/demo-1.0-py3-none-any.whl#sha256={hex}"),
                "credentials",
            ),
            (
                format!("other @ https://host.invalid/demo-1.0-py3-none-any.whl#sha256={hex}"),
                "another distribution",
            ),
            ("demo @ file:./demo".to_owned(), "relative file: URL"),
            (
                "demo @ git+https://host.invalid/demo.git".to_owned(),
                "only project directories",
            ),
            (
                "demo @ https://host.invalid/demo-1.0-py3-none-any.whl#sha256=zz".to_owned(),
                "64 hex digits",
            ),
        ] {
            let err = parsed(&line, dir.path()).unwrap_err();
            assert!(err.contains(problem), "{line}: {err}");
        }
    }
}
