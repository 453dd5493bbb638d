//! What the layers below a `pip` layer hold that decides how it installs: the Python there
//! (Debian's, a conda prefix's, or one built into /usr/local), the C library, and the Python
//! distributions already installed, and the symlinks that later layers' packages are placed
//! through.
//!
//! Layers come from outside (a pulled base): a member named with `..` or an absolute path is
//! refused, and a file whose content is read (`/var/lib/dpkg/status`, `/etc/passwd`…) must be a
//! regular file of the layer itself, never a symlink or hard link, so nothing is read from
//! anywhere but the layer's own bytes. Paths with control characters or `..` are not taken for
//! any of these: what is found here becomes interpreter paths and `#!` lines.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::layer::below::{DirMeta, LayerDirs};
use crate::layer::{Content, EntryKind, LayerTree};

/// One layer, as far as Python installs care. A registry layer cache records it beside the
/// layer, so that layers built on top need not download the layer to read it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LayerScan {
    pub dpkg_status: Option<String>,
    /// `<prefix>/conda-meta/python-<version>-<build>.json` → (prefix, version).
    pub conda_pythons: Vec<(String, String)>,
    /// `(site directory, distribution name, version)` of `.dist-info`/`.egg-info` directories.
    pub distributions: Vec<(String, String, String)>,
    /// What this layer holds of each `.dist-info` directory's METADATA and RECORD, by the
    /// directory's path: what replacing an installed distribution needs.
    pub dist_info_files: BTreeMap<String, DistInfoFiles>,
    /// `lib/python3.X` directories with the standard library (`os.py`), by prefix.
    pub stdlib_dirs: Vec<String>,
    pub musl: bool,
    /// Paths this layer deletes from below.
    pub whiteouts: Vec<String>,
    /// Directories whose contents from below this layer hides (opaque whiteouts).
    pub opaques: Vec<String>,
    /// `etc/passwd`, `etc/group`, `etc/shadow`, `etc/gshadow`, for `accounts` layers.
    pub account_files: std::collections::BTreeMap<String, String>,
    /// `(path, target)` of every symlink, path relative to `/`.
    pub symlinks: Vec<(String, String)>,
    /// Its directories, whiteouts and opaque directories, for the directories a layer on top
    /// implies.
    pub dirs: LayerDirs,
}

/// The parts of an installed distribution's `.dist-info` a `pip` layer on top needs. Required
/// in a registry cache's record: one written without them is not used (the layer is read).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DistInfoFiles {
    /// METADATA's header (up to the first blank line), None where not read (absent,
    /// not a regular file, not UTF-8, or over [`MAX_METADATA_BYTES`]).
    pub metadata: Option<String>,
    /// The paths RECORD lists, relative to the site directory, as written; None where not
    /// read (as METADATA), or not CSV.
    pub record: Option<Vec<String>>,
}

/// The most of a METADATA file a scan reads; its header ends long before (the description
/// follows it).
const MAX_METADATA_BYTES: u64 = 4 << 20;
/// The largest RECORD a scan reads (torch's, with its thousands of files, has about 2 MiB).
const MAX_RECORD_BYTES: u64 = 64 << 20;
/// The largest dpkg status or account file a scan reads.
const MAX_READ_BYTES: u64 = 512 << 20;

/// An installed distribution of the layers below, with its `.dist-info` facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub site: String,
    pub name: String,
    pub version: String,
    pub files: DistInfoFiles,
    /// Where it came from, for messages: a base image's reference, or a recipe's layer.
    pub origin: String,
}

/// The files whose content a scan reads.
const READ_PATHS: [&str; 5] = [
    "var/lib/dpkg/status",
    "etc/passwd",
    "etc/group",
    "etc/shadow",
    "etc/gshadow",
];

/// A layer member's name relative to `/`, without `./` or a trailing `/`; `..` and absolute
/// names are refused (an error naming the member), since extracting them writes outside.
pub(crate) fn member_path(raw: &str) -> io::Result<String> {
    if raw.starts_with('/') || raw.split('/').any(|p| p == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("member `{raw}` leaves the image root"),
        ));
    }
    Ok(raw
        .trim_start_matches("./")
        .trim_end_matches('/')
        .to_owned())
}

/// The checked name of a tar entry of a layer. A file whose content the scan reads must be a
/// regular file: a symlink's or hard link's content would come from elsewhere.
pub(crate) fn checked_member<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<String> {
    let raw = entry.path_bytes();
    let path = member_path(&String::from_utf8_lossy(&raw))?;
    let kind = entry.header().entry_type();
    if READ_PATHS.contains(&path.as_str()) && !(kind.is_file() || kind.is_contiguous()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "`/{path}` is a {}, not a regular file; oci-build reads it only from the layer's own bytes",
                if kind.is_symlink() {
                    "symlink"
                } else if kind.is_hard_link() {
                    "hard link"
                } else {
                    "special file"
                }
            ),
        ));
    }
    Ok(path)
}

/// The layers below, merged bottom to top.
#[derive(Clone, Debug, Default)]
pub struct PythonBase {
    pub dpkg_status: String,
    pub conda_pythons: Vec<(String, String)>,
    pub distributions: Vec<Installed>,
    pub stdlib_dirs: Vec<String>,
    pub musl: bool,
    /// The image config's environment (`PYTHON_VERSION` of python:3.x images).
    pub env: BTreeMap<String, String>,
    pub account_files: BTreeMap<String, String>,
    /// Symlinks of the layers below: path relative to `/` → target.
    pub symlinks: BTreeMap<String, String>,
}

impl PythonBase {
    /// `scans` bottom to top, each with where its layer came from (for messages).
    pub fn merge(scans: &[(std::sync::Arc<LayerScan>, String)], env: &[String]) -> PythonBase {
        let mut base = PythonBase::default();
        for (scan, origin) in scans {
            // What is recorded here is a directory's content (a site, a prefix, a standard
            // library) or a symlink, so an opaque directory hides what is recorded at it too.
            let removed = |path: &str| {
                scan.whiteouts
                    .iter()
                    .chain(&scan.opaques)
                    .any(|w| path == w || path.starts_with(&format!("{w}/")))
            };
            base.conda_pythons.retain(|(prefix, _)| !removed(prefix));
            base.distributions.retain(|d| {
                let stem = format!("{}/{}-{}", d.site, d.name, d.version);
                !scan.whiteouts.iter().any(|w| w.starts_with(&stem)) && !removed(&d.site)
            });
            base.stdlib_dirs.retain(|d| !removed(d));
            base.symlinks
                .retain(|path, _| !removed(&format!("/{path}")));
            base.symlinks.extend(scan.symlinks.iter().cloned());
            if let Some(status) = &scan.dpkg_status {
                base.dpkg_status = status.clone();
            }
            base.conda_pythons
                .extend(scan.conda_pythons.iter().cloned());
            base.distributions
                .extend(scan.distributions.iter().map(|(site, name, version)| {
                    // The `.dist-info` directory's path, as `see` recorded its files.
                    let files = scan
                        .dist_info_files
                        .get(&format!("{site}/{name}-{version}.dist-info"))
                        .cloned()
                        .unwrap_or_default();
                    Installed {
                        site: site.clone(),
                        name: name.clone(),
                        version: version.clone(),
                        files,
                        origin: origin.clone(),
                    }
                }));
            base.stdlib_dirs.extend(scan.stdlib_dirs.iter().cloned());
            base.musl |= scan.musl;
            base.account_files.extend(
                scan.account_files
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        for entry in env {
            if let Some((key, value)) = entry.split_once('=') {
                base.env.insert(key.to_owned(), value.to_owned());
            }
        }
        base
    }
}

fn kind_is_regular(kind: tar::EntryType) -> bool {
    kind.is_file() || kind.is_contiguous()
}

/// Reads at most `limit` bytes of UTF-8; more is an error.
fn read_capped(reader: &mut dyn Read, limit: u64) -> io::Result<String> {
    let mut text = String::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {limit} bytes"),
        ));
    }
    Ok(text)
}

impl LayerScan {
    /// `read(limit)` gives the member's content, an error where it is no regular file, is no
    /// UTF-8 or holds more than `limit` bytes.
    fn see(&mut self, path: &str, read: &mut dyn FnMut(u64) -> std::io::Result<String>) {
        let path = path.trim_start_matches("./").trim_end_matches('/');
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden != ".wh..opq" {
                self.whiteouts.push(if dir.is_empty() {
                    format!("/{hidden}")
                } else {
                    format!("/{dir}/{hidden}")
                });
            } else if !dir.is_empty() {
                self.opaques.push(format!("/{dir}"));
            }
            return;
        }
        // What is recorded below becomes interpreter paths, `#!` lines and site directories:
        // a name with a control character (a newline would add a line to every script) or a
        // `..` is none of the files looked for here.
        if path.chars().any(char::is_control) || path.split('/').any(|p| p == "..") {
            return;
        }
        if path == "var/lib/dpkg/status" {
            self.dpkg_status = read(MAX_READ_BYTES).ok();
        } else if matches!(
            path,
            "etc/passwd" | "etc/group" | "etc/shadow" | "etc/gshadow"
        ) {
            if let Ok(text) = read(MAX_READ_BYTES) {
                self.account_files.insert(path.to_owned(), text);
            }
        } else if let Some(prefix) = dir.strip_suffix("/conda-meta")
            && let Some(rest) = name.strip_prefix("python-")
            && let Some(rest) = rest.strip_suffix(".json")
            && rest.starts_with(|c: char| c.is_ascii_digit())
            && let Some(version) = rest
                .split('-')
                .next()
                .filter(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        {
            let version = version.to_owned();
            self.conda_pythons.push((format!("/{prefix}"), version));
        } else if let Some(stem) = name
            .strip_suffix(".dist-info")
            .or_else(|| name.strip_suffix(".egg-info"))
        {
            // `name-version` (a dist-info) or `name-version-pyX.Y` (an egg-info).
            let mut parts = stem.splitn(3, '-');
            if let (Some(dist), Some(version)) = (parts.next(), parts.next()) {
                self.distributions
                    .push((format!("/{dir}"), dist.to_owned(), version.to_owned()));
            }
        } else if dir.ends_with(".dist-info") && (name == "METADATA" || name == "RECORD") {
            let files = self.dist_info_files.entry(format!("/{dir}")).or_default();
            if name == "METADATA" {
                files.metadata = read(MAX_METADATA_BYTES).ok().map(|text| {
                    // The header only: the description after it is of no use here.
                    match text.find("\n\n") {
                        Some(end) => text[..=end].to_owned(),
                        None => text,
                    }
                });
            } else {
                files.record = read(MAX_RECORD_BYTES)
                    .ok()
                    .and_then(|text| super::wheel::parse_csv(&text).ok())
                    .map(|rows| {
                        rows.into_iter()
                            .filter_map(|row| row.into_iter().next())
                            .filter(|path| !path.is_empty())
                            .collect()
                    });
            }
        } else if name == "os.py"
            && dir
                .rsplit('/')
                .next()
                .is_some_and(|d| d.starts_with("python3."))
        {
            self.stdlib_dirs.push(format!("/{dir}"));
        } else if dir == "lib" && name.starts_with("ld-musl-") {
            self.musl = true;
        }
    }

    /// Whether a scan read from elsewhere (a registry layer cache's record) holds only what a
    /// scan of a layer can: no path with a control character or a `..`, which would become
    /// interpreter paths and `#!` lines.
    pub fn is_plausible(&self) -> bool {
        let fine =
            |path: &str| !path.chars().any(char::is_control) && !path.split('/').any(|p| p == "..");
        self.conda_pythons
            .iter()
            .all(|(prefix, version)| fine(prefix) && fine(version))
            && self
                .distributions
                .iter()
                .all(|(site, name, version)| fine(site) && fine(name) && fine(version))
            && self.dist_info_files.keys().all(|d| fine(d))
            && self.stdlib_dirs.iter().all(|d| fine(d))
            && self.whiteouts.iter().chain(&self.opaques).all(|p| fine(p))
            && self
                .symlinks
                .iter()
                .all(|(path, target)| fine(path) && !target.chars().any(char::is_control))
    }

    /// Scans an uncompressed layer tar. An error names the member at fault.
    pub fn of_tar(reader: impl Read) -> std::io::Result<LayerScan> {
        let mut scan = LayerScan::default();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = checked_member(&entry)?;
            let header = entry.header();
            let dir = header.entry_type().is_dir().then(|| DirMeta {
                mode: header.mode().unwrap_or(0o755) & 0o7777,
                // The tar reader has already applied PAX uid/gid records to the header.
                uid: header.uid().map_or(0, |id| u32::try_from(id).unwrap_or(0)),
                gid: header.gid().map_or(0, |id| u32::try_from(id).unwrap_or(0)),
            });
            scan.dirs.see(&path, dir);
            if entry.header().entry_type().is_symlink()
                && let Some(target) = entry.link_name_bytes()
            {
                let target = String::from_utf8_lossy(&target).into_owned();
                scan.symlinks.push((path.clone(), target));
            }
            let regular = kind_is_regular(entry.header().entry_type());
            scan.see(&path, &mut |limit| {
                if !regular {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "not a file"));
                }
                read_capped(&mut entry, limit)
            });
        }
        Ok(scan)
    }

    /// Scans a layer this run built, without reading it back.
    pub fn of_tree(tree: &LayerTree) -> LayerScan {
        let mut scan = LayerScan::default();
        for (path, entry) in tree.entries_with_parents() {
            let path = path.as_str().trim_start_matches('/').to_owned();
            // Named as the tar writer names them.
            let path = match entry.kind {
                EntryKind::Whiteout => match path.rsplit_once('/') {
                    Some((dir, name)) => format!("{dir}/.wh.{name}"),
                    None => format!(".wh.{path}"),
                },
                EntryKind::Opaque => format!("{path}/{}", crate::layer::below::OPAQUE),
                _ => path,
            };
            let dir = matches!(entry.kind, EntryKind::Directory).then_some(DirMeta {
                mode: entry.mode & 0o7777,
                uid: entry.uid,
                gid: entry.gid,
            });
            scan.dirs.see(&path, dir);
            if let EntryKind::Symlink { target } = &entry.kind {
                scan.symlinks.push((path.clone(), target.clone()));
            }
            let kind = entry.kind.clone();
            scan.see(&path, &mut |limit| match &kind {
                EntryKind::File {
                    content: Content::Inline(bytes),
                    ..
                } => Ok(String::from_utf8_lossy(bytes).into_owned()),
                EntryKind::File {
                    content: Content::Host { path, .. },
                    ..
                } => read_capped(&mut std::fs::File::open(path)?, limit),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not a file")),
            });
        }
        scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_from_elsewhere_with_control_characters_or_climbs_are_refused() {
        let mut scan = LayerScan::default();
        scan.see("usr/lib/python3.11/os.py", &mut |_| Ok(String::new()));
        scan.symlinks
            .push(("usr/bin/python3".into(), "../lib/python3.11".into()));
        assert!(scan.is_plausible());
        let mut bad = scan.clone();
        bad.stdlib_dirs.push("/usr/lib/python3.11\n/x".into());
        assert!(!bad.is_plausible());
        let mut bad = scan.clone();
        bad.distributions
            .push(("/usr/../etc".into(), "x".into(), "1".into()));
        assert!(!bad.is_plausible());
    }

    #[test]
    fn sees_pythons_distributions_and_whiteouts() {
        let mut lower = LayerScan::default();
        for path in [
            "usr/lib/python3.11/os.py",
            "usr/local/lib/python3.11/dist-packages/six-1.16.0.dist-info/",
            "usr/lib/python3/dist-packages/PyYAML-6.0-py3.11.egg-info",
            "opt/conda/conda-meta/python-3.11.9-h955ad1f_0.json",
            "opt/conda/conda-meta/python-dateutil-2.9.0-py_0.json",
            "opt/co\nnda/conda-meta/python-3.12.0-h0.json",
            "opt/../conda/conda-meta/python-3.12.0-h0.json",
            "opt/x/conda-meta/python-3.12\n-h0.json",
            "lib/ld-musl-x86_64.so.1",
        ] {
            lower.see(path, &mut |_| Ok(String::new()));
        }
        assert_eq!(
            lower.conda_pythons,
            [("/opt/conda".to_owned(), "3.11.9".to_owned())]
        );
        assert_eq!(lower.stdlib_dirs, ["/usr/lib/python3.11"]);
        assert!(lower.musl);
        let mut upper = LayerScan::default();
        upper.see(
            "usr/local/lib/python3.11/dist-packages/.wh.six-1.16.0.dist-info",
            &mut |_| Ok(String::new()),
        );
        let base = PythonBase::merge(
            &[
                (std::sync::Arc::new(lower), "base".to_owned()),
                (std::sync::Arc::new(upper), "layer 2".to_owned()),
            ],
            &["PYTHON_VERSION=3.11.9".to_owned()],
        );
        let found: Vec<(&str, &str, &str, &str)> = base
            .distributions
            .iter()
            .map(|d| (&*d.site, &*d.name, &*d.version, &*d.origin))
            .collect();
        assert_eq!(
            found,
            [("/usr/lib/python3/dist-packages", "PyYAML", "6.0", "base")]
        );
        assert_eq!(base.env["PYTHON_VERSION"], "3.11.9");

        // An opaque directory hides what lower layers installed under it.
        let mut replaced = LayerScan::default();
        replaced.see("usr/lib/python3/dist-packages/.wh..wh..opq", &mut |_| {
            Ok(String::new())
        });
        let base = PythonBase::merge(
            &[
                (std::sync::Arc::new(lower_again()), String::new()),
                (std::sync::Arc::new(replaced), String::new()),
            ],
            &[],
        );
        assert!(base.distributions.is_empty(), "{:?}", base.distributions);
    }

    /// METADATA's header and RECORD's paths are read from a layer's tar and from a tree alike;
    /// a RECORD that is a symlink (its content would come from elsewhere) is not read.
    #[test]
    fn reads_what_replacing_an_installed_distribution_needs() {
        use crate::layer::ImagePath;
        use crate::source::tree_util::{inline_file, symlink};
        let site = "usr/local/lib/python3.11/dist-packages";
        let mut tree = LayerTree::default();
        let mut put = |path: String, entry| tree.insert(ImagePath::new(&path).unwrap(), entry);
        put(
            format!("{site}/dep-2.0.dist-info/METADATA"),
            inline_file(
                "Metadata-Version: 2.1\nName: dep\nVersion: 2.0\nRequires-Dist: six>=1\n\nRequires-Dist: not-a-header\n",
                0o644,
            ),
        );
        put(
            format!("{site}/dep-2.0.dist-info/RECORD"),
            inline_file(
                "dep/__init__.py,sha256=x,3\n\"dep/a,b.py\",,\n../../../bin/dep,,\n",
                0o644,
            ),
        );
        put(
            format!("{site}/evil-1.0.dist-info/RECORD"),
            symlink("/etc/passwd"),
        );
        let tar = crate::layer::tarball::write_tar(&tree, 0, Vec::new(), &mut |_| {}).unwrap();
        for scan in [
            LayerScan::of_tar(&tar[..]).unwrap(),
            LayerScan::of_tree(&tree),
        ] {
            let base = PythonBase::merge(&[(std::sync::Arc::new(scan), "base".to_owned())], &[]);
            let dep = base.distributions.iter().find(|d| d.name == "dep").unwrap();
            assert_eq!(
                dep.files.metadata.as_deref(),
                Some("Metadata-Version: 2.1\nName: dep\nVersion: 2.0\nRequires-Dist: six>=1\n")
            );
            assert_eq!(
                dep.files.record.as_deref(),
                Some(&["dep/__init__.py", "dep/a,b.py", "../../../bin/dep"].map(String::from)[..])
            );
            let evil = base
                .distributions
                .iter()
                .find(|d| d.name == "evil")
                .unwrap();
            assert_eq!(evil.files.record, None);
        }
    }

    fn lower_again() -> LayerScan {
        let mut lower = LayerScan::default();
        lower.see(
            "usr/lib/python3/dist-packages/PyYAML-6.0-py3.11.egg-info",
            &mut |_| Ok(String::new()),
        );
        lower
    }

    /// The directories of a layer read back from its tar (a base from a registry or layout)
    /// are those of the tree it was written from: an implied `home/u` on top keeps 1000:100
    /// 0750 either way, and the one a later layer replaces by a symlink gets the defaults.
    #[test]
    fn directories_below_are_the_same_from_a_tar_and_from_a_tree() {
        use crate::layer::below::DirsBelow;
        use crate::layer::{Entry, ImagePath};
        let mut lower = LayerTree::default();
        let dir = |mode, uid, gid| Entry {
            kind: EntryKind::Directory,
            mode,
            uid,
            gid,
        };
        lower.insert(ImagePath::new("/home/u").unwrap(), dir(0o750, 1000, 100));
        // Large ids go in PAX records.
        lower.insert(
            ImagePath::new("/home/big").unwrap(),
            dir(0o700, 4_000_000, 4_000_001),
        );
        lower.insert(ImagePath::new("/lib").unwrap(), dir(0o700, 0, 0));
        let mut upper = LayerTree::default();
        upper.insert(
            ImagePath::new("/lib").unwrap(),
            Entry {
                kind: EntryKind::Symlink {
                    target: "usr/lib".to_owned(),
                },
                mode: 0o777,
                uid: 0,
                gid: 0,
            },
        );
        let tar = |tree: &LayerTree| {
            crate::layer::tarball::write_tar(tree, 0, Vec::new(), &mut |_| {}).unwrap()
        };
        let from_tar = [
            LayerScan::of_tar(&tar(&lower)[..]).unwrap(),
            LayerScan::of_tar(&tar(&upper)[..]).unwrap(),
        ];
        let from_tree = [LayerScan::of_tree(&lower), LayerScan::of_tree(&upper)];
        for scans in [from_tar, from_tree] {
            let mut below = DirsBelow::default();
            for scan in &scans {
                below.apply(&scan.dirs);
            }
            let mut top = LayerTree::default();
            for path in ["/home/u/x", "/home/big/x", "/lib/x"] {
                top.insert(ImagePath::new(path).unwrap(), dir(0o755, 0, 0));
            }
            top.inherit_implied(|p| below.dir(p));
            let written: Vec<(String, u32, u32, u32)> = top
                .entries_with_parents()
                .into_iter()
                .filter(|(p, _)| top.get(p).is_none())
                .map(|(p, e)| (p.as_str().to_owned(), e.mode, e.uid, e.gid))
                .collect();
            let expected = [
                ("home", 0o755, 0, 0),
                ("home/big", 0o700, 4_000_000, 4_000_001),
                ("home/u", 0o750, 1000, 100),
                ("lib", 0o755, 0, 0),
            ];
            let expected: Vec<(String, u32, u32, u32)> = expected
                .iter()
                .map(|&(p, m, u, g)| (p.to_owned(), m, u, g))
                .collect();
            assert_eq!(written, expected);
        }
    }
}
