//! Reading `.conda` and `.tar.bz2` package archives into the cache, once per package: `conda-v1/<sha256>/files/` holds the regular
//! files, `listing.json` every entry with its mode. Symbolic links are only listed, never
//! created on the host, so nothing later can write through them.
//!
//! Every member name is a checked [`RelPath`] (no `..`, not absolute, no control character).
//! A relative link target must stay inside the package, an absolute one must name a path of
//! the image without `..`; no member may lie below a link of the same package, whatever their
//! order in the archive; a hard link must name a regular file listed before it. A listing read
//! back from the cache goes through the same checks.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::install::{ListedEntry, ListedKind, Listing, member_fault};
use super::{CondaError, LockedConda};
use crate::layer::ImagePath;
use crate::layer::cache::{Bucket, Cache};
use crate::name::{NameFault, RelPath};

/// Extracts a package into the cache once; returns its directory and listing.
pub(crate) fn extract_cached(
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
    let parent = cache.bucket(Bucket::Conda);
    let dir = parent.join(locked.sha256.hex());
    if let Ok(bytes) = fs::read(dir.join("listing.json")) {
        match serde_json::from_slice::<Listing>(&bytes) {
            Ok(listing) if check_listing(&package, &listing.entries).is_ok() => {
                return Ok((dir, listing));
            }
            // A listing that does not pass the checks was damaged in the cache: extracted
            // again from the verified archive, which then passes or is refused.
            _ => fs::remove_dir_all(&dir).map_err(io_err)?,
        }
    }
    fs::create_dir_all(&parent).map_err(io_err)?;
    let temp = tempfile::tempdir_in(&parent).map_err(io_err)?;
    let mut reader = Reader {
        package: package.clone(),
        url: url.to_owned(),
        files: temp.path().join("files"),
        entries: Vec::new(),
    };
    fs::create_dir_all(&reader.files).map_err(io_err)?;
    // `.conda` files are zips, read out of order: the file is checked in a pass of its own.
    crate::digest::verify_file(archive, &locked.sha256).map_err(|source| CondaError::Changed {
        package: package.clone(),
        path: archive.to_owned(),
        source,
    })?;
    let open = || fs::File::open(archive).map_err(io_err);
    if locked.filename.ends_with(".conda") {
        let mut zip = zip::ZipArchive::new(io::BufReader::new(open()?))
            .map_err(|e| reader.damaged(format!("it is not a readable zip ({e})")))?;
        // The two tars of a `.conda`, as conda's format defines them: `info-*.tar.zst` with
        // the metadata, `pkg-*.tar.zst` with the files. Other members (metadata.json) are
        // not installed.
        for part in ["info-", "pkg-"] {
            let name = conda_member(&zip, part)
                .ok_or_else(|| reader.damaged(format!("it holds no {part}*.tar.zst member")))?;
            let member = zip
                .by_name(&name)
                .map_err(|e| reader.damaged(format!("its member {name} cannot be read ({e})")))?;
            let tar = zstd::Decoder::new(member).map_err(|e| reader.broken(e))?;
            reader.read_tar(tar::Archive::new(tar))?;
        }
    } else if locked.filename.ends_with(".tar.bz2") {
        reader.read_tar(tar::Archive::new(bzip2::read::MultiBzDecoder::new(
            io::BufReader::new(open()?),
        )))?;
    } else {
        return Err(reader.damaged("its file name ends in neither .conda nor .tar.bz2".into()));
    }
    check_listing(&package, &reader.entries)?;
    let listing = Listing {
        entries: reader.entries,
    };
    fs::write(
        temp.path().join("listing.json"),
        serde_json::to_vec(&listing).expect("listings serialise"),
    )
    .map_err(io_err)?;
    crate::fsutil::publish_dir(temp, &dir);
    Ok((dir, listing))
}

struct Reader {
    package: String,
    url: String,
    files: PathBuf,
    entries: Vec<ListedEntry>,
}

impl Reader {
    fn damaged(&self, reason: String) -> CondaError {
        CondaError::Archive {
            package: self.package.clone(),
            url: self.url.clone(),
            reason,
        }
    }

    fn broken(&self, source: io::Error) -> CondaError {
        CondaError::ArchiveRead {
            package: self.package.clone(),
            url: self.url.clone(),
            source,
        }
    }

    fn read_tar<R: Read>(&mut self, mut archive: tar::Archive<R>) -> Result<(), CondaError> {
        let entries = archive.entries().map_err(|e| self.broken(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.broken(e))?;
            let raw = entry
                .path()
                .map_err(|e| self.broken(e))?
                .to_string_lossy()
                .into_owned();
            // Entry names are taken strictly: no `..` at all, even one that stays inside.
            let path = match RelPath::new(&raw) {
                Ok(path) => path,
                // The package root itself (`./`).
                Err(NameFault::Empty) => continue,
                Err(fault) => return Err(member_fault(&self.package, &raw, fault)),
            };
            let header = entry.header();
            let mode = header.mode().map_err(|e| self.broken(e))? & 0o7777;
            let link_target = || -> Result<String, CondaError> {
                Ok(entry
                    .link_name()
                    .map_err(|e| self.broken(e))?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let kind = match header.entry_type() {
                tar::EntryType::Directory => ListedKind::Directory,
                tar::EntryType::Symlink => ListedKind::Symlink {
                    target: link_target()?,
                },
                tar::EntryType::Link => ListedKind::Hardlink {
                    target: link_target()?,
                },
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let host = self.files.join(path.as_str());
                    if let Some(parent) = host.parent() {
                        fs::create_dir_all(parent).map_err(|e| self.broken(e))?;
                    }
                    let mut out = fs::File::create(&host).map_err(|e| self.broken(e))?;
                    let size = io::copy(&mut entry, &mut out).map_err(|e| self.broken(e))?;
                    ListedKind::File { size }
                }
                other => {
                    return Err(self.damaged(format!(
                        "entry {raw:?} is a {other:?}; packages may hold only files, directories and links"
                    )));
                }
            };
            self.entries.push(ListedEntry { path, kind, mode });
        }
        Ok(())
    }
}

/// The name of the one `.conda` member that starts with `prefix` (`info-` or `pkg-`) and is a
/// zstd tar at the zip's top level; None when there is none or more than one.
fn conda_member<R: Read + io::Seek>(zip: &zip::ZipArchive<R>, prefix: &str) -> Option<String> {
    let mut found = zip.file_names().filter_map(Result::ok).filter(|name| {
        name.starts_with(prefix) && name.ends_with(".tar.zst") && !name.contains('/')
    });
    let name = found.next()?.into_owned();
    found.next().is_none().then_some(name)
}

/// The checks on a whole listing, which the order of the members cannot get around: link
/// targets, members below a link of the package, hard links to listed files, one entry per
/// path (a directory may repeat).
fn check_listing(package: &str, entries: &[ListedEntry]) -> Result<(), CondaError> {
    let escapes = |entry: String| CondaError::Escapes {
        package: package.to_owned(),
        entry,
    };
    let mut kinds: BTreeMap<&str, &ListedKind> = BTreeMap::new();
    for entry in entries {
        let path = entry.path.as_str();
        match &entry.kind {
            ListedKind::Symlink { target } => {
                let shown = format!("{path} -> {target}");
                if target.chars().any(char::is_control) || target.is_empty() {
                    return Err(CondaError::BadName {
                        package: package.to_owned(),
                        what: "a link",
                        name: shown,
                        fault: if target.is_empty() {
                            NameFault::Empty
                        } else {
                            NameFault::Control
                        },
                    });
                }
                // Relative links stay inside the package's prefix; absolute ones name image
                // paths (a package may point at the base's interpreter) and may not climb.
                let inside_image = if target.starts_with('/') {
                    ImagePath::new(target).is_ok()
                } else {
                    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                    inside(&format!("{parent}/{target}")).is_some()
                };
                if !inside_image {
                    return Err(escapes(shown));
                }
            }
            ListedKind::Hardlink { target } => {
                // A tar hard link names an earlier member; here it must be a regular file.
                let to_file = RelPath::new(target)
                    .is_ok_and(|t| matches!(kinds.get(t.as_str()), Some(ListedKind::File { .. })));
                if !to_file {
                    return Err(escapes(format!("{path} => {target}")));
                }
            }
            ListedKind::Directory | ListedKind::File { .. } => {}
        }
        if let Some(before) = kinds.insert(path, &entry.kind)
            && !(matches!(before, ListedKind::Directory)
                && matches!(entry.kind, ListedKind::Directory))
        {
            return Err(CondaError::BadName {
                package: package.to_owned(),
                what: "an entry named",
                name: path.to_owned(),
                fault: NameFault::Duplicate,
            });
        }
    }
    // A path below a link of the same package would land wherever the link points.
    for entry in entries {
        if let Some(link) = entry
            .path
            .ancestors()
            .find(|a| matches!(kinds.get(a), Some(ListedKind::Symlink { .. })))
        {
            return Err(escapes(format!("{} (below the link {link})", entry.path)));
        }
    }
    Ok(())
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
    }

    fn listed(path: &str, kind: ListedKind) -> ListedEntry {
        ListedEntry {
            path: RelPath::new(path).unwrap(),
            kind,
            mode: 0o644,
        }
    }

    #[test]
    fn listings_are_checked_whatever_the_order_of_members() {
        let file = || ListedKind::File { size: 1 };
        let link = |target: &str| ListedKind::Symlink {
            target: target.to_owned(),
        };
        let ok = [
            listed("lib/libx.so.1", file()),
            listed("lib/libx.so", link("libx.so.1")),
            listed("bin/python", link("/usr/bin/python3")),
            listed(
                "lib/hard",
                ListedKind::Hardlink {
                    target: "lib/libx.so.1".to_owned(),
                },
            ),
        ];
        check_listing("p-1-0", &ok).unwrap();
        for (what, entries) in [
            // The member comes before the link it goes through.
            (
                "below a later link",
                vec![
                    listed("lib/etc/passwd", file()),
                    listed("lib/etc", link("/etc")),
                ],
            ),
            (
                "absolute link climbing",
                vec![listed("lib/x", link("/../../etc"))],
            ),
            (
                "relative link climbing",
                vec![listed("lib/x", link("../../etc"))],
            ),
            ("control character", vec![listed("lib/x", link("y\nz"))]),
            (
                "hard link to a link",
                vec![
                    listed("lib/x", link("y")),
                    listed(
                        "lib/h",
                        ListedKind::Hardlink {
                            target: "lib/x".to_owned(),
                        },
                    ),
                ],
            ),
            (
                "file then link",
                vec![listed("lib/x", file()), listed("lib/x", link("y"))],
            ),
        ] {
            let error = check_listing("p-1-0", &entries).unwrap_err().to_string();
            assert!(error.contains("p-1-0"), "{what}: {error}");
            assert!(!error.contains('\n'), "{what}: {error}");
        }
    }
}
