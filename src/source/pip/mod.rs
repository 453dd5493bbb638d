//! `pip` layers: Python packages resolved from a package index, pinned in the lock file and
//! installed from wheels without running pip or the image's interpreter.
//!
//! Pipeline: requirements (recipe lines and requirements files, [`requirements`]) → target (the
//! image's Python and platform, read from the layers below: [`scan`], [`target`]) → resolution
//! ([`resolve`]) against the index's PEP 691 pages and PEP 658 metadata ([`index`], [`config`]
//! says which index), source distributions built into wheels where no wheel fits ([`sdist`]) →
//! lock → download with hash checks → wheels installed into a layer tree ([`wheel`]), with
//! whiteouts for what a replaced distribution below installed ([`replace`]).

pub(crate) mod config;
pub(crate) mod direct;
pub(crate) mod index;
pub(crate) mod kind;
pub(crate) mod local;
pub(crate) mod metadata;
pub(crate) mod ranged;
pub(crate) mod replace;
pub(crate) mod requirements;
pub(crate) mod resolve;
pub(crate) mod scan;
pub(crate) mod sdist;
pub(crate) mod target;
pub(crate) mod wheel;

pub(crate) use kind::Pip;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use pep440_rs::Version;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layer::cache::{Cache, CacheKeyBuilder};
use crate::layer::{Entry, EntryKind, ImagePath, LayerTree};
use index::{DistFile, DistKind, PackageIndex};
use requirements::Requirements;
use scan::PythonBase;
use target::{PythonTarget, detect_target};

/// Where a wheel's parts go in the image, as the image's own pip would put them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InstallScheme {
    /// Pure-Python modules (`/usr/local/lib/python3.11/dist-packages` on Debian).
    pub purelib: String,
    /// Compiled modules; the same directory as `purelib` on Debian and in venvs.
    pub platlib: String,
    /// Console scripts and `.data/scripts` (`/usr/local/bin`).
    pub scripts: String,
    /// `.data/data` files, relative to this prefix (`/usr/local`).
    pub data: String,
    /// `.data/headers` go to `<headers>/<distribution name>`.
    pub headers: String,
    /// The interpreter that generated scripts name in their `#!` line.
    pub interpreter: String,
}

impl InstallScheme {
    /// Debian's: its pip installs under /usr/local, outside the distribution's own directories.
    /// `short` is the Python version as `3.11`.
    pub(crate) fn debian(short: &str, interpreter: String) -> InstallScheme {
        InstallScheme {
            purelib: format!("/usr/local/lib/python{short}/dist-packages"),
            platlib: format!("/usr/local/lib/python{short}/dist-packages"),
            scripts: "/usr/local/bin".to_owned(),
            data: "/usr/local".to_owned(),
            headers: format!("/usr/local/include/python{short}"),
            interpreter,
        }
    }
}

/// `pip = { … }` in a `[[layer]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipSpec {
    /// Requirement lines (PEP 508), as in a requirements file.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Requirements files, relative to the project directory.
    #[serde(default, deserialize_with = "one_or_many")]
    pub requirements: Vec<PathBuf>,
    /// Constraints files (`-c`), relative to the project directory.
    #[serde(default, deserialize_with = "one_or_many")]
    pub constraints: Vec<PathBuf>,
    /// The index to use instead of the host's configured one.
    pub index_url: Option<String>,
    #[serde(default)]
    pub extra_index_urls: Vec<String>,
    /// Directories of wheels and sdists (air-gapped sites), relative to the project directory.
    #[serde(default, deserialize_with = "one_or_many")]
    pub wheelhouse: Vec<PathBuf>,
    /// Use only the wheelhouse and find-links locations.
    #[serde(default)]
    pub no_index: bool,
    /// Install into a virtual environment at this image path instead of the system site.
    pub venv: Option<String>,
    /// The image's Python version (`3.11.2`), where it cannot be read from the layers below.
    pub python: Option<String>,
    /// Allow pre-releases.
    #[serde(default)]
    pub pre: bool,
    /// Pins a package to a version where the value is a PEP 440 version, and leaves it as the
    /// requirements say otherwise: `pin = { mlrun = "${MLRUN_VERSION}" }` pins mlrun for a
    /// release and not for `unstable`.
    #[serde(default)]
    pub pin: BTreeMap<String, String>,
    /// Installs only the distributions whose names match one of these patterns (`*` matches
    /// any run of characters), out of the whole resolution: `packages = ["torch"]` with
    /// `only = ["nvidia-*"]` is a layer of exactly the CUDA libraries torch needs.
    #[serde(default)]
    pub only: Vec<String>,
    /// pip's `--only-binary`: `[":all:"]` or package names whose sdists are never built; a
    /// package with no fitting wheel then fails. Applied after the requirements files' own
    /// `--only-binary`/`--no-binary`, so the recipe has the last word.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_binary: Vec<String>,
    /// Distributions taken from a project directory instead of the index, where anything
    /// requires them (uv's `[tool.uv.sources]`): `sources = { mlrun = "${MLRUN_SOURCE_DIR}" }`.
    /// An empty path means the index, as usual.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceSpec>,
    /// The project directory, which relative paths start from; set when the recipe is checked.
    #[serde(skip)]
    pub project_dir: PathBuf,
}

/// A `sources` entry: a directory, or a table with the directory and files to write into the
/// build's private copy of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SourceSpec {
    Path(String),
    Tree(SourceTree),
}

/// `{ path = "…", subdirectory = "…", write = { "pkg/version.json" = "…" } }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTree {
    pub path: String,
    /// The project's directory inside `path` (pip's `#subdirectory=`): a checkout that holds
    /// several projects, such as MLRun's pipeline adapters, named by one variable that may be
    /// empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdirectory: Option<String>,
    /// Files written into the build's copy of the tree, by path relative to it; the user's
    /// directory is never changed.
    #[serde(default)]
    pub write: BTreeMap<String, String>,
}

impl SourceSpec {
    pub(crate) fn path(&self) -> &str {
        match self {
            SourceSpec::Path(path) => path,
            SourceSpec::Tree(tree) => &tree.path,
        }
    }

    pub(crate) fn subdirectory(&self) -> Option<&str> {
        match self {
            SourceSpec::Path(_) => None,
            SourceSpec::Tree(tree) => tree.subdirectory.as_deref(),
        }
    }

    pub(crate) fn writes(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            SourceSpec::Path(_) => None,
            SourceSpec::Tree(tree) => Some(&tree.write),
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(path) => vec![path],
        OneOrMany::Many(paths) => paths,
    })
}

/// A distribution as the lock file pins it: enough to find and verify it on any index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedWheel {
    pub name: String,
    pub version: String,
    /// The wheel (or, for a package without wheels, the sdist) file name.
    pub filename: String,
    #[serde(with = "crate::digest::bare_hex")]
    pub sha256: Digest,
    /// For an sdist, the SHA256 of the wheel built from it: a build whose wheel differs is
    /// refused rather than installed under the same lock. None in entries written before it
    /// was recorded; the next `oci-build lock` or unlocked build records it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::digest::bare_hex::option"
    )]
    pub built_sha256: Option<Digest>,
    /// For an sdist, the build requirements its wheel was built with (`setuptools==80.9.0`):
    /// a later build installs exactly these, so a new release on the index does not change
    /// the wheel. Empty in entries written before they were recorded, and then recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_requires: Vec<String>,
    /// Named by the layer's requirements, not only pulled in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requested: bool,
    /// A project directory or direct reference, as the layer's requirements name it (`./app`,
    /// `https://…/x.whl`): the entry's file comes from there, not from an index. For a
    /// directory, `filename` and `sha256` are the wheel built from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
    /// For a project directory, the hash of its tree (see `local`): a build whose tree differs
    /// is resolved again, or under `--locked` refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::digest::bare_hex::option"
    )]
    pub tree_sha256: Option<Digest>,
    /// The version of the distribution the layers below installed that this one replaces
    /// (its files are whited out), as pip replaces a distribution a requirement needs in
    /// another version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipError {
    #[error(transparent)]
    Worker(#[from] crate::workers::WorkerPanicked),
    #[error(transparent)]
    Requirements(#[from] requirements::RequirementsError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Wheel(#[from] wheel::WheelError),
    #[error(transparent)]
    Sdist(#[from] sdist::SdistError),
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    Source(#[from] SourceProblem),
    #[error(transparent)]
    Replace(#[from] replace::ReplaceError),
    #[error(
        "`{shown}` is named {named} in the requirements, but it holds the distribution {holds}"
    )]
    DirectName {
        shown: String,
        named: String,
        holds: String,
    },
    #[error("`{filename}` is no wheel or sdist file name with a version")]
    DirectFileName { filename: String },
    #[error("{name} is taken from two places in the pip layer: `{first}` and `{second}`")]
    DirectTwice {
        name: String,
        first: String,
        second: String,
    },
    #[error(
        "the project directory {dir} changed since {lock_file} pinned it (its tree now hashes to sha256 {now}, the lock pins {pinned}); run `oci-build lock` to pin the new code",
        lock_file = "recipes/recipes.lock"
    )]
    TreeChanged {
        dir: String,
        now: String,
        pinned: String,
    },
    #[error(
        "the wheel built from the project directory {dir} has sha256 {built}, but the lock file pins sha256 {pinned} for it, so this build would not give the locked image; run `oci-build lock` to pin the new wheel"
    )]
    TreeBuiltDiffers {
        dir: String,
        built: String,
        pinned: String,
    },
    #[error(
        "no Python found in the layers below: put the layer on a Python base, or state `python = \"3.X.Y\"` in it"
    )]
    NoPython,
    #[error("`python = \"{0}\"` is not a Python version like 3.11.2")]
    BadPython(String),
    #[error(
        "cannot tell the C library of the image (no libc6 in its dpkg status and no musl loader); wheels for it cannot be chosen"
    )]
    NoLibc,
    #[error(
        "{package} has no wheel for {tags} and its source would have to be compiled for that target; add a wheel to a `wheelhouse`, or pin a version that ships one"
    )]
    NeedsCompiling { package: String, tags: String },
    #[error(
        "{name} {version} is pinned in the lock file to the source distribution {filename}, but only binaries are allowed for {name} (`only_binary` or `--only-binary`); run `oci-build lock`"
    )]
    LockedSdist {
        name: String,
        version: String,
        filename: String,
    },
    #[error(
        "{name} {version} is pinned in the lock file to the wheel {filename}, but `--no-binary` asks for {name} to be built from source; run `oci-build lock`"
    )]
    LockedWheel {
        name: String,
        version: String,
        filename: String,
    },
    #[error(
        "{name} {version} ({filename}) is pinned in the lock file but no configured index or wheelhouse has it"
    )]
    NotOnIndex {
        name: String,
        version: String,
        filename: String,
    },
    #[error(
        "the pip entry `{entry}` of {lock_file} has {what} `{value}`, which {problem}; delete the entry and run `oci-build lock`",
        // `crate::lock::LOCK_FILE`, spelt out: sources do not depend on the lock module
        // (a unit test checks the two agree).
        lock_file = "recipes/recipes.lock"
    )]
    BadPin {
        entry: String,
        what: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("`venv = \"{0}\"` is not an absolute image path without `..` or control characters")]
    BadVenv(String),
    #[error(
        "the wheel built from the sdist of {name} {version} has sha256 {built}, but the lock file pins sha256 {pinned} for it, so this build would not give the locked image; run `oci-build lock` to pin the new wheel"
    )]
    BuiltDiffers {
        name: String,
        version: String,
        built: String,
        pinned: String,
    },
}

impl LockedWheel {
    /// Checks what the lock says before it becomes image paths (`<name>-<version>.dist-info`)
    /// and file names: the lock file is outside input, edited by hand or by a merge.
    pub fn check(&self) -> Result<(), PipError> {
        let bad = |what, value: &str, problem| PipError::BadPin {
            entry: self.name.escape_debug().to_string(),
            what,
            value: value.escape_debug().to_string(),
            problem,
        };
        if !is_distribution_name(&self.name) {
            return Err(bad(
                "the name",
                &self.name,
                "is not a distribution name (letters, digits, `.`, `-` and `_`)",
            ));
        }
        // A PEP 440 version holds no `/` and no control character.
        if Version::from_str(&self.version).is_err() || self.version.contains(char::is_whitespace) {
            return Err(bad(
                "the version",
                &self.version,
                "is not a PEP 440 version",
            ));
        }
        let plain = !self.filename.is_empty()
            && self.filename != "."
            && self.filename != ".."
            && !self
                .filename
                .contains(|c: char| c == '/' || c == '\\' || c.is_control());
        if !plain {
            return Err(bad(
                "the file name",
                &self.filename,
                "is not a plain file name",
            ));
        }
        Ok(())
    }
}

/// PEP 508's names: ASCII letters and digits, with `.`, `-` and `_` inside.
fn is_distribution_name(name: &str) -> bool {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(inner)
}

/// A pip layer made ready: its requirements read, its target known.
pub struct Prepared {
    pub requirements: Requirements,
    pub target: PythonTarget,
    /// Installed below in the same site directory: kept as they are unless the layer needs
    /// another version.
    pub below: BTreeMap<String, replace::InstalledDist>,
    /// The hash of everything the layer's resolution depends on.
    pub inputs: String,
    venv: Option<String>,
}

/// The layer's requirements as its spec and requirement files give them, less its project
/// directories (which `prepare` adds): what no image below changes.
fn requirements_of(spec: &PipSpec) -> Result<Requirements, PipError> {
    let mut requirements = Requirements {
        root: spec.project_dir.clone(),
        ..Requirements::default()
    };
    for line in &spec.packages {
        requirements.add_line(line, "the recipe's pip packages")?;
    }
    for file in &spec.requirements {
        requirements.add_file(file)?;
    }
    let mut constraints = Requirements::default();
    for file in &spec.constraints {
        constraints.add_file(file)?;
    }
    requirements.constraints.extend(
        constraints
            .requirements
            .into_iter()
            .chain(constraints.constraints),
    );
    requirements.pre |= spec.pre;
    for value in &spec.only_binary {
        requirements
            .formats
            .add_only_binary(value, "the pip layer's `only_binary`")?;
    }
    for (name, version) in &spec.pin {
        if Version::from_str(version).is_ok() {
            requirements.add_line(&format!("{name}=={version}"), "the pip layer's `pin`")?;
        }
    }
    Ok(requirements)
}

/// The indexes the recipe names for the layer (the host's configuration adds to them).
fn recipe_indexes(spec: &PipSpec) -> config::RecipeIndexes {
    config::RecipeIndexes {
        index_url: spec.index_url.clone(),
        extra_index_urls: spec.extra_index_urls.clone(),
        find_links: spec.wheelhouse.clone(),
        no_index: spec.no_index,
    }
}

/// Reads a layer's requirements and works out the Python it installs for.
pub(crate) fn prepare(
    spec: &PipSpec,
    base: &PythonBase,
    architecture: &str,
    variant: Option<&str>,
) -> Result<Prepared, PipError> {
    let mut requirements = requirements_of(spec)?;
    for (name, source) in &spec.sources {
        if let Some(tree) = source_tree(source, &spec.project_dir)? {
            requirements.direct.push(direct::Direct::source(name, tree));
        }
    }
    let target = detect_target(spec, base, architecture, variant)?;
    let below = replace::installed_in(base, &target.scheme.purelib);
    // Paths are the checkout's; what they hold enters below, as parsed requirements.
    let location_free = PipSpec {
        requirements: Vec::new(),
        constraints: Vec::new(),
        wheelhouse: Vec::new(),
        // An empty entry means the index: the same key as no entry.
        sources: spec
            .sources
            .iter()
            .filter(|(_, source)| !source.path().is_empty())
            .map(|(name, source)| (name.clone(), source.clone()))
            .collect(),
        ..spec.clone()
    };
    let mut key = CacheKeyBuilder::new("pip-lock-v1");
    key.field(
        serde_json::to_string(&location_free)
            .expect("specs serialise")
            .as_bytes(),
    );
    for pinned in requirements
        .requirements
        .iter()
        .chain(&requirements.constraints)
    {
        key.field(pinned.requirement.to_string().as_bytes());
        key.field(
            pinned
                .hashes
                .iter()
                .map(Digest::hex)
                .collect::<Vec<_>>()
                .join(",")
                .as_bytes(),
        );
    }
    // The trees' content is not in the key: the lock pins it, so that `--locked` can name the
    // directory that changed.
    for direct in &requirements.direct {
        key.field(direct.key_text().as_bytes());
    }
    // Only when set, so that the locks of layers without it keep their keys.
    if !requirements.formats.is_empty() {
        let (only_binary, no_binary) = requirements.formats.env_values();
        key.field(format!("only-binary={only_binary} no-binary={no_binary}").as_bytes());
    }
    key.field(
        serde_json::to_string(&target)
            .expect("targets serialise")
            .as_bytes(),
    );
    for (name, installed) in &below {
        key.field(format!("{name}=={}", installed.version).as_bytes());
    }
    Ok(Prepared {
        requirements,
        target,
        below,
        inputs: key.finish().as_str().to_owned(),
        venv: spec.venv.clone(),
    })
}

/// The checked tree of a `sources` entry; None where its path is empty (the index).
pub(crate) fn source_tree(
    source: &SourceSpec,
    project_dir: &std::path::Path,
) -> Result<Option<local::LocalTree>, SourceProblem> {
    let path = source.path();
    if path.is_empty() {
        return Ok(None);
    }
    let not_a_directory = |shown: &str| SourceProblem {
        // The path is often a variable's value, which the recipe's text does not hold.
        found: "sources".to_owned(),
        message: format!(
            "`sources` names `{shown}`, which is not a directory (relative paths start at the project directory)"
        ),
    };
    let mut dir = std::fs::canonicalize(project_dir.join(path))
        .ok()
        .filter(|dir| dir.is_dir())
        .ok_or_else(|| not_a_directory(path))?;
    if let Some(subdirectory) = source.subdirectory() {
        // Checked as a written path is: relative, no `..`, so it stays in the checkout.
        local::WritePath::new(subdirectory).map_err(|problem| SourceProblem {
            found: subdirectory.to_owned(),
            message: format!("`subdirectory` `{}` {problem}", subdirectory.escape_debug()),
        })?;
        let shown = format!("{path}/{subdirectory}");
        let inner = std::fs::canonicalize(dir.join(subdirectory))
            .ok()
            .filter(|inner| inner.is_dir())
            .ok_or_else(|| not_a_directory(&shown))?;
        if !inner.starts_with(&dir) {
            return Err(SourceProblem {
                found: subdirectory.to_owned(),
                message: format!("`subdirectory` `{subdirectory}` leads out of `{path}`"),
            });
        }
        dir = inner;
    }
    let mut writes = Vec::new();
    for (relative, text) in source.writes().into_iter().flatten() {
        let checked = local::WritePath::new(relative).map_err(|problem| SourceProblem {
            found: relative.clone(),
            message: format!("`write` path `{}` {problem}", relative.escape_debug()),
        })?;
        if text.len() > local::MAX_WRITE_BYTES {
            return Err(SourceProblem {
                found: relative.clone(),
                message: format!(
                    "`write` of `{relative}` holds more than {} bytes, the most one written file may",
                    local::MAX_WRITE_BYTES
                ),
            });
        }
        writes.push((checked, text.clone()));
    }
    Ok(Some(local::LocalTree {
        shown: direct::shown_path(&dir, project_dir),
        dir,
        writes,
    }))
}

/// Why a `sources` entry is refused: the recipe text at fault and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceProblem {
    pub found: String,
    pub message: String,
}

/// Resolves a prepared layer (or takes the lock's pins) and installs it into a tree. Without
/// `install`, the tree only marks each distribution's `.dist-info` directory, which is what the
/// layers above need to know of it. `offline`: no index is configured or asked, nothing is
/// built; every pinned file (and the wheel built from each sdist) must be in the cache.
/// `lock_required`: a project directory whose tree differs from its pin is an error rather than
/// a reason to resolve again.
pub(crate) fn layer_tree(
    spec: &PipSpec,
    prepared: &Prepared,
    cache: &Cache,
    pinned: Option<&[LockedWheel]>,
    install: bool,
    offline: bool,
    lock_required: bool,
) -> Result<(LayerTree, Vec<LockedWheel>), PipError> {
    let recipe_indexes = recipe_indexes(spec);
    let sources = if offline {
        index::Sources {
            offline: true,
            ..Default::default()
        }
    } else {
        config::sources(&recipe_indexes, &prepared.requirements)?
    };
    let index = PackageIndex::new(sources, cache)?;
    let target = &prepared.target;
    let builder =
        |file: &DistFile| -> Result<(metadata::CoreMetadata, DistFile), resolve::BuildError> {
            let (built, _) = build_sdist(&index, file, target, cache, &[])?;
            let meta = index.metadata(&built)?;
            Ok((meta, built))
        };
    let formats = &prepared.requirements.formats;
    let directs = &prepared.requirements.direct;
    // A project directory whose code changed since the lock: resolved again, as any layer
    // whose inputs changed, or under `--locked` refused naming the directory.
    let pinned = match pinned {
        Some(pins) if trees_changed(pins, directs, lock_required)? => None,
        other => other,
    };
    let mut locked: Vec<LockedWheel> = match pinned {
        Some(pins) => {
            // Checked before anything is fetched or built: a lock is no way around the rule.
            for pin in pins {
                pin.check()?;
                if pin.direct.is_none() {
                    check_pinned_format(pin, formats)?;
                }
            }
            pins.to_vec()
        }
        None => {
            // Every direct reference becomes one wheel first: its name and dependencies are
            // what the resolver needs of it.
            let mut direct_wheels: BTreeMap<String, direct::DirectWheel> = BTreeMap::new();
            let mut direct_roots = Vec::new();
            for reference in directs {
                let built = direct::wheel_of(reference, &index, target, cache)?;
                if reference.requested {
                    direct_roots.push(resolve::DirectRoot {
                        name: built.name.clone(),
                        extras: reference.extras.clone(),
                        marker: reference.marker.clone(),
                    });
                }
                match direct_wheels.get_mut(&built.name) {
                    Some(first) if first.pin.direct != built.pin.direct => {
                        return Err(PipError::DirectTwice {
                            name: built.name,
                            first: first.pin.direct.clone().unwrap_or_default(),
                            second: reference.shown.clone(),
                        });
                    }
                    Some(first) => first.pin.requested |= reference.requested,
                    None => {
                        direct_wheels.insert(built.name.clone(), built);
                    }
                }
            }
            let mut direct_dists = BTreeMap::new();
            for (name, built) in &direct_wheels {
                let meta = index.metadata(&built.file)?;
                direct_dists.insert(
                    name.clone(),
                    resolve::DirectDist {
                        file: built.file.clone(),
                        meta,
                    },
                );
            }
            let input = resolve::Input {
                requirements: &prepared.requirements,
                below: &prepared.below,
                direct: &direct_dists,
                direct_roots: &direct_roots,
            };
            let requested: Vec<String> = prepared
                .requirements
                .requirements
                .iter()
                .map(|p| wheel::normalize_name(p.requirement.name.as_ref()))
                .chain(direct_roots.iter().map(|root| root.name.clone()))
                .collect();
            resolve::resolve(&index, target, &input, &builder)?
                .into_iter()
                .filter(|r| {
                    spec.only.is_empty() || spec.only.iter().any(|p| glob_match(p, &r.name))
                })
                .map(|r| {
                    if let Some(built) = direct_wheels.get(&r.name) {
                        return Ok(LockedWheel {
                            requested: requested.contains(&r.name),
                            ..built.pin.clone()
                        });
                    }
                    let sha256 = match &r.file.sha256 {
                        Some(digest) => digest.clone(),
                        None => index.download(&r.file).map(|(_, digest)| digest)?,
                    };
                    // Resolving built it for its metadata: this finds the cached wheel.
                    let (built_sha256, build_requires) = match r.file.kind {
                        DistKind::Sdist => {
                            let (_, built, build_requires) =
                                built_wheel(&index, &r.file, target, cache, &[])?;
                            (Some(built), build_requires)
                        }
                        DistKind::Wheel(_) => (None, Vec::new()),
                    };
                    Ok(LockedWheel {
                        requested: requested.contains(&r.name),
                        name: r.name,
                        version: r.version.to_string(),
                        filename: r.file.filename,
                        sha256,
                        built_sha256,
                        build_requires,
                        direct: None,
                        tree_sha256: None,
                        replaces: None,
                    })
                })
                .collect::<Result<_, PipError>>()?
        }
    };
    // What each pin replaces below, from the image below as it is now (a lock made on
    // another base has other inputs and is not used).
    for pin in &mut locked {
        pin.replaces = replaced_version(prepared, pin);
    }
    let mut tree = LayerTree::default();
    if let Some(venv) = &prepared.venv {
        add_venv(&mut tree, venv, target);
    }
    if !install {
        for pin in &locked {
            let dist_info = format!(
                "{}/{}-{}.dist-info",
                target.scheme.purelib,
                pin.name.replace('-', "_"),
                pin.version
            );
            tree.insert(
                // The pin's name and version were checked above, the site path when detected.
                ImagePath::new(&dist_info).expect("checked names make valid dist-info paths"),
                Entry {
                    kind: EntryKind::Directory,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
            );
        }
        remove_replaced(&mut tree, prepared, &locked, false)?;
        return Ok((tree, locked));
    }
    // Pins from the index are found, downloaded (hash checked) and, as wheels, extracted into
    // the cache by workers a few pins ahead of the install, which takes them in the lock's
    // order; a direct reference is built here, in its turn.
    let fetch_ahead = |pin: &LockedWheel| {
        if pin.direct.is_some() {
            return Ok(None);
        }
        let (file, path) = fetch_pin(&index, pin, cache)?;
        // An sdist is built ahead too: its turn finds the wheel in the cache (a failure is
        // reported in its turn, as it would have been).
        if file.kind == DistKind::Sdist {
            built_wheel(&index, &file, target, cache, &pin.build_requires)?;
        }
        Ok(Some((file, path)))
    };
    let pins = locked.clone();
    let mut next_pin = locked.iter_mut();
    let mut install_one = |fetched: Result<Option<(DistFile, PathBuf)>, PipError>| {
        let pin = next_pin.next().expect("one result per pin");
        install_pin(pin, fetched?, &index, directs, target, cache, &mut tree)
    };
    crate::workers::in_order(
        &pins,
        FETCH_WORKERS,
        FETCH_AHEAD,
        fetch_ahead,
        &mut install_one,
    )??;
    remove_replaced(&mut tree, prepared, &locked, true)?;
    Ok((tree, locked))
}

/// A pin from the index downloaded (checked against its SHA256) and, as a wheel, extracted
/// into the cache, or found there; one thread at a time per pin, so a prefetch and the layer
/// that reach it together do the work once.
fn fetch_pin(
    index: &PackageIndex<'_>,
    pin: &LockedWheel,
    cache: &Cache,
) -> Result<(DistFile, PathBuf), PipError> {
    crate::workers::exclusive(&cache.blob_path(&pin.sha256), || {
        let file = pinned_file(index, pin)?;
        let (path, _) = index.download(&file)?;
        if let DistKind::Wheel(_) = file.kind {
            let wheel = wheel::WheelFile {
                path: &path,
                filename: &file.filename,
                sha256: pin.sha256.hex(),
                requested: pin.requested,
            };
            crate::workers::extraction(|| wheel::unpack_cached(&wheel, cache))?;
        }
        Ok((file, path))
    })
}

/// Jobs that put `pins` into the cache ahead of the layer's build (see [`fetch_pin`]), with
/// the checks building makes before it fetches anything; a pin that fails them, or a job that
/// fails, is left to the build, which reports it in order.
pub(crate) fn prefetch_jobs<'s>(
    spec: &PipSpec,
    pins: Vec<LockedWheel>,
    cache: &'s Cache,
) -> Vec<crate::source::locked::PrefetchJob<'s>> {
    let index = requirements_of(spec).and_then(|requirements| {
        let sources = config::sources(&recipe_indexes(spec), &requirements)?;
        Ok((requirements, PackageIndex::new(sources, cache)?))
    });
    let (requirements, index) = match index {
        Ok(found) => found,
        Err(error) => {
            tracing::debug!(%error, "pip layer not prefetched");
            return Vec::new();
        }
    };
    let index = std::sync::Arc::new(index);
    pins.into_iter()
        .filter(|pin| {
            // What an earlier build extracted costs nothing to skip here.
            pin.direct.is_none()
                && !wheel::is_unpacked(pin.sha256.hex(), cache)
                && pin.check().is_ok()
                && check_pinned_format(pin, &requirements.formats).is_ok()
        })
        .map(|pin| {
            let index = index.clone();
            Box::new(move || {
                if let Err(error) = fetch_pin(&index, &pin, cache) {
                    tracing::debug!(%error, pin = pin.name, "not prefetched");
                }
            }) as crate::source::locked::PrefetchJob<'s>
        })
        .collect()
}

/// Workers that fetch and extract a pip layer's wheels, and how many pins they may be ahead of
/// the install: downloads wait on the network and extraction on the CPU, so a few of each
/// overlap; what waits ahead is files in the cache, not bytes in memory.
const FETCH_WORKERS: usize = 4;
const FETCH_AHEAD: usize = 8;

/// Installs one pin into the tree: its file as the workers fetched it (None: a direct
/// reference, found and built here).
fn install_pin(
    pin: &mut LockedWheel,
    fetched: Option<(DistFile, PathBuf)>,
    index: &PackageIndex<'_>,
    directs: &[direct::Direct],
    target: &PythonTarget,
    cache: &Cache,
    tree: &mut LayerTree,
) -> Result<(), PipError> {
    let (file, mut path) = match fetched {
        Some(fetched) => fetched,
        None => {
            let shown = pin.direct.as_deref().unwrap_or_default();
            let file =
                direct::pinned_file(find_direct(directs, shown, pin)?, pin, index, target, cache)?;
            let (path, _) = index.download(&file)?;
            (file, path)
        }
    };
    let mut filename = file.filename.clone();
    let mut sha256 = pin.sha256.clone();
    if file.kind == DistKind::Sdist {
        let (built, build_requires);
        (built, sha256, build_requires) =
            built_wheel(index, &file, target, cache, &pin.build_requires)?;
        if pin.build_requires.is_empty() {
            pin.build_requires = build_requires;
        }
        match &pin.built_sha256 {
            Some(pinned) if *pinned != sha256 => {
                return Err(PipError::BuiltDiffers {
                    name: pin.name.clone(),
                    version: pin.version.clone(),
                    built: sha256.hex().to_owned(),
                    pinned: pinned.hex().to_owned(),
                });
            }
            Some(_) => {}
            // A lock entry from before built wheels were pinned: pinned from now on.
            None => pin.built_sha256 = Some(sha256.clone()),
        }
        path = index.download(&built)?.0;
        filename = built.filename;
    }
    wheel::install_wheel(
        tree,
        &target.scheme,
        &wheel::WheelFile {
            path: &path,
            filename: &filename,
            sha256: sha256.hex(),
            requested: pin.requested,
        },
        cache,
    )?;
    Ok(())
}

/// Whites out what each replaced distribution installed below: with `install`, every file its
/// RECORD lists; without, only its `.dist-info`, which is all the layers above look at.
fn remove_replaced(
    tree: &mut LayerTree,
    prepared: &Prepared,
    locked: &[LockedWheel],
    install: bool,
) -> Result<(), PipError> {
    for pin in locked.iter().filter(|pin| pin.replaces.is_some()) {
        let name = wheel::normalize_name(&pin.name);
        let Some(old) = prepared.below.get(&name) else {
            continue;
        };
        if install {
            replace::remove_installed(tree, &name, old, &pin.version, &prepared.target.scheme)?;
        } else {
            tree.insert(
                ImagePath::new(&old.dist_info).expect("scanned dist-info paths are clean"),
                Entry::whiteout(),
            );
        }
    }
    Ok(())
}

/// The direct reference a lock entry names (`direct = "./app"`).
fn find_direct<'d>(
    directs: &'d [direct::Direct],
    shown: &str,
    pin: &LockedWheel,
) -> Result<&'d direct::Direct, PipError> {
    directs
        .iter()
        .find(|d| d.shown == shown)
        .ok_or_else(|| PipError::BadPin {
            entry: pin.name.escape_debug().to_string(),
            what: "the direct reference",
            value: shown.escape_debug().to_string(),
            problem: "the layer's requirements do not name",
        })
}

/// Whether a project directory the lock pins has other content now. Where the build must keep
/// to the lock that is an error naming the directory.
fn trees_changed(
    pins: &[LockedWheel],
    directs: &[direct::Direct],
    lock_required: bool,
) -> Result<bool, PipError> {
    for pin in pins {
        let Some(shown) = &pin.direct else { continue };
        let reference = find_direct(directs, shown, pin)?;
        let direct::Location::Tree(tree) = &reference.location else {
            continue;
        };
        let now = tree.content_hash()?;
        if pin.tree_sha256.as_ref() == Some(&now) {
            continue;
        }
        if lock_required {
            return Err(PipError::TreeChanged {
                dir: tree.shown.clone(),
                now: now.hex().to_owned(),
                pinned: pin
                    .tree_sha256
                    .as_ref()
                    .map_or("nothing".to_owned(), |d| d.hex().to_owned()),
            });
        }
        return Ok(true);
    }
    Ok(false)
}

/// `*` matches any run of characters; everything else matches itself (names are normalised).
fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase().replace('_', "-");
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Refuses a pin whose kind of file `--only-binary` or `--no-binary` rules out for it.
fn check_pinned_format(
    pin: &LockedWheel,
    formats: &requirements::FormatControl,
) -> Result<(), PipError> {
    let allowed = formats.formats(&wheel::normalize_name(&pin.name));
    let is_wheel = pin.filename.ends_with(".whl");
    let (name, version, filename) = (pin.name.clone(), pin.version.clone(), pin.filename.clone());
    if is_wheel && !allowed.binary {
        return Err(PipError::LockedWheel {
            name,
            version,
            filename,
        });
    }
    if !is_wheel && !allowed.source {
        return Err(PipError::LockedSdist {
            name,
            version,
            filename,
        });
    }
    Ok(())
}

/// The file a lock entry names, found in the cache (no network) or on the index.
/// The version of the distribution installed below that `pin` replaces, if it is another.
pub(crate) fn replaced_version(prepared: &Prepared, pin: &LockedWheel) -> Option<String> {
    let version = Version::from_str(&pin.version).ok();
    prepared
        .below
        .get(&wheel::normalize_name(&pin.name))
        .filter(|installed| version.as_ref() != Some(&installed.version))
        .map(|installed| installed.version.to_string())
}

fn pinned_file(index: &PackageIndex<'_>, pin: &LockedWheel) -> Result<DistFile, PipError> {
    let kind = if pin.filename.ends_with(".whl") {
        DistKind::Wheel(wheel::parse_wheel_filename(&pin.filename)?)
    } else {
        DistKind::Sdist
    };
    let version = Version::from_str(&pin.version).map_err(|_| PipError::NotOnIndex {
        name: pin.name.clone(),
        version: pin.version.clone(),
        filename: pin.filename.clone(),
    })?;
    let cached = Some(index_cache_path(index, &pin.sha256)).filter(|p| p.is_file());
    let url = match cached {
        Some(path) => path.display().to_string(),
        None => index
            .file_named(&pin.name, &pin.filename)?
            .map(|f| f.url)
            .ok_or_else(|| PipError::NotOnIndex {
                name: pin.name.clone(),
                version: pin.version.clone(),
                filename: pin.filename.clone(),
            })?,
    };
    Ok(DistFile {
        filename: pin.filename.clone(),
        url,
        // The lock's hash, not the index's: a changed file on the index is refused.
        sha256: Some(pin.sha256.clone()),
        requires_python: None,
        yanked: false,
        metadata: None,
        version,
        kind,
    })
}

fn index_cache_path(index: &PackageIndex<'_>, digest: &crate::digest::Digest) -> PathBuf {
    index.cache().blob_path(digest)
}

/// The wheel built from an sdist (built now, or found in the cache), its SHA256 and the build
/// requirements it was built with; `build_requires` pins them where a lock recorded them.
fn built_wheel(
    index: &PackageIndex<'_>,
    file: &DistFile,
    target: &PythonTarget,
    cache: &Cache,
    build_requires: &[String],
) -> Result<(DistFile, Digest, Vec<String>), PipError> {
    let (built, build_requires) = build_sdist(index, file, target, cache, build_requires)?;
    let (_, sha256) = index.download(&built)?;
    Ok((
        DistFile {
            sha256: Some(sha256.clone()),
            ..built
        },
        sha256,
        build_requires,
    ))
}

/// Builds an sdist (cached by its hash) and checks that the wheel fits the target.
fn build_sdist(
    index: &PackageIndex<'_>,
    file: &DistFile,
    target: &PythonTarget,
    cache: &Cache,
    build_requires: &[String],
) -> Result<(DistFile, Vec<String>), PipError> {
    let (path, sha256) = index.download(file)?;
    let (wheel_path, build_requires) = sdist::build_wheel(
        &sdist::Sdist {
            path: &path,
            filename: &file.filename,
            sha256: &sha256,
        },
        index.sources(),
        cache,
        build_requires,
    )?;
    let built = fitting_wheel(&wheel_path, target)?;
    Ok((built, build_requires))
}

/// The wheel a build wrote at `wheel_path`, refused unless it fits the target.
pub(crate) fn fitting_wheel(
    wheel_path: &std::path::Path,
    target: &PythonTarget,
) -> Result<DistFile, PipError> {
    let filename = wheel_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fitting_named_wheel(wheel_path, filename, target)
}

/// [`fitting_wheel`] of a file whose name is not its wheel file name (a cache blob).
pub(crate) fn fitting_named_wheel(
    wheel_path: &std::path::Path,
    filename: String,
    target: &PythonTarget,
) -> Result<DistFile, PipError> {
    let name = wheel::parse_wheel_filename(&filename)?;
    let version = Version::from_str(&name.version).map_err(|_| PipError::DirectFileName {
        filename: filename.clone(),
    })?;
    let built = DistFile {
        filename,
        url: wheel_path.display().to_string(),
        sha256: None,
        requires_python: None,
        yanked: false,
        metadata: None,
        version,
        kind: DistKind::Wheel(name),
    };
    check_fits(&built, target)?;
    Ok(built)
}

/// Refuses a wheel whose tags do not fit the target.
pub(crate) fn check_fits(file: &DistFile, target: &PythonTarget) -> Result<(), PipError> {
    let DistKind::Wheel(name) = &file.kind else {
        return Ok(());
    };
    let tags = target.compatible_tags();
    if PythonTarget::wheel_rank(
        &tags,
        &name.python_tags,
        &name.abi_tags,
        &name.platform_tags,
    )
    .is_none()
    {
        return Err(PipError::NeedsCompiling {
            package: format!("{} {}", name.name, name.version),
            tags: format!(
                "cp{}{} on {} ({:?})",
                target.major_minor().0,
                target.major_minor().1,
                target.machine,
                target.libc
            ),
        });
    }
    Ok(())
}

/// The files that make a directory a virtual environment for the image's interpreter.
fn add_venv(tree: &mut LayerTree, venv: &str, target: &PythonTarget) {
    let (major, minor) = target.major_minor();
    // `detect_target` refused a venv with `..` or a NUL; the rest of each path is fixed.
    let path = |p: String| ImagePath::new(&p).expect("a checked venv makes valid paths");
    let home = target
        .scheme
        .interpreter
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_owned())
        .unwrap_or_default();
    let base_interpreter = format!("{home}/python{major}.{minor}");
    let home = if home.starts_with(venv) {
        "/usr/bin".to_owned()
    } else {
        home
    };
    let config = format!(
        "home = {home}\ninclude-system-site-packages = false\nversion = {}\n",
        target.version
    );
    let file = |text: String| super::tree_util::inline_file(text, 0o644);
    let link = super::tree_util::symlink;
    let venv = venv.trim_end_matches('/');
    tree.insert(path(format!("{venv}/pyvenv.cfg")), file(config));
    let interpreter = if base_interpreter.starts_with(venv) {
        format!("/usr/bin/python{major}.{minor}")
    } else {
        base_interpreter
    };
    tree.insert(path(format!("{venv}/bin/python")), link(&interpreter));
    tree.insert(path(format!("{venv}/bin/python{major}")), link("python"));
    tree.insert(
        path(format!("{venv}/bin/python{major}.{minor}")),
        link("python"),
    );
    tree.insert(
        path(format!("{venv}/lib/python{major}.{minor}/site-packages")),
        Entry {
            kind: EntryKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use target::Libc;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u7\n\nPackage: libpython3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u6\n\nPackage: libpython3.9-minimal\nStatus: deinstall ok config-files\nVersion: 3.9.2-1\n";

    #[test]
    fn detects_debian_python_exactly() {
        let base = PythonBase {
            dpkg_status: STATUS.to_owned(),
            ..Default::default()
        };
        let target = detect_target(&PipSpec::default(), &base, "arm64", None).unwrap();
        assert_eq!(target.version, "3.11.2");
        assert_eq!(target.machine, "aarch64");
        assert_eq!(
            target.libc,
            Libc::Glibc {
                major: 2,
                minor: 36
            }
        );
        assert_eq!(
            target.scheme.purelib,
            "/usr/local/lib/python3.11/dist-packages"
        );
        assert_eq!(target.scheme.interpreter, "/usr/bin/python3.11");
        let venv = PipSpec {
            venv: Some("/opt/venv".to_owned()),
            ..Default::default()
        };
        let target = detect_target(&venv, &base, "amd64", None).unwrap();
        assert_eq!(
            target.scheme.purelib,
            "/opt/venv/lib/python3.11/site-packages"
        );
        assert_eq!(target.scheme.interpreter, "/opt/venv/bin/python");
    }

    #[test]
    fn globs_match_normalised_names() {
        assert!(glob_match("nvidia-*", "nvidia-cudnn-cu12"));
        assert!(glob_match("NVIDIA_*", "nvidia-cublas-cu13"));
        assert!(glob_match("*-cu12", "nvidia-cublas-cu12"));
        assert!(glob_match("torch", "torch"));
        assert!(!glob_match("torch", "torchvision"));
        assert!(!glob_match("nvidia-*", "triton"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn detects_conda_python_and_refuses_no_python() {
        let base = PythonBase {
            dpkg_status: STATUS.to_owned(),
            conda_pythons: vec![("/opt/conda".to_owned(), "3.11.9".to_owned())],
            ..Default::default()
        };
        let target = detect_target(&PipSpec::default(), &base, "amd64", None).unwrap();
        assert_eq!(target.version, "3.11.9");
        assert_eq!(
            target.scheme.purelib,
            "/opt/conda/lib/python3.11/site-packages"
        );
        assert_eq!(target.scheme.scripts, "/opt/conda/bin");
        let err =
            detect_target(&PipSpec::default(), &PythonBase::default(), "amd64", None).unwrap_err();
        assert!(matches!(err, PipError::NoPython));
        let bad = PipSpec {
            python: Some("three".to_owned()),
            ..Default::default()
        };
        assert!(matches!(
            detect_target(&bad, &base, "amd64", None).unwrap_err(),
            PipError::BadPython(_)
        ));
    }

    fn pin(name: &str, version: &str, filename: &str) -> LockedWheel {
        LockedWheel {
            name: name.to_owned(),
            version: version.to_owned(),
            filename: filename.to_owned(),
            sha256: Digest::of_bytes(b"wheel"),
            built_sha256: None,
            build_requires: Vec::new(),
            requested: true,
            direct: None,
            tree_sha256: None,
            replaces: None,
        }
    }

    /// A lock entry whose name or version is no distribution's: before, the `.dist-info` path
    /// made from it panicked ("dist-info paths are valid"); now the entry is refused by name.
    #[test]
    fn a_hostile_lock_entry_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let base = PythonBase {
            dpkg_status: STATUS.to_owned(),
            ..Default::default()
        };
        let spec = PipSpec::default();
        let prepared = Prepared {
            requirements: Requirements::default(),
            target: detect_target(&spec, &base, "amd64", None).unwrap(),
            below: BTreeMap::new(),
            inputs: String::new(),
            venv: None,
        };
        let good = pin("demo", "1.0", "demo-1.0-py3-none-any.whl");
        for (bad, what) in [
            (pin("../../x", "1.0", "x-1.0-py3-none-any.whl"), "the name"),
            (
                pin("demo\0", "1.0", "demo-1.0-py3-none-any.whl"),
                "the name",
            ),
            (
                pin("demo\n", "1.0", "demo-1.0-py3-none-any.whl"),
                "the name",
            ),
            (pin("..", "1.0", "demo-1.0-py3-none-any.whl"), "the name"),
            (
                pin("demo", "1.0/../../..", "demo-1.0-py3-none-any.whl"),
                "the version",
            ),
            (
                pin("demo", "1.0\0", "demo-1.0-py3-none-any.whl"),
                "the version",
            ),
            (
                pin("demo", "1.0", "../demo-1.0-py3-none-any.whl"),
                "the file name",
            ),
            (pin("demo", "1.0", ".."), "the file name"),
        ] {
            let pins = [good.clone(), bad.clone()];
            let error = layer_tree(&spec, &prepared, &cache, Some(&pins), false, true, true)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was taken"));
            let text = error.to_string();
            assert!(matches!(error, PipError::BadPin { .. }), "{text}");
            assert!(text.contains(crate::lock::LOCK_FILE), "{text}");
            assert!(text.contains(what), "{text}");
            assert!(!text.contains(char::is_control), "{text}");
        }
        let (tree, locked) =
            layer_tree(&spec, &prepared, &cache, Some(&[good]), false, true, true).unwrap();
        assert_eq!(locked.len(), 1);
        assert!(
            tree.get(
                &ImagePath::new("usr/local/lib/python3.11/dist-packages/demo-1.0.dist-info")
                    .unwrap()
            )
            .is_some()
        );
    }

    /// `python = "3.+11"` passed the `parse::<u32>` check and is no PEP 440 version: the
    /// target's `full_version` panicked when the resolver asked for it.
    #[test]
    fn a_python_version_with_a_sign_is_refused() {
        let base = PythonBase {
            dpkg_status: STATUS.to_owned(),
            ..Default::default()
        };
        assert!(
            Version::from_str("3.+11").is_err(),
            "the case below is moot"
        );
        for version in ["3.+11", "+3.11.2", "3.11.+2", "3..11", "3.11 "] {
            let spec = PipSpec {
                python: Some(version.to_owned()),
                ..Default::default()
            };
            let error = detect_target(&spec, &base, "amd64", None).unwrap_err();
            assert!(
                matches!(error, PipError::BadPython(_)),
                "{version}: {error}"
            );
        }
        let spec = PipSpec {
            python: Some("3.12.1".to_owned()),
            ..Default::default()
        };
        let target = detect_target(&spec, &base, "amd64", None).unwrap();
        assert_eq!(target.full_version().to_string(), "3.12.1");
    }

    /// A venv with `..` or a NUL: its `pyvenv.cfg` path panicked ("venv paths are valid").
    #[test]
    fn a_venv_that_is_no_image_path_is_refused() {
        let base = PythonBase {
            dpkg_status: STATUS.to_owned(),
            ..Default::default()
        };
        for venv in [
            "../venv",
            "/opt/../../venv",
            "/opt/v\0",
            "opt/venv",
            "/opt/\nvenv",
        ] {
            let spec = PipSpec {
                venv: Some(venv.to_owned()),
                ..Default::default()
            };
            let error = detect_target(&spec, &base, "amd64", None).unwrap_err();
            assert!(matches!(error, PipError::BadVenv(_)), "{venv}: {error}");
            assert!(!error.to_string().contains(char::is_control), "{error}");
        }
        let spec = PipSpec {
            venv: Some("/opt/venv/".to_owned()),
            ..Default::default()
        };
        assert!(detect_target(&spec, &base, "amd64", None).is_ok());
    }
}
