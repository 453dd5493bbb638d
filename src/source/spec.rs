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
}
