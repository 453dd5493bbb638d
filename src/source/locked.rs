//! The package kinds whose layers a lock file pins (Debian, pip, conda), as one interface.
//!
//! A kind says where its layers go in `recipes/recipes.lock` (its table and the field, beside
//! target and layer number, that names what its pins were resolved for), what one pin is, what
//! its lock key and inputs hash are made of ([`LockedSource::prepare`]), which inputs its pins
//! need offline and used online ([`LockedSource::needs`], [`LockedSource::used`]) and how a
//! layer tree is built from pins and the image below ([`LockedSource::build_tree`]).
//! `crate::build`, `crate::lock` and `crate::offline` are written once over this trait; an
//! offline build provides a layer's inputs before its source runs.
//!
//! Adding a kind: its module with its spec and pin types and an implementation of the trait,
//! its variant of [`LayerSource`](super::LayerSource) (and the recipe key that fills it), one
//! line in [`layer_tree`](super::layer_tree) and one in `crate::lock`'s list of kinds.

use std::io::BufReader;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::SourceError;
use crate::digest::{Digest, digest_reader};
use crate::image::spec::Platform;
use crate::layer::LayerTree;
use crate::layer::cache::{Cache, CacheKeyBuilder};

/// A package kind whose layers are resolved once and then installed from pins.
pub trait LockedSource: 'static {
    /// The lock file's table of this kind's layers: `debian` is written `[[debian]]`.
    const SECTION: &'static str;
    /// The field of a lock entry that says what its pins were resolved for, beside the target
    /// and layer number: packages differ per architecture, platform or subdir.
    const KEY_FIELD: &'static str;
    /// One pinned package, as the lock file writes it (`[[SECTION.packages]]`).
    type Pin: Clone + std::fmt::Debug + Eq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The layer's spec, as the recipe gives it.
    type Spec;
    /// What [`LockedSource::prepare`] found that building the tree needs again.
    type Prepared;

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

    /// What an offline build must have in the cache before this kind's source runs on `pins`
    /// (`oci-build build --offline` provides each from the inputs directory).
    fn needs(pins: &[Self::Pin], cache: &Cache) -> Vec<Needed>;

    /// What a build that installed `pins` used, with sizes, for `oci-build fetch` to carry.
    /// The build left each file in `cache`.
    fn used(pins: &[Self::Pin], cache: &Cache) -> Vec<Input>;
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
}

/// An input that pins need offline.
#[derive(Clone, Debug)]
pub struct Needed {
    pub input: Input,
    /// The lock gives no size: the cache's file, else the inputs directory's listing, says it.
    pub size_unknown: bool,
    /// A pip sdist: an offline site cannot build it, so the wheel built from it online
    /// (listed as `pip-built`, `built_from` its SHA256) is provided too.
    pub built_wheel: bool,
}

impl Needed {
    fn known(input: Input) -> Needed {
        Needed {
            input,
            size_unknown: false,
            built_wheel: false,
        }
    }
}

/// An input of kind `kind` named as a package (not an image).
fn package_input(
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

/// The size of a blob the cache holds; 0 when it does not.
fn cached_size(cache: &Cache, digest: &Digest) -> u64 {
    std::fs::metadata(cache.blob_path(digest)).map_or(0, |m| m.len())
}

/// `debian` layers, pinned per Debian architecture (`amd64`).
pub struct Debian;

impl LockedSource for Debian {
    const SECTION: &'static str = "debian";
    const KEY_FIELD: &'static str = "arch";
    type Pin = super::debian::LockedDeb;
    type Spec = super::debian::DebianSpec;
    /// The architecture, the dpkg status and the symlinks below.
    type Prepared = (String, String, std::collections::BTreeMap<String, String>);

    fn prepare(
        spec: &Self::Spec,
        below: &dyn Below,
    ) -> Result<Prepared<Self::Prepared>, SourceError> {
        let platform = below.platform();
        let arch = super::debian::debian_arch(&platform.architecture, platform.variant.as_deref());
        let base_status = below.dpkg_status()?;
        let base_links = below.python_base()?.symlinks;
        // What resolving depends on: the spec, the architecture and the packages below.
        let mut key = CacheKeyBuilder::new("debian-lock-v1");
        key.field(
            serde_json::to_string(spec)
                .expect("specs serialise")
                .as_bytes(),
        )
        .field(arch.as_bytes())
        .field(base_status.as_bytes());
        Ok(Prepared {
            key: arch.clone(),
            inputs: key.finish().as_str().to_owned(),
            data: (arch, base_status, base_links),
        })
    }

    fn build_tree(
        spec: &Self::Spec,
        (arch, base_status, base_links): &Self::Prepared,
        pins: Option<&[Self::Pin]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<Self::Pin>), SourceError> {
        let archives = below.archives()?;
        let cache = below.cache();
        Ok(super::debian::layer_tree(
            spec,
            arch,
            base_status,
            base_links,
            archives,
            cache,
            pins,
        )?)
    }

    fn needs(pins: &[Self::Pin], cache: &Cache) -> Vec<Needed> {
        Self::used(pins, cache)
            .into_iter()
            .map(Needed::known)
            .collect()
    }

    fn used(pins: &[Self::Pin], _cache: &Cache) -> Vec<Input> {
        pins.iter()
            .map(|deb| {
                let (name, version) = (&deb.name, &deb.version);
                package_input(
                    InputKind::Deb,
                    name,
                    version,
                    &deb.filename,
                    &deb.sha256,
                    deb.size,
                )
            })
            .collect()
    }
}

/// `pip` layers, pinned per image platform (`linux/amd64`): wheels differ per platform.
pub struct Pip;

impl LockedSource for Pip {
    const SECTION: &'static str = "pip";
    const KEY_FIELD: &'static str = "platform";
    type Pin = super::pip::LockedWheel;
    type Spec = super::pip::PipSpec;
    type Prepared = super::pip::Prepared;

    fn prepare(
        spec: &Self::Spec,
        below: &dyn Below,
    ) -> Result<Prepared<Self::Prepared>, SourceError> {
        let base = below.python_base()?;
        let platform = below.platform();
        let prepared = super::pip::prepare(
            spec,
            &base,
            &platform.architecture,
            platform.variant.as_deref(),
        )?;
        Ok(Prepared {
            key: platform.to_string(),
            inputs: prepared.inputs.clone(),
            data: prepared,
        })
    }

    fn build_tree(
        spec: &Self::Spec,
        prepared: &Self::Prepared,
        pins: Option<&[Self::Pin]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<Self::Pin>), SourceError> {
        Ok(super::pip::layer_tree(
            spec,
            prepared,
            below.cache(),
            pins,
            below.source_date_epoch(),
            below.install(),
            below.offline(),
        )?)
    }

    fn needs(pins: &[Self::Pin], cache: &Cache) -> Vec<Needed> {
        pins.iter()
            .map(|pin| Needed {
                input: pip_input(pin, 0),
                // The lock has no sizes for pip files.
                size_unknown: true,
                built_wheel: !pin.filename.ends_with(".whl")
                    && super::pip::sdist::built_wheel(cache, &pin.sha256).is_none(),
            })
            .collect()
    }

    /// The pinned files, and for each sdist the wheel built from it.
    fn used(pins: &[Self::Pin], cache: &Cache) -> Vec<Input> {
        let mut inputs = Vec::new();
        for pin in pins {
            let size = cached_size(cache, &pin.sha256);
            inputs.push(pip_input(pin, size));
            if pin.filename.ends_with(".whl") {
                continue;
            }
            let Some(wheel) = super::pip::sdist::built_wheel(cache, &pin.sha256) else {
                continue;
            };
            let Ok((digest, size)) =
                std::fs::File::open(&wheel).and_then(|f| digest_reader(BufReader::new(f)))
            else {
                continue;
            };
            inputs.push(Input {
                kind: InputKind::PipBuilt,
                filename: wheel
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: digest,
                size,
                built_from: Some(pin.sha256.clone()),
                ..pip_input(pin, size)
            });
        }
        inputs
    }
}

fn pip_input(pin: &super::pip::LockedWheel, size: u64) -> Input {
    let (name, version) = (&pin.name, &pin.version);
    package_input(
        InputKind::Pip,
        name,
        version,
        &pin.filename,
        &pin.sha256,
        size,
    )
}

/// `conda` layers, pinned per conda subdir (`linux-64`).
pub struct Conda;

impl LockedSource for Conda {
    const SECTION: &'static str = "conda";
    const KEY_FIELD: &'static str = "subdir";
    type Pin = super::conda::LockedConda;
    type Spec = super::conda::CondaSpec;
    /// The conda subdir.
    type Prepared = String;

    fn prepare(
        spec: &Self::Spec,
        below: &dyn Below,
    ) -> Result<Prepared<Self::Prepared>, SourceError> {
        let platform = below.platform();
        let subdir = super::conda::conda_subdir(&platform.os, &platform.architecture)?;
        // What the solve depends on: the spec, the subdir and the assumed virtual packages.
        let mut key = CacheKeyBuilder::new("conda-lock-v1");
        key.field(
            serde_json::to_string(spec)
                .expect("specs serialise")
                .as_bytes(),
        )
        .field(subdir.as_bytes())
        .field(super::conda::solve_inputs(&subdir).as_bytes());
        Ok(Prepared {
            key: subdir.clone(),
            inputs: key.finish().as_str().to_owned(),
            data: subdir,
        })
    }

    fn build_tree(
        spec: &Self::Spec,
        subdir: &Self::Prepared,
        pins: Option<&[Self::Pin]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<Self::Pin>), SourceError> {
        let (cache, epoch) = (below.cache(), below.source_date_epoch());
        Ok(super::conda::layer_tree(spec, subdir, cache, pins, epoch)?)
    }

    fn needs(pins: &[Self::Pin], _cache: &Cache) -> Vec<Needed> {
        pins.iter()
            .map(|package| Needed {
                input: conda_input(package, package.size.unwrap_or(0)),
                size_unknown: package.size.is_none(),
                built_wheel: false,
            })
            .collect()
    }

    fn used(pins: &[Self::Pin], cache: &Cache) -> Vec<Input> {
        pins.iter()
            .map(|package| {
                let size = package
                    .size
                    .unwrap_or_else(|| cached_size(cache, &package.sha256));
                conda_input(package, size)
            })
            .collect()
    }
}

fn conda_input(package: &super::conda::LockedConda, size: u64) -> Input {
    let (name, version) = (&package.name, &package.version);
    package_input(
        InputKind::Conda,
        name,
        version,
        &package.filename,
        &package.sha256,
        size,
    )
}

/// One entry of `inputs.json` (see `crate::offline`): what a blob an offline build needs is.
/// Defined here because sources say which inputs their pins need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    Deb,
    Pip,
    PipBuilt,
    Image,
    Conda,
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
