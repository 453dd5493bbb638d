//! Layer sources: where the content of each `[[layer]]` comes from.
//!
//! Input: a checked [`Layer`]. Output: a [`LayerTree`] of entries with the
//! ownership and modes the image gets. A source only lists and describes content; reading,
//! taring and compressing happen in `crate::layer`, so every source shares one deterministic
//! writer and one cache. The kinds a lock file pins (Debian, pip, conda) share one interface,
//! [`LockedSource`]; see [`locked`].

pub(crate) mod accounts;
pub(crate) mod conda;
pub(crate) mod debian;
pub(crate) mod files;
pub(crate) mod kinds;
pub(crate) mod locked;
pub(crate) mod pip;
pub(crate) mod spec;
mod tree_util;

use std::path::PathBuf;

use crate::layer::{Entry, EntryKind, ImagePath, LayerTree};
pub(crate) use kinds::LockedSpec;
pub(crate) use locked::LockedSource;
pub(crate) use spec::{FileCopy, Layer, LayerSource};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "`{src}`, the files of {platform}, does not exist; build it first, or build other platforms with --platform"
    )]
    MissingForPlatform { src: String, platform: String },
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`")]
    Write {
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
    #[error("`{path}` gives an image path that cannot be used")]
    BadImagePath {
        path: PathBuf,
        #[source]
        source: crate::layer::ImagePathError,
    },
    #[error("layer both adds and removes {0} (or something under it); split it into two layers")]
    AddAndRemove(ImagePath),
    #[error(
        "layer replaces the directory {0} but writes something else than a directory there; replace its parent, or remove it"
    )]
    ReplaceNotDirectory(ImagePath),
    #[error(transparent)]
    Debian(#[from] debian::DebianError),
    #[error("cannot read layer {layer} below this one")]
    BaseLayers {
        layer: crate::digest::Digest,
        #[source]
        source: std::io::Error,
    },
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
pub(crate) fn layer_tree<L: LockedLayer>(
    layer: &Layer,
    platform: &crate::image::spec::Platform,
    locked: &mut L,
    accounts: impl FnOnce(&[accounts::AccountSpec]) -> Result<LayerTree, L::Error>,
) -> Result<LayerTree, L::Error> {
    let mut tree = LayerTree::default();
    match &layer.source {
        LayerSource::Files(copies) => {
            for copy in copies.iter().filter(|c| c.is_for(platform)) {
                if copy.missing {
                    return Err(SourceError::MissingForPlatform {
                        src: copy.src_display.clone(),
                        platform: platform.to_string(),
                    }
                    .into());
                }
                files::add_copy(copy, &mut tree).map_err(L::Error::from)?;
            }
        }
        LayerSource::Locked(spec) => tree = spec.build(locked)?,
        LayerSource::Accounts(specs) => tree = accounts(specs)?,
        LayerSource::Nothing => {}
    }
    for dir in &layer.replace {
        if tree
            .get(dir)
            .is_some_and(|e| !matches!(e.kind, EntryKind::Directory))
        {
            return Err(SourceError::ReplaceNotDirectory(dir.clone()).into());
        }
        tree.make_opaque(dir.clone());
    }
    for path in &layer.remove {
        // A replaced directory is written as a directory, so it counts as added.
        let added_under = tree
            .paths()
            .chain(tree.opaque_dirs())
            .any(|p| p == path || p.ancestors().any(|a| &a == path));
        if added_under {
            return Err(SourceError::AddAndRemove(path.clone()).into());
        }
        tree.insert(path.clone(), Entry::whiteout());
    }
    Ok(tree)
}

/// A short description of a layer for history and progress lines.
pub(crate) fn describe(layer: &Layer) -> String {
    let mut parts = Vec::new();
    match &layer.source {
        LayerSource::Files(copies) => {
            for copy in copies {
                let mut part = match &copy.src {
                    Some(_) => format!("files {} -> {}", copy.src_display, copy.dest),
                    None => format!("directory {}", copy.dest),
                };
                if let Some(platform) = &copy.platform {
                    part.push_str(&format!(" ({platform})"));
                }
                parts.push(part);
            }
        }
        LayerSource::Locked(spec) => parts.push(spec.describe()),
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
    if !layer.replace.is_empty() {
        let replaced: Vec<String> = layer.replace.iter().map(ToString::to_string).collect();
        parts.push(format!("replace {}", replaced.join(" ")));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `files` layers are built here.
    struct NoLocked;

    impl LockedLayer for NoLocked {
        type Error = SourceError;
        fn build<S: LockedSource>(&mut self, _: &S::Spec) -> Result<LayerTree, SourceError> {
            unreachable!("no locked layer in these tests")
        }
    }

    fn layer(files: &[(&std::path::Path, &str)], remove: &[&str], replace: &[&str]) -> Layer {
        let copies = files
            .iter()
            .map(|(src, dest)| FileCopy {
                src: Some(src.to_path_buf()),
                src_display: src.display().to_string(),
                dest: (*dest).to_owned(),
                mode: None,
                dir_mode: None,
                uid: 0,
                gid: 0,
                platform: None,
                missing: false,
            })
            .collect();
        let paths = |list: &[&str]| list.iter().map(|p| ImagePath::new(p).unwrap()).collect();
        Layer {
            comment: None,
            source: LayerSource::Files(copies),
            remove: paths(remove),
            replace: paths(replace),
        }
    }

    fn tree(layer: &Layer) -> Result<LayerTree, SourceError> {
        tree_for(layer, "linux/amd64")
    }

    fn tree_for(layer: &Layer, platform: &str) -> Result<LayerTree, SourceError> {
        let platform = platform.parse().unwrap();
        layer_tree(layer, &platform, &mut NoLocked, |_| {
            unreachable!("no accounts layer")
        })
    }

    #[test]
    fn a_copy_of_one_platform_is_in_that_platforms_tree_alone() {
        let dir = tempfile::tempdir().unwrap();
        let amd64 = dir.path().join("amd64-tool");
        std::fs::write(&amd64, "x86-64 code").unwrap();
        let mut per_platform = layer(&[(&amd64, "/bin/tool")], &[], &[]);
        let LayerSource::Files(copies) = &mut per_platform.source else {
            unreachable!()
        };
        copies[0].platform = Some("linux/amd64".parse().unwrap());
        // The arm64 build did not exist when the recipe was loaded.
        let mut arm64 = copies[0].clone();
        arm64.src = Some(dir.path().join("arm64-tool"));
        arm64.src_display = "arm64-tool".to_owned();
        arm64.platform = Some("linux/arm64".parse().unwrap());
        arm64.missing = true;
        copies.push(arm64);

        let on_amd64 = tree_for(&per_platform, "linux/amd64").unwrap();
        let paths: Vec<_> = on_amd64.paths().map(ImagePath::as_str).collect();
        assert_eq!(paths, ["bin/tool"]);
        assert!(describe(&per_platform).contains("-> /bin/tool (linux/arm64)"));
        // Written after loading, it is still not read: only what was checked is copied.
        std::fs::write(dir.path().join("arm64-tool"), "aarch64 code").unwrap();
        let error = tree_for(&per_platform, "linux/arm64").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`arm64-tool`, the files of linux/arm64, does not exist; build it first, or build other platforms with --platform"
        );
    }

    #[test]
    fn a_replaced_directory_is_opaque_and_must_stay_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new.txt");
        std::fs::write(&file, "new").unwrap();

        let replaced = tree(&layer(&[(&file, "/opt/app/new.txt")], &[], &["/opt/app"])).unwrap();
        let opaque: Vec<_> = replaced.opaque_dirs().map(ImagePath::as_str).collect();
        assert_eq!(opaque, ["opt/app"]);
        assert!(describe(&layer(&[], &[], &["/opt/app"])).contains("replace /opt/app"));

        // The layer writes a file where it says a directory's contents are replaced.
        assert!(matches!(
            tree(&layer(&[(&file, "/opt/app")], &[], &["/opt/app"])),
            Err(SourceError::ReplaceNotDirectory(p)) if p.as_str() == "opt/app"
        ));
        // Replacing a directory writes it, so it cannot be removed in the same layer.
        assert!(matches!(
            tree(&layer(&[], &["/opt"], &["/opt/app"])),
            Err(SourceError::AddAndRemove(p)) if p.as_str() == "opt"
        ));
    }
}
