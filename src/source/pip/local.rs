//! Project directories that a pip layer builds into wheels (`./app`, `name @ file:///dir`, a
//! `sources` entry): what of a directory counts, its content hash, and the private copy that
//! its PEP 517 backend builds from.
//!
//! A tree is every regular file and symlink under the directory except `.git` (a directory, or
//! a submodule's `.git` file) at any depth, in the byte order of their relative paths. Its hash
//! covers, for each, the path, whether it is a file, an executable file or a symlink, and its
//! content or link target; directories themselves, owners, times and other modes do not count,
//! and sockets, pipes and devices are left out. Files a `sources` entry `write`s are part of the
//! tree as if they were there (not executable). The wheel built from a tree is cached by this
//! hash, and the lock pins it, so a changed file is seen without a new lock.
//!
//! The backend never sees the user's directory: the tree is copied into the build's own
//! directory (where `write` files go), and the copy is hashed again, so a wheel is never
//! stored under the hash of a tree that changed while it was copied.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};

/// The most files and symlinks a project directory may hold.
pub(crate) const MAX_TREE_FILES: usize = 20_000;
/// The most bytes its files may hold together.
pub(crate) const MAX_TREE_BYTES: u64 = 1 << 30;
/// The most bytes one `write` file may hold.
pub(crate) const MAX_WRITE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read the project directory {dir}")]
    Read {
        dir: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the project directory {dir} holds more than {limit} files and symlinks (outside `.git`), the most a local project may"
    )]
    TooManyFiles { dir: String, limit: usize },
    #[error(
        "the project directory {dir} holds more than {limit} bytes of files (outside `.git`), the most a local project may"
    )]
    TooLarge { dir: String, limit: u64 },
    #[error(
        "`write` of `{path}` into the project directory {dir} would replace or go through `{through}`, which is not a regular file there"
    )]
    WriteThrough {
        dir: String,
        path: String,
        through: String,
    },
    #[error("the project directory {dir} changed while it was copied for its build; build again")]
    Changed { dir: String },
    #[error("cannot copy the project directory {dir} for its build")]
    Copy {
        dir: String,
        #[source]
        source: io::Error,
    },
}

/// A relative path inside a project directory that a `write` entry names: `/`-separated plain
/// components, none of them `.`, `..` or `.git`, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WritePath(String);

impl WritePath {
    /// Err: why `text` is refused, to follow "`text` …".
    pub(crate) fn new(text: &str) -> Result<WritePath, &'static str> {
        if text.is_empty() {
            return Err("is empty");
        }
        if text.starts_with('/') {
            return Err("is absolute; `write` paths are relative to the project directory");
        }
        if text.contains(|c: char| c.is_control() || c == '\\') {
            return Err("holds a control character or a backslash");
        }
        for part in text.split('/') {
            match part {
                "" => return Err("has an empty component (`//` or a trailing `/`)"),
                "." | ".." => return Err("has a `.` or `..` component"),
                ".git" => return Err("is inside `.git`, which is no part of a project's tree"),
                _ => {}
            }
        }
        Ok(WritePath(text.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project directory and the files written into its build copy.
#[derive(Clone, Debug)]
pub(crate) struct LocalTree {
    /// Absolute.
    pub(crate) dir: PathBuf,
    /// How messages and the lock name it (`./app`).
    pub(crate) shown: String,
    pub(crate) writes: Vec<(WritePath, String)>,
}

/// One member of a tree.
enum Member {
    File { path: PathBuf, executable: bool },
    Written(String),
    Link(OsString),
}

impl LocalTree {
    /// The tree's content hash (see the module's documentation).
    pub(crate) fn content_hash(&self) -> Result<Digest, LocalError> {
        let members = self.members(&self.dir)?;
        self.hash_members(&members)
    }

    /// Copies the tree, with its `write` files, to `into` (which must not exist), and checks
    /// that the copy has the hash `expected`.
    pub(crate) fn copy_to(&self, into: &Path, expected: &Digest) -> Result<(), LocalError> {
        let copy_err = |source| LocalError::Copy {
            dir: self.shown.clone(),
            source,
        };
        let members = self.members(&self.dir)?;
        std::fs::create_dir_all(into).map_err(copy_err)?;
        for (relative, member) in &members {
            let target = into.join(std::ffi::OsStr::from_bytes(relative));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(copy_err)?;
            }
            match member {
                Member::File { path, executable } => {
                    std::fs::copy(path, &target).map_err(copy_err)?;
                    let mode = if *executable { 0o755 } else { 0o644 };
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                        .map_err(copy_err)?;
                }
                Member::Written(text) => {
                    std::fs::write(&target, text).map_err(copy_err)?;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
                        .map_err(copy_err)?;
                }
                Member::Link(link) => {
                    std::os::unix::fs::symlink(link, &target).map_err(copy_err)?;
                }
            }
        }
        // The copy holds the written files as files now: hashed as they are.
        let copied = LocalTree {
            dir: into.to_owned(),
            shown: self.shown.clone(),
            writes: Vec::new(),
        };
        if &copied.content_hash()? != expected {
            return Err(LocalError::Changed {
                dir: self.shown.clone(),
            });
        }
        Ok(())
    }

    /// The members under `dir` by relative path (bytes), with the `write` files laid over.
    fn members(&self, dir: &Path) -> Result<BTreeMap<Vec<u8>, Member>, LocalError> {
        let read_err = |source: io::Error| LocalError::Read {
            dir: self.shown.clone(),
            source,
        };
        let mut members = BTreeMap::new();
        let mut bytes = 0u64;
        let walk = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || e.file_name() != ".git");
        for entry in walk {
            let entry = entry.map_err(|e| read_err(e.into()))?;
            let kind = entry.file_type();
            if kind.is_dir() {
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir yields paths under its root")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let member = if kind.is_symlink() {
                Member::Link(
                    std::fs::read_link(entry.path())
                        .map_err(read_err)?
                        .into_os_string(),
                )
            } else if kind.is_file() {
                let metadata = entry.metadata().map_err(|e| read_err(e.into()))?;
                bytes += metadata.len();
                if bytes > MAX_TREE_BYTES {
                    return Err(LocalError::TooLarge {
                        dir: self.shown.clone(),
                        limit: MAX_TREE_BYTES,
                    });
                }
                Member::File {
                    path: entry.path().to_owned(),
                    executable: metadata.permissions().mode() & 0o111 != 0,
                }
            } else {
                continue; // sockets, pipes and devices are no part of a project
            };
            members.insert(relative, member);
            if members.len() > MAX_TREE_FILES {
                return Err(LocalError::TooManyFiles {
                    dir: self.shown.clone(),
                    limit: MAX_TREE_FILES,
                });
            }
        }
        for (path, text) in &self.writes {
            let through = |through: &str| LocalError::WriteThrough {
                dir: self.shown.clone(),
                path: path.as_str().to_owned(),
                through: through.to_owned(),
            };
            // No parent may be a file or a symlink: writing through a symlink would leave the
            // build's copy.
            let mut prefix = String::new();
            let parts: Vec<&str> = path.as_str().split('/').collect();
            for part in &parts[..parts.len() - 1] {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if members.contains_key(prefix.as_bytes()) {
                    return Err(through(&prefix));
                }
            }
            match members.get(path.as_str().as_bytes()) {
                None | Some(Member::File { .. }) | Some(Member::Written(_)) => {}
                Some(Member::Link(_)) => return Err(through(path.as_str())),
            }
            if dir.join(path.as_str()).is_dir() {
                return Err(through(path.as_str()));
            }
            members.insert(
                path.as_str().as_bytes().to_vec(),
                Member::Written(text.clone()),
            );
        }
        Ok(members)
    }

    fn hash_members(&self, members: &BTreeMap<Vec<u8>, Member>) -> Result<Digest, LocalError> {
        let read_err = |source: io::Error| LocalError::Read {
            dir: self.shown.clone(),
            source,
        };
        let mut hasher = HashingWriter::new(io::sink());
        let field = |hasher: &mut HashingWriter<io::Sink>, bytes: &[u8]| {
            hasher.write_all(&(bytes.len() as u64).to_le_bytes())?;
            hasher.write_all(bytes)
        };
        let io = |e: io::Error| read_err(e);
        hasher.write_all(b"oci-build-tree-v1\0").map_err(io)?;
        for (relative, member) in members {
            field(&mut hasher, relative).map_err(io)?;
            match member {
                Member::File { path, executable } => {
                    field(&mut hasher, if *executable { b"x" } else { b"f" }).map_err(io)?;
                    let file = std::fs::File::open(path).map_err(read_err)?;
                    let length = file.metadata().map_err(read_err)?.len();
                    hasher.write_all(&length.to_le_bytes()).map_err(io)?;
                    // Exactly the length said: a file that grows meanwhile still hashes apart.
                    let copied = io::copy(&mut io::Read::take(file, length), &mut hasher)
                        .map_err(read_err)?;
                    if copied != length {
                        return Err(LocalError::Changed {
                            dir: self.shown.clone(),
                        });
                    }
                }
                Member::Written(text) => {
                    field(&mut hasher, b"f").map_err(io)?;
                    field(&mut hasher, text.as_bytes()).map_err(io)?;
                }
                Member::Link(target) => {
                    field(&mut hasher, b"l").map_err(io)?;
                    field(&mut hasher, target.as_bytes()).map_err(io)?;
                }
            }
        }
        let (_, digest, _) = hasher.finish();
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path, writes: &[(&str, &str)]) -> LocalTree {
        LocalTree {
            dir: dir.to_owned(),
            shown: "./app".to_owned(),
            writes: writes
                .iter()
                .map(|(p, t)| (WritePath::new(p).unwrap(), (*t).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_hash_follows_content_modes_and_links_but_not_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg/.git")).unwrap();
        std::fs::write(root.join("pkg/a.py"), "A = 1\n").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        let first = tree(root, &[]).content_hash().unwrap();
        // `.git` does not count.
        std::fs::write(root.join("pkg/.git/HEAD"), "ref\n").unwrap();
        assert_eq!(tree(root, &[]).content_hash().unwrap(), first);
        // Content, the executable bit and symlinks do.
        std::fs::write(root.join("pkg/a.py"), "A = 2\n").unwrap();
        let changed = tree(root, &[]).content_hash().unwrap();
        assert_ne!(changed, first);
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let executable = tree(root, &[]).content_hash().unwrap();
        assert_ne!(executable, changed);
        std::os::unix::fs::symlink("pkg/a.py", root.join("link")).unwrap();
        assert_ne!(tree(root, &[]).content_hash().unwrap(), executable);
    }

    #[test]
    fn written_files_count_and_reach_only_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/version.json"), "{}").unwrap();
        let plain = tree(&root, &[]).content_hash().unwrap();
        let written = tree(&root, &[("pkg/version.json", "{\"v\": 1}")]);
        let hash = written.content_hash().unwrap();
        assert_ne!(hash, plain);
        let copy = dir.path().join("copy");
        written.copy_to(&copy, &hash).unwrap();
        assert_eq!(
            std::fs::read_to_string(copy.join("pkg/version.json")).unwrap(),
            "{\"v\": 1}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("pkg/version.json")).unwrap(),
            "{}"
        );
        // A copy that does not give the expected hash is refused.
        let err = tree(&root, &[])
            .copy_to(&dir.path().join("other"), &hash)
            .unwrap_err();
        assert!(matches!(err, LocalError::Changed { .. }), "{err}");
    }

    #[test]
    fn a_write_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("out")).unwrap();
        let err = tree(&root, &[("out/evil.py", "x")])
            .content_hash()
            .unwrap_err();
        assert!(matches!(err, LocalError::WriteThrough { .. }), "{err}");
        let err = tree(&root, &[("out", "x")]).content_hash().unwrap_err();
        assert!(err.to_string().contains("`out`"), "{err}");
    }

    #[test]
    fn write_paths_are_plain_relative_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "./a",
            ".git/config",
            "a\nb",
        ] {
            assert!(WritePath::new(bad).is_err(), "{bad:?}");
        }
        assert!(WritePath::new("mlrun/utils/version/version.json").is_ok());
    }

    #[test]
    fn a_tree_over_the_file_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=MAX_TREE_FILES {
            std::fs::write(dir.path().join(format!("f{i}")), "").unwrap();
        }
        let err = tree(dir.path(), &[]).content_hash().unwrap_err();
        assert!(
            matches!(err, LocalError::TooManyFiles { .. }) && err.to_string().contains("./app"),
            "{err}"
        );
    }
}
