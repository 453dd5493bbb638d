//! Layer sources: where the content of each `[[layer]]` comes from.
//!
//! Input: a checked [`Layer`]. Output: a [`LayerTree`] of entries with the
//! ownership and modes the image gets. A source only lists and describes content; reading,
//! taring and compressing happen in `crate::layer`, so every source shares one deterministic
//! writer and one cache. The kinds a lock file pins (Debian, pip, conda) share one interface,
//! [`LockedSource`]; see [`locked`].

pub mod accounts;
pub mod conda;
pub mod debian;
pub mod files;
pub mod locked;
pub mod pip;
pub mod spec;
mod tree_util;

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

/// Builds the layer of a locked package kind: the caller reads and records its pins around
/// [`LockedSource::prepare`] and [`LockedSource::build_tree`].
pub trait LockedLayer {
    type Error: From<SourceError>;
    fn build<S: LockedSource>(&mut self, spec: &S::Spec) -> Result<LayerTree, Self::Error>;
}

/// Lists the entries of one layer. A locked kind's layer is built by `locked`; `accounts`
/// builds an `accounts` layer, since it needs the account files of the layers below.
pub fn layer_tree<L: LockedLayer>(
    layer: &Layer,
    locked: &mut L,
    accounts: impl FnOnce(&[accounts::AccountSpec]) -> Result<LayerTree, L::Error>,
) -> Result<LayerTree, L::Error> {
    let mut tree = LayerTree::default();
    match &layer.source {
        LayerSource::Files(copies) => {
            for copy in copies {
                files::add_copy(copy, &mut tree).map_err(L::Error::from)?;
            }
        }
        // The locked kinds, one line each.
        LayerSource::Debian(spec) => tree = locked.build::<locked::Debian>(spec)?,
        LayerSource::Pip(spec) => tree = locked.build::<locked::Pip>(spec)?,
        LayerSource::Conda(spec) => tree = locked.build::<locked::Conda>(spec)?,
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
    Ok(tree)
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
