//! Reading a wheel's zip archive and extracting it once into the cache.
//!
//! Input: a hash-verified `.whl` in the cache. Output: its directory under
//! `wheels-v1/<sha256>/` (regular files under `files/<path>`) and the [`Listing`] of every file
//! with its mode, size and sha256, also kept there as `listing.json`. Extraction refuses
//! entries that leave the root, names with control characters, symlinks and other special
//! entries, and duplicate names, and checks every file against the wheel's own `RECORD` (see
//! `record.rs`) before the directory is renamed into place, so a bad wheel never gets a
//! cache entry. Also here: [`read_metadata`], which reads `METADATA` without extracting.
//!
//! Spec: the binary distribution format (PEP 427,
//! <https://packaging.python.org/en/latest/specifications/binary-distribution-format/>).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::dist_info::{Layout, find_dist_info};
use super::name::{WheelName, parse_wheel_filename};
use super::record::{record_hash, verify_record};
use super::{WheelError, WheelFile};
use crate::layer::cache::Cache;
use crate::name::{NameFault, RelPath};

/// The cache bucket of extracted wheels; bump the version when the layout or checks change.
pub(super) const BUCKET: &str = crate::layer::cache::Bucket::Wheels.dir();

/// Largest `METADATA` that [`read_metadata`] returns; real ones are well under a megabyte.
const METADATA_LIMIT: u64 = 16 << 20;

// ---------------------------------------------------------------------------------------------
// Paths inside the archive

/// An archive or RECORD path made relative and `/`-separated, with empty and `.` parts dropped
/// (a [`RelPath`]); `Ok("")` for the root. A `\` is a [`NameFault::Separator`]: a Windows path
/// could climb with it.
pub(super) fn clean_path(raw: &str) -> Result<String, NameFault> {
    if raw.contains('\\') {
        return Err(NameFault::Separator);
    }
    match RelPath::new(raw) {
        Ok(path) => Ok(path.into()),
        Err(NameFault::Empty) => Ok(String::new()),
        Err(fault) => Err(fault),
    }
}

/// The error for an archive entry whose name cannot be used: one that leaves the root says so.
pub(super) fn entry_fault(wheel: &str, raw: &str, fault: NameFault) -> WheelError {
    match fault {
        NameFault::Absolute | NameFault::Climbs | NameFault::Separator => WheelError::Escapes {
            wheel: wheel.to_owned(),
            entry: raw.to_owned(),
        },
        fault => WheelError::BadName {
            wheel: wheel.to_owned(),
            what: "an entry named",
            name: raw.to_owned(),
            fault,
        },
    }
}

fn open_zip(
    path: &Path,
    filename: &str,
) -> Result<zip::ZipArchive<BufReader<fs::File>>, WheelError> {
    let file = fs::File::open(path).map_err(|source| WheelError::Io {
        wheel: filename.to_owned(),
        entry: path.display().to_string(),
        source,
    })?;
    checked_zip(BufReader::new(file), filename)
}

fn checked_zip<R: Read + io::Seek>(
    reader: R,
    filename: &str,
) -> Result<zip::ZipArchive<R>, WheelError> {
    let archive = zip::ZipArchive::new(reader).map_err(|source| WheelError::Zip {
        wheel: filename.to_owned(),
        source,
    })?;
    if archive.has_duplicate_names() {
        return Err(WheelError::Duplicate {
            wheel: filename.to_owned(),
            entry: "(a name listed twice in the zip directory)".to_owned(),
        });
    }
    Ok(archive)
}

/// Reads `<name>.dist-info/METADATA` bytes from a wheel file without extracting it (used when
/// an index offers no PEP 658 metadata file). The archive's names are checked as for an install.
pub(crate) fn read_metadata(path: &Path, filename: &str) -> Result<Vec<u8>, WheelError> {
    let file = fs::File::open(path).map_err(|source| WheelError::Io {
        wheel: filename.to_owned(),
        entry: path.display().to_string(),
        source,
    })?;
    read_metadata_from(BufReader::new(file), filename)
}

/// [`read_metadata`] of a wheel read through `reader`: a local file, or ranges of a remote
/// one. Only the central directory and the one entry are read.
pub(crate) fn read_metadata_from(
    reader: impl Read + io::Seek,
    filename: &str,
) -> Result<Vec<u8>, WheelError> {
    let parsed = parse_wheel_filename(filename)?;
    let mut archive = checked_zip(reader, filename)?;
    let mut names = Vec::new();
    for name in archive.file_names() {
        let name = name.map_err(|source| WheelError::Zip {
            wheel: filename.to_owned(),
            source,
        })?;
        let cleaned = clean_path(&name).map_err(|fault| entry_fault(filename, &name, fault))?;
        names.push((cleaned, name.into_owned()));
    }
    let dist_info = find_dist_info(filename, &parsed, names.iter().map(|(c, _)| c.as_str()))?;
    let wanted = format!("{dist_info}/METADATA");
    let Some((_, raw)) = names.iter().find(|(c, _)| *c == wanted) else {
        return Err(WheelError::Missing {
            wheel: filename.to_owned(),
            entry: wanted,
        });
    };
    let zip_err = |source| WheelError::ZipEntry {
        wheel: filename.to_owned(),
        entry: wanted.clone(),
        source,
    };
    let entry = archive.by_name(raw).map_err(zip_err)?;
    let mut bytes = Vec::new();
    entry
        .take(METADATA_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| WheelError::Io {
            wheel: filename.to_owned(),
            entry: wanted.clone(),
            source,
        })?;
    if bytes.len() as u64 > METADATA_LIMIT {
        return Err(WheelError::Malformed {
            wheel: filename.to_owned(),
            entry: wanted,
            reason: format!("it is larger than {METADATA_LIMIT} bytes"),
        });
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Extraction into the cache

/// The files of an extracted wheel, sorted by path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Listing {
    pub(super) files: Vec<ListedFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ListedFile {
    /// Relative to the wheel root; the bytes are at `files/<path>` in the extraction directory.
    pub(super) path: String,
    /// 0o644, or 0o755 when the archive gave the file any execute bit.
    pub(super) mode: u32,
    pub(super) size: u64,
    /// urlsafe base64 without padding, as RECORD writes it.
    pub(super) sha256: String,
}

impl Listing {
    /// Whether every path is one that extraction could have written (a cached listing is
    /// outside input too).
    fn is_clean(&self) -> bool {
        self.files
            .iter()
            .all(|f| !f.path.is_empty() && clean_path(&f.path).is_ok_and(|p| p == f.path))
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Unpacks the archive's regular files under `into/files/` and lists them.
pub(super) fn extract(
    wheel_path: &Path,
    filename: &str,
    into: &Path,
) -> Result<Listing, WheelError> {
    let mut archive = open_zip(wheel_path, filename)?;
    let files_dir = into.join("files");
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    let mut inflater = Inflater::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index_raw(index)
            .map_err(|source| WheelError::ZipEntry {
                wheel: filename.to_owned(),
                entry: format!("#{index}"),
                source,
            })?;
        let raw = entry
            .name()
            .map_err(|source| WheelError::ZipEntry {
                wheel: filename.to_owned(),
                entry: format!("#{index}"),
                source,
            })?
            .into_owned();
        let special = |kind| WheelError::Special {
            wheel: filename.to_owned(),
            entry: raw.clone(),
            kind,
        };
        let path = clean_path(&raw).map_err(|fault| entry_fault(filename, &raw, fault))?;
        let unix = entry.unix_mode();
        let file_type = unix.map_or(0, |m| m & 0o170_000);
        let is_dir = raw.ends_with('/') || file_type == 0o040_000;
        match file_type {
            0 | 0o100_000 | 0o040_000 => {}
            0o120_000 => return Err(special("symbolic link")),
            0o010_000 => return Err(special("named pipe")),
            0o020_000 => return Err(special("character device")),
            0o060_000 => return Err(special("block device")),
            0o140_000 => return Err(special("socket")),
            _ => return Err(special("file of unknown type")),
        }
        if is_dir {
            if entry.size() != 0 {
                return Err(special("directory with content"));
            }
            // Installers create directories for the files in them; empty ones are not kept.
            continue;
        }
        if path.is_empty() {
            return Err(WheelError::Escapes {
                wheel: filename.to_owned(),
                entry: raw,
            });
        }
        if entry.encrypted() {
            return Err(special("encrypted file"));
        }
        if !seen.insert(path.clone()) {
            return Err(WheelError::Duplicate {
                wheel: filename.to_owned(),
                entry: raw,
            });
        }
        let io_err = |source| WheelError::Io {
            wheel: filename.to_owned(),
            entry: raw.clone(),
            source,
        };
        let host = files_dir.join(&path);
        fs::create_dir_all(host.parent().expect("a file under files/")).map_err(io_err)?;
        let mut writer = HashingWriter {
            inner: io::BufWriter::new(fs::File::create(&host).map_err(io_err)?),
            hasher: Sha256::new(),
            size: 0,
        };
        let (method, declared, crc32) = (entry.compression(), entry.size(), entry.crc32());
        inflater
            .copy(&mut entry, method, declared, crc32, &mut writer)
            .map_err(|fault| match fault {
                MemberFault::Io(source) => io_err(source),
                MemberFault::Corrupt(reason) => WheelError::Malformed {
                    wheel: filename.to_owned(),
                    entry: raw.clone(),
                    reason,
                },
            })?;
        writer.inner.flush().map_err(io_err)?;
        let mode = if unix.is_some_and(|m| m & 0o111 != 0) {
            0o755
        } else {
            0o644
        };
        files.push(ListedFile {
            path,
            mode,
            size: writer.size,
            sha256: record_hash(&writer.hasher.finalize()),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing { files })
}

/// Why a member's bytes could not be copied out: the disk or the archive's file failed, or the
/// member's data is not what the zip directory declares.
enum MemberFault {
    Io(io::Error),
    Corrupt(String),
}

/// One inflater and its buffers for every member of a wheel. The zip crate's own reader makes
/// a new inflater per member; those aligned buffers, freed between the small allocations that
/// outlive each member (its path, its hash), fragmented glibc's heap until unpacking
/// tensorflow's 20,000 members raised a build's resident memory by 120 MB.
struct Inflater {
    state: flate2::Decompress,
    input: Box<[u8]>,
    output: Box<[u8]>,
}

impl Inflater {
    fn new() -> Self {
        Self {
            state: flate2::Decompress::new(false),
            input: vec![0; 64 << 10].into_boxed_slice(),
            output: vec![0; 64 << 10].into_boxed_slice(),
        }
    }

    /// Copies one member's data (`raw`, as stored in the archive) to `out`, inflated where it
    /// is deflated, and checks it against the size and CRC-32 the archive declares: a member
    /// that inflates past its declared size is refused as soon as it does.
    fn copy(
        &mut self,
        raw: &mut impl Read,
        method: zip::CompressionMethod,
        declared: u64,
        crc32: u32,
        out: &mut impl Write,
    ) -> Result<(), MemberFault> {
        let mut crc = crc32fast::Hasher::new();
        let mut written = 0u64;
        let mut emit = |bytes: &[u8]| {
            written += bytes.len() as u64;
            if written > declared {
                return Err(MemberFault::Corrupt(format!(
                    "it holds more than the {declared} bytes the archive declares"
                )));
            }
            crc.update(bytes);
            out.write_all(bytes).map_err(MemberFault::Io)
        };
        match method {
            zip::CompressionMethod::Stored => loop {
                let n = read_some(raw, &mut self.input)?;
                if n == 0 {
                    break;
                }
                emit(&self.input[..n])?;
            },
            zip::CompressionMethod::Deflated => {
                self.state.reset(false);
                let (mut start, mut end, mut at_eof) = (0, 0, false);
                loop {
                    if start == end && !at_eof {
                        end = read_some(raw, &mut self.input)?;
                        start = 0;
                        at_eof = end == 0;
                    }
                    let (before_in, before_out) = (self.state.total_in(), self.state.total_out());
                    let flush = if at_eof {
                        flate2::FlushDecompress::Finish
                    } else {
                        flate2::FlushDecompress::None
                    };
                    let status = self
                        .state
                        .decompress(&self.input[start..end], &mut self.output, flush)
                        .map_err(|e| {
                            MemberFault::Corrupt(format!("its deflate data is corrupt ({e})"))
                        })?;
                    let consumed = (self.state.total_in() - before_in) as usize;
                    let produced = (self.state.total_out() - before_out) as usize;
                    start += consumed;
                    emit(&self.output[..produced])?;
                    if status == flate2::Status::StreamEnd {
                        break;
                    }
                    if at_eof && consumed == 0 && produced == 0 {
                        return Err(MemberFault::Corrupt(
                            "its deflate data ends before the stream does".to_owned(),
                        ));
                    }
                }
            }
            other => {
                return Err(MemberFault::Corrupt(format!(
                    "it is compressed with {other}, which a wheel may not use (deflate or none)"
                )));
            }
        }
        if written != declared {
            return Err(MemberFault::Corrupt(format!(
                "it holds {written} bytes where the archive declares {declared}"
            )));
        }
        if crc.finalize() != crc32 {
            return Err(MemberFault::Corrupt(
                "its CRC-32 does not match the archive's".to_owned(),
            ));
        }
        Ok(())
    }
}

/// One `read` of `raw`, retried where a signal interrupted it.
fn read_some(raw: &mut impl Read, buffer: &mut [u8]) -> Result<usize, MemberFault> {
    loop {
        match raw.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map_err(MemberFault::Io),
        }
    }
}

/// Where the wheel of SHA256 `sha256` (hex) is extracted in the cache.
pub(super) fn cached_dir(sha256: &str, cache: &Cache) -> PathBuf {
    cache.root().join(BUCKET).join(sha256.to_ascii_lowercase())
}

/// Extracts and verifies a wheel into the cache once; returns its directory and listing.
pub(super) fn extract_cached(
    wheel: &WheelFile,
    parsed: &WheelName,
    cache: &Cache,
) -> Result<(PathBuf, Listing), WheelError> {
    let key = wheel.sha256.to_ascii_lowercase();
    let Ok(digest) = crate::digest::Digest::from_hex(&key) else {
        return Err(WheelError::BadSha256 {
            wheel: wheel.filename.to_owned(),
            sha256: wheel.sha256.to_owned(),
        });
    };
    let parent = cache.root().join(BUCKET);
    let dir = parent.join(&key);
    let io_err = |entry: &str| {
        let entry = entry.to_owned();
        move |source| WheelError::Io {
            wheel: wheel.filename.to_owned(),
            entry,
            source,
        }
    };
    if let Ok(bytes) = fs::read(dir.join("listing.json")) {
        match serde_json::from_slice::<Listing>(&bytes) {
            Ok(listing) if listing.is_clean() => return Ok((dir, listing)),
            // Damaged in the cache: extracted again from the verified wheel.
            _ => fs::remove_dir_all(&dir).map_err(io_err(BUCKET))?,
        }
    }
    fs::create_dir_all(&parent).map_err(io_err(BUCKET))?;
    let temp = tempfile::tempdir_in(&parent).map_err(io_err(BUCKET))?;
    // A zip is read out of order, so the file is checked in a pass of its own first.
    crate::digest::verify_file(wheel.path, &digest).map_err(|source| WheelError::Changed {
        wheel: wheel.filename.to_owned(),
        path: wheel.path.to_owned(),
        source,
    })?;
    let listing = extract(wheel.path, wheel.filename, temp.path())?;
    // Checked before the directory is published, so a bad wheel never gets a cache entry.
    let layout = Layout::read(wheel.filename, parsed, &temp.path().join("files"), &listing)?;
    verify_record(
        wheel.filename,
        &temp.path().join("files"),
        &listing,
        &layout.dist_info,
    )?;
    fs::write(
        temp.path().join("listing.json"),
        serde_json::to_vec(&listing).expect("listing serialises"),
    )
    .map_err(io_err("listing.json"))?;
    crate::fsutil::publish_dir(temp, &dir);
    Ok((dir, listing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerTree;
    use crate::source::pip::wheel::WheelError;
    use crate::source::pip::wheel::install_wheel;
    use crate::source::pip::wheel::test_support::*;

    #[test]
    fn escaping_zip_entries_are_refused() {
        for bad in [
            "../evil.py",
            "demo/../../evil.py",
            "/etc/evil",
            "demo\\..\\evil",
        ] {
            let s = setup();
            let mut files = demo_files(true, &[]);
            files.push((bad.to_owned(), b"x".to_vec(), 0o100644));
            assert_refused(
                &s,
                &wheel_bytes(&files),
                |e| matches!(e, WheelError::Escapes { entry, .. } if entry == bad),
            );
            assert!(!s.dir.path().join("evil.py").exists());
        }
    }

    #[test]
    fn symlinks_and_duplicates_are_refused() {
        let s = setup();
        let files = demo_files(true, &[("demo/link", b"/etc/passwd", 0o120777)]);
        assert_refused(&s, &wheel_bytes(&files), |e| {
            matches!(
                e,
                WheelError::Special {
                    kind: "symbolic link",
                    ..
                }
            )
        });

        // `./demo/x.py` and `demo/x.py` are the same file once cleaned.
        let files = demo_files(
            true,
            &[
                ("demo/x.py", b"1", 0o100644),
                ("./demo/x.py", b"2", 0o100644),
            ],
        );
        assert_refused(&s, &wheel_bytes(&files), |e| {
            matches!(e, WheelError::Duplicate { .. })
        });

        // The same raw name twice: written as `demo/a.py` and `demo/b.py`, then renamed.
        let files = demo_files(
            true,
            &[("demo/a.py", b"1", 0o100644), ("demo/b.py", b"2", 0o100644)],
        );
        let mut bytes = wheel_bytes(&files);
        let needle = b"demo/b.py";
        let mut i = 0;
        while i + needle.len() <= bytes.len() {
            if &bytes[i..i + needle.len()] == needle {
                bytes[i + 5] = b'a';
            }
            i += 1;
        }
        assert_refused(&s, &bytes, |e| matches!(e, WheelError::Duplicate { .. }));
    }

    #[test]
    fn a_second_install_comes_from_the_extraction_cache_identically() {
        let s = setup();
        let files = demo_files(
            true,
            &[
                ("demo-1.0.data/scripts/run", b"#!python\n", 0o100644),
                (
                    "demo-1.0.dist-info/entry_points.txt",
                    b"[console_scripts]\nd = demo:main\n",
                    0o100644,
                ),
            ],
        );
        let bytes = wheel_bytes(&files);
        let (first, installed) = s.install(&bytes).unwrap();
        let cached = s
            .cache
            .root()
            .join(BUCKET)
            .join(hex::encode(Sha256::digest(&bytes)));
        assert!(cached.join("listing.json").exists());
        assert!(cached.join("files/demo/__init__.py").exists());
        assert_eq!(
            fs::read_dir(s.cache.root().join(BUCKET)).unwrap().count(),
            1
        );

        // The wheel file is gone: the second install can only have used the extracted copy.
        let path = s.dir.path().join(FILENAME);
        fs::remove_file(&path).unwrap();
        let mut second = LayerTree::default();
        let sha = hex::encode(Sha256::digest(&bytes));
        let again = install_wheel(
            &mut second,
            &debian_scheme(),
            &WheelFile {
                path: &path,
                filename: FILENAME,
                sha256: &sha,
                requested: true,
            },
            &s.cache,
        )
        .unwrap();
        assert_eq!(installed, again);
        assert_eq!(describe(&first), describe(&second));
    }

    fn deflated(bytes: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn crc_of(bytes: &[u8]) -> u32 {
        let mut crc = crc32fast::Hasher::new();
        crc.update(bytes);
        crc.finalize()
    }

    /// Copies `raw` with one inflater, as extraction does, declaring `declared` bytes and `crc`.
    fn copy_with(
        inflater: &mut Inflater,
        raw: &[u8],
        method: zip::CompressionMethod,
        declared: usize,
        crc: u32,
    ) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        inflater
            .copy(&mut &raw[..], method, declared as u64, crc, &mut out)
            .map(|()| out)
            .map_err(|fault| match fault {
                MemberFault::Io(e) => format!("io: {e}"),
                MemberFault::Corrupt(reason) => reason,
            })
    }

    #[test]
    fn one_inflater_copies_members_of_any_size_and_checks_them() {
        let deflate = zip::CompressionMethod::Deflated;
        // Larger than the buffers, so that input and output each take several rounds.
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let small = b"print('hello')\n".to_vec();
        let mut inflater = Inflater::new();
        for payload in [&big, &small, &Vec::new(), &big] {
            let copied = copy_with(
                &mut inflater,
                &deflated(payload),
                deflate,
                payload.len(),
                crc_of(payload),
            );
            assert_eq!(copied.as_ref(), Ok(payload));
        }
        let stored = zip::CompressionMethod::Stored;
        assert_eq!(
            copy_with(&mut inflater, &small, stored, small.len(), crc_of(&small)),
            Ok(small.clone())
        );

        // A member that inflates past what the directory declares stops there.
        let bomb = vec![0u8; 4 << 20];
        let error = copy_with(
            &mut inflater,
            &deflated(&bomb),
            deflate,
            1000,
            crc_of(&bomb),
        );
        assert_eq!(
            error,
            Err("it holds more than the 1000 bytes the archive declares".to_owned())
        );
        let error = copy_with(
            &mut inflater,
            &small,
            stored,
            small.len() + 1,
            crc_of(&small),
        );
        assert!(error.unwrap_err().contains("where the archive declares"));
        let error = copy_with(&mut inflater, &deflated(&big), deflate, big.len(), 7);
        assert_eq!(
            error,
            Err("its CRC-32 does not match the archive's".to_owned())
        );

        let raw = deflated(&big);
        let error = copy_with(&mut inflater, &raw[..raw.len() / 2], deflate, big.len(), 0);
        assert_eq!(
            error,
            Err("its deflate data ends before the stream does".to_owned())
        );
        let error = copy_with(&mut inflater, &[0xff; 64], deflate, 10, 0);
        assert!(
            error
                .unwrap_err()
                .starts_with("its deflate data is corrupt")
        );
        let error = copy_with(&mut inflater, &small, zip::CompressionMethod::BZIP2, 1, 0);
        assert!(error.unwrap_err().contains("which a wheel may not use"));

        // After all those failures the same inflater still serves a good member.
        let copied = copy_with(
            &mut inflater,
            &deflated(&big),
            deflate,
            big.len(),
            crc_of(&big),
        );
        assert_eq!(copied, Ok(big));
    }

    #[test]
    fn a_member_whose_bytes_were_altered_is_refused() {
        let s = setup();
        let files = demo_files(true, &[]);
        let mut bytes = wheel_bytes(&files);
        // The first local header is `demo/__init__.py`'s (name at 30, extra length at 28);
        // its deflated data follows the name and the extra field.
        let name_len = usize::from(u16::from_le_bytes([bytes[26], bytes[27]]));
        let extra_len = usize::from(u16::from_le_bytes([bytes[28], bytes[29]]));
        assert_eq!(&bytes[30..30 + name_len], files[0].0.as_bytes());
        bytes[30 + name_len + extra_len] ^= 0xff;
        assert_refused(
            &s,
            &bytes,
            |e| matches!(e, WheelError::Malformed { entry, .. } if *entry == files[0].0),
        );
    }

    #[test]
    fn metadata_is_read_without_extracting() {
        let s = setup();
        let files = demo_files(true, &[]);
        let path = s.dir.path().join(FILENAME);
        fs::write(&path, wheel_bytes(&files)).unwrap();
        assert_eq!(read_metadata(&path, FILENAME).unwrap(), files[1].1);
        assert!(s.nothing_cached());
        let err = read_metadata(&path, "other-1.0-py3-none-any.whl").unwrap_err();
        assert!(matches!(err, WheelError::DistInfo { .. }), "{err}");
    }
}
