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
//!
//! One concern a file, in the order an install goes through them:
//!
//! - `name.rs`: wheel file names and PEP 503 project names;
//! - `archive.rs`: the zip, checked names, extraction into the cache and its listing;
//! - `dist_info.rs`: `WHEEL`, `METADATA` and `entry_points.txt`;
//! - `record.rs`: `RECORD`, checked on extraction and written back on install;
//! - `scripts.rs`: entry point launchers and `#!python` rewrites;
//! - `install.rs`: the files mapped onto the install scheme in a layer tree;
//! - `normalize.rs`: a wheel built from an sdist rewritten in a fixed form (order, times, modes).

use std::io;
use std::path::{Path, PathBuf};

use crate::name::NameFault;

mod archive;
mod dist_info;
mod install;
mod name;
mod normalize;
mod record;
mod scripts;
#[cfg(test)]
mod test_support;

pub(crate) use archive::{read_metadata, read_metadata_from};
pub(crate) use dist_info::script_entry_points;
pub(crate) use install::install_wheel;

/// Whether the wheel of SHA256 `sha256` (hex) is extracted in the cache already (a look, not
/// a check: installing reads and checks its listing).
pub(crate) fn is_unpacked(sha256: &str, cache: &crate::layer::cache::Cache) -> bool {
    archive::cached_dir(sha256, cache)
        .join("listing.json")
        .is_file()
}

/// Extracts and checks a wheel into the cache ahead of [`install_wheel`], which then finds it
/// there: a worker can do this part while the layer takes the wheels before it in order.
pub(crate) fn unpack_cached(
    wheel: &WheelFile,
    cache: &crate::layer::cache::Cache,
) -> Result<(), WheelError> {
    let parsed = parse_wheel_filename(wheel.filename)?;
    archive::extract_cached(wheel, &parsed, cache).map(drop)
}
pub(crate) use name::{WheelName, normalize_name, parse_wheel_filename};
pub(crate) use normalize::normalize_wheel;
pub(crate) use record::{csv_field, parse_csv};

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
pub(crate) struct WheelFile<'a> {
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
pub(crate) struct InstalledWheel {
    /// The project name as its METADATA spells it.
    pub name: String,
    pub version: String,
    /// Image path of the `.dist-info` directory (`/usr/local/lib/…/X-1.0.dist-info`).
    pub dist_info: String,
    /// Image paths of the scripts installed from `.data/scripts` and generated for entry points.
    pub scripts: Vec<String>,
}
