//! Installing one wheel into a layer tree, as pip would leave it in the image.
//!
//! Spec: the PyPA binary distribution format (PEP 427), recording installed projects (PEP 376:
//! `RECORD`, `INSTALLER`, `REQUESTED`) and entry points
//! (<https://packaging.python.org/en/latest/specifications/>).
//!
//! A wheel is extracted once into the cache under `wheels-v1/<sha256>/`: its regular files under
//! `files/<path>` and a `listing.json` of every file with its mode, size and sha256. Extraction
//! refuses entries that leave the root, names with control characters, symlinks and other
//! special entries, and duplicate names, and checks every file against the wheel's own `RECORD`
//! before the directory is renamed into place, so a bad wheel never gets a cache entry; a
//! cached listing whose paths do not pass the same checks is extracted again. Names the wheel
//! gives (file name, project name, entry point and `.data` names, RECORD paths) are checked
//! before they become image paths, and printed Debug-escaped in errors. Installing then maps the listed files onto
//! the install scheme as `Content::Host` entries (a large wheel is never read into memory) and
//! adds what an installer writes: entry point launchers, `#!python` scripts pointed at the
//! image's interpreter, `INSTALLER`, `REQUESTED` and a rewritten `RECORD`, so that `pip show -f`
//! and `pip uninstall` work in the image.
//!
//! Not done: `.pyc` compilation (the interpreter writes them on first import when it can) and
//! `direct_url.json` (PEP 610), which only applies to installs from a URL.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::InstallScheme;
use crate::layer::cache::Cache;
use crate::layer::{Content, Entry, EntryKind, FileStamp, ImagePath, LayerTree};
use crate::name::{FileName, NameFault, RelPath, is_dotted_identifier};

/// The cache bucket of extracted wheels; bump the version when the layout or checks change.
const BUCKET: &str = "wheels-v1";

/// Largest `METADATA` that [`read_metadata`] returns; real ones are well under a megabyte.
const METADATA_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("{filename:?} is not a wheel file name: {reason}")]
    BadFilename { filename: String, reason: String },
    #[error("wheel `{wheel}`: the extraction key `{sha256}` is not a sha256 hex digest")]
    BadSha256 { wheel: String, sha256: String },
    #[error(
        "wheel `{wheel}` at `{path}` changed in the cache since it was verified (delete it to fetch it again)"
    )]
    Changed {
        wheel: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wheel `{wheel}` is not a readable zip archive")]
    Zip {
        wheel: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("wheel `{wheel}`: entry `{entry}` cannot be read from the archive")]
    ZipEntry {
        wheel: String,
        entry: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error(
        "wheel `{wheel}`: entry {entry:?} leaves the wheel root (absolute path, `..` or `\\`); refusing to install it"
    )]
    Escapes { wheel: String, entry: String },
    #[error("wheel `{wheel}` has {what} {name:?}, which {fault}; refusing to install it")]
    BadName {
        wheel: String,
        what: &'static str,
        name: String,
        fault: NameFault,
    },
    #[error(
        "wheel `{wheel}`: entry {entry:?} is a {kind}; a wheel may only hold regular files and directories"
    )]
    Special {
        wheel: String,
        entry: String,
        kind: &'static str,
    },
    #[error("wheel `{wheel}`: entry {entry:?} appears more than once in the archive")]
    Duplicate { wheel: String, entry: String },
    #[error("wheel `{wheel}`: {reason}")]
    DistInfo { wheel: String, reason: String },
    #[error("wheel `{wheel}` has no `{entry}`, which every wheel must contain")]
    Missing { wheel: String, entry: String },
    #[error("wheel `{wheel}`: `{entry}` is malformed: {reason}")]
    Malformed {
        wheel: String,
        entry: String,
        reason: String,
    },
    #[error(
        "wheel `{wheel}`: `{entry}` declares Wheel-Version {version}; oci-build installs wheel format 1.x only"
    )]
    UnsupportedVersion {
        wheel: String,
        entry: String,
        version: String,
    },
    #[error(
        "wheel `{wheel}`: RECORD names {entry:?}, which leaves the wheel root (absolute path, `..` or `\\`); refusing to install it"
    )]
    RecordEscapes { wheel: String, entry: String },
    #[error(
        "wheel `{wheel}`: `{entry}` does not match the {what} in RECORD (RECORD says {expected}, the file has {found}); the wheel is corrupt or was altered"
    )]
    RecordMismatch {
        wheel: String,
        entry: String,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "wheel `{wheel}`: RECORD hashes `{entry}` with `{algorithm}`; only sha256, sha384 and sha512 are accepted"
    )]
    WeakHash {
        wheel: String,
        entry: String,
        algorithm: String,
    },
    #[error(
        "wheel `{wheel}`: {entry:?} is not listed in RECORD, so it cannot be verified; refusing to install it"
    )]
    NotInRecord { wheel: String, entry: String },
    #[error(
        "wheel `{wheel}`: {entry:?} is under `.data/` in {key:?}, which is not one of purelib, platlib, scripts, headers or data"
    )]
    UnknownDataDir {
        wheel: String,
        entry: String,
        key: String,
    },
    #[error("wheel `{wheel}`: entry point {entry:?} in entry_points.txt is invalid: {reason}")]
    EntryPoint {
        wheel: String,
        entry: String,
        reason: String,
    },
    #[error("install scheme: the {what} directory `{path}` is not a usable image path")]
    Scheme { what: &'static str, path: String },
    #[error("wheel `{wheel}`: cannot extract `{entry}` into the cache")]
    Io {
        wheel: String,
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// A wheel to install: a verified file in the cache and what the resolver knows of it.
pub struct WheelFile<'a> {
    /// The `.whl` in the cache (already hash-verified by the caller).
    pub path: &'a Path,
    /// The file name, e.g. `PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.whl`.
    pub filename: &'a str,
    /// Hex sha256 of the file; names the extraction cache directory.
    pub sha256: &'a str,
    /// Named by the user (gets `REQUESTED`) rather than pulled in as a dependency.
    pub requested: bool,
}

/// What [`install_wheel`] put into the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledWheel {
    /// The project name as its METADATA spells it.
    pub name: String,
    pub version: String,
    /// Image path of the `.dist-info` directory (`/usr/local/lib/…/X-1.0.dist-info`).
    pub dist_info: String,
    /// Image paths of the scripts installed from `.data/scripts` and generated for entry points.
    pub scripts: Vec<String>,
}

/// The parts of a wheel file name:
/// `{distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelName {
    /// The distribution name as written in the file name.
    pub name: String,
    pub version: String,
    pub build: Option<String>,
    /// Compressed tag sets (`py2.py3`) split on `.`.
    pub python_tags: Vec<String>,
    pub abi_tags: Vec<String>,
    pub platform_tags: Vec<String>,
}

/// PEP 503 normalisation: lowercase, every run of `-`, `_` and `.` becomes one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A project name as PEP 508 allows it: ASCII letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit (so never `.`, `..` or a path).
fn is_project_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Splits a wheel file name into its parts; the build tag must start with a digit.
pub fn parse_wheel_filename(filename: &str) -> Result<WheelName, WheelError> {
    let bad = |reason: &str| WheelError::BadFilename {
        filename: filename.to_owned(),
        reason: reason.to_owned(),
    };
    let stem = filename
        .strip_suffix(".whl")
        .ok_or_else(|| bad("it does not end in `.whl`"))?;
    if stem.contains(['/', '\\']) {
        return Err(bad("it contains a path separator"));
    }
    if stem.contains(|c: char| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains a control character or a blank"));
    }
    let parts: Vec<&str> = stem.split('-').collect();
    let (name, version, build, tags) = match parts.as_slice() {
        [name, version, py, abi, plat] => (*name, *version, None, [*py, *abi, *plat]),
        [name, version, build, py, abi, plat] => {
            if !build.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(bad("its build tag does not start with a digit"));
            }
            (
                *name,
                *version,
                Some((*build).to_owned()),
                [*py, *abi, *plat],
            )
        }
        _ => {
            return Err(bad(
                "it does not have 5 or 6 `-`-separated parts (name, version, optional build, python, abi, platform tags)",
            ));
        }
    };
    if !is_project_name(name) {
        return Err(bad(
            "its distribution name is not letters, digits, `_` and `.` starting and ending with a letter or digit",
        ));
    }
    if version.is_empty() {
        return Err(bad("its version is empty"));
    }
    let split = |set: &str| -> Result<Vec<String>, WheelError> {
        let tags: Vec<String> = set.split('.').map(str::to_owned).collect();
        if tags.iter().any(String::is_empty) {
            return Err(bad("it has an empty compatibility tag"));
        }
        Ok(tags)
    };
    Ok(WheelName {
        name: name.to_owned(),
        version: version.to_owned(),
        build,
        python_tags: split(tags[0])?,
        abi_tags: split(tags[1])?,
        platform_tags: split(tags[2])?,
    })
}

// ---------------------------------------------------------------------------------------------
// Paths inside the archive

/// An archive or RECORD path made relative and `/`-separated, with empty and `.` parts dropped
/// (a [`RelPath`]); `Ok("")` for the root. A `\` is a [`NameFault::Separator`]: a Windows path
/// could climb with it.
fn clean_path(raw: &str) -> Result<String, NameFault> {
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
fn entry_fault(wheel: &str, raw: &str, fault: NameFault) -> WheelError {
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

/// The archive's `.dist-info` directory: exactly one at the top level, named after the wheel.
fn find_dist_info<'p>(
    filename: &str,
    parsed: &WheelName,
    paths: impl Iterator<Item = &'p str>,
) -> Result<String, WheelError> {
    let found: BTreeSet<&str> = paths
        .filter_map(|p| p.split_once('/').map(|(top, _)| top))
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    let dist_info = match found.len() {
        1 => *found.iter().next().expect("one element"),
        0 => {
            return Err(WheelError::DistInfo {
                wheel: filename.to_owned(),
                reason: "it has no top-level `.dist-info` directory".to_owned(),
            });
        }
        _ => {
            return Err(WheelError::DistInfo {
                wheel: filename.to_owned(),
                reason: format!(
                    "it has {} `.dist-info` directories ({}); a wheel holds exactly one",
                    found.len(),
                    found.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    };
    let stem = dist_info.trim_end_matches(".dist-info");
    let expected = format!("{}-{}", parsed.name, parsed.version);
    if normalize_name(stem) != normalize_name(&expected) {
        return Err(WheelError::DistInfo {
            wheel: filename.to_owned(),
            reason: format!(
                "its metadata directory `{dist_info}` does not belong to `{expected}` named by the file name"
            ),
        });
    }
    Ok(dist_info.to_owned())
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
    let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|source| WheelError::Zip {
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
pub fn read_metadata(path: &Path, filename: &str) -> Result<Vec<u8>, WheelError> {
    let parsed = parse_wheel_filename(filename)?;
    let mut archive = open_zip(path, filename)?;
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
struct Listing {
    files: Vec<ListedFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ListedFile {
    /// Relative to the wheel root; the bytes are at `files/<path>` in the extraction directory.
    path: String,
    /// 0o644, or 0o755 when the archive gave the file any execute bit.
    mode: u32,
    size: u64,
    /// urlsafe base64 without padding, as RECORD writes it.
    sha256: String,
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

fn record_hash(digest: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest)
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
fn extract(wheel_path: &Path, filename: &str, into: &Path) -> Result<Listing, WheelError> {
    let mut archive = open_zip(wheel_path, filename)?;
    let files_dir = into.join("files");
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
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
        io::copy(&mut entry, &mut writer).map_err(io_err)?;
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

/// Extracts and verifies a wheel into the cache once; returns its directory and listing.
fn extract_cached(
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
    let kept = temp.keep();
    if fs::rename(&kept, &dir).is_err() {
        // Another build extracted it first; theirs is as good as ours.
        let _ = fs::remove_dir_all(&kept);
    }
    Ok((dir, listing))
}

// ---------------------------------------------------------------------------------------------
// Metadata files: WHEEL, METADATA, RECORD, entry_points.txt

/// `Key: value` header lines up to the first blank line (RFC 822 style, as WHEEL and METADATA
/// are written); continuation lines are joined.
fn headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn header<'h>(headers: &'h [(String, String)], key: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// What the wheel's metadata says about how to install it.
struct Layout {
    /// `X-1.0.dist-info`.
    dist_info: String,
    /// `X-1.0.data`.
    data_dir: String,
    root_is_purelib: bool,
    name: String,
    version: String,
}

impl Layout {
    fn read(
        filename: &str,
        parsed: &WheelName,
        files_dir: &Path,
        listing: &Listing,
    ) -> Result<Layout, WheelError> {
        let dist_info = find_dist_info(
            filename,
            parsed,
            listing.files.iter().map(|f| f.path.as_str()),
        )?;
        let text = |name: &str| -> Result<String, WheelError> {
            let entry = format!("{dist_info}/{name}");
            if !listing.files.iter().any(|f| f.path == entry) {
                return Err(WheelError::Missing {
                    wheel: filename.to_owned(),
                    entry,
                });
            }
            let bytes = fs::read(files_dir.join(&entry)).map_err(|source| WheelError::Io {
                wheel: filename.to_owned(),
                entry: entry.clone(),
                source,
            })?;
            String::from_utf8(bytes).map_err(|_| WheelError::Malformed {
                wheel: filename.to_owned(),
                entry,
                reason: "it is not UTF-8".to_owned(),
            })
        };

        let wheel_entry = format!("{dist_info}/WHEEL");
        let wheel_headers = headers(&text("WHEEL")?);
        let malformed = |reason: &str| WheelError::Malformed {
            wheel: filename.to_owned(),
            entry: wheel_entry.clone(),
            reason: reason.to_owned(),
        };
        let version = header(&wheel_headers, "Wheel-Version")
            .ok_or_else(|| malformed("it has no Wheel-Version"))?;
        let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
        let major: u32 = major
            .parse()
            .map_err(|_| malformed("its Wheel-Version is not `<major>.<minor>`"))?;
        let minor: u32 = minor
            .parse()
            .map_err(|_| malformed("its Wheel-Version is not `<major>.<minor>`"))?;
        if major != 1 {
            return Err(WheelError::UnsupportedVersion {
                wheel: filename.to_owned(),
                entry: wheel_entry,
                version: version.to_owned(),
            });
        }
        if minor > 0 {
            tracing::warn!(
                wheel = filename,
                "wheel format {version} is newer than 1.0; installing it as 1.0"
            );
        }
        let root_is_purelib = header(&wheel_headers, "Root-Is-Purelib")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));

        let metadata = headers(&text("METADATA")?);
        let name = header(&metadata, "Name").unwrap_or(&parsed.name).to_owned();
        // The name becomes the directory of the wheel's headers.
        if !is_project_name(&name) {
            return Err(WheelError::Malformed {
                wheel: filename.to_owned(),
                entry: format!("{dist_info}/METADATA"),
                reason: format!(
                    "its Name {name:?} is not letters, digits, `-`, `_` and `.` starting and ending with a letter or digit"
                ),
            });
        }
        if normalize_name(&name) != normalize_name(&parsed.name) {
            return Err(WheelError::DistInfo {
                wheel: filename.to_owned(),
                reason: format!(
                    "`{dist_info}/METADATA` names the project `{name}`, not `{}` as the file name does",
                    parsed.name
                ),
            });
        }
        let version = header(&metadata, "Version")
            .unwrap_or(&parsed.version)
            .to_owned();
        let stem = dist_info.trim_end_matches(".dist-info");
        Ok(Layout {
            data_dir: format!("{stem}.data"),
            dist_info,
            root_is_purelib,
            name,
            version,
        })
    }
}

/// RFC 4180 / Python `csv` records: `,` separated, `"` quoted with `""` inside quotes.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".to_owned());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows.retain(|r| r.iter().any(|f| !f.is_empty()));
    Ok(rows)
}

pub(crate) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Whether `path` is RECORD or one of its signatures, which RECORD cannot hash.
fn is_record_or_signature(dist_info: &str, path: &str) -> bool {
    path.strip_prefix(dist_info)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| matches!(name, "RECORD" | "RECORD.jws" | "RECORD.p7s"))
}

/// Checks every archive file against RECORD: listed, and matching its hash and size if given.
fn verify_record(
    filename: &str,
    files_dir: &Path,
    listing: &Listing,
    dist_info: &str,
) -> Result<(), WheelError> {
    let record_entry = format!("{dist_info}/RECORD");
    if !listing.files.iter().any(|f| f.path == record_entry) {
        return Err(WheelError::Missing {
            wheel: filename.to_owned(),
            entry: record_entry,
        });
    }
    let malformed = |reason: String| WheelError::Malformed {
        wheel: filename.to_owned(),
        entry: record_entry.clone(),
        reason,
    };
    let bytes = fs::read(files_dir.join(&record_entry)).map_err(|source| WheelError::Io {
        wheel: filename.to_owned(),
        entry: record_entry.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| malformed("it is not UTF-8".to_owned()))?;
    let rows = parse_csv(&text).map_err(malformed)?;
    let by_path: BTreeMap<&str, &ListedFile> =
        listing.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut recorded = BTreeSet::new();
    for row in &rows {
        let raw = row.first().map_or("", String::as_str);
        let path = match clean_path(raw) {
            Ok(path) if !path.is_empty() => path,
            Ok(_) | Err(NameFault::Absolute | NameFault::Climbs | NameFault::Separator) => {
                return Err(WheelError::RecordEscapes {
                    wheel: filename.to_owned(),
                    entry: raw.to_owned(),
                });
            }
            Err(fault) => {
                return Err(WheelError::BadName {
                    wheel: filename.to_owned(),
                    what: "a RECORD path",
                    name: raw.to_owned(),
                    fault,
                });
            }
        };
        let hash = row.get(1).map_or("", |h| h.trim());
        let size = row.get(2).map_or("", |s| s.trim());
        let file = by_path.get(path.as_str()).copied();
        recorded.insert(path.clone());
        // A RECORD line for a file the archive lacks installs nothing; pip ignores it too.
        let Some(file) = file else { continue };
        let mismatch = |what, expected: &str, found: String| WheelError::RecordMismatch {
            wheel: filename.to_owned(),
            entry: path.clone(),
            what,
            expected: expected.to_owned(),
            found,
        };
        if !hash.is_empty() {
            let (algorithm, value) = hash.split_once('=').ok_or_else(|| {
                malformed(format!(
                    "the hash of `{path}` is not `<algorithm>=<digest>`"
                ))
            })?;
            let value = value.trim_end_matches('=');
            let found = match algorithm {
                "sha256" => file.sha256.clone(),
                "sha384" | "sha512" => {
                    let bytes =
                        fs::read(files_dir.join(&file.path)).map_err(|source| WheelError::Io {
                            wheel: filename.to_owned(),
                            entry: path.clone(),
                            source,
                        })?;
                    if algorithm == "sha384" {
                        record_hash(&Sha384::digest(&bytes))
                    } else {
                        record_hash(&Sha512::digest(&bytes))
                    }
                }
                _ => {
                    return Err(WheelError::WeakHash {
                        wheel: filename.to_owned(),
                        entry: path.clone(),
                        algorithm: algorithm.to_owned(),
                    });
                }
            };
            if found != value {
                return Err(mismatch(
                    "hash",
                    &format!("{algorithm}={value}"),
                    format!("{algorithm}={found}"),
                ));
            }
        }
        if !size.is_empty() {
            let expected: u64 = size
                .parse()
                .map_err(|_| malformed(format!("the size of `{path}` is not a number")))?;
            if expected != file.size {
                return Err(mismatch("size", size, file.size.to_string()));
            }
        }
    }
    for file in &listing.files {
        if !recorded.contains(&file.path) && !is_record_or_signature(dist_info, &file.path) {
            return Err(WheelError::NotInRecord {
                wheel: filename.to_owned(),
                entry: file.path.clone(),
            });
        }
    }
    Ok(())
}

/// One `[console_scripts]` or `[gui_scripts]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    name: String,
    module: String,
    /// `obj.attr` after the `:`.
    attr: String,
}

/// The script entry points of an `entry_points.txt` (INI, `=` delimited, case kept), console
/// scripts first; a later line for the same name replaces an earlier one.
pub(crate) fn script_entry_points(
    filename: &str,
    text: &str,
) -> Result<Vec<EntryPoint>, WheelError> {
    let invalid = |entry: &str, reason: &str| WheelError::EntryPoint {
        wheel: filename.to_owned(),
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let mut by_group: BTreeMap<&str, BTreeMap<String, EntryPoint>> = BTreeMap::new();
    let mut section: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(match name.trim() {
                "console_scripts" => "0-console",
                "gui_scripts" => "1-gui",
                _ => "other",
            });
            continue;
        }
        let Some(group) = section.filter(|g| *g != "other") else {
            continue;
        };
        let (name, value) = trimmed
            .split_once('=')
            .ok_or_else(|| invalid(trimmed, "the line is not `name = module:attr`"))?;
        // The name becomes `<scripts>/<name>`: one file name, no `\` either.
        let name = name.trim();
        let name = FileName::new(name)
            .and_then(|n| {
                if n.as_str().contains('\\') {
                    Err(NameFault::Separator)
                } else {
                    Ok(n)
                }
            })
            .map_err(|fault| WheelError::BadName {
                wheel: filename.to_owned(),
                what: "a script entry point named",
                name: name.to_owned(),
                fault,
            })?;
        let name = name.as_str();
        // Extras in brackets select optional dependencies; they do not change the script.
        let value = value.split_once('[').map_or(value, |(v, _)| v).trim();
        let (module, attr) = value
            .split_once(':')
            .ok_or_else(|| invalid(name, "it names no callable (`module:function` expected)"))?;
        let (module, attr) = (module.trim(), attr.trim());
        if !is_dotted_identifier(module) || !is_dotted_identifier(attr) {
            return Err(invalid(
                name,
                "its object reference is not `module.path:object.attr`",
            ));
        }
        by_group.entry(group).or_default().insert(
            name.to_owned(),
            EntryPoint {
                name: name.to_owned(),
                module: module.to_owned(),
                attr: attr.to_owned(),
            },
        );
    }
    Ok(by_group
        .into_values()
        .flat_map(BTreeMap::into_values)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Scripts

/// The `#!` line(s) that run a script with `interpreter` and `args` (empty, or starting with a
/// space). Kernels take only one argument and at most ~127 bytes after `#!`; otherwise the
/// script starts under `/bin/sh`, which re-executes it with the interpreter (Python reads the
/// second and third lines as a string).
fn shebang(interpreter: &str, args: &str) -> String {
    if !interpreter.contains(char::is_whitespace) && interpreter.len() + args.len() <= 125 {
        format!("#!{interpreter}{args}\n")
    } else {
        format!("#!/bin/sh\n'''exec' \"{interpreter}\"{args} \"$0\" \"$@\"\n' '''\n")
    }
}

/// A `.data/scripts` file whose first line starts with exactly `#!python` (`#!python`,
/// `#!pythonw`, …, optionally followed by arguments) with that line pointed at the image's
/// interpreter, keeping the arguments; `None` for any other file.
fn rewrite_python_shebang(content: &[u8], interpreter: &str) -> Option<Vec<u8>> {
    let rest = content.strip_prefix(b"#!python")?;
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // The interpreter name runs to the first blank (`w` of `pythonw`, `3` of `python3`).
    let args_at = line
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(line.len());
    let args = String::from_utf8_lossy(&line[args_at..]);
    let args = args.trim();
    let args = if args.is_empty() {
        String::new()
    } else {
        format!(" {args}")
    };
    let mut out = shebang(interpreter, &args).into_bytes();
    out.extend_from_slice(body);
    Some(out)
}

/// The launcher of an entry point: imports the object and exits with what it returns.
fn launcher(interpreter: &str, ep: &EntryPoint, project: &str, version: &str) -> String {
    let (head, tail) = match ep.attr.split_once('.') {
        Some((head, tail)) => (head, format!(".{tail}")),
        None => (ep.attr.as_str(), String::new()),
    };
    format!(
        "{shebang}# -*- coding: utf-8 -*-\n\
         # `{name}`: entry point {module}:{attr} of {project} {version}, written by oci-build.\n\
         import sys\n\
         \n\
         from {module} import {head} as _entry_point\n\
         \n\
         if __name__ == \"__main__\":\n\
         \x20   sys.exit(_entry_point{tail}())\n",
        shebang = shebang(interpreter, ""),
        name = ep.name,
        module = ep.module,
        attr = ep.attr,
    )
}

// ---------------------------------------------------------------------------------------------
// Installation

struct Roots {
    purelib: ImagePath,
    platlib: ImagePath,
    scripts: ImagePath,
    data: ImagePath,
    headers: ImagePath,
}

impl Roots {
    fn new(scheme: &InstallScheme) -> Result<Roots, WheelError> {
        let path = |what, raw: &str| {
            ImagePath::new(raw).map_err(|_| WheelError::Scheme {
                what,
                path: raw.to_owned(),
            })
        };
        Ok(Roots {
            purelib: path("purelib", &scheme.purelib)?,
            platlib: path("platlib", &scheme.platlib)?,
            scripts: path("scripts", &scheme.scripts)?,
            data: path("data", &scheme.data)?,
            headers: path("headers", &scheme.headers)?,
        })
    }
}

/// `base/rel`; `rel` is a checked path by now, so an error here is a bug, not a panic.
fn under(base: &ImagePath, rel: &str, wheel: &str) -> Result<ImagePath, WheelError> {
    ImagePath::new(&format!("{}/{rel}", base.as_str())).map_err(|_| WheelError::Escapes {
        wheel: wheel.to_owned(),
        entry: rel.to_owned(),
    })
}

/// `to` relative to the directory `from`, with `../` where it lies outside (as pip's RECORD).
fn relative_to(from: &ImagePath, to: &ImagePath) -> String {
    let from: Vec<&str> = from.as_str().split('/').collect();
    let to: Vec<&str> = to.as_str().split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

/// A file about to go into the tree.
struct Planned {
    /// The scheme directory it was placed under; directories below it are created.
    base: ImagePath,
    content: Content,
    size: u64,
    mode: u32,
    /// RECORD hash (urlsafe base64 sha256).
    sha256: String,
}

impl Planned {
    fn inline(base: &ImagePath, bytes: Vec<u8>, mode: u32) -> Planned {
        Planned {
            base: base.clone(),
            size: bytes.len() as u64,
            sha256: record_hash(&Sha256::digest(&bytes)),
            content: Content::Inline(Arc::from(bytes)),
            mode,
        }
    }
}

/// Installs one wheel into `tree` under `scheme`. Returns what it installed (for messages/tests).
/// Nothing is added to `tree` when it fails.
pub fn install_wheel(
    tree: &mut LayerTree,
    scheme: &InstallScheme,
    wheel: &WheelFile,
    cache: &Cache,
) -> Result<InstalledWheel, WheelError> {
    let parsed = parse_wheel_filename(wheel.filename)?;
    let roots = Roots::new(scheme)?;
    let (dir, listing) = extract_cached(wheel, &parsed, cache)?;
    let files_dir = dir.join("files");
    let layout = Layout::read(wheel.filename, &parsed, &files_dir, &listing)?;
    let lib = if layout.root_is_purelib {
        &roots.purelib
    } else {
        &roots.platlib
    };
    let dist_info = under(lib, &layout.dist_info, wheel.filename)?;
    let data_prefix = format!("{}/", layout.data_dir);
    let record_entry = format!("{}/RECORD", layout.dist_info);

    let mut planned: BTreeMap<ImagePath, Planned> = BTreeMap::new();
    let mut scripts = BTreeSet::new();
    for file in &listing.files {
        if file.path == record_entry {
            continue;
        }
        let host = files_dir.join(&file.path);
        let from_archive = |base: &ImagePath, mode| Planned {
            base: base.clone(),
            content: Content::Host {
                stamp: FileStamp::of(&host),
                path: host.clone(),
            },
            size: file.size,
            mode,
            sha256: file.sha256.clone(),
        };
        let Some(rest) = file.path.strip_prefix(&data_prefix) else {
            planned.insert(
                under(lib, &file.path, wheel.filename)?,
                from_archive(lib, file.mode),
            );
            continue;
        };
        let Some((key, sub)) = rest.split_once('/') else {
            return Err(WheelError::UnknownDataDir {
                wheel: wheel.filename.to_owned(),
                entry: file.path.clone(),
                key: rest.to_owned(),
            });
        };
        let (base, target) = match key {
            "purelib" => (
                roots.purelib.clone(),
                under(&roots.purelib, sub, wheel.filename)?,
            ),
            "platlib" => (
                roots.platlib.clone(),
                under(&roots.platlib, sub, wheel.filename)?,
            ),
            "data" => (roots.data.clone(), under(&roots.data, sub, wheel.filename)?),
            "headers" => (
                roots.headers.clone(),
                under(
                    &roots.headers,
                    &format!("{}/{sub}", layout.name),
                    wheel.filename,
                )?,
            ),
            "scripts" => (
                roots.scripts.clone(),
                under(&roots.scripts, sub, wheel.filename)?,
            ),
            _ => {
                return Err(WheelError::UnknownDataDir {
                    wheel: wheel.filename.to_owned(),
                    entry: file.path.clone(),
                    key: key.to_owned(),
                });
            }
        };
        if key != "scripts" {
            planned.insert(target, from_archive(&base, file.mode));
            continue;
        }
        // Scripts are executable whatever the archive said; `#!python` ones get the interpreter.
        let mut head = [0u8; 8];
        let starts_python = fs::File::open(&host)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == b"#!python";
        let entry = if starts_python {
            let content = fs::read(&host).map_err(|source| WheelError::Io {
                wheel: wheel.filename.to_owned(),
                entry: file.path.clone(),
                source,
            })?;
            let rewritten = rewrite_python_shebang(&content, &scheme.interpreter)
                .expect("the file starts with #!python");
            Planned::inline(&base, rewritten, 0o755)
        } else {
            from_archive(&base, 0o755)
        };
        scripts.insert(target.clone());
        planned.insert(target, entry);
    }

    // Entry point launchers; on a name clash with a `.data/scripts` file the launcher wins, as
    // with pip.
    let entry_points_path = format!("{}/entry_points.txt", layout.dist_info);
    if listing.files.iter().any(|f| f.path == entry_points_path) {
        let bytes =
            fs::read(files_dir.join(&entry_points_path)).map_err(|source| WheelError::Io {
                wheel: wheel.filename.to_owned(),
                entry: entry_points_path.clone(),
                source,
            })?;
        let text = String::from_utf8(bytes).map_err(|_| WheelError::Malformed {
            wheel: wheel.filename.to_owned(),
            entry: entry_points_path.clone(),
            reason: "it is not UTF-8".to_owned(),
        })?;
        for ep in script_entry_points(wheel.filename, &text)? {
            let target = under(&roots.scripts, &ep.name, wheel.filename)?;
            let text = launcher(&scheme.interpreter, &ep, &layout.name, &layout.version);
            planned.insert(
                target.clone(),
                Planned::inline(&roots.scripts, text.into_bytes(), 0o755),
            );
            scripts.insert(target);
        }
    }

    // What the installer records (PEP 376): INSTALLER, REQUESTED, then RECORD over everything.
    planned.insert(
        under(&dist_info, "INSTALLER", wheel.filename)?,
        Planned::inline(lib, b"oci-build\n".to_vec(), 0o644),
    );
    let requested = under(&dist_info, "REQUESTED", wheel.filename)?;
    if wheel.requested {
        planned.insert(requested, Planned::inline(lib, Vec::new(), 0o644));
    } else {
        // A wheel that shipped one is not thereby requested.
        planned.remove(&requested);
    }
    let record_path = under(&dist_info, "RECORD", wheel.filename)?;
    let mut rows: Vec<(String, String)> = planned
        .iter()
        .map(|(path, p)| {
            (
                relative_to(lib, path),
                format!("sha256={},{}", p.sha256, p.size),
            )
        })
        .collect();
    rows.push((relative_to(lib, &record_path), ",".to_owned()));
    rows.sort();
    let mut record = String::new();
    for (path, rest) in rows {
        record.push_str(&csv_field(&path));
        record.push(',');
        record.push_str(&rest);
        record.push('\n');
    }
    planned.insert(
        record_path,
        Planned::inline(lib, record.into_bytes(), 0o644),
    );

    // Into the tree, with the directories the wheel creates below each scheme directory.
    for (path, p) in planned {
        for ancestor in path.ancestors() {
            let below_base = ancestor
                .as_str()
                .strip_prefix(p.base.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
            if below_base && tree.get(&ancestor).is_none() {
                tree.insert(
                    ancestor,
                    Entry {
                        kind: EntryKind::Directory,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    },
                );
            }
        }
        tree.insert(
            path,
            Entry {
                kind: EntryKind::File {
                    content: p.content,
                    size: p.size,
                },
                mode: p.mode,
                uid: 0,
                gid: 0,
            },
        );
    }

    Ok(InstalledWheel {
        name: layout.name,
        version: layout.version,
        dist_info: dist_info.to_string(),
        scripts: scripts.iter().map(ToString::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn debian_scheme() -> InstallScheme {
        InstallScheme {
            purelib: "/usr/local/lib/python3.11/dist-packages".to_owned(),
            platlib: "/usr/local/lib/python3.11/dist-packages".to_owned(),
            scripts: "/usr/local/bin".to_owned(),
            data: "/usr/local".to_owned(),
            headers: "/usr/local/include/python3.11".to_owned(),
            interpreter: "/usr/bin/python3".to_owned(),
        }
    }

    /// A scheme where purelib and platlib differ (Fedora's lib vs lib64).
    fn split_scheme() -> InstallScheme {
        InstallScheme {
            purelib: "/usr/local/lib/python3.12/site-packages".to_owned(),
            platlib: "/usr/local/lib64/python3.12/site-packages".to_owned(),
            ..debian_scheme()
        }
    }

    type Files = Vec<(String, Vec<u8>, u32)>;

    fn record_of(files: &Files, record_path: &str) -> String {
        let mut out = String::new();
        for (path, bytes, _) in files {
            out.push_str(&format!(
                "{path},sha256={},{}\n",
                record_hash(&Sha256::digest(bytes)),
                bytes.len()
            ));
        }
        out.push_str(&format!("{record_path},,\n"));
        out
    }

    /// The files of a wheel for `demo 1.0` with METADATA and WHEEL, plus `extra`.
    fn demo_files(root_is_purelib: bool, extra: &[(&str, &[u8], u32)]) -> Files {
        let mut files: Files = vec![
            (
                "demo/__init__.py".to_owned(),
                b"def main():\n    print('hello from demo')\n    return 3\n\nclass Cli:\n    @staticmethod\n    def run():\n        print('gui run')\n        return 0\n".to_vec(),
                0o100644,
            ),
            (
                "demo-1.0.dist-info/METADATA".to_owned(),
                b"Metadata-Version: 2.1\nName: Demo\nVersion: 1.0\n\nLong text.\n".to_vec(),
                0o100644,
            ),
            (
                "demo-1.0.dist-info/WHEEL".to_owned(),
                format!(
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {root_is_purelib}\nTag: py3-none-any\n"
                )
                .into_bytes(),
                0o100644,
            ),
        ];
        for (path, bytes, mode) in extra {
            files.push(((*path).to_owned(), bytes.to_vec(), *mode));
        }
        files
    }

    /// Zips `files` in order; `record` is appended as the dist-info RECORD when given.
    fn zip_bytes(files: &Files) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (path, bytes, mode) in files {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            if mode & 0o170_000 == 0o120_000 {
                let target = String::from_utf8(bytes.clone()).unwrap();
                writer.add_symlink(path.as_str(), target, options).unwrap();
                continue;
            }
            writer.start_file(path.as_str(), options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    /// A complete wheel: `files` plus a RECORD listing them all.
    fn wheel_bytes(files: &Files) -> Vec<u8> {
        let mut all = files.clone();
        let record = record_of(files, "demo-1.0.dist-info/RECORD");
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        zip_bytes(&all)
    }

    const FILENAME: &str = "demo-1.0-py3-none-any.whl";

    struct Setup {
        dir: tempfile::TempDir,
        cache: Cache,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        Setup { dir, cache }
    }

    impl Setup {
        fn install_as(
            &self,
            filename: &str,
            bytes: &[u8],
            scheme: &InstallScheme,
            requested: bool,
        ) -> Result<(LayerTree, InstalledWheel), WheelError> {
            let path = self.dir.path().join(filename);
            fs::write(&path, bytes).unwrap();
            let sha = hex::encode(Sha256::digest(bytes));
            let mut tree = LayerTree::default();
            let installed = install_wheel(
                &mut tree,
                scheme,
                &WheelFile {
                    path: &path,
                    filename,
                    sha256: &sha,
                    requested,
                },
                &self.cache,
            )?;
            Ok((tree, installed))
        }

        fn install(&self, bytes: &[u8]) -> Result<(LayerTree, InstalledWheel), WheelError> {
            self.install_as(FILENAME, bytes, &debian_scheme(), true)
        }

        fn nothing_cached(&self) -> bool {
            fs::read_dir(self.cache.root().join(BUCKET))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
        }
    }

    fn p(path: &str) -> ImagePath {
        ImagePath::new(path).unwrap()
    }

    fn bytes_of(tree: &LayerTree, path: &str) -> Vec<u8> {
        match &tree
            .get(&p(path))
            .unwrap_or_else(|| panic!("{path} missing"))
            .kind
        {
            EntryKind::File {
                content: Content::Inline(bytes),
                ..
            } => bytes.to_vec(),
            EntryKind::File {
                content: Content::Host { path, .. },
                ..
            } => fs::read(path).unwrap(),
            other => panic!("{path} is {other:?}"),
        }
    }

    fn is_inline(tree: &LayerTree, path: &str) -> bool {
        matches!(
            tree.get(&p(path)).unwrap().kind,
            EntryKind::File {
                content: Content::Inline(_),
                ..
            }
        )
    }

    fn mode_of(tree: &LayerTree, path: &str) -> u32 {
        tree.get(&p(path)).unwrap().mode
    }

    /// Every entry, comparable: path, kind, mode, owner and content (host files by path+stamp).
    fn describe(tree: &LayerTree) -> Vec<String> {
        tree.entries_with_parents()
            .into_iter()
            .map(|(path, e)| {
                let kind = match e.kind {
                    EntryKind::Directory => "dir".to_owned(),
                    EntryKind::File {
                        content: Content::Inline(b),
                        size,
                    } => format!("inline {size} {}", hex::encode(Sha256::digest(&b))),
                    EntryKind::File {
                        content: Content::Host { path, stamp },
                        size,
                    } => format!("host {size} {} {stamp:?}", path.display()),
                    other => format!("{other:?}"),
                };
                format!("{path} {:o} {}:{} {kind}", e.mode, e.uid, e.gid)
            })
            .collect()
    }

    /// Checks RECORD the way `pip` reads it: every row resolves from the dist-info's parent to
    /// a file of the tree with that hash and size, and every file the wheel installed is listed.
    fn check_record(tree: &LayerTree, lib: &str, dist_info: &str) -> Vec<String> {
        let record =
            String::from_utf8(bytes_of(tree, &format!("{lib}/{dist_info}/RECORD"))).unwrap();
        let mut paths = Vec::new();
        for row in parse_csv(&record).unwrap() {
            let mut parts: Vec<&str> = lib.trim_start_matches('/').split('/').collect();
            for part in row[0].split('/') {
                if part == ".." {
                    parts.pop();
                } else {
                    parts.push(part);
                }
            }
            let full = parts.join("/");
            if row[0] == format!("{dist_info}/RECORD") {
                assert_eq!((row[1].as_str(), row[2].as_str()), ("", ""));
            } else {
                let bytes = bytes_of(tree, &full);
                assert_eq!(
                    row[1],
                    format!("sha256={}", record_hash(&Sha256::digest(&bytes))),
                    "{full}"
                );
                assert_eq!(row[2], bytes.len().to_string(), "{full}");
            }
            paths.push(full);
        }
        // Rows are sorted by their RECORD path, which for `../` paths differs from image order.
        let files: BTreeSet<String> = tree
            .entries_with_parents()
            .into_iter()
            .filter(|(_, e)| matches!(e.kind, EntryKind::File { .. }))
            .map(|(path, _)| path.as_str().to_owned())
            .collect();
        assert_eq!(
            files,
            paths.iter().cloned().collect(),
            "RECORD lists every file"
        );
        let mut rows: Vec<String> = parse_csv(&record)
            .unwrap()
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let unsorted = rows.clone();
        rows.sort();
        assert_eq!(rows, unsorted, "RECORD rows are sorted");
        paths
    }

    #[test]
    fn pure_wheel_installs_into_a_debian_scheme() {
        let s = setup();
        let files = demo_files(
            true,
            &[
                ("demo/tool.sh", b"#!/bin/sh\necho hi\n", 0o100755),
                ("demo/data/x.txt", b"x", 0o100600),
            ],
        );
        let (tree, installed) = s.install(&wheel_bytes(&files)).unwrap();
        let lib = "usr/local/lib/python3.11/dist-packages";
        assert_eq!(
            installed,
            InstalledWheel {
                name: "Demo".to_owned(),
                version: "1.0".to_owned(),
                dist_info: format!("/{lib}/demo-1.0.dist-info"),
                scripts: vec![],
            }
        );
        let paths: Vec<&str> = tree.paths().map(ImagePath::as_str).collect();
        let rel: Vec<String> = paths
            .iter()
            .map(|path| path.strip_prefix(lib).unwrap().to_owned())
            .collect();
        assert_eq!(
            rel,
            [
                "/demo",
                "/demo-1.0.dist-info",
                "/demo-1.0.dist-info/INSTALLER",
                "/demo-1.0.dist-info/METADATA",
                "/demo-1.0.dist-info/RECORD",
                "/demo-1.0.dist-info/REQUESTED",
                "/demo-1.0.dist-info/WHEEL",
                "/demo/__init__.py",
                "/demo/data",
                "/demo/data/x.txt",
                "/demo/tool.sh",
            ]
        );
        // Modes: 0644 unless any execute bit, directories 0755, all root-owned.
        assert_eq!(mode_of(&tree, &format!("{lib}/demo/tool.sh")), 0o755);
        assert_eq!(mode_of(&tree, &format!("{lib}/demo/data/x.txt")), 0o644);
        assert_eq!(mode_of(&tree, &format!("{lib}/demo/__init__.py")), 0o644);
        assert_eq!(mode_of(&tree, &format!("{lib}/demo")), 0o755);
        for path in tree.paths() {
            let e = tree.get(path).unwrap();
            assert_eq!((e.uid, e.gid), (0, 0));
        }
        // Archive files come from the extraction cache, not memory; generated ones are inline.
        assert!(!is_inline(&tree, &format!("{lib}/demo/__init__.py")));
        assert!(is_inline(
            &tree,
            &format!("{lib}/demo-1.0.dist-info/RECORD")
        ));
        assert_eq!(
            bytes_of(&tree, &format!("{lib}/demo-1.0.dist-info/INSTALLER")),
            b"oci-build\n"
        );
        assert_eq!(
            bytes_of(&tree, &format!("{lib}/demo-1.0.dist-info/REQUESTED")),
            b""
        );
        let recorded = check_record(&tree, &format!("/{lib}"), "demo-1.0.dist-info");
        assert!(recorded.contains(&format!("{lib}/demo-1.0.dist-info/INSTALLER")));
        let record =
            String::from_utf8(bytes_of(&tree, &format!("{lib}/demo-1.0.dist-info/RECORD")))
                .unwrap();
        assert!(record.contains("demo-1.0.dist-info/RECORD,,\n"), "{record}");
        assert!(record.contains("demo/__init__.py,sha256="), "{record}");

        // A dependency gets no REQUESTED.
        let (tree, _) = s
            .install_as(FILENAME, &wheel_bytes(&files), &debian_scheme(), false)
            .unwrap();
        assert!(
            tree.get(&p(&format!("{lib}/demo-1.0.dist-info/REQUESTED")))
                .is_none()
        );
        check_record(&tree, &format!("/{lib}"), "demo-1.0.dist-info");
    }

    #[test]
    fn entry_points_become_launchers_that_run() {
        let s = setup();
        let files = demo_files(
            true,
            &[(
                "demo-1.0.dist-info/entry_points.txt",
                b"[console_scripts]\ndemo-cli = demo:main [extra1]\n\n[gui_scripts]\ndemo-gui=demo:Cli.run\n\n[other.group]\nignored = demo:main\n",
                0o100644,
            )],
        );
        let (tree, installed) = s.install(&wheel_bytes(&files)).unwrap();
        assert_eq!(
            installed.scripts,
            ["/usr/local/bin/demo-cli", "/usr/local/bin/demo-gui"]
        );
        for name in ["demo-cli", "demo-gui"] {
            let path = format!("usr/local/bin/{name}");
            assert_eq!(mode_of(&tree, &path), 0o755);
            assert!(is_inline(&tree, &path));
            let text = String::from_utf8(bytes_of(&tree, &path)).unwrap();
            assert!(text.starts_with("#!/usr/bin/python3\n"), "{text}");
        }
        let cli = String::from_utf8(bytes_of(&tree, "usr/local/bin/demo-cli")).unwrap();
        assert!(
            cli.contains("from demo import main as _entry_point\n"),
            "{cli}"
        );
        assert!(cli.contains("sys.exit(_entry_point())"), "{cli}");
        let gui = String::from_utf8(bytes_of(&tree, "usr/local/bin/demo-gui")).unwrap();
        assert!(
            gui.contains("from demo import Cli as _entry_point\n"),
            "{gui}"
        );
        assert!(gui.contains("sys.exit(_entry_point.run())"), "{gui}");
        assert!(tree.get(&p("usr/local/bin/ignored")).is_none());
        // RECORD lists the launchers with `../` paths from site-packages, as pip writes them.
        let record = String::from_utf8(bytes_of(
            &tree,
            "usr/local/lib/python3.11/dist-packages/demo-1.0.dist-info/RECORD",
        ))
        .unwrap();
        assert!(record.contains("../../../bin/demo-cli,sha256="), "{record}");
        check_record(
            &tree,
            "/usr/local/lib/python3.11/dist-packages",
            "demo-1.0.dist-info",
        );

        // Run them if the build machine has Python: the tree written out, the package on
        // PYTHONPATH, the launcher run by that interpreter.
        let Ok(version) = Command::new("python3").arg("--version").output() else {
            eprintln!("python3 not found; launchers not run");
            return;
        };
        assert!(version.status.success());
        let root = s.dir.path().join("image");
        for (path, entry) in tree.entries_with_parents() {
            let host = root.join(path.as_str());
            match entry.kind {
                EntryKind::Directory => fs::create_dir_all(&host).unwrap(),
                EntryKind::File { .. } => {
                    fs::create_dir_all(host.parent().unwrap()).unwrap();
                    fs::write(&host, bytes_of(&tree, path.as_str())).unwrap();
                }
                _ => unreachable!(),
            }
        }
        let run = |name: &str| {
            Command::new("python3")
                .arg(root.join("usr/local/bin").join(name))
                .env(
                    "PYTHONPATH",
                    root.join("usr/local/lib/python3.11/dist-packages"),
                )
                .env_remove("PYTHONHOME")
                .output()
                .unwrap()
        };
        let out = run("demo-cli");
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from demo\n");
        let out = run("demo-gui");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "gui run\n");
    }

    #[test]
    fn invalid_entry_points_are_refused() {
        for (line, what) in [
            ("../evil = demo:main", "path name"),
            ("nocall = demo", "no callable"),
            ("bad = demo:main; import os", "injection"),
            ("evil\u{1b}[2J = demo:main", "control character"),
        ] {
            let s = setup();
            let text = format!("[console_scripts]\n{line}\n");
            let files = demo_files(
                true,
                &[(
                    "demo-1.0.dist-info/entry_points.txt",
                    text.as_bytes(),
                    0o100644,
                )],
            );
            let err = s.install(&wheel_bytes(&files)).unwrap_err();
            assert!(
                matches!(
                    err,
                    WheelError::EntryPoint { .. } | WheelError::BadName { .. }
                ),
                "{what}: {err}"
            );
            // Printed escaped: a control character cannot reach the terminal.
            assert!(!err.to_string().contains(char::is_control), "{what}: {err}");
        }
    }

    #[test]
    fn data_scripts_with_python_shebang_get_the_interpreter() {
        let s = setup();
        let files = demo_files(
            true,
            &[
                (
                    "demo-1.0.data/scripts/plain",
                    b"#!python\nprint(1)\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/gui",
                    b"#!pythonw\r\nprint(2)\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/args",
                    b"#!python -u -O\nprint(3)\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/shell",
                    b"#!/bin/sh\necho 4\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/pythonic",
                    b"#!/usr/bin/env python\n",
                    0o100644,
                ),
            ],
        );
        let (tree, installed) = s.install(&wheel_bytes(&files)).unwrap();
        assert_eq!(
            installed.scripts,
            ["args", "gui", "plain", "pythonic", "shell"].map(|n| format!("/usr/local/bin/{n}"))
        );
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/plain"),
            b"#!/usr/bin/python3\nprint(1)\n"
        );
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/gui"),
            b"#!/usr/bin/python3\nprint(2)\n"
        );
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/args"),
            b"#!/usr/bin/python3 -u -O\nprint(3)\n"
        );
        assert!(is_inline(&tree, "usr/local/bin/plain"));
        // Other scripts are left as they are, from the cache, but made executable.
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/shell"),
            b"#!/bin/sh\necho 4\n"
        );
        assert!(!is_inline(&tree, "usr/local/bin/shell"));
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/pythonic"),
            b"#!/usr/bin/env python\n"
        );
        for name in ["plain", "gui", "args", "shell", "pythonic"] {
            assert_eq!(
                mode_of(&tree, &format!("usr/local/bin/{name}")),
                0o755,
                "{name}"
            );
        }
        // The .data directory itself is not installed.
        assert!(!tree.paths().any(|path| path.as_str().contains(".data")));
        check_record(
            &tree,
            "/usr/local/lib/python3.11/dist-packages",
            "demo-1.0.dist-info",
        );
    }

    #[test]
    fn long_interpreter_paths_start_through_sh() {
        let long = format!("/opt/{}/bin/python3", "v".repeat(130));
        let script = rewrite_python_shebang(b"#!python\nimport sys\n", &long).unwrap();
        let text = String::from_utf8(script).unwrap();
        assert!(text.starts_with("#!/bin/sh\n'''exec' \""), "{text}");
        assert!(
            text.ends_with("\"$0\" \"$@\"\n' '''\nimport sys\n"),
            "{text}"
        );
        assert!(rewrite_python_shebang(b"#!/usr/bin/python\n", "/x").is_none());
    }

    #[test]
    fn headers_and_data_go_to_their_scheme_directories() {
        let s = setup();
        let files = demo_files(
            true,
            &[
                ("demo-1.0.data/headers/demo.h", b"int demo;\n", 0o100644),
                ("demo-1.0.data/data/share/demo/a.json", b"{}\n", 0o100644),
                ("demo-1.0.data/purelib/extra_mod.py", b"X = 1\n", 0o100644),
            ],
        );
        let (tree, _) = s.install(&wheel_bytes(&files)).unwrap();
        assert_eq!(
            bytes_of(&tree, "usr/local/include/python3.11/Demo/demo.h"),
            b"int demo;\n"
        );
        assert_eq!(bytes_of(&tree, "usr/local/share/demo/a.json"), b"{}\n");
        assert_eq!(
            bytes_of(&tree, "usr/local/lib/python3.11/dist-packages/extra_mod.py"),
            b"X = 1\n"
        );
        assert_eq!(mode_of(&tree, "usr/local/share/demo"), 0o755);
        let record = String::from_utf8(bytes_of(
            &tree,
            "usr/local/lib/python3.11/dist-packages/demo-1.0.dist-info/RECORD",
        ))
        .unwrap();
        assert!(
            record.contains("../../../include/python3.11/Demo/demo.h,"),
            "{record}"
        );
        assert!(record.contains("../../../share/demo/a.json,"), "{record}");
        assert!(record.contains("\nextra_mod.py,"), "{record}");
        check_record(
            &tree,
            "/usr/local/lib/python3.11/dist-packages",
            "demo-1.0.dist-info",
        );
    }

    #[test]
    fn unknown_data_directories_are_refused() {
        let s = setup();
        let files = demo_files(true, &[("demo-1.0.data/config/x.ini", b"", 0o100644)]);
        let err = s.install(&wheel_bytes(&files)).unwrap_err();
        assert!(
            matches!(&err, WheelError::UnknownDataDir { key, .. } if key == "config"),
            "{err}"
        );
    }

    #[test]
    fn platform_wheels_go_to_platlib() {
        let s = setup();
        let files = demo_files(
            false,
            &[
                ("demo/_speed.so", b"\x7fELF", 0o100755),
                ("demo-1.0.data/purelib/pure.py", b"", 0o100644),
            ],
        );
        let filename = "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl";
        let (tree, installed) = s
            .install_as(filename, &wheel_bytes(&files), &split_scheme(), true)
            .unwrap();
        let platlib = "usr/local/lib64/python3.12/site-packages";
        assert_eq!(
            installed.dist_info,
            format!("/{platlib}/demo-1.0.dist-info")
        );
        assert_eq!(mode_of(&tree, &format!("{platlib}/demo/_speed.so")), 0o755);
        assert!(
            tree.get(&p(&format!("{platlib}/demo/__init__.py")))
                .is_some()
        );
        assert!(
            tree.get(&p("usr/local/lib/python3.12/site-packages/pure.py"))
                .is_some()
        );
        assert!(!tree.paths().any(|path| {
            path.as_str()
                .starts_with("usr/local/lib/python3.12/site-packages/demo")
        }));
        let record = String::from_utf8(bytes_of(
            &tree,
            &format!("{platlib}/demo-1.0.dist-info/RECORD"),
        ))
        .unwrap();
        assert!(
            record.contains("../../../lib/python3.12/site-packages/pure.py,"),
            "{record}"
        );
        check_record(&tree, &format!("/{platlib}"), "demo-1.0.dist-info");
    }

    fn assert_refused(s: &Setup, bytes: &[u8], check: impl Fn(&WheelError) -> bool) {
        let err = s.install(bytes).unwrap_err();
        assert!(check(&err), "unexpected error: {err}");
        assert!(err.to_string().contains(FILENAME), "{err}");
        assert!(s.nothing_cached(), "a refused wheel left a cache entry");
    }

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
    fn record_hash_and_size_mismatches_are_refused() {
        let s = setup();
        let files = demo_files(true, &[]);
        let mut all = files.clone();
        let record = record_of(&files, "demo-1.0.dist-info/RECORD").replace(
            &record_hash(&Sha256::digest(&files[0].1)),
            &record_hash(&Sha256::digest(b"something else")),
        );
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        assert_refused(
            &s,
            &zip_bytes(&all),
            |e| matches!(e, WheelError::RecordMismatch { what: "hash", entry, .. } if entry == "demo/__init__.py"),
        );

        let mut all = files.clone();
        let size = files[0].1.len();
        let record = record_of(&files, "demo-1.0.dist-info/RECORD")
            .replace(&format!(",{size}\n"), &format!(",{}\n", size + 1));
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        assert_refused(&s, &zip_bytes(&all), |e| {
            matches!(e, WheelError::RecordMismatch { what: "size", .. })
        });

        let mut all = files.clone();
        let record = record_of(&files, "demo-1.0.dist-info/RECORD").replace("sha256=", "md5=");
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        assert_refused(&s, &zip_bytes(&all), |e| {
            matches!(e, WheelError::WeakHash { .. })
        });

        // sha512 is accepted when it matches.
        let mut all = files.clone();
        let mut record = String::new();
        for (path, bytes, _) in &files {
            record.push_str(&format!(
                "{path},sha512={},\n",
                record_hash(&Sha512::digest(bytes))
            ));
        }
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        s.install(&zip_bytes(&all)).unwrap();
    }

    #[test]
    fn record_paths_escaping_the_root_are_refused() {
        for bad in ["../../../etc/passwd", "/etc/passwd"] {
            let s = setup();
            let files = demo_files(true, &[]);
            let mut all = files.clone();
            let mut record = record_of(&files, "demo-1.0.dist-info/RECORD");
            record.push_str(&format!("{bad},,\n"));
            all.push((
                "demo-1.0.dist-info/RECORD".to_owned(),
                record.into_bytes(),
                0o100644,
            ));
            assert_refused(
                &s,
                &zip_bytes(&all),
                |e| matches!(e, WheelError::RecordEscapes { entry, .. } if entry == bad),
            );
        }
    }

    #[test]
    fn files_missing_from_record_are_refused() {
        let s = setup();
        let files = demo_files(true, &[]);
        let mut all = files.clone();
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record_of(&files, "demo-1.0.dist-info/RECORD").into_bytes(),
            0o100644,
        ));
        all.push((
            "demo/smuggled.py".to_owned(),
            b"import os\n".to_vec(),
            0o100644,
        ));
        assert_refused(
            &s,
            &zip_bytes(&all),
            |e| matches!(e, WheelError::NotInRecord { entry, .. } if entry == "demo/smuggled.py"),
        );

        // Without any RECORD at all.
        assert_refused(
            &s,
            &zip_bytes(&files),
            |e| matches!(e, WheelError::Missing { entry, .. } if entry == "demo-1.0.dist-info/RECORD"),
        );
    }

    #[test]
    fn newer_wheel_major_versions_are_refused() {
        let s = setup();
        let mut files = demo_files(true, &[]);
        files[2].1 = b"Wheel-Version: 2.0\nRoot-Is-Purelib: true\n".to_vec();
        assert_refused(
            &s,
            &wheel_bytes(&files),
            |e| matches!(e, WheelError::UnsupportedVersion { version, .. } if version == "2.0"),
        );
        // A newer minor version installs (with a warning).
        files[2].1 = b"Wheel-Version: 1.9\nRoot-Is-Purelib: true\n".to_vec();
        s.install(&wheel_bytes(&files)).unwrap();
    }

    #[test]
    fn dist_info_must_match_the_file_name() {
        let s = setup();
        let files = demo_files(true, &[]);
        let err = s
            .install_as(
                "other-1.0-py3-none-any.whl",
                &wheel_bytes(&files),
                &debian_scheme(),
                true,
            )
            .unwrap_err();
        assert!(matches!(err, WheelError::DistInfo { .. }), "{err}");
        let err = s
            .install_as(
                "demo-2.0-py3-none-any.whl",
                &wheel_bytes(&files),
                &debian_scheme(),
                true,
            )
            .unwrap_err();
        assert!(matches!(err, WheelError::DistInfo { .. }), "{err}");
        // Spelling differences that normalise away are fine.
        s.install_as(
            "Demo-1.0-py3-none-any.whl",
            &wheel_bytes(&files),
            &debian_scheme(),
            true,
        )
        .unwrap();
    }

    #[test]
    fn metadata_names_that_are_not_project_names_are_refused() {
        // `_` and `..` normalise alike, so the file name allows this METADATA; its headers
        // would go to `<headers>/../`.
        let s = setup();
        let mut files: Files = vec![
            (
                "_-1.0.dist-info/METADATA".to_owned(),
                b"Metadata-Version: 2.1\nName: ..\nVersion: 1.0\n".to_vec(),
                0o100644,
            ),
            (
                "_-1.0.dist-info/WHEEL".to_owned(),
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".to_vec(),
                0o100644,
            ),
            (
                "_-1.0.data/headers/x.h".to_owned(),
                b"int x;\n".to_vec(),
                0o100644,
            ),
        ];
        let record = record_of(&files, "_-1.0.dist-info/RECORD");
        files.push((
            "_-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        let err = s
            .install_as(
                "_-1.0-py3-none-any.whl",
                &zip_bytes(&files),
                &debian_scheme(),
                true,
            )
            .unwrap_err();
        // Refused by its file name already, before its METADATA could name a directory.
        assert!(matches!(&err, WheelError::BadFilename { .. }), "{err}");
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

    #[test]
    fn wheel_filenames_parse() {
        let name = parse_wheel_filename(
            "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(
            name,
            WheelName {
                name: "PyYAML".to_owned(),
                version: "6.0.1".to_owned(),
                build: None,
                python_tags: vec!["cp311".to_owned()],
                abi_tags: vec!["cp311".to_owned()],
                platform_tags: vec![
                    "manylinux_2_17_x86_64".to_owned(),
                    "manylinux2014_x86_64".to_owned()
                ],
            }
        );
        let name = parse_wheel_filename("six-1.16.0-1build2-py2.py3-none-any.whl").unwrap();
        assert_eq!(name.build.as_deref(), Some("1build2"));
        assert_eq!(name.python_tags, ["py2", "py3"]);
        assert_eq!(name.abi_tags, ["none"]);
        assert_eq!(name.platform_tags, ["any"]);
        for bad in [
            "six-1.16.0-py3-none-any.zip",
            "six-1.16.0-py3-any.whl",
            "six-1.16.0-build-py3-none-any.whl",
            "six-1.16.0-1-2-py3-none-any.whl",
            "../six-1.16.0-py3-none-any.whl",
            "six-1.16.0-py3..py2-none-any.whl",
            "-1.16.0-py3-none-any.whl",
        ] {
            assert!(parse_wheel_filename(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_normalise_per_pep_503() {
        assert_eq!(normalize_name("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize_name("FRIENDLY-BARD"), "friendly-bard");
        assert_eq!(normalize_name("friendly.bard"), "friendly-bard");
        assert_eq!(normalize_name("friendly_bard"), "friendly-bard");
        assert_eq!(normalize_name("friendly--bard"), "friendly-bard");
        assert_eq!(normalize_name("FrIeNdLy-._.-bArD"), "friendly-bard");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
    }

    #[test]
    fn record_csv_round_trips_quoted_fields() {
        let rows = parse_csv("a,b,c\r\n\"x,y\",\"say \"\"hi\"\"\",3\n\nlast,,").unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["x,y", "say \"hi\"", "3"],
                vec!["last", "", ""]
            ]
        );
        assert_eq!(csv_field("x,y"), "\"x,y\"");
        assert_eq!(csv_field("plain"), "plain");
        assert!(parse_csv("\"open").is_err());
    }
}
