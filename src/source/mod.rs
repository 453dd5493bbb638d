//! Layer sources: where the content of each `[[layer]]` comes from.
//!
//! Input: a checked [`Layer`]. Output: a [`LayerTree`] of entries with the
//! ownership and modes the image gets. A source only lists and describes content; reading,
//! taring and compressing happen in `crate::layer`, so every source shares one deterministic
//! writer and one cache. Debian, pip, conda and image sources add variants to
//! [`LayerSource`] and a module here.

pub mod accounts;
pub mod conda;
pub mod debian;
pub mod files;
pub mod locked;
pub mod pip;
pub mod spec;

use std::path::PathBuf;

use crate::layer::{Entry, EntryKind, ImagePath, LayerTree};
pub use locked::LockedSource;
pub use spec::{FileCopy, Layer, LayerSource};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{path}` is a {kind}; only regular files, directories and symbolic links can be copied into an image"
    )]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("`{path}` gives an image path that cannot be used: {reason}")]
    BadName { path: PathBuf, reason: String },
    #[error("layer both adds and removes {0} (or something under it); split it into two layers")]
    AddAndRemove(ImagePath),
    #[error(transparent)]
    Debian(#[from] debian::DebianError),
    #[error("cannot read the dpkg status of the base image: {0}")]
    BaseStatus(String),
    #[error("cannot read the layers below this one: {0}")]
    BaseLayers(String),
    #[error(transparent)]
    Pip(Box<pip::PipError>),
    #[error(transparent)]
    Conda(#[from] conda::CondaError),
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
}

impl From<pip::PipError> for SourceError {
    fn from(error: pip::PipError) -> Self {
        SourceError::Pip(Box::new(error))
    }
}

/// What a `debian` layer needs to know of the image it goes on.
pub struct DebianContext<'a> {
    /// Debian's name of the platform's architecture (`amd64`, `arm64`, `armhf`).
    pub arch: String,
    /// `/var/lib/dpkg/status` of the layers below, empty when there is none.
    pub base_status: String,
    /// The symlinks of the layers below (path without the leading `/` → target), which the
    /// layer's packages are placed through.
    pub base_links: std::collections::BTreeMap<String, String>,
    pub archives: &'a debian::Archives,
    pub cache: &'a crate::layer::cache::Cache,
    /// The packages a lock file pins for this layer; resolved from the indexes when None.
    pub pinned: Option<Vec<debian::LockedDeb>>,
}

/// What a layer pinned, for the lock file.
pub enum Pinned {
    Debian(Vec<debian::LockedDeb>),
    Pip(Vec<pip::LockedWheel>),
    Conda(Vec<conda::LockedConda>),
}

/// Lists the entries of one layer. `debian` is asked for the image's context only by a
/// `debian` layer, since finding the base's dpkg status means reading its layers; `pip` builds
/// a `pip` layer's tree, since it needs the Python of the layers below. Returns the tree and,
/// for a `debian` or `pip` layer, the packages it holds (what a lock file pins).
///
/// The callbacks fail with the caller's error type `E`, so that what a caller does before a
/// source runs (lock checks, providing offline inputs) keeps its own error.
pub fn layer_tree<'a, E: From<SourceError>>(
    layer: &Layer,
    debian: impl FnOnce() -> Result<DebianContext<'a>, E>,
    pip: impl FnOnce(&pip::PipSpec) -> Result<(LayerTree, Vec<pip::LockedWheel>), E>,
    conda: impl FnOnce(&conda::CondaSpec) -> Result<(LayerTree, Vec<conda::LockedConda>), E>,
    accounts: impl FnOnce(&[accounts::AccountSpec]) -> Result<LayerTree, E>,
) -> Result<(LayerTree, Option<Pinned>), E> {
    let mut tree = LayerTree::default();
    let mut locked = None;
    match &layer.source {
        LayerSource::Files(copies) => {
            for copy in copies {
                files::add_copy(copy, &mut tree).map_err(E::from)?;
            }
        }
        LayerSource::Debian(spec) => {
            let context = debian()?;
            let (debian_tree, packages) = debian::layer_tree(
                spec,
                &context.arch,
                &context.base_status,
                &context.base_links,
                context.archives,
                context.cache,
                context.pinned.as_deref(),
            )
            .map_err(|e| E::from(e.into()))?;
            tree = debian_tree;
            locked = Some(Pinned::Debian(packages));
        }
        LayerSource::Pip(spec) => {
            let (pip_tree, wheels) = pip(spec)?;
            tree = pip_tree;
            locked = Some(Pinned::Pip(wheels));
        }
        LayerSource::Conda(spec) => {
            let (conda_tree, packages) = conda(spec)?;
            tree = conda_tree;
            locked = Some(Pinned::Conda(packages));
        }
        LayerSource::Accounts(specs) => tree = accounts(specs)?,
        LayerSource::Nothing => {}
    }
    for path in &layer.remove {
        let added_under = tree
            .paths()
            .any(|p| p == path || p.ancestors().any(|a| &a == path));
        if added_under {
            return Err(SourceError::AddAndRemove(path.clone()).into());
        }
        tree.insert(
            path.clone(),
            Entry {
                kind: EntryKind::Whiteout,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
    }
    Ok((tree, locked))
}

/// A short description of a layer for history and progress lines.
pub fn describe(layer: &Layer) -> String {
    let mut parts = Vec::new();
    match &layer.source {
        LayerSource::Files(copies) => {
            for copy in copies {
                parts.push(format!("files {} -> {}", copy.src_display, copy.dest));
            }
        }
        LayerSource::Debian(spec) => {
            let mut what = spec.packages.join(" ");
            if spec.required {
                what = format!("required set {what}").trim_end().to_owned();
            }
            match &spec.release {
                Some(release) => parts.push(format!("debian {release}: {what}")),
                None => parts.push(format!("debian {what}")),
            }
        }
        LayerSource::Pip(spec) => {
            let mut what: Vec<String> = spec.packages.clone();
            what.extend(
                spec.requirements
                    .iter()
                    .map(|p| format!("-r {}", p.file_name().unwrap_or_default().to_string_lossy())),
            );
            match &spec.venv {
                Some(venv) => parts.push(format!("pip {} (venv {venv})", what.join(" "))),
                None => parts.push(format!("pip {}", what.join(" "))),
            }
        }
        LayerSource::Conda(spec) => {
            parts.push(format!("conda {}: {}", spec.prefix, spec.specs.join(" ")));
        }
        LayerSource::Accounts(specs) => {
            let users: Vec<String> = specs
                .iter()
                .map(|a| format!("{} ({})", a.user, a.uid))
                .collect();
            parts.push(format!("accounts {}", users.join(" ")));
        }
        LayerSource::Nothing => {}
    }
    if !layer.remove.is_empty() {
        let removed: Vec<String> = layer.remove.iter().map(ToString::to_string).collect();
        parts.push(format!("remove {}", removed.join(" ")));
    }
    parts.join("; ")
}
