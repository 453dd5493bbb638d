//! Installing chosen packages into a layer tree, as dpkg would leave them.
//!
//! Each `.deb` is downloaded once into the cache (cut at the size and checked against the
//! SHA256 of its index stanza) and extracted once into `debs-v2/<sha256>/`. The layer gets every data entry with the
//! package's own modes and owners, plus what dpkg itself writes (`/var/lib/dpkg/status` for all
//! packages of the image so far, `info/<pkg>.list`, `.md5sums`, `.conffiles`, maintainer
//! scripts) and what the maintainer scripts of a base image would have made. Those scripts are
//! not run (that needs root and the target's CPU); their effects are emulated natively:
//!
//! - base-passwd: `/etc/passwd` and `/etc/group` from its master files;
//! - update-alternatives `--install` lines of postinst scripts: the highest priority wins;
//! - ca-certificates: `/etc/ssl/certs/ca-certificates.crt` from the shipped certificates;
//! - tzdata: `/etc/localtime` and `/etc/timezone` set to UTC.
//!
//! Members are placed where dpkg would write them: their directories followed through the
//! symlinks of earlier packages, of the same package and of the layers below (`/bin` →
//! `usr/bin` of a merged-/usr base), so that no layer carries a symlink and then a path through
//! it. A symlink that leads to the image root itself or out of it is never followed: the member
//! is refused, as is a hard link whose target is not a regular file of its own package.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::LockedDeb;
use super::deb::{self, DebEntry, DebEntryKind, ExtractedDeb};
use super::deb822::Stanza;
use crate::digest::HashingWriter;
use crate::http;
use crate::layer::cache::{Bucket, Cache};
use crate::layer::{Content, Entry, EntryKind, FileStamp, ImagePath, LayerTree};
use crate::source::tree_util::{inline_file as inline, symlink};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: http::TransferError,
    },
    #[error("cannot download {url}: no archive is configured")]
    NoArchive { url: String },
    #[error(
        "{url} is {found} bytes or more, larger than the {expected} bytes its index entry states; it was refused"
    )]
    LargerThanIndex {
        url: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "{url} does not match the SHA256 of its index entry (expected {expected}, got {found}); the archive or a proxy is serving a different file"
    )]
    Checksum {
        url: String,
        expected: String,
        found: String,
    },
    #[error("package {package}")]
    Deb {
        package: String,
        #[source]
        source: deb::DebError,
    },
    #[error(
        "package {package}: its dpkg database file `{file}` {fault} (made of the package's name and architecture and a control file's name); refusing to install it"
    )]
    InfoName {
        package: String,
        file: String,
        fault: crate::name::NameFault,
    },
    #[error("package {package}: member `{member}` {reason}; refusing to install it")]
    Unsafe {
        package: String,
        member: String,
        reason: String,
    },
    #[error("package {package}: member `{member}` is refused")]
    MemberPath {
        package: String,
        member: String,
        #[source]
        source: crate::layer::ImagePathError,
    },
    #[error(transparent)]
    Cache(#[from] crate::layer::cache::CacheError),
    #[error("cannot store an extracted package in the cache")]
    Io(#[source] io::Error),
}

/// Downloads (or finds in the cache) a package file, verified against its pinned SHA256, from
/// the first of `bases` (archive base URIs) that has it.
pub(crate) fn fetch(
    client: &reqwest::blocking::Client,
    cache: &Cache,
    package: &LockedDeb,
    bases: &[String],
) -> Result<PathBuf, InstallError> {
    let first_url = format!(
        "{}/{}",
        bases.first().map_or("", String::as_str),
        package.filename
    );
    let expected = &package.sha256;
    let path = cache.blob_path(expected);
    if fs::metadata(&path).is_ok_and(|m| m.len() == package.size) {
        return Ok(path);
    }
    let mut last_error = InstallError::NoArchive { url: first_url };
    for base in bases {
        let url = format!("{base}/{}", package.filename);
        let fail = |source| InstallError::Download {
            url: http::redact(&url),
            source,
        };
        let started = std::time::Instant::now();
        // Each try downloads into a fresh temporary file; a failed one's is dropped.
        let fetched = http::retry(&url, http::ATTEMPTS, |_| {
            let mut response = http::get(client, &url).map_err(|f| f.map(fail))?;
            if !response.status().is_success() {
                return Err(http::Failed::Permanent(fail(http::TransferError::Status(
                    response.status(),
                ))));
            }
            let content_length = response.content_length();
            let temp = cache
                .temp_file()
                .map_err(|e| http::Failed::Permanent(e.into()))?;
            let file = temp
                .reopen()
                .map_err(|e| http::Failed::Permanent(InstallError::Io(e)))?;
            let mut writer = HashingWriter::new(io::BufWriter::new(file));
            // One byte more than the index states is enough to refuse the file.
            io::copy(
                &mut io::Read::take(&mut response, package.size.saturating_add(1)),
                &mut writer,
            )
            .map_err(|e| http::read_failure(e).map(fail))?;
            let (buffered, found, size) = writer.finish();
            buffered
                .into_inner()
                .map_err(|e| http::Failed::Permanent(InstallError::Io(e.into_error())))?;
            Ok((temp, found, size, content_length))
        });
        let (temp, found, size, content_length) = match fetched {
            Ok(fetched) => fetched,
            // This archive failed to give it; the next may have it.
            Err(error @ InstallError::Download { .. }) => {
                last_error = error;
                continue;
            }
            Err(error) => return Err(error),
        };
        if size > package.size {
            return Err(InstallError::LargerThanIndex {
                url: http::redact(&url),
                expected: package.size,
                found: content_length.unwrap_or(size).max(size),
            });
        }
        if &found != expected {
            return Err(InstallError::Checksum {
                url: http::redact(&url),
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
        tracing::debug!(
            package = package.name,
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            "downloaded"
        );
        return Ok(cache.commit_blob(temp, expected)?);
    }
    Err(last_error)
}

/// Whether the package is extracted in the cache already (a look, not a check: whoever
/// uses it reads and checks its listing).
pub(crate) fn is_extracted(cache: &Cache, package: &LockedDeb) -> bool {
    cache
        .bucket(Bucket::Debs)
        .join(package.sha256.hex())
        .join("listing.json")
        .is_file()
}

/// Extracts a package into the cache once; returns its directory and listing.
pub(crate) fn extract_cached(
    cache: &Cache,
    deb_path: &Path,
    package: &LockedDeb,
) -> Result<(PathBuf, ExtractedDeb), InstallError> {
    let sha256 = package.sha256.hex();
    let dir = cache.bucket(Bucket::Debs).join(sha256);
    let listing = dir.join("listing.json");
    if let Ok(bytes) = fs::read(&listing)
        && let Ok(extracted) = serde_json::from_slice::<ExtractedDeb>(&bytes)
    {
        return Ok((dir, extracted));
    }
    let parent = cache.bucket(Bucket::Debs);
    fs::create_dir_all(&parent).map_err(InstallError::Io)?;
    let temp = tempfile::tempdir_in(&parent).map_err(InstallError::Io)?;
    let extracted = deb::extract(deb_path, &package.sha256, temp.path()).map_err(|source| {
        InstallError::Deb {
            package: package.label(),
            source,
        }
    })?;
    fs::write(
        temp.path().join("listing.json"),
        serde_json::to_vec(&extracted).expect("listing serialises"),
    )
    .map_err(InstallError::Io)?;
    crate::fsutil::publish_dir(temp, &dir);
    Ok((dir, extracted))
}

/// Paths the installer makes of fixed names, or of names checked first (`info_path`).
fn path(p: &str) -> ImagePath {
    ImagePath::new(p).expect("paths written by the installer are valid")
}

/// `var/lib/dpkg/info/<file>`, where `file` holds the package's name and architecture (from an
/// index or the lock file) and a control file's name (from the cached listing): all outside
/// input, so `file` must be one plain name.
fn info_path(package: &LockedDeb, file: &str) -> Result<ImagePath, InstallError> {
    crate::name::FileName::new(file).map_err(|fault| InstallError::InfoName {
        package: crate::name::Shown(&package.label()).to_string(),
        file: crate::name::Shown(file).to_string(),
        fault,
    })?;
    Ok(path(&format!("var/lib/dpkg/info/{file}")))
}

/// One package ready to go into a layer.
pub(crate) struct Unpacked {
    pub deb: LockedDeb,
    pub dir: PathBuf,
    pub extracted: ExtractedDeb,
}

/// The dpkg status stanza of an installed package: its control fields, with Status after the
/// name (download fields, should an index stanza be given, are left out).
pub(crate) fn status_stanza(stanza: &Stanza) -> String {
    const DROPPED: [&str; 6] = [
        "Filename",
        "Size",
        "MD5sum",
        "SHA256",
        "Description-md5",
        "SHA1",
    ];
    let mut out = String::new();
    for (name, value) in stanza.fields() {
        if DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            continue;
        }
        let mut line = format!("{name}: {value}");
        line = line.replace('\n', "\n ");
        out.push_str(&line);
        out.push('\n');
        if name.eq_ignore_ascii_case("Package") {
            out.push_str("Status: install ok installed\n");
        }
    }
    out
}

/// Fills `tree` with `packages` and the dpkg database. `status_below` is the dpkg status of the
/// layers underneath (empty for the first Debian layer); `links_below` their symlinks (path
/// without the leading `/` → target). Returns the new status.
pub(crate) fn install(
    tree: &mut LayerTree,
    packages: &[Unpacked],
    status_below: &str,
    links_below: &BTreeMap<String, String>,
) -> Result<String, InstallError> {
    let mut placement = Placement {
        links_below,
        placed: BTreeMap::new(),
        hardlinks: Vec::new(),
    };
    for unpacked in packages {
        placement.place_package(unpacked)?;
    }
    placement.check_hardlinks()?;
    for (p, entry) in placement.placed {
        tree.insert(p, entry);
    }
    let status = write_dpkg_database(tree, packages, status_below)?;
    emulate_maintainer_scripts(tree, packages);
    Ok(status)
}

/// Where the packages' members go, in package order, before any of them enters the tree.
struct Placement<'a> {
    links_below: &'a BTreeMap<String, String>,
    placed: BTreeMap<ImagePath, Entry>,
    /// (hard link, its target, package): checked once every package is in, since a later
    /// package may replace the target.
    hardlinks: Vec<(ImagePath, ImagePath, String)>,
}

/// The package whose members are being placed.
struct Placing<'u> {
    package: String,
    files: PathBuf,
    /// Where this package's own paths went, for its hard links.
    own: BTreeMap<&'u str, ImagePath>,
}

impl Placing<'_> {
    fn refuse(&self, entry: &DebEntry, why: Misplaced) -> InstallError {
        match why {
            Misplaced::Reason(reason) => InstallError::Unsafe {
                package: self.package.clone(),
                member: format!("/{}", entry.path),
                reason,
            },
            Misplaced::Path(source) => InstallError::MemberPath {
                package: self.package.clone(),
                member: format!("/{}", entry.path),
                source,
            },
        }
    }
}

impl Placement<'_> {
    fn place_package(&mut self, unpacked: &Unpacked) -> Result<(), InstallError> {
        let mut placing = Placing {
            package: unpacked.deb.label(),
            files: deb::files_dir(&unpacked.dir),
            own: BTreeMap::new(),
        };
        for entry in &unpacked.extracted.entries {
            self.place_member(&mut placing, entry)?;
        }
        Ok(())
    }

    fn place_member<'u>(
        &mut self,
        placing: &mut Placing<'u>,
        entry: &'u DebEntry,
    ) -> Result<(), InstallError> {
        // The listing comes from the cache, so it is checked as any outside input is.
        let member =
            ImagePath::new(&entry.path).map_err(|e| placing.refuse(entry, Misplaced::Path(e)))?;
        let is_dir = matches!(entry.kind, DebEntryKind::Directory);
        let at = |p: &str| symlink_at(&self.placed, self.links_below, p);
        let Some(target_path) =
            place(&member, is_dir, &at).map_err(|why| placing.refuse(entry, why))?
        else {
            // A directory where a symlink is: dpkg keeps the symlink.
            return Ok(());
        };
        let kind = match &entry.kind {
            DebEntryKind::Directory => EntryKind::Directory,
            DebEntryKind::File { size } => {
                let host = placing.files.join(member.as_str());
                let stamp = FileStamp::of(&host);
                EntryKind::File {
                    content: Content::Host { path: host, stamp },
                    size: *size,
                }
            }
            DebEntryKind::Symlink { target } => EntryKind::Symlink {
                target: target.clone(),
            },
            DebEntryKind::Hardlink { target } => {
                let Some(placed_target) = placing.own.get(target.as_str()) else {
                    return Err(placing.refuse(
                        entry,
                        Misplaced::Reason(format!(
                            "is a hard link to `/{target}`, which the package does not hold"
                        )),
                    ));
                };
                self.hardlinks.push((
                    target_path.clone(),
                    placed_target.clone(),
                    placing.package.clone(),
                ));
                EntryKind::Hardlink {
                    target: placed_target.clone(),
                }
            }
        };
        placing.own.insert(entry.path.as_str(), target_path.clone());
        let image_entry = Entry {
            kind,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
        };
        // Directories shared by packages keep the first package's metadata, as dpkg does.
        if is_dir && self.placed.contains_key(&target_path) {
            return Ok(());
        }
        // dpkg leaves a directory where a package ships a symlink; replacing it here would
        // put the symlink before the paths already placed under it.
        if matches!(image_entry.kind, EntryKind::Symlink { .. })
            && holds_directory(&self.placed, &target_path)
        {
            return Ok(());
        }
        self.placed.insert(target_path, image_entry);
        Ok(())
    }

    fn check_hardlinks(&mut self) -> Result<(), InstallError> {
        for (link, target, package) in std::mem::take(&mut self.hardlinks) {
            if !matches!(
                self.placed.get(&target).map(|e| &e.kind),
                Some(EntryKind::File { .. })
            ) {
                return Err(InstallError::Unsafe {
                    package,
                    member: link.to_string(),
                    reason: format!(
                        "is a hard link to {target}, which is no longer a regular file"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The dpkg database: each package's `info/` files and the status of all packages so far.
fn write_dpkg_database(
    tree: &mut LayerTree,
    packages: &[Unpacked],
    status_below: &str,
) -> Result<String, InstallError> {
    let mut status = status_below.trim_end().to_owned();
    for unpacked in packages {
        write_info_files(tree, unpacked)?;
        if !status.is_empty() {
            status.push_str("\n\n");
        }
        // dpkg records a package's own control file, not the index stanza.
        let control = super::deb822::parse(unpacked.extracted.control())
            .ok()
            .and_then(|mut stanzas| stanzas.pop())
            .unwrap_or_default();
        status.push_str(status_stanza(&control).trim_end());
    }
    status.push('\n');
    tree.insert(path("var/lib/dpkg/status"), inline(status.clone(), 0o644));
    for empty in ["var/lib/dpkg/diversions", "var/lib/dpkg/statoverride"] {
        if tree.get(&path(empty)).is_none() {
            tree.insert(path(empty), inline(Vec::new(), 0o644));
        }
    }
    Ok(status)
}

/// `info/<pkg>.list` and the package's control files but `control` as `info/<pkg>.<name>`.
fn write_info_files(tree: &mut LayerTree, unpacked: &Unpacked) -> Result<(), InstallError> {
    let name = &unpacked.deb.name;
    let info_name = if unpacked.deb.multi_arch.as_deref() == Some("same") {
        format!("{name}:{}", unpacked.deb.architecture)
    } else {
        name.clone()
    };
    let mut list = String::from("/.\n");
    for entry in &unpacked.extracted.entries {
        list.push('/');
        list.push_str(&entry.path);
        list.push('\n');
    }
    tree.insert(
        info_path(&unpacked.deb, &format!("{info_name}.list"))?,
        inline(list, 0o644),
    );
    for control_name in unpacked.extracted.control_files.keys() {
        let mode = if matches!(
            control_name.as_str(),
            "preinst" | "postinst" | "prerm" | "postrm" | "config"
        ) {
            0o755
        } else {
            0o644
        };
        if control_name == "control" {
            continue;
        }
        let host = unpacked.dir.join("control").join(control_name);
        let size = fs::metadata(&host).map_or(0, |m| m.len());
        tree.insert(
            info_path(&unpacked.deb, &format!("{info_name}.{control_name}"))?,
            Entry {
                kind: EntryKind::File {
                    content: Content::Host {
                        stamp: FileStamp::of(&host),
                        path: host,
                    },
                    size,
                },
                mode,
                uid: 0,
                gid: 0,
            },
        );
    }
    Ok(())
}

/// The target of the symlink at `path` as the layer so far leaves it: this layer's entry if it
/// has one there, else the layers below.
fn symlink_at(
    placed: &BTreeMap<ImagePath, Entry>,
    below: &BTreeMap<String, String>,
    path: &str,
) -> Option<String> {
    let here = ImagePath::new(path).ok()?;
    match placed.get(&here) {
        Some(Entry {
            kind: EntryKind::Symlink { target },
            ..
        }) => Some(target.clone()),
        Some(_) => None,
        None => below.get(here.as_str()).cloned(),
    }
}

/// Whether the layer so far has a directory at `path`, named or implied by a path under it.
fn holds_directory(placed: &BTreeMap<ImagePath, Entry>, path: &ImagePath) -> bool {
    let below = format!("{}/", path.as_str());
    // Keys starting with `path` sort together, those under it among them.
    placed
        .range(path.clone()..)
        .take_while(|(p, _)| p.as_str().starts_with(path.as_str()))
        .any(|(p, e)| {
            (p == path && matches!(e.kind, EntryKind::Directory)) || p.as_str().starts_with(&below)
        })
}

/// Symlinks followed for one path at most, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

/// Why a member cannot be placed: a reason in words ([`follow`]'s), or the path it leads to.
enum Misplaced {
    Reason(String),
    Path(crate::layer::ImagePathError),
}

impl From<String> for Misplaced {
    fn from(reason: String) -> Self {
        Misplaced::Reason(reason)
    }
}

/// Where dpkg writes `member`: its directories followed through symlinks (`symlink_at`), inside
/// the image root. `None` for a directory where a symlink already is. The error says why the
/// member cannot be placed.
fn place(
    member: &ImagePath,
    is_dir: bool,
    symlink_at: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ImagePath>, Misplaced> {
    let mut dirs = Vec::new();
    let mut hops = 0;
    if let Some(parent) = member.parent() {
        follow(&mut dirs, parent.as_str(), None, &mut hops, symlink_at)?;
    }
    dirs.push(member.file_name().to_owned());
    let placed = ImagePath::new(&dirs.join("/")).map_err(Misplaced::Path)?;
    if is_dir && symlink_at(placed.as_str()).is_some() {
        return Ok(None);
    }
    Ok(Some(placed))
}

/// Walks `parts` from the directory `dirs` (components below the root), following every
/// symlink met. `via` is the symlink whose target `parts` is, for the error.
fn follow(
    dirs: &mut Vec<String>,
    parts: &str,
    via: Option<(&str, &str)>,
    hops: &mut u32,
    symlink_at: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for part in parts.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if dirs.pop().is_none() {
                    return Err(match via {
                        Some((link, target)) => format!(
                            "goes through symlink `/{link}` -> `{target}`, which leads out of the image root"
                        ),
                        None => "climbs out of the image root".to_owned(),
                    });
                }
            }
            name => {
                dirs.push(name.to_owned());
                let here = dirs.join("/");
                let Some(target) = symlink_at(&here) else {
                    continue;
                };
                *hops += 1;
                if *hops > MAX_SYMLINKS {
                    return Err(format!(
                        "goes through more than {MAX_SYMLINKS} symlinks (a loop at `/{here}`?)"
                    ));
                }
                dirs.pop();
                let mut resolved = if target.starts_with('/') {
                    Vec::new()
                } else {
                    dirs.clone()
                };
                follow(
                    &mut resolved,
                    &target,
                    Some((&here, &target)),
                    hops,
                    symlink_at,
                )?;
                // A directory symlink to `/` is how `usr/lib/x -> /` writes anywhere: never
                // followed, though a chroot would stay inside.
                if resolved.is_empty() {
                    return Err(format!(
                        "goes through symlink `/{here}` -> `{target}`, which leads to the image root"
                    ));
                }
                *dirs = resolved;
            }
        }
    }
    Ok(())
}

fn host_file_text(tree: &LayerTree, p: &str) -> Option<String> {
    match &tree.get(&path(p))?.kind {
        EntryKind::File {
            content: Content::Host { path, .. },
            ..
        } => fs::read_to_string(path).ok(),
        EntryKind::File {
            content: Content::Inline(bytes),
            ..
        } => String::from_utf8(bytes.to_vec()).ok(),
        _ => None,
    }
}

fn emulate_maintainer_scripts(tree: &mut LayerTree, packages: &[Unpacked]) {
    let installed = |name: &str| packages.iter().any(|p| p.deb.name == name);

    if installed("base-passwd") {
        for (master, target) in [("passwd", "etc/passwd"), ("group", "etc/group")] {
            if let Some(text) =
                host_file_text(tree, &format!("usr/share/base-passwd/{master}.master"))
            {
                tree.insert(path(target), inline(text, 0o644));
            }
        }
        // Shadow files exist (empty of passwords) so tools that read them do not fail.
        tree.insert(path("etc/shadow"), inline(Vec::new(), 0o640));
        tree.insert(path("etc/gshadow"), inline(Vec::new(), 0o640));
    }

    if installed("ca-certificates") {
        let mut bundle = Vec::new();
        let mut names = Vec::new();
        let certs: Vec<(ImagePath, PathBuf)> = packages
            .iter()
            .flat_map(|p| {
                p.extracted
                    .entries
                    .iter()
                    .filter(|e| {
                        e.path.starts_with("usr/share/ca-certificates/") && e.path.ends_with(".crt")
                    })
                    // `install` refused any member path that is not one before this runs.
                    .map(|e| (path(&e.path), deb::files_dir(&p.dir).join(&e.path)))
            })
            .collect();
        for (image_path, host) in certs {
            if let Ok(pem) = fs::read(&host) {
                bundle.extend_from_slice(&pem);
                if !pem.ends_with(b"\n") {
                    bundle.push(b'\n');
                }
                names.push(
                    image_path
                        .as_str()
                        .trim_start_matches("usr/share/ca-certificates/")
                        .to_owned(),
                );
            }
        }
        tree.insert(
            path("etc/ssl/certs/ca-certificates.crt"),
            inline(bundle, 0o644),
        );
        let mut conf =
            String::from("# Generated by oci-build in place of ca-certificates' postinst.\n");
        for name in names {
            conf.push_str(&name);
            conf.push('\n');
        }
        tree.insert(path("etc/ca-certificates.conf"), inline(conf, 0o644));
    }

    if installed("tzdata") {
        tree.insert(
            path("etc/localtime"),
            symlink("/usr/share/zoneinfo/Etc/UTC"),
        );
        tree.insert(path("etc/timezone"), inline("Etc/UTC\n", 0o644));
    }

    // update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...
    // Per alternative name: the winning priority and its (link, name, target) master and slaves.
    type LinkGroup = Vec<(String, String, String)>;
    let mut alternatives: BTreeMap<String, (i64, LinkGroup)> = BTreeMap::new();
    for package in packages {
        let Some(script) = package.extracted.control_files.get("postinst") else {
            continue;
        };
        let joined = script.replace("\\\n", " ");
        for line in joined.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .map(|w| w.trim_matches(['"', '\'']))
                .collect();
            let Some(at) = words.iter().position(|w| *w == "--install") else {
                continue;
            };
            if !words.iter().any(|w| w.ends_with("update-alternatives")) || words.len() < at + 5 {
                continue;
            }
            let (link, name, target) = (words[at + 1], words[at + 2], words[at + 3]);
            let Ok(priority) = words[at + 4].parse::<i64>() else {
                continue;
            };
            if [link, name, target].iter().any(|w| w.contains('$')) {
                continue;
            }
            let mut group = vec![(link.to_owned(), name.to_owned(), target.to_owned())];
            let mut i = at + 5;
            while i + 3 < words.len() && words[i] == "--slave" {
                group.push((
                    words[i + 1].to_owned(),
                    words[i + 2].to_owned(),
                    words[i + 3].to_owned(),
                ));
                i += 4;
            }
            let best = alternatives
                .entry(name.to_owned())
                .or_insert((i64::MIN, Vec::new()));
            if priority > best.0 {
                *best = (priority, group);
            }
        }
    }
    for (_, (_, group)) in alternatives {
        for (link, name, target) in group {
            if let (Ok(link_path), Ok(alt_path)) = (
                ImagePath::new(&link),
                ImagePath::new(&format!("etc/alternatives/{name}")),
            ) {
                tree.insert(alt_path, symlink(&target));
                tree.insert(link_path, symlink(&format!("/etc/alternatives/{name}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::debian::deb822;

    fn unpacked(name: &str, arch: &str, control_file: &str) -> Unpacked {
        Unpacked {
            deb: LockedDeb {
                name: name.to_owned(),
                version: "1.0".to_owned(),
                architecture: arch.to_owned(),
                multi_arch: Some("same".to_owned()),
                filename: "pool/main/d/demo/demo_1.0_amd64.deb".to_owned(),
                size: 1,
                sha256: crate::digest::Digest::of_bytes(b"deb"),
            },
            dir: PathBuf::from("/nonexistent"),
            extracted: ExtractedDeb {
                control_files: [
                    ("control".to_owned(), format!("Package: {name}\n")),
                    (control_file.to_owned(), String::new()),
                ]
                .into(),
                entries: Vec::new(),
            },
        }
    }

    /// A package name or architecture (from an index or the lock) or a control file's name
    /// (from the cached listing) that is no plain name: with `..` its `var/lib/dpkg/info/` path
    /// panicked, with `/` it landed elsewhere; now the package is refused by name.
    #[test]
    fn a_hostile_name_for_the_dpkg_database_is_refused() {
        for (name, arch, control_file) in [
            ("../../../x", "amd64", "md5sums"),
            ("demo", "../../../../x", "md5sums"),
            ("demo", "amd64", "../../../../x"),
            ("demo", "amd64", "a/b"),
            ("de\nmo", "amd64", "md5sums"),
        ] {
            let mut tree = LayerTree::default();
            let error = install(
                &mut tree,
                &[unpacked(name, arch, control_file)],
                "",
                &BTreeMap::new(),
            )
            .unwrap_err();
            let text = error.to_string();
            assert!(matches!(error, InstallError::InfoName { .. }), "{text}");
            assert!(text.contains("dpkg database file"), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
        let mut tree = LayerTree::default();
        install(
            &mut tree,
            &[unpacked("demo", "amd64", "md5sums")],
            "",
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(
            tree.get(&path("var/lib/dpkg/info/demo:amd64.md5sums"))
                .is_some()
        );
    }

    /// `place` with the symlinks of `links` (path → target).
    fn placed(
        member: &str,
        is_dir: bool,
        links: &[(&str, &str)],
    ) -> Result<Option<String>, String> {
        let links: BTreeMap<String, String> = links
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        let at = |p: &str| links.get(p).cloned();
        place(&path(member), is_dir, &at)
            .map(|p| p.map(|p| p.as_str().to_owned()))
            .map_err(|why| match why {
                Misplaced::Reason(reason) => reason,
                Misplaced::Path(error) => error.to_string(),
            })
    }

    #[test]
    fn members_follow_symlinks_inside_the_root() {
        // A merged-/usr base: dpkg writes `/bin/sh` into `/usr/bin`.
        let usrmerge = [("bin", "usr/bin"), ("lib64", "/usr/lib64")];
        assert_eq!(
            placed("bin/sh", false, &usrmerge).unwrap().unwrap(),
            "usr/bin/sh"
        );
        assert_eq!(
            placed("lib64/ld.so", false, &usrmerge).unwrap().unwrap(),
            "usr/lib64/ld.so"
        );
        // The directory entry `./bin/` leaves the symlink as it is.
        assert_eq!(placed("bin", true, &usrmerge).unwrap(), None);
        // A symlink member replaces what is at its own name, so it is not followed.
        assert_eq!(placed("bin", false, &usrmerge).unwrap().unwrap(), "bin");
        // `..` inside the root is fine.
        let relative = [("usr/lib/x", "../share/x")];
        assert_eq!(
            placed("usr/lib/x/f", false, &relative).unwrap().unwrap(),
            "usr/share/x/f"
        );
    }

    #[test]
    fn a_symlink_does_not_replace_a_directory_already_placed() {
        let dir = Entry {
            kind: EntryKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        let mut placed = BTreeMap::new();
        placed.insert(path("opt/out-x"), dir.clone());
        assert!(!holds_directory(&placed, &path("opt/out")));
        placed.insert(path("opt/out/keep.txt"), inline("x", 0o644));
        assert!(holds_directory(&placed, &path("opt/out")));
        assert!(!holds_directory(&placed, &path("opt/out/keep.txt")));
        placed.insert(path("srv"), dir);
        assert!(holds_directory(&placed, &path("srv")));
    }

    #[test]
    fn symlinks_to_the_root_or_out_of_it_are_never_followed() {
        let error = placed("usr/lib/escape/file", false, &[("usr/lib/escape", "/")]).unwrap_err();
        assert!(error.contains("`/usr/lib/escape` -> `/`"), "{error}");
        assert!(error.contains("leads to the image root"), "{error}");
        let error = placed("x/etc/passwd", false, &[("x", "../../..")]).unwrap_err();
        assert!(error.contains("leads out of the image root"), "{error}");
        // Through a chain: the link that climbs out is named.
        let chain = [("a", "b/c"), ("b/c", "../../../etc")];
        let error = placed("a/passwd", false, &chain).unwrap_err();
        assert!(error.contains("`/b/c` -> `../../../etc`"), "{error}");
        let looped = [("a", "b"), ("b", "a")];
        assert!(
            placed("a/f", false, &looped)
                .unwrap_err()
                .contains("more than 40")
        );
    }

    #[test]
    fn status_stanzas_drop_download_fields_and_say_installed() {
        let stanza = deb822::parse("Package: x\nVersion: 1\nFilename: pool/x.deb\nSize: 3\nSHA256: ab\nDescription: short\n long\n").unwrap().remove(0);
        assert_eq!(
            status_stanza(&stanza),
            "Package: x\nStatus: install ok installed\nVersion: 1\nDescription: short\n long\n"
        );
    }
}
