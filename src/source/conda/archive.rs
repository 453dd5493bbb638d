//! Reading `.conda` and `.tar.bz2` package archives (rattler_package_streaming gives the tar
//! streams) into the cache, once per package: `conda-v1/<sha256>/files/` holds the regular
//! files, `listing.json` every entry with its mode. Symbolic links are only listed, never
//! created on the host, so nothing later can write through them.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::install::{ListedEntry, ListedKind, Listing};
use super::{CondaError, LockedConda};
use crate::layer::cache::Cache;

/// Extracts a package into the cache once; returns its directory and listing.
pub fn extract_cached(
    cache: &Cache,
    archive: &Path,
    locked: &LockedConda,
    url: &str,
) -> Result<(PathBuf, Listing), CondaError> {
    let package = super::dist_name(locked);
    let io_err = |source| CondaError::Cache {
        package: package.clone(),
        source,
    };
    let parent = cache.root().join("conda-v1");
    let dir = parent.join(locked.sha256.hex());
    if let Ok(bytes) = fs::read(dir.join("listing.json"))
        && let Ok(listing) = serde_json::from_slice::<Listing>(&bytes)
    {
        return Ok((dir, listing));
    }
    fs::create_dir_all(&parent).map_err(io_err)?;
    let temp = tempfile::tempdir_in(&parent).map_err(io_err)?;
    let mut reader = Reader {
        package: package.clone(),
        url: url.to_owned(),
        files: temp.path().join("files"),
        entries: Vec::new(),
        symlinks: BTreeSet::new(),
    };
    fs::create_dir_all(&reader.files).map_err(io_err)?;
    let open = || fs::File::open(archive).map_err(io_err);
    if locked.filename.ends_with(".conda") {
        let info = rattler_package_streaming::seek::stream_conda_info(open()?)
            .map_err(|e| reader.damaged(e.to_string()))?;
        reader.read_tar(info)?;
        let content = rattler_package_streaming::seek::stream_conda_content(open()?)
            .map_err(|e| reader.damaged(e.to_string()))?;
        reader.read_tar(content)?;
    } else if locked.filename.ends_with(".tar.bz2") {
        reader.read_tar(rattler_package_streaming::read::stream_tar_bz2(
            io::BufReader::new(open()?),
        ))?;
    } else {
        return Err(reader.damaged("its file name ends in neither .conda nor .tar.bz2".into()));
    }
    let listing = Listing {
        entries: reader.entries,
    };
    fs::write(
        temp.path().join("listing.json"),
        serde_json::to_vec(&listing).expect("listings serialise"),
    )
    .map_err(io_err)?;
    let kept = temp.keep();
    if fs::rename(&kept, &dir).is_err() {
        // Another build extracted it first; theirs is as good as ours.
        let _ = fs::remove_dir_all(&kept);
    }
    Ok((dir, listing))
}

struct Reader {
    package: String,
    url: String,
    files: PathBuf,
    entries: Vec<ListedEntry>,
    symlinks: BTreeSet<String>,
}

impl Reader {
    fn damaged(&self, message: String) -> CondaError {
        CondaError::Archive {
            package: self.package.clone(),
            url: self.url.clone(),
            message,
        }
    }

    fn escapes(&self, entry: &str) -> CondaError {
        CondaError::Escapes {
            package: self.package.clone(),
            entry: entry.to_owned(),
        }
    }

    fn read_tar<R: Read>(&mut self, mut archive: tar::Archive<R>) -> Result<(), CondaError> {
        let entries = archive.entries().map_err(|e| self.damaged(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.damaged(e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| self.damaged(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            // Entry names are taken strictly: no `..` at all, even one that stays inside.
            let path = inside(&raw)
                .filter(|_| !raw.split('/').any(|part| part == ".."))
                .ok_or_else(|| self.escapes(&raw))?;
            if path.is_empty() {
                continue;
            }
            // A path below a link of the same package would land wherever the link points.
            if ancestors(&path).any(|a| self.symlinks.contains(a)) {
                return Err(self.escapes(&raw));
            }
            let header = entry.header();
            let mode = header.mode().map_err(|e| self.damaged(e.to_string()))? & 0o7777;
            let link_target = || -> Result<String, CondaError> {
                Ok(entry
                    .link_name()
                    .map_err(|e| self.damaged(e.to_string()))?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let kind = match header.entry_type() {
                tar::EntryType::Directory => ListedKind::Directory,
                tar::EntryType::Symlink => {
                    let target = link_target()?;
                    // Relative links stay inside the package's prefix; absolute ones name image
                    // paths (a package may point at the base's interpreter) and are kept.
                    if !target.starts_with('/') {
                        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                        inside(&format!("{parent}/{target}"))
                            .ok_or_else(|| self.escapes(&format!("{raw} -> {target}")))?;
                    }
                    self.symlinks.insert(path.clone());
                    ListedKind::Symlink { target }
                }
                tar::EntryType::Link => {
                    let target = link_target()?;
                    let target = inside(&target)
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| self.escapes(&format!("{raw} => {target}")))?;
                    ListedKind::Hardlink { target }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let host = self.files.join(&path);
                    if let Some(parent) = host.parent() {
                        fs::create_dir_all(parent).map_err(|e| self.damaged(e.to_string()))?;
                    }
                    let mut out =
                        fs::File::create(&host).map_err(|e| self.damaged(e.to_string()))?;
                    let size =
                        io::copy(&mut entry, &mut out).map_err(|e| self.damaged(e.to_string()))?;
                    ListedKind::File { size }
                }
                other => {
                    return Err(self.damaged(format!(
                        "entry `{raw}` is a {other:?}; packages may hold only files, directories and links"
                    )));
                }
            };
            self.entries.push(ListedEntry { path, kind, mode });
        }
        Ok(())
    }
}

/// `raw` as a path relative to the package root (`""` for the root itself), or None when it
/// is absolute or climbs out through `..`.
fn inside(raw: &str) -> Option<String> {
    if raw.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(|(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_and_outside() {
        assert_eq!(inside("./bin/x").unwrap(), "bin/x");
        assert_eq!(inside("lib/../bin/x").unwrap(), "bin/x");
        assert!(inside("../etc/passwd").is_none());
        assert!(inside("bin/../../x").is_none());
        assert!(inside("/etc/passwd").is_none());
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
    }
}
