//! Placing extracted conda packages into the layer's prefix, as conda's linker would:
//!
//! - only the paths that `info/paths.json` lists (or, for old packages, `info/files`);
//! - prefix placeholders replaced where `paths.json` (or `info/has_prefix`) says: in text
//!   files every occurrence; in binary files inside each NUL-terminated string, which keeps
//!   its length by NUL padding (so offsets in the binary stay right);
//! - `noarch: python` packages: `site-packages/` goes to `lib/pythonX.Y/site-packages/` (X.Y
//!   of the solved `python`), `python-scripts/` to `bin/`, and the entry points of
//!   `info/link.json` become scripts in `bin/`;
//! - `conda-meta/<name>-<version>-<build>.json` for every package and `conda-meta/history`.
//!
//! Names from the package are checked before they become image paths: `paths.json` paths are
//! [`RelPath`]s, entry point names [`FileName`]s with a `module:function` of Python
//! identifiers, and no entry of the layer may lie below a symbolic link that its packages
//! create (a file placed there would land wherever the link points).
//!
//! Not done: compiling `.pyc` files, `pre-link`/`post-link` scripts, menu entries.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{CondaError, CondaSpec, Unpacked};
use crate::layer::{Content, Entry, EntryKind, FileStamp, ImagePath, LayerTree};
use crate::name::{FileName, NameFault, RelPath, is_dotted_identifier};
use crate::source::tree_util::inline_file as inline;

/// conda-build's placeholder when `info/has_prefix` gives none.
const DEFAULT_PLACEHOLDER: &str = "/opt/anaconda1anaconda2anaconda3";

/// Every entry of an extracted package, as `listing.json` in the cache keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listing {
    pub entries: Vec<ListedEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListedEntry {
    /// Relative to the package root (`bin/x`, `info/index.json`).
    pub path: RelPath,
    pub kind: ListedKind,
    pub mode: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum ListedKind {
    Directory,
    File { size: u64 },
    Symlink { target: String },
    Hardlink { target: String },
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("conda package {package}: info/{file} cannot be read")]
    InfoRead {
        package: String,
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("conda package {package}: info/{file} cannot be read")]
    InfoJson {
        package: String,
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("conda package {package} lists `{path}` in its info/ but does not contain it")]
    Missing { package: String, path: String },
    #[error(
        "conda package {package}: the prefix `{prefix}` is longer than the placeholder in binary file `{path}` ({length} bytes); use a shorter prefix"
    )]
    PrefixTooLong {
        package: String,
        prefix: String,
        path: String,
        length: usize,
    },
    #[error(
        "conda package {package} is `noarch: python`, but the layer's packages include no `python`; add python to its specs"
    )]
    NoPython { package: String },
    #[error("conda layer prefix `{0}` is not an absolute path inside the image")]
    BadPrefix(String),
    #[error("cannot write a prefix-replaced file of conda package {package} into the cache")]
    Io {
        package: String,
        #[source]
        source: io::Error,
    },
}

/// One line of `info/paths.json` (`paths_version` 1).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PathEntry {
    #[serde(rename = "_path")]
    pub path: String,
    #[serde(default = "hardlink")]
    pub path_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_link: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_in_bytes: Option<u64>,
}

fn hardlink() -> String {
    "hardlink".to_owned()
}

#[derive(Deserialize)]
struct PathsJson {
    paths: Vec<PathEntry>,
}

/// The package's info files.
struct Info {
    index: serde_json::Map<String, Value>,
    paths: Vec<PathEntry>,
    noarch_python: bool,
    entry_points: Vec<String>,
}

fn read_info(unpacked: &Unpacked) -> Result<Info, InstallError> {
    let package = super::dist_name(&unpacked.locked);
    let files = unpacked.dir.join("files/info");
    let unreadable = |file: &str, source| InstallError::InfoRead {
        package: package.clone(),
        file: file.to_owned(),
        source,
    };
    let bad = |file: &str, source| InstallError::InfoJson {
        package: package.clone(),
        file: file.to_owned(),
        source,
    };
    let index: serde_json::Map<String, Value> = fs::read(files.join("index.json"))
        .map_err(|e| unreadable("index.json", e))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad("index.json", e)))?;
    let paths = match fs::read(files.join("paths.json")) {
        Ok(bytes) => {
            serde_json::from_slice::<PathsJson>(&bytes)
                .map_err(|e| bad("paths.json", e))?
                .paths
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => legacy_paths(unpacked, &files)?,
        Err(e) => return Err(unreadable("paths.json", e)),
    };
    let link: Value = match fs::read(files.join("link.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| bad("link.json", e))?,
        Err(_) => Value::Null,
    };
    let noarch_python = index.get("noarch").and_then(Value::as_str) == Some("python")
        || link["noarch"]["type"].as_str() == Some("python");
    let entry_points = link["noarch"]["entry_points"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Info {
        index,
        paths,
        noarch_python,
        entry_points,
    })
}

/// Packages from before paths.json: `info/files` lists the paths, `info/has_prefix` the
/// files with a placeholder (`PLACEHOLDER MODE PATH`, or just `PATH`).
fn legacy_paths(unpacked: &Unpacked, info: &Path) -> Result<Vec<PathEntry>, InstallError> {
    let files =
        fs::read_to_string(info.join("files")).map_err(|source| InstallError::InfoRead {
            package: super::dist_name(&unpacked.locked),
            file: "files".to_owned(),
            source,
        })?;
    let mut prefixed: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in fs::read_to_string(info.join("has_prefix"))
        .unwrap_or_default()
        .lines()
    {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_owned())
            .collect();
        match words.as_slice() {
            [path] => {
                prefixed.insert(path.clone(), (DEFAULT_PLACEHOLDER.into(), "text".into()));
            }
            [placeholder, mode, path] => {
                prefixed.insert(path.clone(), (placeholder.clone(), mode.clone()));
            }
            _ => {}
        }
    }
    Ok(files
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|path| {
            let listed = unpacked
                .listing
                .entries
                .iter()
                .find(|e| e.path.as_str() == path);
            let path_type = match listed.map(|e| &e.kind) {
                Some(ListedKind::Symlink { .. }) => "softlink",
                Some(ListedKind::Directory) => "directory",
                _ => "hardlink",
            };
            let (placeholder, mode) = prefixed.get(path).cloned().unzip();
            PathEntry {
                path: path.to_owned(),
                path_type: path_type.to_owned(),
                prefix_placeholder: placeholder,
                file_mode: mode,
                ..Default::default()
            }
        })
        .collect())
}

/// Replaces `placeholder` by `prefix` in a text file: every occurrence.
pub(crate) fn replace_text(data: &[u8], placeholder: &[u8], prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = find(rest, placeholder) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(prefix);
        rest = &rest[at + placeholder.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Replaces `placeholder` by `prefix` in a binary file: each NUL-terminated string holding it
/// is rewritten in place and padded with NULs to its old length. None when the prefix is
/// longer than the placeholder (the string would grow).
pub(crate) fn replace_binary(data: &[u8], placeholder: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
    if prefix.len() > placeholder.len() {
        return find(data, placeholder).is_none().then(|| data.to_vec());
    }
    let mut out = data.to_vec();
    let mut from = 0;
    while let Some(found) = find(&data[from..], placeholder) {
        let start = from + found;
        let end = data[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(data.len(), |n| start + n);
        let replaced = replace_text(&data[start..end], placeholder, prefix);
        out[start..start + replaced.len()].copy_from_slice(&replaced);
        out[start + replaced.len()..end].fill(0);
        // A placeholder holding a NUL (paths.json says what it is) can match with `end` at
        // `start`; the search must still move on.
        from = end.max(start + 1);
    }
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The error for a package's path that cannot be used: escaping paths say so, others say why.
pub(super) fn member_fault(package: &str, raw: &str, fault: NameFault) -> CondaError {
    match fault {
        NameFault::Absolute | NameFault::Climbs => CondaError::Escapes {
            package: package.to_owned(),
            entry: raw.to_owned(),
        },
        fault => CondaError::BadName {
            package: package.to_owned(),
            what: "an entry named",
            name: raw.to_owned(),
            fault,
        },
    }
}

/// A `name = module:function` entry point of `info/link.json`, checked: the name becomes
/// `bin/<name>` and the rest Python source in the script.
fn parse_entry_point(package: &str, point: &str) -> Result<(FileName, String, String), CondaError> {
    let (name, target) = point.split_once('=').unwrap_or((point, ""));
    let name = FileName::new(name.trim()).map_err(|fault| CondaError::BadName {
        package: package.to_owned(),
        what: "an entry point named",
        name: name.trim().to_owned(),
        fault,
    })?;
    match target.split_once(':') {
        Some((module, function))
            if is_dotted_identifier(module.trim()) && is_dotted_identifier(function.trim()) =>
        {
            Ok((name, module.trim().to_owned(), function.trim().to_owned()))
        }
        _ => Err(CondaError::BadName {
            package: package.to_owned(),
            what: "an entry point",
            name: point.to_owned(),
            fault: NameFault::NotEntryPoint,
        }),
    }
}

fn host_file(path: PathBuf, size: u64, mode: u32) -> Entry {
    Entry {
        kind: EntryKind::File {
            content: Content::Host {
                stamp: FileStamp::of(&path),
                path,
            },
            size,
        },
        mode,
        uid: 0,
        gid: 0,
    }
}

/// The script conda writes for a `name = module:function` entry point.
pub(crate) fn entry_point_script(python: &str, module: &str, function: &str) -> String {
    let import = function.split('.').next().unwrap_or(function);
    format!(
        "#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\nfrom {module} import {import}\n\nif __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n    sys.exit({function}())\n"
    )
}

/// Fills a layer tree with the packages, placed under the spec's prefix.
pub(crate) fn install(
    spec: &CondaSpec,
    packages: &[Unpacked],
    source_date_epoch: u64,
) -> Result<LayerTree, CondaError> {
    let mut installer = Installer::new(spec, packages)?;
    let timestamp = crate::time::rfc3339(source_date_epoch)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned();
    installer.history.push_str(&format!(
        "==> {timestamp} <==\n# cmd: oci-build build (conda layer)\n"
    ));
    for unpacked in packages {
        installer.install_package(unpacked)?;
    }
    installer.finish()
}

/// The layer being filled, package by package, under the spec's prefix.
struct Installer<'a> {
    spec: &'a CondaSpec,
    /// The prefix without a trailing `/`.
    prefix: &'a str,
    prefix_path: ImagePath,
    /// `X.Y` of the environment's `python`, for `noarch: python` packages.
    python_version: Option<String>,
    tree: LayerTree,
    /// Where each package put a symbolic link, to refuse entries below one (in any package).
    links: BTreeMap<ImagePath, String>,
    /// `conda-meta/history`.
    history: String,
}

/// One package being placed.
struct Package<'a> {
    unpacked: &'a Unpacked,
    /// `name-version-build`, which names its conda-meta record.
    name: String,
    /// `X.Y` where it is a `noarch: python` package.
    python_dir: Option<String>,
}

impl<'a> Installer<'a> {
    fn new(spec: &'a CondaSpec, packages: &[Unpacked]) -> Result<Installer<'a>, CondaError> {
        let prefix = spec.prefix.trim_end_matches('/');
        let prefix_path = ImagePath::new(prefix)
            .ok()
            .filter(|_| prefix.starts_with('/'))
            .ok_or_else(|| InstallError::BadPrefix(spec.prefix.clone()))?;
        let python_version = packages
            .iter()
            .find(|p| p.locked.name == "python")
            .map(|p| {
                let mut parts = p.locked.version.split('.');
                format!(
                    "{}.{}",
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("")
                )
            });
        Ok(Installer {
            spec,
            prefix,
            prefix_path,
            python_version,
            tree: LayerTree::default(),
            links: BTreeMap::new(),
            history: String::new(),
        })
    }

    /// Every `rel` is a checked relative path by now; an error here is a bug, not a panic.
    fn under_prefix(&self, package: &str, rel: &str) -> Result<ImagePath, CondaError> {
        ImagePath::new(&format!("{}/{rel}", self.prefix_path.as_str()))
            .map_err(|_| member_fault(package, rel, NameFault::Climbs))
    }

    fn install_package(&mut self, unpacked: &Unpacked) -> Result<(), CondaError> {
        let name = super::dist_name(&unpacked.locked);
        // The package's conda-meta record is named after it: a `/` in its name, version or
        // build (from repodata or a lock file) would put the record elsewhere.
        if name.contains(['/', '\0']) {
            return Err(CondaError::Escapes {
                entry: format!("conda-meta/{name}.json"),
                package: name,
            });
        }
        let info = read_info(unpacked)?;
        let python_dir = if info.noarch_python {
            Some(
                self.python_version
                    .clone()
                    .ok_or_else(|| InstallError::NoPython {
                        package: name.clone(),
                    })?,
            )
        } else {
            None
        };
        let package = Package {
            unpacked,
            name,
            python_dir,
        };
        let listed: BTreeMap<&str, &ListedEntry> = unpacked
            .listing
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let mut installed: Vec<PathEntry> = Vec::new();
        for path_entry in &info.paths {
            installed.push(self.install_path(&package, &listed, path_entry)?);
        }
        for point in &info.entry_points {
            installed.push(self.install_entry_point(&package.name, point)?);
        }
        self.write_record(&package, info.index, &installed)
    }

    /// Places one `paths.json` entry; returns it as the conda-meta record lists it.
    fn install_path(
        &mut self,
        package: &Package,
        listed: &BTreeMap<&str, &ListedEntry>,
        path_entry: &PathEntry,
    ) -> Result<PathEntry, CondaError> {
        let name = &package.name;
        // As for archive members: no `..` at all, not absolute, no control character.
        let path = RelPath::new(&path_entry.path)
            .map_err(|fault| member_fault(name, &path_entry.path, fault))?;
        let dest = match &package.python_dir {
            Some(version) => noarch_python_path(path.as_str(), version),
            None => path.as_str().to_owned(),
        };
        let listed_entry = listed
            .get(path.as_str())
            .ok_or_else(|| InstallError::Missing {
                package: name.clone(),
                path: path_entry.path.clone(),
            })?;
        let entry = match &listed_entry.kind {
            ListedKind::Directory => Entry {
                kind: EntryKind::Directory,
                mode: listed_entry.mode,
                uid: 0,
                gid: 0,
            },
            ListedKind::Symlink { target } => {
                self.links
                    .insert(self.under_prefix(name, &dest)?, name.clone());
                Entry {
                    kind: EntryKind::Symlink {
                        target: target.clone(),
                    },
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                }
            }
            ListedKind::File { .. } | ListedKind::Hardlink { .. } => {
                self.file_entry(package, path_entry, listed_entry, &path)?
            }
        };
        self.tree.insert(self.under_prefix(name, &dest)?, entry);
        Ok(PathEntry {
            path: dest,
            ..path_entry.clone()
        })
    }

    /// A regular file (or hard link) of the package, its prefix placeholder replaced if it has one.
    fn file_entry(
        &self,
        package: &Package,
        path_entry: &PathEntry,
        listed_entry: &ListedEntry,
        path: &RelPath,
    ) -> Result<Entry, CondaError> {
        let name = &package.name;
        // A tar hard link inside a package is a second copy here: the layer keeps
        // links only where their target is in the same layer under a known name.
        let source = match &listed_entry.kind {
            ListedKind::Hardlink { target } => {
                RelPath::new(target).map_err(|fault| member_fault(name, target, fault))?
            }
            _ => path.clone(),
        };
        let source = source.as_str();
        let host = package.unpacked.dir.join("files").join(source);
        let placeholder = match &path_entry.prefix_placeholder {
            Some(placeholder) if !placeholder.is_empty() => placeholder,
            _ => {
                let size = fs::metadata(&host).map_or(0, |m| m.len());
                return Ok(host_file(host, size, listed_entry.mode));
            }
        };
        let data = fs::read(&host).map_err(|_| InstallError::Missing {
            package: name.clone(),
            path: source.to_owned(),
        })?;
        let binary = path_entry.file_mode.as_deref() == Some("binary");
        let prefix = self.prefix;
        let replaced = if binary {
            replace_binary(&data, placeholder.as_bytes(), prefix.as_bytes()).ok_or_else(|| {
                InstallError::PrefixTooLong {
                    package: name.clone(),
                    prefix: prefix.to_owned(),
                    path: path_entry.path.clone(),
                    length: placeholder.len(),
                }
            })?
        } else {
            replace_text(&data, placeholder.as_bytes(), prefix.as_bytes())
        };
        let stored =
            store_replaced(package.unpacked, prefix, source, &replaced).map_err(|source| {
                InstallError::Io {
                    package: name.clone(),
                    source,
                }
            })?;
        Ok(host_file(stored, replaced.len() as u64, listed_entry.mode))
    }

    /// The `bin/` script for one `link.json` entry point; returns its conda-meta line.
    fn install_entry_point(&mut self, package: &str, point: &str) -> Result<PathEntry, CondaError> {
        let (name, module, function) = parse_entry_point(package, point)?;
        let python = format!("{}/bin/python", self.prefix);
        let script = entry_point_script(&python, &module, &function);
        let dest = format!("bin/{name}");
        let installed = PathEntry {
            path: dest.clone(),
            path_type: "unix_python_entry_point".to_owned(),
            size_in_bytes: Some(script.len() as u64),
            ..Default::default()
        };
        self.tree.insert(
            self.under_prefix(package, &dest)?,
            inline(script.into_bytes(), 0o755),
        );
        Ok(installed)
    }

    /// The package's `conda-meta/<name>.json` and its line in the history.
    fn write_record(
        &mut self,
        package: &Package,
        index: serde_json::Map<String, Value>,
        installed: &[PathEntry],
    ) -> Result<(), CondaError> {
        let unpacked = package.unpacked;
        let name = &package.name;
        let record = prefix_record(self.spec, unpacked, index, installed, self.prefix);
        let record_name = FileName::new(&format!("{name}.json"))
            .map_err(|fault| member_fault(name, name, fault))?;
        self.tree.insert(
            self.under_prefix(name, &format!("conda-meta/{record_name}"))?,
            inline(
                serde_json::to_vec_pretty(&record).expect("records serialise"),
                0o644,
            ),
        );
        self.history.push_str(&format!(
            "+{}/{}::{name}\n",
            unpacked.channel_url, unpacked.locked.subdir
        ));
        Ok(())
    }

    /// `conda-meta/history`, then the check that no entry lies below a package's link.
    fn finish(mut self) -> Result<LayerTree, CondaError> {
        self.history.push_str(&format!(
            "# update specs: {}\n",
            serde_json::to_string(&self.spec.specs).expect("specs serialise")
        ));
        let history = std::mem::take(&mut self.history);
        self.tree.insert(
            self.under_prefix("conda-meta", "conda-meta/history")?,
            inline(history.into_bytes(), 0o644),
        );
        for path in self.tree.paths() {
            if let Some(package) = path.ancestors().find_map(|a| self.links.get(&a)) {
                return Err(CondaError::Escapes {
                    package: package.clone(),
                    entry: format!("{path} (below a link the layer's packages create)"),
                });
            }
        }
        Ok(self.tree)
    }
}

/// Where a `noarch: python` package's path goes in the prefix.
fn noarch_python_path(path: &str, python_version: &str) -> String {
    if let Some(rest) = path.strip_prefix("site-packages/") {
        format!("lib/python{python_version}/site-packages/{rest}")
    } else if let Some(rest) = path.strip_prefix("python-scripts/") {
        format!("bin/{rest}")
    } else {
        path.to_owned()
    }
}

/// A prefix-replaced copy of a package file, kept beside the extraction and keyed by prefix so
/// that the next build with the same prefix finds it.
fn store_replaced(
    unpacked: &Unpacked,
    prefix: &str,
    path: &str,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    let key = crate::digest::Digest::of_bytes(prefix.as_bytes());
    let target = unpacked
        .dir
        .join("prefixed")
        .join(&key.hex()[..16])
        .join(path);
    if fs::read(&target).is_ok_and(|existing| existing == bytes) {
        return Ok(target);
    }
    let parent = target.parent().expect("stored files have a parent");
    fs::create_dir_all(parent)?;
    crate::fsutil::write_atomic(&target, bytes, crate::fsutil::Publish::PRIVATE)?;
    Ok(target)
}

/// The `conda-meta` record conda writes for an installed package: its index.json with where it
/// came from, the files it put in the prefix and how.
fn prefix_record(
    spec: &CondaSpec,
    unpacked: &Unpacked,
    mut record: serde_json::Map<String, Value>,
    installed: &[PathEntry],
    prefix: &str,
) -> Value {
    let locked = &unpacked.locked;
    let requested = spec.specs.iter().find(|s| {
        let name: String = s
            .chars()
            .take_while(|c| c.is_alphanumeric() || "-_.".contains(*c))
            .collect();
        name.eq_ignore_ascii_case(&locked.name)
    });
    let mut set = |key: &str, value: Value| {
        record.insert(key.to_owned(), value);
    };
    set("channel", json!(unpacked.channel_url));
    set("url", json!(unpacked.url));
    set("fn", json!(locked.filename));
    set("sha256", json!(locked.sha256.hex()));
    if let Some(md5) = &locked.md5 {
        set("md5", json!(md5));
    }
    if let Some(size) = locked.size {
        set("size", json!(size));
    }
    set(
        "files",
        json!(installed.iter().map(|p| &p.path).collect::<Vec<_>>()),
    );
    set(
        "paths_data",
        json!({ "paths": installed, "paths_version": 1 }),
    );
    set(
        "link",
        json!({ "source": format!("{prefix}/pkgs/{}", super::dist_name(locked)), "type": 1 }),
    );
    if let Some(requested) = requested {
        set("requested_spec", json!(requested));
    }
    Value::Object(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replacement_changes_every_occurrence() {
        assert_eq!(
            replace_text(b"a=/ph/bin b=/ph/lib", b"/ph", b"/opt/conda"),
            b"a=/opt/conda/bin b=/opt/conda/lib"
        );
    }

    #[test]
    fn binary_replacement_keeps_length_with_nul_padding() {
        let placeholder = b"/placeholder_long_enough";
        let mut data = b"\x7fELF\0".to_vec();
        data.extend_from_slice(placeholder);
        data.extend_from_slice(b"/lib:");
        data.extend_from_slice(placeholder);
        data.extend_from_slice(b"/x\0tail\0");
        let out = replace_binary(&data, placeholder, b"/opt/c").unwrap();
        assert_eq!(out.len(), data.len());
        let mut expected = b"\x7fELF\0/opt/c/lib:/opt/c/x".to_vec();
        expected.resize(data.len() - b"tail\0".len(), 0);
        expected.extend_from_slice(b"tail\0");
        assert_eq!(out, expected);
        assert!(replace_binary(&data, placeholder, &[b'x'; 40]).is_none());
    }

    #[test]
    fn binary_placeholder_starting_with_nul_ends() {
        // A placeholder that starts with NUL matches where no string can hold it; each match
        // must still move the search on.
        let data = b"a\0/ph\0b\0";
        assert_eq!(replace_binary(data, b"\0/ph", b"/x").unwrap(), data);
        assert_eq!(replace_binary(data, b"\0", b"").unwrap(), data);
    }

    /// An extracted package without files: `info/` with index.json, paths.json and `link`.
    fn empty_package(dir: &Path, name: &str, build: &str, link: &str) -> Unpacked {
        let info = dir.join("files/info");
        fs::create_dir_all(&info).unwrap();
        fs::write(info.join("index.json"), "{}").unwrap();
        fs::write(info.join("paths.json"), r#"{"paths": []}"#).unwrap();
        if !link.is_empty() {
            fs::write(info.join("link.json"), link).unwrap();
        }
        Unpacked {
            locked: crate::source::conda::LockedConda {
                name: name.to_owned(),
                version: "1.0".to_owned(),
                build: build.to_owned(),
                subdir: "linux-64".to_owned(),
                channel: "c".to_owned(),
                filename: format!("{name}-1.0-0.tar.bz2"),
                url: None,
                sha256: crate::digest::Digest::from_hex(&"0".repeat(64)).unwrap(),
                md5: None,
                size: None,
            },
            url: format!("file:///c/linux-64/{name}-1.0-0.tar.bz2"),
            channel_url: "file:///c".to_owned(),
            dir: dir.to_owned(),
            listing: Listing::default(),
        }
    }

    fn spec() -> CondaSpec {
        CondaSpec {
            channels: vec![],
            specs: vec!["tool".to_owned()],
            prefix: "/opt/conda".to_owned(),
        }
    }

    #[test]
    fn package_names_with_a_slash_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tree = install(&spec(), &[empty_package(dir.path(), "tool", "0", "")], 0).unwrap();
        assert!(
            tree.get(&ImagePath::new("opt/conda/conda-meta/tool-1.0-0.json").unwrap())
                .is_some()
        );
        let bad = empty_package(dir.path(), "tool", "../../x", "");
        let err = install(&spec(), &[bad], 0).unwrap_err();
        assert!(
            matches!(&err, CondaError::Escapes { entry, .. } if entry == "conda-meta/tool-1.0-../../x.json"),
            "{err}"
        );
    }

    #[test]
    fn entry_point_names_with_a_nul_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let python = empty_package(&dir.path().join("python"), "python", "0", "");
        let link = r#"{"noarch": {"type": "python", "entry_points": ["a\u0000b = m:f"]}}"#;
        let tool = empty_package(&dir.path().join("tool"), "tool", "0", link);
        let err = install(&spec(), &[python, tool], 0).unwrap_err();
        assert!(
            matches!(&err, CondaError::BadName { name, .. } if name == "a\0b"),
            "{err}"
        );
    }

    #[test]
    fn noarch_paths_move_into_the_python_tree() {
        assert_eq!(
            noarch_python_path("site-packages/hello/__init__.py", "3.11"),
            "lib/python3.11/site-packages/hello/__init__.py"
        );
        assert_eq!(noarch_python_path("python-scripts/x", "3.11"), "bin/x");
        assert_eq!(noarch_python_path("share/doc", "3.11"), "share/doc");
    }

    #[test]
    fn entry_points_import_the_function() {
        let script = entry_point_script("/opt/conda/bin/python", "hello.cli", "main");
        assert!(script.starts_with("#!/opt/conda/bin/python\n"));
        assert!(script.contains("from hello.cli import main\n"));
        assert!(script.contains("sys.exit(main())"));
    }
}
