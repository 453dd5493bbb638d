//! What an image holds, package by package, read from its layers: Debian's dpkg status and
//! copyright files, Python distributions' core metadata in site directories, conda prefixes'
//! `conda-meta` records.
//!
//! Each layer is reduced once to a [`LayerPackages`] (from the tree a build wrote, or from a
//! layer's tar); [`contents`] applies them bottom to top as an extractor would (a whiteout or an
//! opaque directory hides what lower layers recorded at or under it, a later file replaces an
//! earlier one), so the result is the image's final filesystem, as `dpkg-query -W` and
//! `pip list` inside it see it.
//!
//! Layers come from outside: members that leave the root are refused, only regular files are
//! read, and each read is capped ([`MAX_FILE`]); a file that does not parse is left out rather
//! than failing the image.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use super::{Ecosystem, Package};
use crate::layer::{Content, EntryKind, LayerTree};

/// No file the scan reads is read past this: a larger copyright file or METADATA is left out.
pub(crate) const MAX_FILE: u64 = 16 << 20;
const DPKG_STATUS: &str = "var/lib/dpkg/status";

/// A file of a layer that says something about a package.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Fact {
    DpkgStatus(String),
    /// The license of a Debian package from its machine-readable copyright file, if it is one.
    Copyright(Option<String>),
    Python(Package),
    Conda(Package),
}

/// One layer, as far as the packages of the image go. Kept in a registry cache record with
/// the layer, so an image built on a layer found there has its SBOM without reading the layer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayerPackages {
    /// By path relative to `/`.
    facts: BTreeMap<String, Fact>,
    /// Paths this layer deletes from below, and directories whose lower contents it hides.
    removed: Vec<String>,
    emptied: Vec<String>,
}

/// What a path is to the scan, from its name alone.
enum Wanted {
    DpkgStatus,
    Copyright,
    /// Core metadata of a distribution in a site directory: `METADATA` or `PKG-INFO`.
    PythonMetadata,
    Conda,
}

fn wanted(path: &str) -> Option<Wanted> {
    if path == DPKG_STATUS {
        return Some(Wanted::DpkgStatus);
    }
    if let Some(rest) = path.strip_prefix("usr/share/doc/")
        && let Some(package) = rest.strip_suffix("/copyright")
        && !package.contains('/')
    {
        return Some(Wanted::Copyright);
    }
    let (dir, name) = path.rsplit_once('/')?;
    if let Some(prefix) = dir.strip_suffix("/conda-meta")
        && name.ends_with(".json")
        && !prefix.is_empty()
    {
        return Some(Wanted::Conda);
    }
    // `site/X.dist-info/METADATA`, `site/X.egg-info/PKG-INFO`, or `site/X.egg-info` as a file.
    let (site, info) = match name {
        "METADATA" | "PKG-INFO" => dir.rsplit_once('/')?,
        _ => (dir, name),
    };
    let is_info = match name {
        "METADATA" => info.ends_with(".dist-info"),
        "PKG-INFO" => info.ends_with(".egg-info"),
        _ => info.ends_with(".egg-info"),
    };
    let site_name = site.rsplit('/').next().unwrap_or(site);
    (is_info && (site_name == "site-packages" || site_name == "dist-packages"))
        .then_some(Wanted::PythonMetadata)
}

impl LayerPackages {
    fn see(&mut self, path: &str, read: &mut dyn FnMut() -> io::Result<Vec<u8>>) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name == crate::layer::below::OPAQUE {
            self.emptied.push(dir.to_owned());
            return;
        }
        if let Some(hidden) = name.strip_prefix(crate::layer::below::WHITEOUT_PREFIX) {
            self.removed.push(if dir.is_empty() {
                hidden.to_owned()
            } else {
                format!("{dir}/{hidden}")
            });
            return;
        }
        let Some(kind) = wanted(path) else {
            return;
        };
        let Ok(bytes) = read() else {
            return;
        };
        let fact = match kind {
            Wanted::DpkgStatus => Some(Fact::DpkgStatus(
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            Wanted::Copyright => Some(Fact::Copyright(copyright_license(&bytes))),
            Wanted::PythonMetadata => python_package(&bytes).map(Fact::Python),
            Wanted::Conda => conda_package(&bytes).map(Fact::Conda),
        };
        if let Some(fact) = fact {
            self.facts.insert(path.to_owned(), fact);
        }
    }

    /// Reads an uncompressed layer tar. An error names the member at fault.
    pub fn of_tar(reader: impl Read) -> io::Result<LayerPackages> {
        let mut packages = LayerPackages::default();
        let mut archive = tar::Archive::new(Trailer::new(reader));
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path_bytes().into_owned();
            let path = crate::source::pip::scan::member_path(&String::from_utf8_lossy(&raw))?;
            let kind = entry.header().entry_type();
            let regular = kind.is_file() || kind.is_contiguous();
            let size = entry.header().size().unwrap_or(u64::MAX);
            packages.see(&path, &mut || {
                if !regular || size > MAX_FILE {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                let mut bytes = Vec::new();
                (&mut entry).take(MAX_FILE).read_to_end(&mut bytes)?;
                Ok(bytes)
            });
        }
        Ok(packages)
    }

    /// Reads a layer this run built, from its tree, without reading its tar back.
    pub fn of_tree(tree: &LayerTree) -> LayerPackages {
        let mut packages = LayerPackages::default();
        for dir in tree.opaque_dirs() {
            packages
                .emptied
                .push(dir.as_str().trim_start_matches('/').to_owned());
        }
        for path in tree.paths() {
            let Some(entry) = tree.get(path) else {
                continue;
            };
            let name = path.as_str().trim_start_matches('/');
            if matches!(entry.kind, EntryKind::Whiteout) {
                packages.removed.push(name.to_owned());
                continue;
            }
            let kind = entry.kind.clone();
            packages.see(name, &mut || match &kind {
                EntryKind::File { size, .. } if *size > MAX_FILE => {
                    Err(io::ErrorKind::InvalidData.into())
                }
                EntryKind::File {
                    content: Content::Inline(bytes),
                    ..
                } => Ok(bytes.to_vec()),
                EntryKind::File {
                    content: Content::Host { path, .. } | Content::Blob { path, .. },
                    ..
                } => {
                    let mut bytes = Vec::new();
                    std::fs::File::open(path)?
                        .take(MAX_FILE)
                        .read_to_end(&mut bytes)?;
                    Ok(bytes)
                }
                _ => Err(io::ErrorKind::InvalidData.into()),
            });
        }
        packages
    }
}

/// A tar stream with its end made whole: some writers (umoci 0.4) stop right after the last
/// member's data, without its padding or the two zero blocks that end an archive, which Go's
/// reader accepts and the `tar` crate does not. At most 1535 zero bytes are added.
struct Trailer<R> {
    inner: R,
    read: u64,
    /// Zero bytes still to give once the inner stream has ended.
    padding: Option<u64>,
}

impl<R: Read> Trailer<R> {
    fn new(inner: R) -> Self {
        Trailer {
            inner,
            read: 0,
            padding: None,
        }
    }
}

impl<R: Read> Read for Trailer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.padding.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.read += n as u64;
                return Ok(n);
            }
            self.padding = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.padding.as_mut().expect("set above");
        let n = buf.len().min(*left as usize);
        buf[..n].fill(0);
        *left -= n as u64;
        Ok(n)
    }
}

/// The packages of an image whose layers are `layers`, bottom first: Debian packages (with
/// their copyright licenses), Python distributions and conda packages, in a stable order.
pub fn contents(layers: &[std::sync::Arc<LayerPackages>]) -> Vec<Package> {
    let mut facts: BTreeMap<String, Fact> = BTreeMap::new();
    for layer in layers {
        let under = |path: &str, dir: &str| {
            dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
        };
        facts.retain(|path, _| {
            !layer.removed.iter().any(|r| under(path, r))
                && !layer
                    .emptied
                    .iter()
                    .any(|d| path.starts_with(&format!("{d}/")) || d.is_empty())
        });
        facts.extend(layer.facts.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut packages = Vec::new();
    let mut copyrights = BTreeMap::new();
    for (path, fact) in &facts {
        match fact {
            Fact::Copyright(license) => {
                if let Some(package) = path
                    .strip_prefix("usr/share/doc/")
                    .and_then(|p| p.strip_suffix("/copyright"))
                {
                    copyrights.insert(package.to_owned(), license.clone());
                }
            }
            Fact::Python(package) | Fact::Conda(package) => packages.push(package.clone()),
            Fact::DpkgStatus(_) => {}
        }
    }
    if let Some(Fact::DpkgStatus(status)) = facts.get(DPKG_STATUS) {
        for mut package in dpkg_packages(status) {
            package.license = copyrights.get(&package.name).cloned().flatten();
            packages.push(package);
        }
    }
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.arch).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.arch,
        ))
    });
    packages.dedup_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.arch) == (b.ecosystem, &b.name, &b.version, &b.arch)
    });
    packages
}

/// The packages a dpkg status file lists as present (neither `not-installed` nor only
/// `config-files`).
fn dpkg_packages(status: &str) -> Vec<Package> {
    let Ok(stanzas) = crate::source::debian::deb822::parse(status) else {
        return Vec::new();
    };
    let mut packages = Vec::new();
    for stanza in stanzas {
        let (Some(name), Some(version)) = (stanza.get("Package"), stanza.get("Version")) else {
            continue;
        };
        let state = stanza
            .get("Status")
            .and_then(|s| s.split_whitespace().nth(2))
            .unwrap_or("installed");
        if matches!(state, "not-installed" | "config-files") {
            continue;
        }
        let (source, source_version) = match stanza.get("Source") {
            Some(field) => match field.split_once(' ') {
                Some((name, version)) => (
                    name.to_owned(),
                    version
                        .trim_matches(|c| c == '(' || c == ')' || c == ' ')
                        .to_owned(),
                ),
                None => (field.to_owned(), version.to_owned()),
            },
            None => (name.to_owned(), version.to_owned()),
        };
        let mut depends = Vec::new();
        for field in ["Pre-Depends", "Depends"] {
            if let Some(value) = stanza.get(field) {
                for group in value.split(',') {
                    let alternatives: Vec<String> = group
                        .split('|')
                        .filter_map(|alt| {
                            let name = alt.trim().split([' ', '(', ':', '[', '<']).next()?;
                            (!name.is_empty()).then(|| name.to_owned())
                        })
                        .collect();
                    if !alternatives.is_empty() {
                        depends.push(alternatives);
                    }
                }
            }
        }
        packages.push(Package {
            ecosystem: Ecosystem::Debian,
            name: name.to_owned(),
            version: version.to_owned(),
            arch: stanza.get("Architecture").map(str::to_owned),
            source: Some((source, source_version)),
            license: None,
            sha256: None,
            file_name: None,
            depends,
        });
    }
    packages
}

/// The license of a machine-readable (DEP-5) copyright file: that of its `Files: *` paragraph.
/// None for free-form files, which say it in prose.
fn copyright_license(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let stanzas = crate::source::debian::deb822::parse(&text).ok()?;
    let header = stanzas.first()?;
    if !header
        .get("Format")
        .is_some_and(|f| f.contains("copyright-format/1.0"))
    {
        return None;
    }
    stanzas
        .iter()
        .find(|s| {
            s.get("Files")
                .is_some_and(|f| f.split_whitespace().next() == Some("*"))
        })
        .and_then(|s| s.get("License"))
        .and_then(|l| l.lines().next())
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

/// A distribution from its core metadata (RFC 822 headers before the first blank line).
fn python_package(bytes: &[u8]) -> Option<Package> {
    let text = String::from_utf8_lossy(bytes);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, v)| k == name && !v.is_empty() && v != "UNKNOWN")
            .map(|(_, v)| v.clone())
    };
    let name = field("name")?;
    let version = field("version")?;
    // PEP 639's expression, else a license classifier, else a one-line `License:`.
    let classifier = fields
        .iter()
        .filter(|(k, _)| k == "classifier")
        .filter_map(|(_, v)| v.strip_prefix("License :: "))
        .filter_map(|v| v.rsplit(" :: ").next())
        .find(|v| *v != "OSI Approved")
        .map(str::to_owned);
    let license = field("license-expression")
        .or(classifier)
        .or_else(|| field("license").filter(|l| !l.contains('\n') && l.len() <= 100));
    let depends = fields
        .iter()
        .filter(|(k, _)| k == "requires-dist")
        // Requirements of extras are not the distribution's own.
        .filter(|(_, v)| !v.split_once(';').is_some_and(|(_, m)| m.contains("extra")))
        .filter_map(|(_, v)| {
            let name = v
                .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .next()?;
            (!name.is_empty()).then(|| vec![name.to_owned()])
        })
        .collect();
    Some(Package {
        ecosystem: Ecosystem::Python,
        name,
        version,
        arch: None,
        source: None,
        license,
        sha256: None,
        file_name: None,
        depends,
    })
}

#[derive(Deserialize)]
struct CondaRecord {
    name: String,
    version: String,
    #[serde(default)]
    build: Option<String>,
    #[serde(default)]
    subdir: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    depends: Vec<String>,
    #[serde(default, rename = "fn")]
    file_name: Option<String>,
}

fn conda_package(bytes: &[u8]) -> Option<Package> {
    let record: CondaRecord = serde_json::from_slice(bytes).ok()?;
    let sha256 = record
        .sha256
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| h.to_ascii_lowercase());
    Some(Package {
        ecosystem: Ecosystem::Conda,
        name: record.name,
        version: record.version,
        arch: record.subdir,
        source: record.build.map(|b| (b, String::new())),
        license: record.license.filter(|l| !l.is_empty()),
        sha256,
        file_name: record.file_name,
        depends: record
            .depends
            .iter()
            .filter_map(|d| d.split_whitespace().next().map(|n| vec![n.to_owned()]))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn layer(files: &[(&str, &str)]) -> Arc<LayerPackages> {
        let mut packages = LayerPackages::default();
        for (path, text) in files {
            packages.see(path, &mut || Ok(text.as_bytes().to_vec()));
        }
        Arc::new(packages)
    }

    #[test]
    fn the_image_is_what_the_top_layers_leave() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\nDepends: libgcc-s1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libgcc-s1\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.2.0-14\n";
        let copyright = "Format: https://example.invalid/copyright-format/1.0/\n\nFiles: *\nLicense: LGPL-2.1+\n Some text\n";
        let lower = layer(&[
            (DPKG_STATUS, status),
            ("usr/share/doc/libc6/copyright", copyright),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nLicense: MIT\n",
            ),
            (
                "usr/lib/python3/dist-packages/pip/_vendor/x-1.dist-info/METADATA",
                "Name: x\nVersion: 1\n",
            ),
            (
                "opt/conda/conda-meta/zlib-1.3-h0.json",
                r#"{"name":"zlib","version":"1.3","build":"h0","subdir":"linux-64","sha256":"AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12","license":"Zlib","depends":["libgcc-ng >=12"]}"#,
            ),
        ]);
        let upper = layer(&[
            ("usr/lib/python3/dist-packages/.wh.six-1.16.0.dist-info", ""),
            (
                "usr/local/lib/python3.11/dist-packages/Requests-2.0.dist-info/METADATA",
                "Name: Requests\nVersion: 2.0\nLicense-Expression: Apache-2.0\nRequires-Dist: urllib3>=1\nRequires-Dist: PySocks; extra == \"socks\"\n",
            ),
        ]);
        let packages = contents(&[lower, upper]);
        let names: Vec<(&str, &str)> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("libc6", "2.36-9+deb12u4"),
                ("libgcc-s1", "12.2.0-14"),
                ("Requests", "2.0"),
                ("zlib", "1.3"),
            ]
        );
        let libc = &packages[0];
        assert_eq!(libc.license.as_deref(), Some("LGPL-2.1+"));
        assert_eq!(libc.source, Some(("glibc".to_owned(), "2.36-9".to_owned())));
        assert_eq!(libc.depends, [["libgcc-s1"]]);
        assert_eq!(packages[2].depends, [["urllib3"]]);
        assert_eq!(packages[2].license.as_deref(), Some("Apache-2.0"));
        assert_eq!(packages[3].sha256.as_deref(), Some(&"ab12".repeat(16)[..]));
    }

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// umoci 0.4 ends a layer right after the last member's data: read all the same.
    #[test]
    fn a_tar_without_its_end_is_read_to_its_last_member() {
        let status = "Package: a\nStatus: install ok installed\nVersion: 1\n";
        let tar = tar_of(&[(DPKG_STATUS, status)]);
        let cut = 512 + status.len();
        let packages = LayerPackages::of_tar(&tar[..cut]).unwrap();
        let names: Vec<String> = contents(&[Arc::new(packages)])
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn a_member_that_leaves_the_root_is_refused() {
        let mut tar = tar_of(&[("xx/evil", "x")]);
        tar[..5].copy_from_slice(b"../ev");
        // The header checksum covers the name: write it again.
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&tar[..512]);
        header.set_cksum();
        tar[..512].copy_from_slice(header.as_bytes());
        let error = LayerPackages::of_tar(&tar[..]).unwrap_err();
        assert!(
            error.to_string().contains("leaves the image root"),
            "{error}"
        );
    }

    #[test]
    fn an_opaque_directory_hides_what_is_below_it() {
        let lower = layer(&[(
            "opt/conda/conda-meta/zlib-1.3-h0.json",
            r#"{"name":"zlib","version":"1.3"}"#,
        )]);
        let upper = layer(&[("opt/conda/.wh..wh..opq", "")]);
        assert!(contents(&[lower, upper]).is_empty());
    }
}
