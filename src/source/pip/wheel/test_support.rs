//! Test helpers shared by the wheel modules' tests: wheels built in memory (files, a RECORD
//! over them, zipped), a fresh cache per test, and readers for the tree an install produced.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

use super::archive::BUCKET;
use super::record::{parse_csv, record_hash};
use super::{InstalledWheel, WheelError, WheelFile, install_wheel};
use crate::layer::cache::Cache;
use crate::layer::{Content, EntryKind, ImagePath, LayerTree};
use crate::source::pip::InstallScheme;

pub(super) fn debian_scheme() -> InstallScheme {
    InstallScheme::debian("3.11", "/usr/bin/python3".to_owned())
}

/// A scheme where purelib and platlib differ (Fedora's lib vs lib64).
pub(super) fn split_scheme() -> InstallScheme {
    InstallScheme {
        purelib: "/usr/local/lib/python3.12/site-packages".to_owned(),
        platlib: "/usr/local/lib64/python3.12/site-packages".to_owned(),
        ..debian_scheme()
    }
}

pub(super) type Files = Vec<(String, Vec<u8>, u32)>;

pub(super) fn record_of(files: &Files, record_path: &str) -> String {
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
pub(super) fn demo_files(root_is_purelib: bool, extra: &[(&str, &[u8], u32)]) -> Files {
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
pub(super) fn zip_bytes(files: &Files) -> Vec<u8> {
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
pub(super) fn wheel_bytes(files: &Files) -> Vec<u8> {
    wheel_with_record(files, record_of(files, "demo-1.0.dist-info/RECORD"))
}

/// A wheel of `files` plus `record` as its RECORD, whatever that says.
pub(super) fn wheel_with_record(files: &Files, record: String) -> Vec<u8> {
    let mut all = files.clone();
    all.push((
        "demo-1.0.dist-info/RECORD".to_owned(),
        record.into_bytes(),
        0o100644,
    ));
    zip_bytes(&all)
}

pub(super) const FILENAME: &str = "demo-1.0-py3-none-any.whl";

pub(super) struct Setup {
    pub(super) dir: tempfile::TempDir,
    pub(super) cache: Cache,
}

pub(super) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    Setup { dir, cache }
}

impl Setup {
    pub(super) fn install_as(
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

    pub(super) fn install(&self, bytes: &[u8]) -> Result<(LayerTree, InstalledWheel), WheelError> {
        self.install_as(FILENAME, bytes, &debian_scheme(), true)
    }

    pub(super) fn nothing_cached(&self) -> bool {
        fs::read_dir(self.cache.root().join(BUCKET))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    }
}

pub(super) fn p(path: &str) -> ImagePath {
    ImagePath::new(path).unwrap()
}

pub(super) fn bytes_of(tree: &LayerTree, path: &str) -> Vec<u8> {
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

pub(super) fn is_inline(tree: &LayerTree, path: &str) -> bool {
    matches!(
        tree.get(&p(path)).unwrap().kind,
        EntryKind::File {
            content: Content::Inline(_),
            ..
        }
    )
}

pub(super) fn mode_of(tree: &LayerTree, path: &str) -> u32 {
    tree.get(&p(path)).unwrap().mode
}

/// Every entry, comparable: path, kind, mode, owner and content (host files by path+stamp).
pub(super) fn describe(tree: &LayerTree) -> Vec<String> {
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
pub(super) fn check_record(tree: &LayerTree, lib: &str, dist_info: &str) -> Vec<String> {
    let record = String::from_utf8(bytes_of(tree, &format!("{lib}/{dist_info}/RECORD"))).unwrap();
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

pub(super) fn assert_refused(s: &Setup, bytes: &[u8], check: impl Fn(&WheelError) -> bool) {
    let err = s.install(bytes).unwrap_err();
    assert!(check(&err), "unexpected error: {err}");
    assert!(err.to_string().contains(FILENAME), "{err}");
    assert!(s.nothing_cached(), "a refused wheel left a cache entry");
}
