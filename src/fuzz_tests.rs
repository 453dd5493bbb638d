//! Bounded fuzzing of every parser in [`crate::fuzzing`], inside `cargo test`.
//!
//! Each test feeds one parser a fixed number of inputs drawn from a fixed seed, so CI runs the
//! same cases every time; a parser that panics (or breaks an invariant `fuzzing::run` checks)
//! fails the test with the shrunk input. Inputs are mostly valid seeds (a Release file, a
//! wheel, a .deb built here) mutated by byte flips, truncation and insertion of pieces that
//! break parsers (`..`, NUL, long runs, huge numbers); archives are built from mutated entries
//! so that the mutations get past their checksums. `fuzz/` runs the same parsers for as long
//! as one likes.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::json;

use crate::fuzzing::{self, PART, Parser};

const SEED: &[u8; 32] = b"oci-build issue 12 hostile input";

/// How many inputs each parser gets: a match, so that a parser added to the list needs a
/// number (and a test below). Sized so that the module runs well under a minute unoptimised.
fn cases(parser: Parser) -> u32 {
    match parser {
        Parser::Deb822 => 1500,
        Parser::Release => 1500,
        Parser::InRelease => 300,
        Parser::Keyring => 250,
        Parser::DebianPackages => 1500,
        Parser::DebianRelations => 2000,
        Parser::Deb => 250,
        Parser::RequirementLines => 1500,
        Parser::RequirementsFiles => 300,
        Parser::Metadata => 800,
        Parser::WheelFilename => 2000,
        Parser::Record => 2000,
        Parser::EntryPoints => 2000,
        Parser::HtmlPage => 800,
        Parser::JsonPage => 800,
        Parser::Wheel => 300,
        Parser::CondaInfo => 300,
        Parser::Repodata => 400,
        Parser::CondaArchive => 200,
        Parser::Condarc => 1000,
        Parser::LayerTar => 400,
        Parser::Reference => 2000,
        Parser::Digest => 1000,
        Parser::Recipe => 300,
    }
}

/// Runs the parser's share of inputs through it; fails on a panic, with the shrunk input.
fn fuzz(parser: Parser, inputs: impl Strategy<Value = Vec<u8>>) {
    let cases = cases(parser);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, SEED));
    let accepted = AtomicU32::new(0);
    let verbose = std::env::var_os("OCI_BUILD_FUZZ_VERBOSE").is_some();
    let start = Instant::now();
    let outcome = runner.run(&inputs, |bytes| {
        match fuzzing::run(parser, &bytes) {
            Ok(()) => {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            // What the inputs run into, for tuning the generators.
            Err(e) if verbose => eprintln!("fuzz {parser:?} refused: {e}"),
            Err(_) => {}
        }
        Ok(())
    });
    // The closing note of issue 12 reports these; `--nocapture` shows them.
    eprintln!(
        "fuzz {parser:?}: {cases} cases, {} accepted, {:.2?}",
        accepted.load(Ordering::Relaxed),
        start.elapsed()
    );
    if let Err(failure) = outcome {
        panic!("{parser:?}: {failure}");
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Pieces that break parsers more often than random bytes do.
const NASTY: &[&[u8]] = &[
    b"..",
    b"../",
    b"/../../",
    b"/",
    b"\\",
    b"\0",
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\t",
    b"\n \n",
    b"\n\n",
    b":",
    b"=",
    b",",
    b";",
    b"|",
    b"#",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"{",
    b"}",
    b"(",
    b")",
    b"<",
    b">",
    b"@",
    b"%",
    b"%2e%2e%2f",
    b"-",
    b"--",
    b".",
    b"*",
    b"~=",
    b"!",
    b"\xff\xfe",
    b"\xc3",
    "é".as_bytes(),
    "\u{212a}".as_bytes(),
    "\u{2028}".as_bytes(),
    "\u{3000}".as_bytes(),
    b"99999999999999999999999999",
    b"18446744073709551616",
    b"-1",
    b"0",
    b"4294967296",
    b"1e999",
    b"sha256:",
    b"sha256=",
    b"--hash=sha256:",
    b"&amp;",
    b"&#x27;",
    b"<a href=",
    b"</a>",
    b"-----BEGIN PGP SIGNATURE-----",
    b"- ",
    b"${",
    b"$${X}",
    b"\x1e",
];

#[derive(Clone, Debug)]
enum Edit {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, Index),
    Repeat(Index, Index, u16),
}

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => select(NASTY).prop_map(<[u8]>::to_vec),
        1 => (select(&b"A9/. \n"[..]), 100usize..6000).prop_map(|(c, n)| vec![c; n]),
        2 => prop::collection::vec(any::<u8>(), 1..8),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        5 => (any::<Index>(), piece()).prop_map(|(i, p)| Edit::Insert(i, p)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Delete(a, b)),
        1 => (any::<Index>(), any::<Index>(), 2u16..300).prop_map(|(a, b, n)| Edit::Repeat(a, b, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match edit {
            Edit::Flip(at, value) if len > 0 => bytes[at.index(len)] ^= value | 1,
            Edit::Flip(..) => {}
            Edit::Truncate(at) => bytes.truncate(at.index(len + 1)),
            Edit::Insert(at, piece) => {
                let at = at.index(len + 1);
                bytes.splice(at..at, piece.iter().copied());
            }
            Edit::Delete(a, b) => {
                let (a, b) = (a.index(len + 1), b.index(len + 1));
                // Short deletions: a line or a field, not most of the input.
                let end = a.max(b).min(a.min(b) + 64);
                bytes.drain(a.min(b)..end);
            }
            Edit::Repeat(a, b, times) => {
                let (a, b) = (a.index(len + 1), b.index(len + 1));
                let slice = bytes[a.min(b)..a.max(b).min(a.min(b) + 256)].to_vec();
                let at = a.max(b).min(a.min(b) + 256);
                for _ in 0..*times {
                    bytes.splice(at..at, slice.iter().copied());
                }
            }
        }
    }
    bytes
}

/// A seed with a few edits, now and then random bytes instead.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => (select(seeds), prop::collection::vec(edit(), 0..6))
            .prop_map(|(seed, edits)| apply(seed, &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// Mostly valid UTF-8, for files read as text: invalid bytes would stop every input at the
/// first read.
fn textual(inputs: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (inputs, 0u8..6).prop_map(|(bytes, raw)| {
        if raw == 0 {
            bytes
        } else {
            String::from_utf8_lossy(&bytes).into_owned().into_bytes()
        }
    })
}

fn texts(seeds: &[&str]) -> Vec<Vec<u8>> {
    seeds.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Mostly `value` itself, sometimes edited: for a part of a larger input.
fn lightly(value: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(value.clone()),
        1 => prop::collection::vec(edit(), 1..4).prop_map(move |edits| apply(value.clone(), &edits)),
    ]
}

fn joined(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.join(&PART)
}

const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---------------------------------------------------------------------------------------------
// Archives built here, from entries that are themselves mutated

#[derive(Clone, Debug)]
struct TarEntry {
    name: Vec<u8>,
    kind: u8,
    content: Vec<u8>,
    mode: u32,
    link: Vec<u8>,
}

/// A tar archive written byte by byte, so that names the tar crate refuses (`..`, absolute)
/// get in as a hostile archive would have them.
fn tar_bytes(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::new(entry.kind));
        header.set_mode(entry.mode);
        header.set_size(entry.content.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let old = header.as_old_mut();
        let n = entry.name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&entry.name[..n]);
        let n = entry.link.len().min(old.linkname.len());
        old.linkname[..n].copy_from_slice(&entry.link[..n]);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&entry.content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_entry(
    names: &'static [&'static str],
    contents: Vec<Vec<u8>>,
) -> impl Strategy<Value = TarEntry> {
    (
        select(names).prop_map(|n| n.as_bytes().to_vec()),
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(edit(), 1..3)],
        prop_oneof![
            8 => Just(b'0'),
            3 => Just(b'5'),
            2 => Just(b'2'),
            2 => Just(b'1'),
            1 => select(&b"34678xgLK"[..]),
            1 => any::<u8>(),
        ],
        select(contents),
        select(&[0o644u32, 0o755, 0o4755, 0o777, 0o100_644, 0o7777, u32::MAX][..]),
        select(
            &[
                "",
                "tool",
                "../../../etc",
                "/usr/bin/python3",
                "usr/bin/tool",
                "./x",
                ".",
            ][..],
        ),
    )
        .prop_map(|(name, edits, kind, content, mode, link)| TarEntry {
            name: apply(name, &edits),
            kind,
            content,
            mode,
            link: link.as_bytes().to_vec(),
        })
}

const ENTRY_NAMES: &[&str] = &[
    "./",
    "./usr/",
    "./usr/bin/tool",
    "usr/lib/x.so",
    "./usr/bin/tool/inner",
    "../etc/passwd",
    "/etc/shadow",
    "./a/../../b",
    "a/./b",
    "./usr/bin/..",
    "a//b",
    "./.wh.usr",
    "usr/.wh..wh..opq",
    "var/lib/dpkg/status",
    "etc/passwd",
    "opt/conda/conda-meta/python-3.11.1-0.json",
    "usr/lib/python3.11/os.py",
    "usr/lib/python3/dist-packages/demo-1.0.dist-info/",
    "usr/lib/python3/dist-packages/demo-1.0-py3.11.egg-info",
    "lib/ld-musl-x86_64.so.1",
    "bin/link",
    "bin/link/through",
    "a\\..\\b",
];

fn small_contents() -> Vec<Vec<u8>> {
    texts(&[
        "",
        "hello\n",
        "#!/opt/anaconda1anaconda2anaconda3/bin/python\n",
        "root:x:0:0:root:/root:/bin/bash\n",
        "Package: demo\nStatus: install ok installed\nVersion: 1.0\n",
    ])
}

fn compress(name: &str, tar: &[u8]) -> Vec<u8> {
    if name.ends_with(".gz") {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(tar).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    } else if name.ends_with(".xz") {
        let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 0);
        encoder.write_all(tar).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    } else if name.ends_with(".zst") {
        zstd::encode_all(tar, 1).expect("writing to memory")
    } else {
        tar.to_vec()
    }
}

fn ar_bytes(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = ar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        builder
            .append(&header, &bytes[..])
            .expect("writing to memory");
    }
    builder.into_inner().expect("writing to memory")
}

fn debs() -> impl Strategy<Value = Vec<u8>> {
    let control = (
        select(
            &[
                "./control",
                "./md5sums",
                "./postinst",
                "control",
                "./",
                "../x",
                "./a/b",
                ".",
            ][..],
        ),
        prop::collection::vec(edit(), 0..3),
    );
    let controls = prop::collection::vec(control, 1..4);
    let data = prop::collection::vec(tar_entry(ENTRY_NAMES, small_contents()), 0..6);
    let compression = prop_oneof![6 => select(&[".gz", ".xz", ".zst", ""][..]), 1 => Just(".bz2")];
    (
        controls,
        data,
        compression.clone(),
        compression,
        0u8..16,
        prop::collection::vec(edit(), 0..3),
        0u8..4,
    )
        .prop_map(|(controls, data, control_z, data_z, layout, edits, damage)| {
            let control_tar = tar_bytes(
                &controls
                    .into_iter()
                    .map(|(name, edits)| TarEntry {
                        name: name.as_bytes().to_vec(),
                        kind: b'0',
                        content: apply(
                            b"Package: demo\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\nDescription: x\n".to_vec(),
                            &edits,
                        ),
                        mode: 0o644,
                        link: Vec::new(),
                    })
                    .collect::<Vec<_>>(),
            );
            let control_name = format!("control.tar{control_z}");
            let data_name = format!("data.tar{data_z}");
            let mut members = vec![
                ("debian-binary".to_owned(), b"2.0\n".to_vec()),
                (control_name.clone(), compress(&control_name, &control_tar)),
                (data_name.clone(), compress(&data_name, &tar_bytes(&data))),
            ];
            match layout {
                0 => members.remove(0),
                1 => members.remove(1),
                2 => members.remove(2),
                3 => {
                    members.swap(0, 2);
                    members.remove(1)
                }
                _ => (String::new(), Vec::new()),
            };
            let deb = ar_bytes(&members);
            if damage == 0 { apply(deb, &edits) } else { deb }
        })
}

fn layer_tars() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(tar_entry(ENTRY_NAMES, small_contents()), 0..8),
        prop::collection::vec(edit(), 0..3),
        0u8..4,
    )
        .prop_map(|(entries, edits, damage)| {
            let tar = tar_bytes(&entries);
            if damage == 0 { apply(tar, &edits) } else { tar }
        })
}

const CONDA_NAMES: &[&str] = &[
    "info/index.json",
    "info/paths.json",
    "info/link.json",
    "./bin/tool",
    "bin/link",
    "bin/link/through",
    "lib/libtool.so",
    "lib/../bin/x",
    "../escape",
    "/abs",
    "site-packages/tool/__init__.py",
    "./",
    "a//b",
];

fn conda_archives() -> impl Strategy<Value = Vec<u8>> {
    (
        select(
            &[
                "tool-1.0-0.tar.bz2",
                "tool-1.0-0.conda",
                "tool-1.0-0.zip",
                "../tool.conda",
            ][..],
        ),
        prop::collection::vec(tar_entry(CONDA_NAMES, small_contents()), 0..6),
        prop::collection::vec(tar_entry(CONDA_NAMES, small_contents()), 0..3),
        prop::collection::vec(edit(), 0..3),
        0u8..4,
    )
        .prop_map(|(filename, content, info, edits, damage)| {
            let archive = if filename.ends_with(".tar.bz2") {
                let mut all = info.clone();
                all.extend(content);
                let mut out = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                out.write_all(&tar_bytes(&all)).expect("writing to memory");
                out.finish().expect("writing to memory")
            } else {
                let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let stored = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored);
                let mut add = |name: &str, bytes: &[u8]| {
                    zip.start_file(name, stored).expect("writing to memory");
                    zip.write_all(bytes).expect("writing to memory");
                };
                add("metadata.json", br#"{"conda_pkg_format_version": 2}"#);
                add(
                    "pkg-tool-1.0-0.tar.zst",
                    &compress(".zst", &tar_bytes(&content)),
                );
                add(
                    "info-tool-1.0-0.tar.zst",
                    &compress(".zst", &tar_bytes(&info)),
                );
                zip.finish().expect("writing to memory").into_inner()
            };
            let archive = if damage == 0 {
                apply(archive, &edits)
            } else {
                archive
            };
            joined(&[filename.as_bytes().to_vec(), archive])
        })
}

// ---------------------------------------------------------------------------------------------
// Wheels

fn record_hash(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(bytes))
}

const WHEEL_NAMES: &[&str] = &[
    "demo-1.0-py3-none-any.whl",
    "_-1.0-py3-none-any.whl",
    "demo-1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl",
    "Demo.Pkg-2.0-py2.py3-none-any.whl",
];

const WHEEL_FILES: &[&str] = &[
    "{pkg}/__init__.py",
    "{pkg}/sub/module.py",
    "{data}/scripts/tool",
    "{data}/headers/tool.h",
    "{data}/data/share/tool/x",
    "{data}/purelib/pure.py",
    "{data}/platlib/plat.so",
    "{dist}/REQUESTED",
    "{pkg}/../{pkg}/again.py",
    "./{pkg}/dot.py",
];

const HOSTILE_WHEEL_FILES: &[&str] = &[
    "{data}/unknown/x",
    "{data}/scripts",
    "{dist}/entry_points.txt",
    "{dist}/extra/",
    "../escape.py",
    "/abs.py",
    "{pkg}\\win.py",
    "other-1.0.dist-info/METADATA",
    "{pkg}/",
];

const METADATA_NAMES: &[&str] = &["{name}", "Demo", "..", ".", "_", "a/b", "", "other"];

fn wheels() -> impl Strategy<Value = Vec<u8>> {
    let file = (
        prop_oneof![5 => select(WHEEL_FILES), 1 => select(HOSTILE_WHEEL_FILES)],
        select(texts(&[
            "#!python\nprint(1)\n",
            "#!pythonw -E\r\nx = 1\n",
            "plain\n",
            "#!python",
            "",
        ])),
        prop_oneof![
            6 => select(&[0o100_644u32, 0o100_755, 0][..]),
            1 => select(&[0o120_777u32, 0o040_755, 0o010_644, 0o170_777][..]),
        ],
    );
    (
        (select(WHEEL_NAMES), prop::collection::vec(edit(), 0..2), 0u8..6),
        prop_oneof![4 => Just("{name}"), 1 => select(METADATA_NAMES)],
        lightly(b"Wheel-Version: 1.0\nGenerator: fuzz\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec()),
        lightly(b"[console_scripts]\ntool = demo.cli:main\ntool-gui = demo:Cli.run [extra]\n[gui_scripts]\ngui = demo.gui:run\n".to_vec()),
        prop::collection::vec(file, 0..5),
        (0u8..10, prop::collection::vec(edit(), 1..4)),
        (any::<bool>(), prop::collection::vec(edit(), 0..3), 0u8..8),
    )
        .prop_map(
            |(
                (filename, name_edits, edit_name),
                metadata_name,
                wheel,
                entry_points,
                extra,
                (record_mode, record_edits),
                (deflate, zip_edits, damage),
            )| {
                let filename = if edit_name == 0 {
                    String::from_utf8_lossy(&apply(filename.as_bytes().to_vec(), &name_edits))
                        .into_owned()
                } else {
                    filename.to_owned()
                };
                // The archive's directories are named after the file name, as a builder does.
                let mut parts = filename.splitn(3, '-');
                let (name, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let dist = format!("{name}-{version}.dist-info");
                let data = format!("{name}-{version}.data");
                let pkg = name.to_ascii_lowercase().replace('.', "_");
                let fill = |template: &str| {
                    template
                        .replace("{pkg}", &pkg)
                        .replace("{data}", &data)
                        .replace("{dist}", &dist)
                        .replace("{name}", name)
                };
                let mut files: Vec<(String, Vec<u8>, u32)> = vec![
                    (
                        format!("{dist}/METADATA"),
                        format!(
                            "Metadata-Version: 2.1\nName: {}\nVersion: {version}\n\nText.\n",
                            fill(metadata_name)
                        )
                        .into_bytes(),
                        0o100_644,
                    ),
                    (format!("{dist}/WHEEL"), wheel, 0o100_644),
                    (format!("{dist}/entry_points.txt"), entry_points, 0o100_644),
                ];
                for (path, content, mode) in extra {
                    // A directory entry with content is refused; builders write them empty.
                    let content = if path.ends_with('/') { Vec::new() } else { content };
                    files.push((fill(path), content, mode));
                }
                let record_path = format!("{dist}/RECORD");
                let mut record = String::new();
                for (path, content, _) in &files {
                    record.push_str(&format!(
                        "{path},sha256={},{}\n",
                        record_hash(content),
                        content.len()
                    ));
                }
                record.push_str(&format!("{record_path},,\n"));
                match record_mode {
                    0 => {}
                    1 | 2 => files.push((
                        record_path,
                        apply(record.into_bytes(), &record_edits),
                        0o100_644,
                    )),
                    _ => files.push((record_path, record.into_bytes(), 0o100_644)),
                }
                let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let method = if deflate {
                    zip::CompressionMethod::Deflated
                } else {
                    zip::CompressionMethod::Stored
                };
                for (path, content, mode) in &files {
                    let options = zip::write::SimpleFileOptions::default()
                        .compression_method(method)
                        .unix_permissions(*mode);
                    if mode & 0o170_000 == 0o120_000 {
                        let _ = zip.add_symlink(path.as_str(), "../../etc/passwd", options);
                        continue;
                    }
                    if zip.start_file(path.as_str(), options).is_ok() {
                        zip.write_all(content).expect("writing to memory");
                    }
                }
                let archive = zip.finish().expect("writing to memory").into_inner();
                let archive = if damage == 0 { apply(archive, &zip_edits) } else { archive };
                joined(&[filename.into_bytes(), archive])
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Conda package info

fn conda_infos() -> impl Strategy<Value = Vec<u8>> {
    let path = select(
        &[
            "bin/tool",
            "lib/libtool.so",
            "site-packages/tool/__init__.py",
            "python-scripts/tool-cli",
            "bin/tool-link",
            "lib/libtool.so.1",
            "share",
            "missing/file",
            "../etc/passwd",
            "/abs",
            "bin/../../x",
            "bin//tool",
            "bin/./tool",
            "bin/tool\u{0}x",
            "",
        ][..],
    );
    let entry = (
        path,
        select(&["hardlink", "softlink", "directory", "x"][..]),
        prop::option::of(select(
            &[
                "/opt/anaconda1anaconda2anaconda3",
                "",
                "\u{0}",
                "\u{0}/opt",
                "/opt/anaconda1anaconda2anaconda3/lib",
                "a",
                "/",
                "/opt/anaconda1anaconda2anaconda3\u{0}",
            ][..],
        )),
        prop::option::of(select(&["text", "binary", "x"][..])),
    )
        .prop_map(|(path, kind, placeholder, mode)| {
            let mut entry = json!({ "_path": path, "path_type": kind });
            if let Some(p) = placeholder {
                entry["prefix_placeholder"] = json!(p);
            }
            if let Some(m) = mode {
                entry["file_mode"] = json!(m);
            }
            entry
        });
    let entry_point = select(
        &[
            "tool = tool.cli:main",
            "../x = a:b",
            "a\u{0}b = m:f",
            "x=y",
            "= m:f",
            "bad",
            ". = m:f",
            "a b = m:f",
            "dir/x = m:f",
        ][..],
    );
    (
        select(texts(&[
            r#"{"name":"tool","version":"3.11.1","build":"0","noarch":"python"}"#,
            r#"{"name":"tool","version":"3.11.1","build":"0","noarch":"python"}"#,
            r#"{"name":"tool","version":"3.11.1","build":"0"}"#,
            r#"{"name":"tool","version":"3.11.1","build":"0"}"#,
            "{}",
            "[]",
        ])),
        prop::collection::vec(entry, 0..6),
        prop::collection::vec(entry_point, 0..3),
        any::<bool>(),
        (0u8..6, prop::collection::vec(edit(), 1..4)),
        // info/files, which replaces paths.json in old packages: now and then.
        select(texts(&[
            "",
            "",
            "",
            "",
            "bin/tool\nlib/libtool.so\nbin/tool-link\n",
            "../x\n",
        ])),
        select(texts(&[
            "",
            "/opt/anaconda1anaconda2anaconda3 text bin/tool\n",
            "\"/opt/anaconda1anaconda2anaconda3\" binary lib/libtool.so\nbin/tool\n",
        ])),
    )
        .prop_map(
            |(index, entries, points, noarch, (damage, edits), files, has_prefix)| {
                let paths = if files.is_empty() {
                    serde_json::to_vec(&json!({ "paths": entries, "paths_version": 1 }))
                        .expect("json")
                } else {
                    Vec::new()
                };
                let link = if noarch {
                    serde_json::to_vec(
                        &json!({ "noarch": { "type": "python", "entry_points": points } }),
                    )
                    .expect("json")
                } else {
                    Vec::new()
                };
                let mut parts = [index, paths, link, files, has_prefix];
                let which = usize::from(damage);
                if which < parts.len() {
                    parts[which] = apply(std::mem::take(&mut parts[which]), &edits);
                }
                joined(&parts)
            },
        )
}

fn repodatas() -> impl Strategy<Value = Vec<u8>> {
    let record = (
        select(&["tool", "python", "a/b", "..", "Tool", "x\u{0}"][..]),
        select(&["1.0", "1!2.0.post1", "3.11.1", "..", "1.0/../x", ""][..]),
        select(&["0", "py_0", "../../x", "a/b", "h\u{0}", ""][..]),
        select(&["linux-64", "noarch", "../x"][..]),
        select(&[HEX64, "zz", ""][..]),
        any::<bool>(),
    )
        .prop_map(|(name, version, build, subdir, sha256, conda)| {
            let file = format!(
                "{name}-{version}-{build}.{}",
                if conda { "conda" } else { "tar.bz2" }
            );
            (
                conda,
                file,
                json!({
                    "name": name, "version": version, "build": build, "build_number": 0,
                    "subdir": subdir, "depends": ["python >=3.8"], "sha256": sha256,
                    "md5": "d41d8cd98f00b204e9800998ecf8427e", "size": 123,
                }),
            )
        });
    (
        prop::collection::vec(record, 0..4),
        prop::option::of(select(&["https://mirror.invalid/other/", "../../", ""][..])),
        (0u8..4, prop::collection::vec(edit(), 1..4)),
    )
        .prop_map(|(records, base_url, (damage, edits))| {
            let mut packages = serde_json::Map::new();
            let mut conda = serde_json::Map::new();
            for (is_conda, file, record) in records {
                if is_conda {
                    conda.insert(file, record);
                } else {
                    packages.insert(file, record);
                }
            }
            let mut info = json!({ "subdir": "linux-64" });
            if let Some(base) = base_url {
                info["base_url"] = json!(base);
            }
            let text = serde_json::to_vec(&json!({
                "info": info, "packages": packages, "packages.conda": conda,
                "removed": [], "repodata_version": 2,
            }))
            .expect("json");
            if damage == 0 {
                apply(text, &edits)
            } else {
                text
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Signed Release files

/// An `InRelease` signed by a key made here from a fixed seed, and that key armored.
fn signed_release() -> &'static (Vec<u8>, Vec<u8>) {
    static SIGNED: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SIGNED.get_or_init(|| {
        use pgp::composed::{
            ArmorOptions, CleartextSignedMessage, SignedKeyDetails, SignedPublicKey,
        };
        use pgp::crypto::{ed25519, hash::HashAlgorithm, public_key::PublicKeyAlgorithm};
        use pgp::packet::{
            self, PubKeyInner, SignatureConfig, SignatureType, Subpacket, SubpacketData, UserId,
        };
        use pgp::types::{
            KeyDetails as _, KeyVersion, Password, PlainSecretParams, PublicParams, SecretParams,
            SignedUser, Tag, Timestamp,
        };

        let secret = ed25519::SecretKey::try_from_bytes([7; 32], ed25519::Mode::Ed25519)
            .expect("a fixed key");
        let inner = PubKeyInner::new(
            KeyVersion::V4,
            PublicKeyAlgorithm::Ed25519,
            Timestamp::from_secs(1_700_000_000),
            None,
            PublicParams::Ed25519((&secret).into()),
        )
        .expect("a fixed key");
        let public = packet::PublicKey::from_inner(inner).expect("a fixed key");
        let secret = packet::SecretKey::new(
            public.clone(),
            SecretParams::Plain(PlainSecretParams::Ed25519(secret)),
        )
        .expect("a fixed key");
        let config = |typ| {
            let mut config =
                SignatureConfig::v4(typ, PublicKeyAlgorithm::Ed25519, HashAlgorithm::Sha256);
            config.hashed_subpackets = vec![
                Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                    1_700_000_000,
                )))
                .expect("a subpacket"),
                Subpacket::regular(SubpacketData::IssuerFingerprint(secret.fingerprint()))
                    .expect("a subpacket"),
            ];
            config
        };
        let uid =
            UserId::from_str(Default::default(), "Fuzz <fuzz@example.invalid>").expect("a user id");
        let certification = config(SignatureType::CertPositive)
            .sign_certification(&secret, &public, &Password::empty(), Tag::UserId, &uid)
            .expect("a certification");
        let key = SignedPublicKey::new(
            public,
            SignedKeyDetails::new(
                vec![],
                vec![],
                vec![SignedUser::new(uid, vec![certification])],
                vec![],
            ),
            vec![],
        );
        let signed = CleartextSignedMessage::new_many(RELEASE, |text| {
            Ok(vec![config(SignatureType::Text).sign(
                &secret,
                &Password::empty(),
                text.as_bytes(),
            )?])
        })
        .and_then(|m| m.to_armored_string(ArmorOptions::default()))
        .expect("a signed message");
        let armored = key
            .to_armored_string(ArmorOptions::default())
            .expect("an armored key");
        (signed.into_bytes(), armored.into_bytes())
    })
}

const RELEASE: &str = "\
Origin: Fuzz
Label: Fuzz
Suite: stable
Codename: fuzz
Date: Sat, 06 Dec 2025 08:51:23 UTC
Valid-Until: Sat, 13 Dec 2025 08:51:23 +0100
Acquire-By-Hash: yes
Architectures: amd64 arm64
Components: main contrib
Description: made up for fuzzing
MD5Sum:
 d41d8cd98f00b204e9800998ecf8427e 0 main/binary-amd64/Packages
SHA256:
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages
 2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824 5 main/binary-amd64/Packages.xz
";

// ---------------------------------------------------------------------------------------------
// Text seeds

const PACKAGES: &str = "\
Package: hello
Version: 1:2.10-3~bpo12+1
Architecture: amd64
Essential: yes
Priority: required
Multi-Arch: same
Pre-Depends: dpkg (>= 1.15.6)
Depends: libc6 (>= 2.34), libfoo:any | libbar (<< 1:2.0-1~) [amd64 !i386] <!nocheck>
Conflicts: hello-old (<= 1.0)
Breaks: hello-older
Provides: hello-world (= 2.10)
Filename: pool/main/h/hello/hello_2.10-3_amd64.deb
Size: 53812
SHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
Description: example package based on GNU hello
 The GNU hello program produces a familiar, friendly greeting.
 .
    indented verbatim line

Package: zlib1g
version: 1:1.2.13.dfsg-1
Architecture: all
";

const REQUIREMENT_LINES: &str = "\
requests[socks,security]>=2.31,<3 ; python_version >= \"3.8\" and sys_platform == 'linux'  # why
pyyaml==6.0.1 --hash=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 --hash=sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824
--index-url https://index.invalid/simple
-i https://user:secret@index.invalid/simple
--extra-index-url=https://index.invalid/extra
-f ./wheels
--no-index
--pre
--only-binary :all:
numpy~=1.26.0; extra == 'fast'
pkg @ https://files.invalid/pkg-1.0-py3-none-any.whl
-e .
torch===2.1.0+cu121
name [extra] (>=1.0)
";

const METADATA: &str = "\
Metadata-Version: 2.1
Name: demo
Version: 1.0.post1
Requires-Python: >=3.8,
Requires-Dist: requests[socks] (>=2.0) ; extra == 'net'
Requires-Dist: numpy>=1.26
 ; python_version < '4'
Provides-Extra: net

Long description: with a colon.
";

const JSON_PAGE: &str = r##"{"meta":{"api-version":"1.1"},"name":"demo","files":[
{"filename":"demo-1.0-py3-none-any.whl","url":"https://files.invalid/demo-1.0-py3-none-any.whl","hashes":{"sha256":"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"},"requires-python":">=3.8","yanked":false,"core-metadata":{"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
{"filename":"demo-1.0.tar.gz","url":"../../packages/demo-1.0.tar.gz#sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","hashes":{},"yanked":"broken","dist-info-metadata":true},
{"filename":"demo-0.9-cp311-cp311-manylinux_2_17_x86_64.whl","url":"/demo-0.9.whl","requires-python":"","core-metadata":false}]}"##;

const HTML_PAGE: &str = r##"<!DOCTYPE html><html><body><h1>Links for demo</h1>
<a href="https://files.invalid/demo-1.0-py3-none-any.whl#sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" data-requires-python="&gt;=3.8" data-core-metadata="sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855">demo-1.0-py3-none-any.whl</a><br/>
<A HREF='../demo-1.0.tar.gz' data-yanked="">demo-1.0.tar.gz</A>
<a data-dist-info-metadata=true href=demo-2.0.zip></a>
</body></html>"##;

const RECIPE: &str = r#"name = "fuzz"
image = "registry.invalid:5000/team/fuzz:${VERSION}"
description = "a recipe to mutate"
from = "python:3.11"
platforms = ["linux/amd64", "linux/arm64/v8"]

[vars]
VERSION = "1.0"
OTHER = "${VERSION}-x"

[[layer]]
files = [{ src = "requirements.txt", dest = "/app/requirements.txt", mode = "0644", dir_mode = "0o755", uid = 1000 }]

[[layer]]
pip = { packages = ["requests[socks]>=2.31 ; python_version >= '3.8'"], requirements = ["requirements.txt"] }

[[layer]]
conda = { channels = ["https://channel.invalid/fuzz"], specs = ["python=3.11"], prefix = "/opt/conda" }

[[layer]]
when = "${VERSION}"
remove = ["/usr/share/doc", "usr/share/man/"]

[config]
workdir = "/app"
env = { PYTHONUNBUFFERED = "1", PATH_X = "$${NOT_A_VAR}" }
ports = ["8080/tcp", "53/udp"]
cmd = ["python3"]
user = "1000:1000"

[annotations]
"org.opencontainers.image.source" = "fuzz"

[variants.legacy]
from = "base"
tag_suffix = "-py39"
platforms = ["linux/amd64"]
vars = { VERSION = "0.9" }
"#;

const BASE: &str = r#"from = "oci:base-layout:latest"
[[layer]]
debian = { packages = ["python3 (>= 3.11)", "git"] }
[variants.slim]
from = "docker://debian:12-slim"
"#;

fn references() -> Vec<Vec<u8>> {
    let mut seeds = texts(&[
        "python:3.11",
        "docker.io/library/python:3.11-slim",
        "localhost:5000/a/b:1.0",
        "mlrun/mlrun",
        "index.docker.io/x",
        "registry-1.docker.io/library/x:_y",
        "a.b/c:d",
        "library/a/b",
        "docker.io/library/a/b:1",
        "Upper/Case",
    ]);
    seeds.push(format!("registry.invalid:5000/team/img@sha256:{HEX64}").into_bytes());
    seeds.push(format!("quay.io/org/app:tag@sha256:{HEX64}").into_bytes());
    seeds
}

// ---------------------------------------------------------------------------------------------
// The tests: one per parser, case counts sized to keep the module well under a minute

#[test]
fn fuzz_deb822() {
    let seeds = vec![
        PACKAGES.as_bytes().to_vec(),
        RELEASE.as_bytes().to_vec(),
        b"# comment\nTypes: deb\nURIs: http://archive.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n xx\n".to_vec(),
    ];
    fuzz(Parser::Deb822, mutated(seeds));
}

#[test]
fn fuzz_release() {
    fuzz(Parser::Release, mutated(texts(&[RELEASE])));
}

#[test]
fn fuzz_inrelease() {
    let (signed, key) = signed_release();
    let unsigned = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\n\nwnUEARYIAB0WIQQ=\n=abcd\n-----END PGP SIGNATURE-----\n".to_vec();
    let inputs = (
        mutated(vec![signed.clone(), signed.clone(), unsigned]),
        prop_oneof![4 => Just(key.clone()), 1 => mutated(vec![key.clone()]), 1 => Just(Vec::new())],
    )
        .prop_map(|(signed, key)| joined(&[signed, key]));
    fuzz(Parser::InRelease, inputs);
}

#[test]
fn fuzz_keyring() {
    let (_, key) = signed_release();
    let mut twice = key.clone();
    twice.extend_from_slice(key);
    fuzz(Parser::Keyring, mutated(vec![key.clone(), twice]));
}

#[test]
fn fuzz_debian_packages() {
    fuzz(Parser::DebianPackages, mutated(texts(&[PACKAGES])));
}

#[test]
fn fuzz_debian_relations() {
    let seeds = texts(&[
        "libc6 (>= 2.34), libfoo:any | libbar (<< 1:2.0-1~) [amd64 !i386] <!nocheck>",
        "python3:native (= 3.11.2-1+b1), ,dpkg (>> 0:1.2.3~rc1-0ubuntu1)",
        "a (>= 1:0) | b:amd64 (<< 2) | c",
    ]);
    fuzz(Parser::DebianRelations, mutated(seeds));
}

#[test]
fn fuzz_deb() {
    fuzz(Parser::Deb, debs());
}

#[test]
fn fuzz_requirement_lines() {
    let seeds = REQUIREMENT_LINES
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    fuzz(Parser::RequirementLines, mutated(seeds));
}

#[test]
fn fuzz_requirements_files() {
    // The first file mutated, the files it includes mostly as written.
    let file = |seeds: &[&str]| textual(select(texts(seeds)).prop_flat_map(lightly));
    // Mostly includes that form a chain (r0 → r1 → r2 → r3); now and then a cycle.
    let r0 = "-r r1.txt\n-c r2.txt\nrequests>=2 \\\n  --hash=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
    let r1 = "numpy\n-r r2.txt\n--requirement=./r3.txt\n";
    let r2 = "urllib3<2 # a constraint\n-c r3.txt\n";
    let inputs = (
        textual(mutated(texts(&[r0, r0, r0, "-r ./r0.txt\n"]))),
        file(&[r1, r1, r1, "-r r0.txt\n"]),
        file(&[r2, r2, r2, "-r r1.txt\n"]),
        file(&[
            "--index-url https://index.invalid/simple\n-f wheels\n",
            "pkg \\",
        ]),
    )
        .prop_map(|(a, b, c, d)| joined(&[a, b, c, d]));
    fuzz(Parser::RequirementsFiles, inputs);
}

#[test]
fn fuzz_metadata() {
    fuzz(Parser::Metadata, mutated(texts(&[METADATA])));
}

#[test]
fn fuzz_wheel_filename() {
    fuzz(Parser::WheelFilename, mutated(texts(WHEEL_NAMES)));
}

#[test]
fn fuzz_record() {
    let seeds = texts(&[
        "demo/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\"a,b.py\",sha256=x,1\r\n\"q\"\"uote\",,\ndemo-1.0.dist-info/RECORD,,\n",
    ]);
    fuzz(Parser::Record, mutated(seeds));
}

#[test]
fn fuzz_entry_points() {
    let seeds = texts(&[
        "[console_scripts]\ntool = demo.cli:main\ntool-x = demo:Cli.run [extra]\n; comment\n[gui_scripts]\ngui=demo.gui:run\n[other]\nx = y:z\n",
    ]);
    fuzz(Parser::EntryPoints, mutated(seeds));
}

#[test]
fn fuzz_html_page() {
    fuzz(Parser::HtmlPage, mutated(texts(&[HTML_PAGE])));
}

#[test]
fn fuzz_json_page() {
    fuzz(Parser::JsonPage, mutated(texts(&[JSON_PAGE])));
}

#[test]
fn fuzz_wheel() {
    fuzz(Parser::Wheel, wheels());
}

#[test]
fn fuzz_conda_info() {
    fuzz(Parser::CondaInfo, conda_infos());
}

#[cfg(feature = "conda")]
#[test]
fn fuzz_repodata() {
    fuzz(Parser::Repodata, repodatas());
}

#[cfg(feature = "conda")]
#[test]
fn fuzz_conda_archive() {
    fuzz(Parser::CondaArchive, conda_archives());
}

#[test]
fn fuzz_condarc() {
    let seeds = texts(&[
        "# site mirror\nchannel_alias: https://mirror.invalid/conda\nchannels:\n  - conda-forge\n  - 'bioconda'\ncustom_channels:\n  internal: https://intranet.invalid/channels  # ours\nshow_channel_urls: true\n",
        "channels: [a, \"b\", file:///srv/c]\n",
    ]);
    fuzz(Parser::Condarc, mutated(seeds));
}

#[test]
fn fuzz_layer_tar() {
    fuzz(Parser::LayerTar, layer_tars());
}

#[test]
fn fuzz_reference() {
    fuzz(Parser::Reference, mutated(references()));
}

#[test]
fn fuzz_digest() {
    let seeds = vec![format!("sha256:{HEX64}").into_bytes()];
    fuzz(Parser::Digest, mutated(seeds));
}

#[test]
fn fuzz_recipe() {
    let inputs = (
        textual(mutated(texts(&[RECIPE]))),
        textual(lightly(
            b"[vars]\nVERSION = \"2.0\"\nEXTRA = \"x\"\n".to_vec(),
        )),
        textual(lightly(BASE.as_bytes().to_vec())),
        select(texts(&["", "numpy\n"])),
    )
        .prop_map(|(recipe, vars, base, requirements)| joined(&[recipe, vars, base, requirements]));
    fuzz(Parser::Recipe, inputs);
}
