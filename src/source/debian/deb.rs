//! `.deb` files: an `ar` archive of `debian-binary`, `control.tar.*` and `data.tar.*`
//! (deb(5)). Extraction writes regular files under a directory owned by whoever runs the build
//! and records every entry's real type, mode and owner separately, so that the layer gets
//! `root:root 4755` without the build ever being root.
//!
//! Entries that would leave the root (`..`, absolute names), device nodes and FIFOs are refused,
//! and so are hard links to anything but a regular file the package itself wrote before them.
//! Where symlinks send the entries is decided when they are installed (`install.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{ContentMismatch, Digest, VerifyingReader};
use crate::layer::ImagePath;

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("`{deb}` is not a Debian package: {reason}")]
    NotADeb { deb: String, reason: String },
    #[error("`{deb}`: entry `{entry}` leaves the package root; refusing to install it")]
    Escapes { deb: String, entry: String },
    #[error("`{deb}`: entry `{entry}` is a {kind}, which packages may not ship in an image layer")]
    Special {
        deb: String,
        entry: String,
        kind: &'static str,
    },
    #[error(
        "`{deb}`: hard link `{entry}` points at `{target}`, which is not a regular file earlier in the package ({why}); refusing to install it"
    )]
    BadHardlink {
        deb: String,
        entry: String,
        target: String,
        why: &'static str,
    },
    #[error("`{deb}` changed in the cache since it was verified (delete it to fetch it again)")]
    Changed {
        deb: String,
        #[source]
        source: ContentMismatch,
    },
    #[error("`{deb}`: cannot extract")]
    Io {
        deb: String,
        #[source]
        source: io::Error,
    },
}

/// What an entry of `data.tar` is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub(crate) enum DebEntryKind {
    Directory,
    /// Content at `files/<path>` under the extraction directory.
    File {
        size: u64,
    },
    Symlink {
        target: String,
    },
    Hardlink {
        target: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DebEntry {
    pub path: String,
    #[serde(flatten)]
    pub kind: DebEntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A package unpacked into a directory: its control files in memory, its data entries listed,
/// its regular files on disk under `files/`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExtractedDeb {
    /// `control`, `md5sums`, `conffiles`, maintainer scripts… by name, as text (invalid UTF-8
    /// replaced); the exact bytes are in `control/<name>` under the extraction directory.
    pub control_files: BTreeMap<String, String>,
    pub entries: Vec<DebEntry>,
}

impl ExtractedDeb {
    pub(crate) fn control(&self) -> &str {
        self.control_files.get("control").map_or("", String::as_str)
    }
}

fn decompressor<'a>(name: &str, reader: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    Ok(if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader))
    } else if name.ends_with(".zst") {
        Box::new(zstd::Decoder::new(reader)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if name.ends_with(".tar") {
        reader
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("member `{name}` uses a compression oci-build does not read"),
        ));
    })
}

/// What a path of `data.tar` was when a later hard link names it.
enum Seen {
    File,
    Symlink,
    Directory,
}

/// `./usr/bin/x` → `usr/bin/x`, refusing anything that climbs out.
fn member_path(deb: &str, raw: &str) -> Result<Option<ImagePath>, DebError> {
    let trimmed = raw.trim_start_matches("./");
    if raw.starts_with('/') || trimmed.split('/').any(|p| p == "..") {
        return Err(DebError::Escapes {
            deb: deb.to_owned(),
            entry: raw.to_owned(),
        });
    }
    match ImagePath::new(trimmed) {
        Ok(path) => Ok(Some(path)),
        // `./` itself: the root directory, which layers never carry.
        Err(crate::layer::ImagePathError::Root(_)) => Ok(None),
        Err(_) => Err(DebError::Escapes {
            deb: deb.to_owned(),
            entry: raw.to_owned(),
        }),
    }
}

/// Unpacks `deb` into `into` (which must be empty): regular files go to `into/files/<path>`.
/// The file is checked against `sha256` in the same read; other content fails the extraction.
pub(crate) fn extract(deb: &Path, sha256: &Digest, into: &Path) -> Result<ExtractedDeb, DebError> {
    let name = deb.display().to_string();
    let io_err = |source: io::Error| match source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ContentMismatch>())
    {
        Some(mismatch) => DebError::Changed {
            deb: name.clone(),
            source: mismatch.clone(),
        },
        None => DebError::Io {
            deb: name.clone(),
            source,
        },
    };
    let file = fs::File::open(deb).map_err(io_err)?;
    let verified = VerifyingReader::new(io::BufReader::new(file), sha256.clone());
    let mut archive = ar::Archive::new(verified);
    let extracted = extract_members(&mut archive, &name, into);
    // Whatever the members were, the file must be the one verified: a changed file is named
    // as such, even where it also fails to parse.
    let checked = archive.into_inner().and_then(VerifyingReader::finish);
    match (extracted, checked) {
        (_, Err(e)) if e.get_ref().is_some_and(|e| e.is::<ContentMismatch>()) => Err(io_err(e)),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(io_err(e)),
        (Ok(extracted), Ok(())) => Ok(extracted),
    }
}

fn extract_members<R: Read>(
    archive: &mut ar::Archive<R>,
    name: &str,
    into: &Path,
) -> Result<ExtractedDeb, DebError> {
    let extraction = Extraction { deb: name, into };
    let not_deb = |reason: &str| DebError::NotADeb {
        deb: name.to_owned(),
        reason: reason.to_owned(),
    };
    let mut control_files = BTreeMap::new();
    let mut entries = Vec::new();
    let mut seen_data = false;
    let mut first = true;
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|_| not_deb("its ar archive is damaged"))?;
        let member_name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if first {
            if member_name != "debian-binary" {
                return Err(not_deb("it does not start with debian-binary"));
            }
            first = false;
            continue;
        }
        if member_name.starts_with("control.tar") {
            extraction.extract_control(&member_name, member, &mut control_files)?;
        } else if member_name.starts_with("data.tar") {
            seen_data = true;
            extraction.extract_data(&member_name, member, &mut entries)?;
        }
    }
    if first {
        return Err(not_deb("it is empty"));
    }
    if !seen_data || !control_files.contains_key("control") {
        return Err(not_deb("it lacks control.tar or data.tar"));
    }
    Ok(ExtractedDeb {
        control_files,
        entries,
    })
}

/// One `.deb` being unpacked into the directory `into`.
struct Extraction<'a> {
    /// The file's name, for messages.
    deb: &'a str,
    into: &'a Path,
}

impl Extraction<'_> {
    fn io_err(&self) -> impl Fn(io::Error) -> DebError + '_ {
        |source| DebError::Io {
            deb: self.deb.to_owned(),
            source,
        }
    }

    /// The top-level files of `control.tar`, to `into/control/<name>` and as text.
    fn extract_control<'r>(
        &self,
        member_name: &str,
        member: impl Read + 'r,
        control_files: &mut BTreeMap<String, String>,
    ) -> Result<(), DebError> {
        let io_err = self.io_err();
        let reader = decompressor(member_name, Box::new(member)).map_err(&io_err)?;
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(&io_err)? {
            let mut entry = entry.map_err(&io_err)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(&io_err)?
                .to_string_lossy()
                .into_owned();
            let file_name = path.trim_start_matches("./").to_owned();
            if file_name.contains('/') || file_name.is_empty() {
                continue;
            }
            // Control files need not be UTF-8 (md5sums of Latin-1 file names): the bytes
            // are kept on disk for the dpkg database, the text is for reading fields.
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(&io_err)?;
            let control = self.into.join("control");
            fs::create_dir_all(&control).map_err(&io_err)?;
            fs::write(control.join(&file_name), &bytes).map_err(&io_err)?;
            control_files.insert(file_name, String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(())
    }

    /// Every entry of `data.tar`, regular files to `into/files/<path>`.
    fn extract_data<'r>(
        &self,
        member_name: &str,
        member: impl Read + 'r,
        entries: &mut Vec<DebEntry>,
    ) -> Result<(), DebError> {
        let io_err = self.io_err();
        let reader = decompressor(member_name, Box::new(member)).map_err(&io_err)?;
        let mut tar = tar::Archive::new(reader);
        // What each path of the package is so far, for checking hard links.
        let mut kinds: BTreeMap<ImagePath, Seen> = BTreeMap::new();
        for entry in tar.entries().map_err(&io_err)? {
            let mut entry = entry.map_err(&io_err)?;
            let raw = entry
                .path()
                .map_err(&io_err)?
                .to_string_lossy()
                .into_owned();
            let Some(path) = member_path(self.deb, &raw)? else {
                continue;
            };
            let header = entry.header();
            let mode = header.mode().map_err(&io_err)? & 0o7777;
            let uid = header.uid().map_err(&io_err)? as u32;
            let gid = header.gid().map_err(&io_err)? as u32;
            let kind = self.entry_kind(&mut entry, &path, raw, &kinds)?;
            kinds.insert(
                path.clone(),
                match kind {
                    DebEntryKind::Directory => Seen::Directory,
                    DebEntryKind::Symlink { .. } => Seen::Symlink,
                    // A second name of a file is a file for links that follow it.
                    DebEntryKind::File { .. } | DebEntryKind::Hardlink { .. } => Seen::File,
                },
            );
            entries.push(DebEntry {
                path: path.as_str().to_owned(),
                kind,
                mode,
                uid,
                gid,
            });
        }
        Ok(())
    }

    /// What the `data.tar` entry `raw` (at `path`) is, a regular file written out on the way.
    fn entry_kind<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &ImagePath,
        raw: String,
        kinds: &BTreeMap<ImagePath, Seen>,
    ) -> Result<DebEntryKind, DebError> {
        let io_err = self.io_err();
        Ok(match entry.header().entry_type() {
            tar::EntryType::Directory => DebEntryKind::Directory,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let target = self.into.join("files").join(path.as_str());
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(&io_err)?;
                }
                let mut out = fs::File::create(&target).map_err(&io_err)?;
                let size = io::copy(entry, &mut out).map_err(&io_err)?;
                DebEntryKind::File { size }
            }
            tar::EntryType::Symlink => DebEntryKind::Symlink {
                target: link_name(entry).map_err(&io_err)?,
            },
            tar::EntryType::Link => {
                let target_raw = link_name(entry).map_err(&io_err)?;
                self.hardlink_kind(&raw, target_raw, kinds)?
            }
            other => {
                let kind = match other {
                    tar::EntryType::Char => "character device",
                    tar::EntryType::Block => "block device",
                    tar::EntryType::Fifo => "named pipe",
                    _ => "special file",
                };
                return Err(DebError::Special {
                    deb: self.deb.to_owned(),
                    entry: raw,
                    kind,
                });
            }
        })
    }

    /// The hard link `raw` → `target_raw`, which must name a regular file the package wrote
    /// before it.
    fn hardlink_kind(
        &self,
        raw: &str,
        target_raw: String,
        kinds: &BTreeMap<ImagePath, Seen>,
    ) -> Result<DebEntryKind, DebError> {
        let bad = |why| DebError::BadHardlink {
            deb: self.deb.to_owned(),
            entry: raw.to_owned(),
            target: target_raw.clone(),
            why,
        };
        // A link out of the root names no file of the package either.
        let target = match member_path(self.deb, &target_raw) {
            Ok(Some(target)) => target,
            Ok(None) | Err(_) => return Err(bad("it leaves the package root")),
        };
        // A hard link to a symlink would give the layer a second name for
        // wherever that symlink leads; to a path the package never wrote, a
        // file of another package or of the host.
        match kinds.get(&target) {
            Some(Seen::File) => {}
            Some(Seen::Symlink) => return Err(bad("it is a symlink")),
            Some(Seen::Directory) => return Err(bad("it is a directory")),
            None => return Err(bad("the package has no such file before it")),
        }
        Ok(DebEntryKind::Hardlink {
            target: target.as_str().to_owned(),
        })
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<String> {
    Ok(entry
        .link_name()?
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// Where an extracted package's regular files are.
pub(crate) fn files_dir(extracted_root: &Path) -> PathBuf {
    extracted_root.join("files")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn digest_of(path: &Path) -> Digest {
        Digest::of_bytes(&fs::read(path).unwrap())
    }

    /// One data.tar entry of a test package: name, type, content, mode, link target.
    pub(crate) type TestEntry<'a> = (&'a str, tar::EntryType, &'a [u8], u32, Option<&'a str>);

    /// Builds a .deb with the given data entries, as dpkg-deb would lay it out.
    pub(crate) fn make_deb(path: &Path, control: &str, data: &[TestEntry<'_>]) {
        make_deb_with(path, &[("./control", control.as_bytes())], data);
    }

    /// Like `make_deb`, with any control files.
    pub(crate) fn make_deb_with(
        path: &Path,
        control_files: &[(&str, &[u8])],
        data: &[TestEntry<'_>],
    ) {
        fn tar_gz(entries: &[TestEntry<'_>]) -> Vec<u8> {
            let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ));
            for (name, kind, content, mode, link) in entries {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(*kind);
                header.set_mode(*mode);
                header.set_size(content.len() as u64);
                header.set_uid(0);
                header.set_gid(0);
                if let Some(link) = link {
                    header.set_link_name(link).unwrap();
                }
                // Raw bytes: the tar crate's own setter refuses `..`, which a test needs.
                header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                builder.append(&header, *content).unwrap();
            }
            builder.into_inner().unwrap().finish().unwrap()
        }
        let control_entries: Vec<TestEntry<'_>> = control_files
            .iter()
            .map(|(name, bytes)| (*name, tar::EntryType::Regular, *bytes, 0o644, None))
            .collect();
        let control_tar = tar_gz(&control_entries);
        let data_tar = tar_gz(data);
        let mut builder = ar::Builder::new(fs::File::create(path).unwrap());
        for (name, bytes) in [
            ("debian-binary", &b"2.0\n"[..]),
            ("control.tar.gz", &control_tar[..]),
            ("data.tar.gz", &data_tar[..]),
        ] {
            let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
            builder.append(&header, bytes).unwrap();
        }
    }

    #[test]
    fn extracts_entries_with_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("x.deb");
        make_deb(
            &deb,
            "Package: x\nVersion: 1\n",
            &[
                ("./", tar::EntryType::Directory, b"", 0o755, None),
                ("./usr/bin/", tar::EntryType::Directory, b"", 0o755, None),
                (
                    "./usr/bin/x",
                    tar::EntryType::Regular,
                    b"#!/bin/sh\n",
                    0o4755,
                    None,
                ),
                (
                    "./usr/bin/y",
                    tar::EntryType::Symlink,
                    b"",
                    0o777,
                    Some("x"),
                ),
                (
                    "./usr/bin/z",
                    tar::EntryType::Link,
                    b"",
                    0o4755,
                    Some("./usr/bin/x"),
                ),
            ],
        );
        let out = dir.path().join("out");
        let extracted = extract(&deb, &digest_of(&deb), &out).unwrap();
        assert_eq!(extracted.control(), "Package: x\nVersion: 1\n");
        let paths: Vec<_> = extracted.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["usr/bin", "usr/bin/x", "usr/bin/y", "usr/bin/z"]);
        assert_eq!(extracted.entries[1].mode, 0o4755);
        assert_eq!(extracted.entries[1].kind, DebEntryKind::File { size: 10 });
        assert_eq!(
            extracted.entries[3].kind,
            DebEntryKind::Hardlink {
                target: "usr/bin/x".into()
            }
        );
        assert_eq!(
            fs::read(out.join("files/usr/bin/x")).unwrap(),
            b"#!/bin/sh\n"
        );
    }

    /// bullseye's packages have md5sums listing Latin-1 file names.
    #[test]
    fn control_files_need_not_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("latin1.deb");
        let md5sums = b"d41d8cd98f00b204e9800998ecf8427e  usr/share/doc/caf\xe9\n";
        make_deb_with(
            &deb,
            &[
                ("./control", &b"Package: latin1\n"[..]),
                ("./md5sums", &md5sums[..]),
            ],
            &[("./usr/", tar::EntryType::Directory, b"", 0o755, None)],
        );
        let out = dir.path().join("out");
        let extracted = extract(&deb, &digest_of(&deb), &out).unwrap();
        assert_eq!(fs::read(out.join("control/md5sums")).unwrap(), md5sums);
        assert!(extracted.control_files["md5sums"].contains("caf\u{fffd}"));
    }

    #[test]
    fn refuses_escaping_entries_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("bad.deb");
        make_deb(
            &deb,
            "Package: bad\n",
            &[(
                "./../../etc/passwd",
                tar::EntryType::Regular,
                b"x",
                0o644,
                None,
            )],
        );
        let err = extract(&deb, &digest_of(&deb), &dir.path().join("o1")).unwrap_err();
        assert!(matches!(err, DebError::Escapes { .. }), "{err}");
        assert!(!dir.path().join("etc/passwd").exists());

        make_deb(
            &deb,
            "Package: dev\n",
            &[("./dev/null", tar::EntryType::Char, b"", 0o666, None)],
        );
        let err = extract(&deb, &digest_of(&deb), &dir.path().join("o2")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn refuses_hard_links_to_symlinks_and_out_of_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("links.deb");
        let cases: [(&str, &[TestEntry<'_>]); 4] = [
            (
                "it is a symlink",
                &[
                    (
                        "./etc/s",
                        tar::EntryType::Symlink,
                        b"",
                        0o777,
                        Some("/etc/shadow"),
                    ),
                    ("./etc/h", tar::EntryType::Link, b"", 0o644, Some("./etc/s")),
                ],
            ),
            (
                "the package has no such file",
                &[(
                    "./etc/h",
                    tar::EntryType::Link,
                    b"",
                    0o644,
                    Some("./etc/shadow"),
                )],
            ),
            (
                "it leaves the package root",
                &[(
                    "./etc/h",
                    tar::EntryType::Link,
                    b"",
                    0o644,
                    Some("../../etc/shadow"),
                )],
            ),
            (
                "it leaves the package root",
                &[(
                    "./etc/h",
                    tar::EntryType::Link,
                    b"",
                    0o644,
                    Some("/etc/shadow"),
                )],
            ),
        ];
        for (i, (why, data)) in cases.iter().enumerate() {
            make_deb(&deb, "Package: links\n", data);
            let err =
                extract(&deb, &digest_of(&deb), &dir.path().join(format!("o{i}"))).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, DebError::BadHardlink { .. }), "{message}");
            assert!(
                message.contains("hard link `./etc/h`") && message.contains(why),
                "{message}"
            );
        }

        make_deb(
            &deb,
            "Package: pipe\n",
            &[("./run/p", tar::EntryType::Fifo, b"", 0o644, None)],
        );
        let err = extract(&deb, &digest_of(&deb), &dir.path().join("fifo")).unwrap_err();
        assert!(err.to_string().contains("named pipe"), "{err}");
    }
}
