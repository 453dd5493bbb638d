//! What a checked `[[layer]]` asks of its source. The recipe loader builds these values
//! (variables substituted, paths resolved, names checked); sources read them without knowing
//! about recipes, files or variants.

use std::path::PathBuf;

use crate::layer::ImagePath;

/// A `[[layer]]`, checked: which source fills it, which base paths it removes and which base
/// directories it replaces the contents of.
#[derive(Clone, Debug)]
pub struct Layer {
    pub comment: Option<String>,
    pub source: LayerSource,
    pub remove: Vec<ImagePath>,
    /// Directories whose contents from below are hidden (opaque whiteouts); the layer's own
    /// entries under them stay.
    pub replace: Vec<ImagePath>,
}

/// The sources a layer can be filled from.
#[derive(Clone, Debug)]
pub enum LayerSource {
    Files(Vec<FileCopy>),
    /// A kind the lock file pins (Debian, pip, conda: see `super::kinds`).
    Locked(Box<super::kinds::LockedSpec>),
    Accounts(Vec<super::accounts::AccountSpec>),
    /// Only removals and replaced directories.
    Nothing,
}

#[derive(Clone, Debug)]
pub struct FileCopy {
    /// Absolute path on the build machine, inside the project directory or a context
    /// directory; `None` makes an empty directory at `dest`.
    pub src: Option<PathBuf>,
    /// As written in the recipe, for messages and history.
    pub src_display: String,
    pub dest: String,
    pub mode: Option<u32>,
    pub dir_mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// Only the image of this platform gets the copy.
    pub platform: Option<crate::image::spec::Platform>,
    /// `src` did not exist when the recipe was loaded: allowed for a copy of one platform (the
    /// binary of a platform not built this time need not exist), refused when it is built.
    pub missing: bool,
}

impl Layer {
    /// The layer without the copies whose `src` was missing, where it has any: what locking
    /// builds, since it reads no copied file.
    pub fn without_missing_files(&self) -> Option<Layer> {
        let LayerSource::Files(copies) = &self.source else {
            return None;
        };
        copies.iter().any(|c| c.missing).then(|| Layer {
            source: LayerSource::Files(copies.iter().filter(|c| !c.missing).cloned().collect()),
            ..self.clone()
        })
    }
}

impl FileCopy {
    /// Whether the image of `platform` gets this copy.
    pub fn is_for(&self, platform: &crate::image::spec::Platform) -> bool {
        self.platform.as_ref().is_none_or(|p| p.matches(platform))
    }
}
