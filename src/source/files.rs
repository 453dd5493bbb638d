//! The `files` source: local files and directories copied into the image, like
//! `COPY --chown --chmod`.
//!
//! Build-machine metadata is stripped: owners become the recipe's uid/gid (root by default),
//! modes become 0644/0755 (0755 for files anyone may execute) unless the recipe sets them, and
//! times are left to the layer writer's clamp. So the same tree gives the same layer on any
//! machine, checked out by any user, with any umask.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use walkdir::WalkDir;

use super::FileCopy;
use super::SourceError;
use crate::layer::{Content, Entry, EntryKind, FileStamp, ImagePath, LayerTree};

const DEFAULT_FILE_MODE: u32 = 0o644;
const DEFAULT_EXEC_MODE: u32 = 0o755;
const DEFAULT_DIR_MODE: u32 = 0o755;

pub(crate) fn add_copy(copy: &FileCopy, tree: &mut LayerTree) -> Result<(), SourceError> {
    let Some(src) = &copy.src else {
        return add_empty_dir(copy, tree);
    };
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SourceError::Read { path, source }
    };
    let meta = fs::symlink_metadata(src).map_err(read_err(src))?;
    let dest_is_dir = copy.dest.ends_with('/') || meta.is_dir();
    let dest_root = if dest_is_dir && !meta.is_dir() {
        // The name as the recipe wrote it: a symlinked `src` keeps its own name, as COPY does.
        let name = std::path::Path::new(&copy.src_display)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad_name(src, "the file name is not UTF-8"))?;
        format!("{}/{name}", copy.dest)
    } else {
        copy.dest.clone()
    };

    // (device, inode) of multiply-linked files → their image paths, to emit tar hard links.
    let mut links: BTreeMap<(u64, u64), Vec<ImagePath>> = BTreeMap::new();
    for item in WalkDir::new(src).follow_links(false).sort_by_file_name() {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(src).to_owned();
            SourceError::Read {
                path,
                source: e.into(),
            }
        })?;
        let rel = item
            .path()
            .strip_prefix(src)
            .expect("walkdir yields paths under its root");
        let rel = rel
            .to_str()
            .ok_or_else(|| bad_name(item.path(), "the path is not UTF-8"))?;
        let image_path = match ImagePath::new(&format!("{dest_root}/{rel}")) {
            Ok(p) => p,
            // Copying a directory to "/" adds its contents; "/" itself is not an entry.
            Err(crate::layer::ImagePathError::Root(_)) => continue,
            Err(source) => {
                return Err(SourceError::BadImagePath {
                    path: item.path().to_owned(),
                    source,
                });
            }
        };
        let meta = item.metadata().map_err(|e| SourceError::Read {
            path: item.path().to_owned(),
            source: e.into(),
        })?;
        let file_type = meta.file_type();
        let (kind, mode) = if file_type.is_dir() {
            (
                EntryKind::Directory,
                copy.dir_mode.unwrap_or(DEFAULT_DIR_MODE),
            )
        } else if file_type.is_file() {
            if meta.nlink() > 1 {
                links
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(image_path.clone());
            }
            let default = if meta.mode() & 0o111 != 0 {
                DEFAULT_EXEC_MODE
            } else {
                DEFAULT_FILE_MODE
            };
            (
                EntryKind::File {
                    content: Content::Host {
                        path: item.path().to_owned(),
                        stamp: FileStamp {
                            modified_ns: i128::from(meta.mtime()) * 1_000_000_000
                                + i128::from(meta.mtime_nsec()),
                            inode: meta.ino(),
                            device: meta.dev(),
                        },
                    },
                    size: meta.len(),
                },
                copy.mode.unwrap_or(default),
            )
        } else if file_type.is_symlink() {
            let target = fs::read_link(item.path()).map_err(read_err(item.path()))?;
            let target = target
                .to_str()
                .ok_or_else(|| bad_name(item.path(), "the link target is not UTF-8"))?
                .to_owned();
            (EntryKind::Symlink { target }, 0o777)
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "named pipe"
            } else {
                "device file"
            };
            return Err(SourceError::Unsupported {
                path: item.path().to_owned(),
                kind,
            });
        };
        tree.insert(
            image_path,
            Entry {
                kind,
                mode,
                uid: copy.uid,
                gid: copy.gid,
            },
        );
    }

    // The first name in tar order keeps the content; the others link to it.
    for mut paths in links.into_values().filter(|p| p.len() > 1) {
        paths.sort();
        let first = paths[0].clone();
        for other in &paths[1..] {
            let entry = tree.get(other).expect("inserted above").clone();
            tree.insert(
                other.clone(),
                Entry {
                    kind: EntryKind::Hardlink {
                        target: first.clone(),
                    },
                    ..entry
                },
            );
        }
    }
    Ok(())
}

/// An entry without `src`: an empty directory at `dest`, the mount point of a volume owned by
/// the user who writes it (`VOLUME` alone would leave it to the runtime, owned by root).
fn add_empty_dir(copy: &FileCopy, tree: &mut LayerTree) -> Result<(), SourceError> {
    let path = ImagePath::new(&copy.dest).map_err(|source| SourceError::BadImagePath {
        path: copy.dest.clone().into(),
        source,
    })?;
    tree.insert(
        path,
        Entry {
            kind: EntryKind::Directory,
            mode: copy.dir_mode.unwrap_or(DEFAULT_DIR_MODE),
            uid: copy.uid,
            gid: copy.gid,
        },
    );
    Ok(())
}

fn bad_name(path: &Path, reason: &str) -> SourceError {
    SourceError::BadName {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}
