//! Laying out one extracted wheel in a layer tree, as pip would leave it in the image.
//!
//! Input: a [`WheelFile`], an [`InstallScheme`] and the cache. Output: the wheel's files in the
//! tree as `Content::Host` entries (a large wheel is never read into memory), its `.data`
//! directories mapped onto the scheme's purelib, platlib, scripts, headers and data
//! directories, and what an installer adds: entry point launchers, `#!python` scripts pointed
//! at the image's interpreter, `INSTALLER`, `REQUESTED` and a rewritten `RECORD`.
//!
//! Spec: installing a wheel (PEP 427,
//! <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#installing-a-wheel-distribution-1-0-py32-none-any-whl>)
//! and recording installed projects (PEP 376,
//! <https://packaging.python.org/en/latest/specifications/recording-installed-packages/>).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::archive::{ListedFile, Listing, extract_cached};
use super::dist_info::{Layout, script_entry_points};
use super::name::parse_wheel_filename;
use super::record::{record_hash, write_record};
use super::scripts::{launcher, rewrite_python_shebang};
use super::{InstalledWheel, WheelError, WheelFile};
use crate::layer::cache::Cache;
use crate::layer::{Content, Entry, EntryKind, FileStamp, ImagePath, LayerTree};
use crate::source::pip::InstallScheme;

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

    /// The archive's bytes, left in the extraction cache at `host`.
    fn from_archive(base: &ImagePath, file: &ListedFile, host: &Path, mode: u32) -> Planned {
        Planned {
            base: base.clone(),
            content: Content::Host {
                stamp: FileStamp::of(host),
                path: host.to_owned(),
            },
            size: file.size,
            mode,
            sha256: file.sha256.clone(),
        }
    }
}

/// Everything that goes into the tree, by image path.
#[derive(Default)]
struct Plan {
    files: BTreeMap<ImagePath, Planned>,
    scripts: BTreeSet<ImagePath>,
}

impl Plan {
    fn add_script(&mut self, target: ImagePath, planned: Planned) {
        self.scripts.insert(target.clone());
        self.files.insert(target, planned);
    }

    /// Into the tree, with the directories the wheel creates below each scheme directory.
    fn write_into(self, tree: &mut LayerTree) {
        for (path, p) in self.files {
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
    }
}

/// One wheel with its archive read and checked, and the scheme directories it installs into.
struct Opened<'a> {
    wheel: &'a WheelFile<'a>,
    interpreter: &'a str,
    roots: Roots,
    /// Where the extraction cache keeps the wheel's files.
    files_dir: PathBuf,
    listing: Listing,
    layout: Layout,
    /// The root of the wheel's archive: purelib or platlib, as its WHEEL file says.
    lib: ImagePath,
    /// The `.dist-info` directory in the image.
    dist_info: ImagePath,
}

impl<'a> Opened<'a> {
    fn read(
        scheme: &'a InstallScheme,
        wheel: &'a WheelFile<'a>,
        cache: &Cache,
    ) -> Result<Opened<'a>, WheelError> {
        let parsed = parse_wheel_filename(wheel.filename)?;
        let roots = Roots::new(scheme)?;
        let (dir, listing) = extract_cached(wheel, &parsed, cache)?;
        let files_dir = dir.join("files");
        let layout = Layout::read(wheel.filename, &parsed, &files_dir, &listing)?;
        let lib = if layout.root_is_purelib {
            roots.purelib.clone()
        } else {
            roots.platlib.clone()
        };
        let dist_info = under(&lib, &layout.dist_info, wheel.filename)?;
        Ok(Opened {
            wheel,
            interpreter: &scheme.interpreter,
            roots,
            files_dir,
            listing,
            layout,
            lib,
            dist_info,
        })
    }

    fn under(&self, base: &ImagePath, rel: &str) -> Result<ImagePath, WheelError> {
        under(base, rel, self.wheel.filename)
    }

    /// The archive's files (all but its RECORD), `.data` directories mapped onto the scheme.
    fn plan_archive_files(&self, plan: &mut Plan) -> Result<(), WheelError> {
        let data_prefix = format!("{}/", self.layout.data_dir);
        let record_entry = format!("{}/RECORD", self.layout.dist_info);
        for file in &self.listing.files {
            if file.path == record_entry {
                continue;
            }
            let host = self.files_dir.join(&file.path);
            let Some(rest) = file.path.strip_prefix(&data_prefix) else {
                plan.files.insert(
                    self.under(&self.lib, &file.path)?,
                    Planned::from_archive(&self.lib, file, &host, file.mode),
                );
                continue;
            };
            let (key, base, target) = self.data_target(file, rest)?;
            if key == "scripts" {
                plan.add_script(target, self.script(file, &host, base)?);
            } else {
                let planned = Planned::from_archive(base, file, &host, file.mode);
                plan.files.insert(target, planned);
            }
        }
        Ok(())
    }

    /// Where `X-1.0.data/<key>/<sub>` goes: `key`, its scheme directory and the image path.
    fn data_target<'r>(
        &self,
        file: &ListedFile,
        rest: &'r str,
    ) -> Result<(&'r str, &ImagePath, ImagePath), WheelError> {
        let Some((key, sub)) = rest.split_once('/') else {
            return Err(WheelError::UnknownDataDir {
                wheel: self.wheel.filename.to_owned(),
                entry: file.path.clone(),
                key: rest.to_owned(),
            });
        };
        let roots = &self.roots;
        let (base, target) = match key {
            "purelib" => (&roots.purelib, self.under(&roots.purelib, sub)?),
            "platlib" => (&roots.platlib, self.under(&roots.platlib, sub)?),
            "data" => (&roots.data, self.under(&roots.data, sub)?),
            "headers" => (
                &roots.headers,
                self.under(&roots.headers, &format!("{}/{sub}", self.layout.name))?,
            ),
            "scripts" => (&roots.scripts, self.under(&roots.scripts, sub)?),
            _ => {
                return Err(WheelError::UnknownDataDir {
                    wheel: self.wheel.filename.to_owned(),
                    entry: file.path.clone(),
                    key: key.to_owned(),
                });
            }
        };
        Ok((key, base, target))
    }

    /// Scripts are executable whatever the archive said; `#!python` ones get the interpreter.
    fn script(
        &self,
        file: &ListedFile,
        host: &Path,
        base: &ImagePath,
    ) -> Result<Planned, WheelError> {
        let mut head = [0u8; 8];
        let starts_python = fs::File::open(host)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == b"#!python";
        if !starts_python {
            return Ok(Planned::from_archive(base, file, host, 0o755));
        }
        let content = fs::read(host).map_err(|source| WheelError::Io {
            wheel: self.wheel.filename.to_owned(),
            entry: file.path.clone(),
            source,
        })?;
        let rewritten = rewrite_python_shebang(&content, self.interpreter)
            .expect("the file starts with #!python");
        Ok(Planned::inline(base, rewritten, 0o755))
    }

    /// Entry point launchers; on a name clash with a `.data/scripts` file the launcher wins, as
    /// with pip.
    fn plan_entry_points(&self, plan: &mut Plan) -> Result<(), WheelError> {
        let wheel = self.wheel.filename;
        let entry_points_path = format!("{}/entry_points.txt", self.layout.dist_info);
        if !self
            .listing
            .files
            .iter()
            .any(|f| f.path == entry_points_path)
        {
            return Ok(());
        }
        let bytes =
            fs::read(self.files_dir.join(&entry_points_path)).map_err(|source| WheelError::Io {
                wheel: wheel.to_owned(),
                entry: entry_points_path.clone(),
                source,
            })?;
        let text = String::from_utf8(bytes).map_err(|_| WheelError::Malformed {
            wheel: wheel.to_owned(),
            entry: entry_points_path.clone(),
            reason: "it is not UTF-8".to_owned(),
        })?;
        let scripts = &self.roots.scripts;
        for ep in script_entry_points(wheel, &text)? {
            let target = self.under(scripts, &ep.name)?;
            let text = launcher(
                self.interpreter,
                &ep,
                &self.layout.name,
                &self.layout.version,
            );
            plan.add_script(target, Planned::inline(scripts, text.into_bytes(), 0o755));
        }
        Ok(())
    }

    /// What the installer records (PEP 376): INSTALLER, REQUESTED, then RECORD over everything.
    fn plan_installer_files(&self, plan: &mut Plan) -> Result<(), WheelError> {
        let lib = &self.lib;
        plan.files.insert(
            self.under(&self.dist_info, "INSTALLER")?,
            Planned::inline(lib, b"oci-build\n".to_vec(), 0o644),
        );
        let requested = self.under(&self.dist_info, "REQUESTED")?;
        if self.wheel.requested {
            plan.files
                .insert(requested, Planned::inline(lib, Vec::new(), 0o644));
        } else {
            // A wheel that shipped one is not thereby requested.
            plan.files.remove(&requested);
        }
        let record_path = self.under(&self.dist_info, "RECORD")?;
        let mut rows: Vec<(String, String)> = plan
            .files
            .iter()
            .map(|(path, p)| {
                (
                    relative_to(lib, path),
                    format!("sha256={},{}", p.sha256, p.size),
                )
            })
            .collect();
        rows.push((relative_to(lib, &record_path), ",".to_owned()));
        let record = write_record(rows);
        plan.files.insert(
            record_path,
            Planned::inline(lib, record.into_bytes(), 0o644),
        );
        Ok(())
    }
}

/// Installs one wheel into `tree` under `scheme`. Returns what it installed (for messages/tests).
/// Nothing is added to `tree` when it fails.
pub(crate) fn install_wheel(
    tree: &mut LayerTree,
    scheme: &InstallScheme,
    wheel: &WheelFile,
    cache: &Cache,
) -> Result<InstalledWheel, WheelError> {
    let opened = Opened::read(scheme, wheel, cache)?;
    let mut plan = Plan::default();
    opened.plan_archive_files(&mut plan)?;
    opened.plan_entry_points(&mut plan)?;
    opened.plan_installer_files(&mut plan)?;
    let scripts = plan.scripts.iter().map(ToString::to_string).collect();
    plan.write_into(tree);
    Ok(InstalledWheel {
        name: opened.layout.name,
        version: opened.layout.version,
        dist_info: opened.dist_info.to_string(),
        scripts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pip::wheel::test_support::*;

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
}
