//! The package kinds whose layers a lock file pins (Debian, pip, conda), as one interface.
//!
//! A kind says what its recipe key reads ([`LockedSource::Spec`], checked by
//! [`LockedSource::check_spec`]), where its layers go in `recipes/recipes.lock` (its table and
//! the field, beside target and layer number, that names what its pins were resolved for), what
//! one pin is, what its lock key and inputs hash are made of ([`LockedSource::prepare`]), which
//! inputs its pins need offline and used online ([`LockedSource::needs`],
//! [`LockedSource::used`]) and how a layer tree is built from pins and the image below
//! ([`LockedSource::build_tree`]). `crate::recipe`, `crate::build`, `crate::lock` and
//! `crate::offline` are written once over this trait and the list of kinds in
//! [`kinds`](super::kinds); an offline build provides a layer's inputs before its source runs.
//!
//! Adding a kind: its module, with its spec and pin types and an implementation of this trait;
//! `pub mod` and its error's `#[from]` variant in `source/mod.rs`; one line in
//! [`kinds`](super::kinds).

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SourceError;
use crate::digest::Digest;
use crate::image::spec::Platform;
use crate::layer::LayerTree;
use crate::layer::cache::Cache;

/// A package kind whose layers are resolved once and then installed from pins.
pub trait LockedSource: 'static {
    /// The recipe key of a `[[layer]]` of this kind and the lock file's table of its layers:
    /// `debian = { … }` in a recipe, `[[debian]]` in the lock.
    const SECTION: &'static str;
    /// The field of a lock entry that says what its pins were resolved for, beside the target
    /// and layer number: packages differ per architecture, platform or subdir.
    const KEY_FIELD: &'static str;
    /// The kinds of `inputs.json` entries this kind's inputs are listed as.
    const INPUT_KINDS: &'static [InputKind];
    /// One pinned package, as the lock file writes it (`[[SECTION.packages]]`).
    type Pin: Clone + fmt::Debug + Eq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The layer's spec, as the recipe gives it under [`LockedSource::SECTION`].
    type Spec: Clone + fmt::Debug + DeserializeOwned + Send + Sync + 'static;
    /// What [`LockedSource::prepare`] found that building the tree needs again.
    type Prepared;

    /// Checks a spec as the recipe gives it (variables substituted) before anything runs:
    /// requests parse, paths exist and become absolute under the project directory.
    fn check_spec(spec: &Self::Spec, recipe: &SpecContext) -> Result<Self::Spec, SpecProblem>;

    /// How history and progress lines name the layer (`debian bookworm: python3`).
    fn describe(spec: &Self::Spec) -> String;

    /// Directories put in front of the image's PATH by a layer of this kind, as activating it
    /// would (conda's `PREFIX/bin`).
    fn path_prepend(_spec: &Self::Spec) -> Vec<String> {
        Vec::new()
    }

    /// Called first: the layer's lock key and inputs hash, from its spec and the image below.
    fn prepare(
        spec: &Self::Spec,
        below: &dyn Below,
    ) -> Result<Prepared<Self::Prepared>, SourceError>;

    /// Called once the lock was read (and, offline, the pins' inputs provided): the layer's
    /// entries, installing `pins` or, when None, what resolving the spec gives; and the pins.
    fn build_tree(
        spec: &Self::Spec,
        prepared: &Self::Prepared,
        pins: Option<&[Self::Pin]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<Self::Pin>), SourceError>;

    /// Says what the layer built from `pins` does to the layers below that its user should
    /// know (a pip layer replacing a version installed there), through [`Below::note`]. Called
    /// by `build_tree`, and where the layer is found under its locked key instead of built.
    fn notes(_prepared: &Self::Prepared, _pins: &[Self::Pin], _below: &dyn Below) {}

    /// Whether `pins` still describe the layer as the checkout now has it, as far as building
    /// from them would find out: a pin of a project directory whose files changed since does
    /// not (building resolves it again, or under `--locked` refuses). A registry layer cache
    /// looks for a pinned layer before building it, so it asks this first.
    fn pins_current(_prepared: &Self::Prepared, _pins: &[Self::Pin]) -> Result<bool, SourceError> {
        Ok(true)
    }

    /// The lock key ([`LockedSource::KEY_FIELD`]) of a layer built for `platform`, where the
    /// platform alone decides it; None leaves the kind's layers out of prefetching.
    fn lock_key(_platform: &Platform) -> Option<String> {
        None
    }

    /// Jobs that each put one of `pins` into the cache as building the layer would (downloaded
    /// and checked against its pin, extracted), for a prefetch to run ahead of the layer while
    /// the layers before it are built. A job's failure is dropped: the build meets it again,
    /// in order, and reports it.
    fn prefetch<'s>(
        _spec: &Self::Spec,
        _pins: Vec<Self::Pin>,
        _context: &PrefetchContext<'s>,
    ) -> Vec<PrefetchJob<'s>> {
        Vec::new()
    }

    /// Whether building from `pins` would record nothing new in them (what a build adds to a
    /// pin the lock wrote before it recorded it, such as the hash of a wheel built from an
    /// sdist). A build that may change the lock finds a layer under its locked key only then,
    /// so that the lock still learns what its pins lack.
    fn pins_complete(_prepared: &Self::Prepared, _pins: &[Self::Pin]) -> bool {
        true
    }

    /// What an offline build must have in the cache before this kind's source runs on `pins`
    /// (`oci-build build --offline` provides each from the inputs directory).
    fn needs(pins: &[Self::Pin], cache: &Cache) -> Vec<Needed>;

    /// What a build that installed `pins` used, with sizes, for `oci-build fetch` to carry.
    /// The build left each file in `cache`.
    fn used(pins: &[Self::Pin], cache: &Cache) -> Vec<Input>;

    /// How messages name one of this kind's inputs.
    fn describe_input(input: &Input) -> String;

    /// Checks an `inputs.json` entry of this kind beyond its types (its file name by the
    /// kind's grammar); `Err` is the reason.
    fn check_input(input: &Input) -> Result<(), String>;

    /// Puts `derived` (an input [`Needed::derived`] asked for, its blob at `blob` in the
    /// cache) where this kind's source looks for it.
    fn place_derived(cache: &Cache, derived: &Input, blob: &Path) -> Result<(), SourceError> {
        let _ = (cache, blob);
        unreachable!(
            "{} asked for a derived input {} it does not place",
            Self::SECTION,
            derived.kind
        )
    }
}

/// One package put into the cache ahead of the layer that installs it.
pub(crate) type PrefetchJob<'s> = Box<dyn FnOnce() + Send + 's>;

/// What a prefetch uses.
pub struct PrefetchContext<'s> {
    pub cache: &'s Cache,
    /// The Debian archives, where the host's configuration could be read (the build reports
    /// why not).
    pub archives: Option<&'s super::debian::Archives>,
}

/// What a spec check knows of the recipe: the layer's number and the project directory.
pub struct SpecContext<'a> {
    /// 1-based, as messages count layers.
    pub layer: usize,
    pub root: &'a Path,
}

/// Why a spec was refused: the text of the recipe at fault (to find its line) and the reason.
#[derive(Debug)]
pub struct SpecProblem {
    pub found: String,
    pub message: String,
}

impl SpecProblem {
    pub fn new(found: impl Into<String>, message: impl Into<String>) -> SpecProblem {
        SpecProblem {
            found: found.into(),
            message: message.into(),
        }
    }
}

/// A layer's lock key (its [`LockedSource::KEY_FIELD`]) and inputs hash, and what the kind keeps
/// for building its tree.
pub struct Prepared<T> {
    pub key: String,
    pub inputs: String,
    pub data: T,
}

/// What a locked source may ask of the build about the image a layer goes on. Each is read
/// only when asked: finding the dpkg status or the Python below means reading layers.
pub trait Below {
    fn platform(&self) -> &Platform;
    /// `/var/lib/dpkg/status` as the layers below leave it, empty when there is none.
    fn dpkg_status(&self) -> Result<String, SourceError>;
    /// What the layers below hold for Python installs (and their symlinks).
    fn python_base(&self) -> Result<super::pip::scan::PythonBase, SourceError>;
    /// The Debian archives of the build host (none offline).
    fn archives(&self) -> Result<&super::debian::Archives, SourceError>;
    fn cache(&self) -> &Cache;
    fn source_date_epoch(&self) -> u64;
    /// False when only resolving: a `pip` layer then holds no files.
    fn install(&self) -> bool;
    fn offline(&self) -> bool;
    /// The build must keep to the lock (`--locked`, `--offline`, `fetch`): a pin that no
    /// longer fits (a project directory's changed code) is an error, not resolved again.
    fn lock_required(&self) -> bool;
    /// Tells the user something the layer does that they should know of (a distribution of
    /// the image below replaced by another version).
    fn note(&self, _text: &str) {}
}

/// An input that pins need offline.
#[derive(Clone, Debug)]
pub struct Needed {
    pub input: Input,
    /// The lock gives no size: the cache's file, else the inputs directory's listing, says it.
    pub size_unknown: bool,
    /// An input made online from this one that an offline site cannot make: the inputs
    /// directory lists it as this kind, `built_from` this input's SHA256, and the kind's
    /// [`LockedSource::place_derived`] puts it in place (a pip sdist's built wheel).
    pub derived: Option<InputKind>,
}

impl Needed {
    pub fn known(input: Input) -> Needed {
        Needed {
            input,
            size_unknown: false,
            derived: None,
        }
    }
}

/// An input of kind `kind` named as a package (not an image).
pub(crate) fn package_input(
    kind: InputKind,
    name: &str,
    version: &str,
    filename: &str,
    sha256: &Digest,
    size: u64,
) -> Input {
    Input {
        kind,
        name: name.to_owned(),
        version: version.to_owned(),
        filename: filename.to_owned(),
        sha256: sha256.clone(),
        size,
        platform: None,
        media_type: None,
        built_from: None,
    }
}

/// How [`LockedSource::describe_input`] names a package file: `{what} {filename} ({name}
/// {version}, sha256 <first 12 digits>…)`.
pub(crate) fn describe_package_file(what: &str, input: &Input) -> String {
    format!(
        "{what} {} ({} {}, sha256 {}…)",
        input.filename,
        input.name,
        input.version,
        &input.sha256.hex()[..12]
    )
}

/// A [`LockedSource::check_input`] reason: the input's file name and what is wrong with it.
pub(crate) fn bad_filename(input: &Input, reason: impl fmt::Display) -> String {
    format!(
        "its filename `{}` {reason}",
        crate::name::Shown(&input.filename)
    )
}

/// The size of a blob the cache holds; 0 when it does not.
pub(crate) fn cached_size(cache: &Cache, digest: &Digest) -> u64 {
    std::fs::metadata(cache.blob_path(digest)).map_or(0, |m| m.len())
}

/// What one entry of `inputs.json` (see `crate::offline`) is: `image` (a base image's blob) or
/// a kind a package source declares ([`LockedSource::INPUT_KINDS`]). Written as its name; read
/// only as a name some kind declares.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputKind {
    name: &'static str,
    /// Where entries sort in `inputs.json`: the order the kinds were registered in.
    rank: u8,
}

impl InputKind {
    /// The manifest, config or a layer of a `docker://` base.
    pub const IMAGE: InputKind = InputKind::new("image", 3);

    /// `rank` orders `inputs.json`; kinds give theirs in [`kinds`](super::kinds) order.
    pub const fn new(name: &'static str, rank: u8) -> InputKind {
        InputKind { name, rank }
    }

    pub fn name(self) -> &'static str {
        self.name
    }
}

impl PartialOrd for InputKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InputKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.rank, self.name).cmp(&(other.rank, other.name))
    }
}

impl fmt::Debug for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Serialize for InputKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl<'de> Deserialize<'de> for InputKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        super::kinds::input_kind(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown input kind `{}`",
                crate::name::Shown(&name)
            ))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Input {
    pub kind: InputKind,
    /// Package name, or for an image the reference (`registry/repository:tag`).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// File name as the lock (or index) names it; empty for images.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filename: String,
    #[serde(with = "crate::digest::bare_hex")]
    pub sha256: Digest,
    pub size: u64,
    /// Images: the platform (`linux/amd64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Images: the manifest's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// pip-built: the SHA256 of the sdist the wheel was built from.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::digest::bare_hex::option"
    )]
    pub built_from: Option<Digest>,
}
