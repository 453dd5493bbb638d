//! The directories of the layers below a new layer, for the directories that layer only
//! implies (`home/u` for `home/u/x`).
//!
//! An extractor applying a directory entry over an existing directory sets its owner and mode,
//! so an implied directory written with fixed defaults would reset a directory of a lower layer
//! (a home made 1000:100 by an `accounts` layer would become root's). Docker's COPY leaves
//! existing parents alone; here an implied directory is written with the owner and mode the
//! layers below give it, and only a directory new to the image gets the defaults.
//!
//! Each layer is reduced once to a [`LayerDirs`] (its directories, what else it writes, its
//! whiteouts and opaque directories); [`DirsBelow`] applies them bottom to top, as an
//! extractor would, keeping only directories.

use std::collections::BTreeMap;

use super::ImagePath;

/// Owner and permission bits of a directory.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct DirMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What a directory the layers below do not hold as a directory gets: root's, 0755.
pub const NEW_DIR: DirMeta = DirMeta {
    mode: super::IMPLIED_DIR_MODE,
    uid: 0,
    gid: 0,
};

/// The name of the opaque whiteout, which hides everything below its directory.
pub const OPAQUE: &str = ".wh..wh..opq";
/// The prefix of a whiteout, which hides the path it names.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// What one layer does to the image's directories.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LayerDirs {
    /// Whiteouts: the path and everything under it go.
    removed: Vec<String>,
    /// Opaque directories: everything the lower layers hold under them goes.
    emptied: Vec<String>,
    /// Entries in layer order: a directory with its metadata, or None for anything else (a
    /// file, link or symlink replaces a directory that was there, and its contents).
    entries: Vec<(String, Option<DirMeta>)>,
}

impl LayerDirs {
    /// Records one member of the layer by its name (relative to `/`; `./` and a trailing `/`
    /// are allowed). `dir` is the member's metadata when it is a directory. Names that are no
    /// usable image path (the root itself, `..`) are not recorded: nothing is ever implied
    /// through them.
    pub fn see(&mut self, name: &str, dir: Option<DirMeta>) {
        let Ok(path) = ImagePath::new(name) else {
            return;
        };
        let file_name = path.file_name();
        if file_name == OPAQUE {
            if let Some(parent) = path.parent() {
                self.emptied.push(parent.as_str().to_owned());
            }
        } else if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            let removed = match path.parent() {
                Some(parent) => format!("{}/{hidden}", parent.as_str()),
                None => hidden.to_owned(),
            };
            self.removed.push(removed);
        } else {
            self.entries.push((path.as_str().to_owned(), dir));
        }
    }
}

/// The directories of an image as its layers leave them: path (relative to `/`) → metadata.
#[derive(Clone, Debug, Default)]
pub struct DirsBelow {
    dirs: BTreeMap<String, DirMeta>,
}

impl DirsBelow {
    /// Applies the next layer up. Its whiteouts and opaque directories hide what the layers
    /// below hold, never its own entries, so they go first.
    pub fn apply(&mut self, layer: &LayerDirs) {
        for path in &layer.removed {
            self.dirs.remove(path);
            self.remove_under(path);
        }
        for path in &layer.emptied {
            self.remove_under(path);
        }
        for (path, dir) in &layer.entries {
            match dir {
                Some(meta) => {
                    self.dirs.insert(path.clone(), *meta);
                }
                None => {
                    if self.dirs.remove(path).is_some() {
                        self.remove_under(path);
                    }
                }
            }
        }
    }

    /// The directory at `path` in the image, if there is one there (not a symlink to one: a
    /// layer that implies a directory where a symlink is writes a directory there).
    pub fn dir(&self, path: &ImagePath) -> Option<DirMeta> {
        self.dirs.get(path.as_str()).copied()
    }

    fn remove_under(&mut self, dir: &str) {
        // Everything under `dir/` sorts between `dir/` and `dir0` ('0' follows '/').
        let under: Vec<String> = self
            .dirs
            .range(format!("{dir}/")..format!("{dir}0"))
            .map(|(p, _)| p.clone())
            .collect();
        for path in under {
            self.dirs.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: u32, uid: u32, gid: u32) -> Option<DirMeta> {
        Some(DirMeta { mode, uid, gid })
    }

    fn path(p: &str) -> ImagePath {
        ImagePath::new(p).unwrap()
    }

    #[test]
    fn later_layers_replace_remove_and_empty_directories() {
        let mut base = LayerDirs::default();
        base.see("./", meta(0o755, 0, 0));
        base.see("home/", meta(0o755, 0, 0));
        base.see("home/u/", meta(0o750, 1000, 100));
        base.see("home/u/cache/", meta(0o700, 1000, 100));
        base.see("home/u-other/", meta(0o700, 1001, 1001));
        base.see("opt/app/", meta(0o700, 5, 5));
        base.see("opt/app/lib/", meta(0o700, 5, 5));
        base.see("srv/", meta(0o711, 0, 0));
        base.see("lib/", meta(0o755, 0, 0));
        let mut below = DirsBelow::default();
        below.apply(&base);
        assert_eq!(below.dir(&path("home/u")), meta(0o750, 1000, 100));

        let mut top = LayerDirs::default();
        top.see("home/u/.wh.cache", None);
        top.see("opt/app/.wh..wh..opq", None);
        top.see("srv", None);
        top.see("lib", None); // usr-merge: /lib becomes a symlink
        top.see("var/", meta(0o700, 7, 7));
        below.apply(&top);
        assert_eq!(below.dir(&path("home/u")), meta(0o750, 1000, 100));
        assert_eq!(below.dir(&path("home/u/cache")), None);
        assert_eq!(below.dir(&path("home/u-other")), meta(0o700, 1001, 1001));
        assert_eq!(below.dir(&path("opt/app")), meta(0o700, 5, 5));
        assert_eq!(below.dir(&path("opt/app/lib")), None);
        assert_eq!(below.dir(&path("srv")), None);
        assert_eq!(below.dir(&path("lib")), None);
        assert_eq!(below.dir(&path("var")), meta(0o700, 7, 7));

        // A whiteout hides the directory and what is under it.
        let mut gone = LayerDirs::default();
        gone.see("home/.wh.u", None);
        below.apply(&gone);
        assert_eq!(below.dir(&path("home/u")), None);
        assert_eq!(below.dir(&path("home/u-other")), meta(0o700, 1001, 1001));
    }

    #[test]
    fn a_layers_own_entries_survive_its_whiteouts() {
        let mut base = LayerDirs::default();
        base.see("opt/app/", meta(0o700, 5, 5));
        base.see("opt/app/old/", meta(0o700, 5, 5));
        let mut below = DirsBelow::default();
        below.apply(&base);
        let mut top = LayerDirs::default();
        top.see("opt/app/new/", meta(0o750, 6, 6));
        top.see("opt/app/.wh..wh..opq", None);
        below.apply(&top);
        assert_eq!(below.dir(&path("opt/app/new")), meta(0o750, 6, 6));
        assert_eq!(below.dir(&path("opt/app/old")), None);
    }
}
