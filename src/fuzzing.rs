//! Entry points for fuzzing the parsers that read outside bytes: one list of parsers, used by
//! the bounded property tests in `src/fuzz_tests.rs` and by the cargo-fuzz target in `fuzz/`.
//! Not part of the program's interface.
//!
//! [`run`] hands bytes to one [`Parser`] the way the program would (text parsers get the bytes
//! as lossy UTF-8, archives are written to a temporary directory first) and returns `Ok` when
//! it accepted them, `Err` with its message when it refused them. It panics only when a parser
//! panics or an accepted value breaks an invariant the rest of the program relies on (a
//! reference that does not re-parse to itself, an image path outside its root): that is what
//! fuzzing looks for.
//!
//! Inputs made of several files (a conda package's `info/`, a recipe project, a requirements
//! file and its includes) are those files separated by [`PART`].

use std::collections::BTreeSet;
use std::fmt::Display;
use std::fs;
use std::path::Path;

use crate::layer::cache::Cache;
use crate::layer::{ImagePath, LayerTree};
use crate::source::debian::{deb, deb822, release, signature, version};
use crate::source::pip::{InstallScheme, index as pip_index, metadata, requirements, wheel};

/// Separates the files of a several-file input: the ASCII record separator, which none of
/// these formats needs.
pub const PART: u8 = 0x1e;

/// The clock that signatures and `Valid-Until` are judged against, fixed so runs repeat.
const NOW: u64 = 1_750_000_000;

/// A parser of outside bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Parser {
    /// deb822 stanzas (`Packages`, dpkg status, `.sources`).
    Deb822,
    /// A `Release` file's text.
    Release,
    /// An `InRelease` file, then optionally an armored keyring.
    InRelease,
    /// An armored OpenPGP keyring (`Signed-By`, `*.asc`).
    Keyring,
    /// A `Packages` index: stanzas read into packages.
    DebianPackages,
    /// A relationship field (`Depends`) and the versions in it.
    DebianRelations,
    /// A `.deb` (ar of tar archives), extracted.
    Deb,
    /// Requirement lines, one at a time, as a recipe gives them.
    RequirementLines,
    /// Requirements files (`-r`/`-c` includes between them), the first one read.
    RequirementsFiles,
    /// Core metadata (`METADATA`, `PKG-INFO`).
    Metadata,
    /// A wheel file name.
    WheelFilename,
    /// A wheel's `RECORD` (CSV).
    Record,
    /// A wheel's `entry_points.txt`.
    EntryPoints,
    /// A PEP 503 HTML project page.
    HtmlPage,
    /// A PEP 691 JSON project page.
    JsonPage,
    /// A wheel file name, then the wheel (a zip): its METADATA read, then installed.
    Wheel,
    /// A conda package's `info/`: index.json, paths.json, link.json, files, has_prefix.
    CondaInfo,
    /// A channel's `repodata.json`, read into lock entries.
    Repodata,
    /// A conda package file name, then the package (`.tar.bz2` or `.conda`), extracted.
    CondaArchive,
    /// A `.condarc`.
    Condarc,
    /// An uncompressed image layer (tar), scanned for what pip layers need.
    LayerTar,
    /// An image reference.
    Reference,
    /// A digest (`sha256:…`).
    Digest,
    /// A recipe project: a recipe, `recipes/_vars.toml`, `layers/base.toml`.
    Recipe,
}

impl Parser {
    pub const ALL: [Parser; 24] = [
        Parser::Deb822,
        Parser::Release,
        Parser::InRelease,
        Parser::Keyring,
        Parser::DebianPackages,
        Parser::DebianRelations,
        Parser::Deb,
        Parser::RequirementLines,
        Parser::RequirementsFiles,
        Parser::Metadata,
        Parser::WheelFilename,
        Parser::Record,
        Parser::EntryPoints,
        Parser::HtmlPage,
        Parser::JsonPage,
        Parser::Wheel,
        Parser::CondaInfo,
        Parser::Repodata,
        Parser::CondaArchive,
        Parser::Condarc,
        Parser::LayerTar,
        Parser::Reference,
        Parser::Digest,
        Parser::Recipe,
    ];
}

/// Feeds `bytes` to `parser`; see the module documentation.
pub fn run(parser: Parser, bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    match parser {
        Parser::Deb822 => deb822_stanzas(&text),
        Parser::Release => release_file(&text),
        Parser::InRelease => inrelease(bytes),
        Parser::Keyring => signature::Keyring::from_armored(&text)
            .map(drop)
            .map_err(message),
        Parser::DebianPackages => debian_packages(&text),
        Parser::DebianRelations => debian_relations(&text),
        Parser::Deb => deb_file(bytes),
        Parser::RequirementLines => requirement_lines(&text),
        Parser::RequirementsFiles => requirements_files(bytes),
        Parser::Metadata => metadata::parse(bytes, "METADATA")
            .map(drop)
            .map_err(message),
        Parser::WheelFilename => wheel_filename(&text),
        Parser::Record => record(&text),
        Parser::EntryPoints => wheel::script_entry_points("fuzz.whl", &text)
            .map(drop)
            .map_err(message),
        Parser::HtmlPage => project_page(&text, false),
        Parser::JsonPage => project_page(&text, true),
        Parser::Wheel => wheel_file(bytes),
        Parser::CondaInfo => conda_info(bytes),
        Parser::Repodata => repodata(bytes),
        Parser::CondaArchive => conda_archive(bytes),
        Parser::Condarc => condarc(&text),
        Parser::LayerTar => crate::source::pip::scan::LayerScan::of_tar(bytes)
            .map(drop)
            .map_err(message),
        Parser::Reference => reference(&text),
        Parser::Digest => digest(&text),
        Parser::Recipe => recipe(bytes),
    }
}

/// The parts of a several-file input; missing parts are empty.
pub fn parts<const N: usize>(bytes: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut split = bytes.splitn(N, |&b| b == PART);
    for slot in &mut out {
        *slot = split.next().unwrap_or_default();
    }
    out
}

fn message(error: impl Display) -> String {
    error.to_string()
}

/// A scratch directory, or the reason there is none (which is not the parser's fault).
fn scratch() -> Result<tempfile::TempDir, String> {
    tempfile::tempdir().map_err(|e| format!("fuzz harness: no temporary directory: {e}"))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("fuzz harness: {e}"))?;
    }
    fs::write(path, bytes).map_err(|e| format!("fuzz harness: {e}"))
}

/// An accepted image path must stay under `root` (a path, relative, without `..`).
fn assert_under(path: &ImagePath, root: &str, what: &str) {
    let p = path.as_str();
    assert!(
        p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
            && (p == root || p.starts_with(&format!("{root}/"))),
        "{what}: accepted image path `{p}` is not under `/{root}`"
    );
}

/// Nothing but `expected` may appear in a scratch directory after an extraction into it.
fn assert_only(dir: &Path, expected: &[&str], what: &str) {
    let mut found: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert!(
        found.iter().all(|f| expected.contains(f)),
        "{what} wrote outside its directory: {found:?}"
    );
}

fn deb822_stanzas(text: &str) -> Result<(), String> {
    let stanzas = deb822::parse(text).map_err(message)?;
    for stanza in &stanzas {
        // The dpkg status of a layer is written with to_text and read back by the next layer.
        let again = deb822::parse(&stanza.to_text())
            .unwrap_or_else(|e| panic!("stanza {stanza:?} does not re-parse: {e}"));
        let fields: Vec<_> = stanza.fields().collect();
        let back: Vec<_> = again.iter().flat_map(|s| s.fields()).collect();
        assert_eq!(back, fields, "stanza does not round-trip through to_text");
    }
    Ok(())
}

fn release_file(text: &str) -> Result<(), String> {
    let parsed = release::parse_release(text).map_err(message)?;
    for (path, hash) in &parsed.sha256 {
        assert!(
            crate::digest::Digest::from_hex(&hash.sha256).is_ok(),
            "Release lists `{path}` with sha256 `{}`, not 64 lowercase hex digits",
            hash.sha256
        );
    }
    for date in [&parsed.date, &parsed.valid_until].into_iter().flatten() {
        release::parse_date(date);
    }
    parsed.check_valid_until(NOW).map_err(message)
}

fn inrelease(bytes: &[u8]) -> Result<(), String> {
    let [signed, keyring] = parts::<2>(bytes);
    let keyrings: Vec<_> = signature::Keyring::from_armored(&String::from_utf8_lossy(keyring))
        .into_iter()
        .collect();
    let text =
        signature::verify_inrelease_at(signed, &keyrings, "InRelease", NOW).map_err(message)?;
    release_file(&text)
}

fn debian_packages(text: &str) -> Result<(), String> {
    let stanzas = deb822::parse(text).map_err(message)?;
    for stanza in stanzas {
        let package = crate::source::debian::index::to_package(
            stanza,
            "http://archive.invalid/debian",
            "Packages",
        )
        .map_err(message)?;
        let version = &package.package.version;
        let again: version::Version = version
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("version {version} does not re-parse: {e}"));
        assert_eq!(&again, version, "version does not round-trip");
    }
    Ok(())
}

fn debian_relations(text: &str) -> Result<(), String> {
    for group in version::parse_relations(text).map_err(message)? {
        for dependency in group {
            let written = dependency.to_string();
            let again = version::parse_relations(&written)
                .unwrap_or_else(|e| panic!("`{written}` does not re-parse: {e}"));
            assert_eq!(again, [vec![dependency]], "dependency does not round-trip");
        }
    }
    Ok(())
}

fn deb_file(bytes: &[u8]) -> Result<(), String> {
    let dir = scratch()?;
    let file = dir.path().join("fuzz.deb");
    write(&file, bytes)?;
    let result = deb::extract(
        &file,
        &crate::digest::Digest::of_bytes(bytes),
        &dir.path().join("x"),
    );
    assert_only(dir.path(), &["fuzz.deb", "x"], "deb extraction");
    let extracted = result.map_err(message)?;
    for entry in &extracted.entries {
        let path = ImagePath::new(&entry.path)
            .unwrap_or_else(|e| panic!("deb entry `{}` is not an image path: {e}", entry.path));
        assert_eq!(path.as_str(), entry.path, "deb entry path is not clean");
    }
    for name in extracted.control_files.keys() {
        assert!(
            !name.is_empty() && !name.contains('/'),
            "control file name `{name}`"
        );
    }
    Ok(())
}

/// `-r /dev/zero` would read forever: includes of device files are not the parser's to
/// survive, and a long fuzzing run finds such names.
fn names_devices(text: &str) -> bool {
    ["dev/", "proc/", "sys/"].iter().any(|d| text.contains(d))
}

fn requirement_lines(text: &str) -> Result<(), String> {
    if names_devices(text) {
        return Err("fuzz harness: device paths are not followed".to_owned());
    }
    let mut last = Ok(());
    for line in text.lines() {
        let mut requirements = requirements::Requirements::default();
        last = requirements.add_line(line, "fuzz").map_err(message);
    }
    last
}

fn requirements_files(bytes: &[u8]) -> Result<(), String> {
    if names_devices(&String::from_utf8_lossy(bytes)) {
        return Err("fuzz harness: device paths are not followed".to_owned());
    }
    let dir = scratch()?;
    let files = parts::<4>(bytes);
    for (i, content) in files.iter().enumerate() {
        write(&dir.path().join(format!("r{i}.txt")), content)?;
    }
    let mut requirements = requirements::Requirements::default();
    let result = requirements.add_file(&dir.path().join("r0.txt"));
    result.map_err(message)
}

fn wheel_filename(text: &str) -> Result<(), String> {
    let name = wheel::parse_wheel_filename(text).map_err(message)?;
    let mut rebuilt = format!("{}-{}", name.name, name.version);
    if let Some(build) = &name.build {
        rebuilt.push_str(&format!("-{build}"));
    }
    for tags in [&name.python_tags, &name.abi_tags, &name.platform_tags] {
        rebuilt.push_str(&format!("-{}", tags.join(".")));
    }
    rebuilt.push_str(".whl");
    assert_eq!(rebuilt, text, "wheel file name does not round-trip");
    Ok(())
}

fn record(text: &str) -> Result<(), String> {
    let rows = wheel::parse_csv(text)?;
    // Installs write RECORD back with csv_field; pip must read the same rows.
    let mut written = String::new();
    for row in &rows {
        let fields: Vec<String> = row.iter().map(|f| wheel::csv_field(f)).collect();
        written.push_str(&fields.join(","));
        written.push('\n');
    }
    let again = wheel::parse_csv(&written)
        .unwrap_or_else(|e| panic!("written RECORD does not re-parse: {e}"));
    assert_eq!(again, rows, "RECORD rows do not round-trip");
    Ok(())
}

fn project_page(body: &str, json: bool) -> Result<(), String> {
    let links = if json {
        pip_index::parse_json_page(body).map_err(message)?
    } else {
        pip_index::parse_html_page(body)
    };
    let base = reqwest::Url::parse("https://index.invalid/simple/demo/").map_err(message)?;
    for link in links {
        // As read_page does: links are made absolute, then recognised as dists of `demo`.
        let Ok(url) = base.join(&link.href) else {
            continue;
        };
        // As read_page does: hashes that are not digests refuse the page.
        let digest = |hex: String| crate::digest::Digest::from_hex(&hex.to_ascii_lowercase());
        let Ok(sha256) = link.sha256.map(digest).transpose() else {
            continue;
        };
        let metadata = match link.metadata {
            Some(Some(hex)) => match digest(hex) {
                Ok(d) => Some(Some(d)),
                Err(_) => continue,
            },
            Some(None) => Some(None),
            None => None,
        };
        pip_index::dist_file(
            &link.filename,
            url.to_string(),
            sha256,
            link.requires_python.as_deref(),
            link.yanked,
            metadata,
            "demo",
        );
    }
    Ok(())
}

fn scheme() -> InstallScheme {
    InstallScheme::debian("3.11", "/usr/bin/python3".to_owned())
}

fn wheel_file(bytes: &[u8]) -> Result<(), String> {
    let [filename, archive] = parts::<2>(bytes);
    let filename = String::from_utf8_lossy(filename);
    let dir = scratch()?;
    // The file name is only a name: the bytes go to a fixed path.
    let path = dir.path().join("fuzz.whl");
    write(&path, archive)?;
    let _ = wheel::read_metadata(&path, &filename);
    let cache = Cache::open(&dir.path().join("cache")).map_err(message)?;
    let sha256 = crate::digest::Digest::of_bytes(archive);
    let mut tree = LayerTree::default();
    let result = wheel::install_wheel(
        &mut tree,
        &scheme(),
        &wheel::WheelFile {
            path: &path,
            filename: &filename,
            sha256: sha256.hex(),
            requested: true,
        },
        &cache,
    );
    assert_only(dir.path(), &["fuzz.whl", "cache"], "wheel extraction");
    result.map_err(message)?;
    for path in tree.paths() {
        assert_under(path, "usr/local", "wheel install");
    }
    Ok(())
}

/// The files of the package that [`conda_info`] installs, beside its `info/`.
const CONDA_FILES: &[(&str, &[u8])] = &[
    (
        "bin/tool",
        b"#!/opt/anaconda1anaconda2anaconda3/bin/python\nprint('tool')\n",
    ),
    (
        "lib/libtool.so",
        b"\x7fELF\0/opt/anaconda1anaconda2anaconda3/lib\0tail\0",
    ),
    ("site-packages/tool/__init__.py", b"VALUE = 1\n"),
    ("python-scripts/tool-cli", b"#!/usr/bin/env python\n"),
];

fn locked_conda(
    name: &str,
    filename: &str,
    sha256: &crate::digest::Digest,
) -> crate::source::conda::LockedConda {
    crate::source::conda::LockedConda {
        name: name.to_owned(),
        version: "3.11.1".to_owned(),
        build: "0".to_owned(),
        subdir: "linux-64".to_owned(),
        channel: "fuzz".to_owned(),
        filename: filename.to_owned(),
        url: None,
        sha256: sha256.clone(),
        md5: None,
        size: None,
    }
}

fn conda_info(bytes: &[u8]) -> Result<(), String> {
    use crate::source::conda::install::{ListedEntry, ListedKind, Listing};
    use crate::source::conda::{CondaSpec, Unpacked};

    let [index, paths, link, files, has_prefix] = parts::<5>(bytes);
    let dir = scratch()?;
    let package = dir.path().join("tool");
    let mut entries = Vec::new();
    for (path, content) in CONDA_FILES {
        write(&package.join("files").join(path), content)?;
        let size = content.len() as u64;
        let kind = ListedKind::File { size };
        entries.push(ListedEntry {
            path: crate::name::RelPath::new(path).expect("fixed paths are relative"),
            kind,
            mode: 0o755,
        });
    }
    entries.push(ListedEntry {
        path: crate::name::RelPath::new("bin/tool-link").expect("fixed paths are relative"),
        kind: ListedKind::Symlink {
            target: "tool".to_owned(),
        },
        mode: 0o777,
    });
    entries.push(ListedEntry {
        path: crate::name::RelPath::new("lib/libtool.so.1").expect("fixed paths are relative"),
        kind: ListedKind::Hardlink {
            target: "lib/libtool.so".to_owned(),
        },
        mode: 0o755,
    });
    entries.push(ListedEntry {
        path: crate::name::RelPath::new("share").expect("fixed paths are relative"),
        kind: ListedKind::Directory,
        mode: 0o755,
    });
    // An empty part is a file the package does not have (paths.json: an old package).
    for (name, content) in [
        ("index.json", index),
        ("paths.json", paths),
        ("link.json", link),
        ("files", files),
        ("has_prefix", has_prefix),
    ] {
        if !content.is_empty() || name == "index.json" {
            write(&package.join("files/info").join(name), content)?;
        }
    }
    // `noarch: python` packages need a python among the layer's packages.
    let python = dir.path().join("python");
    write(&python.join("files/info/index.json"), b"{}")?;
    write(&python.join("files/info/paths.json"), br#"{"paths": []}"#)?;
    let zero = crate::digest::Digest::from_hex(&"0".repeat(64)).expect("64 hex digits");
    let unpacked = |name: &str, dir: &Path, listing: Listing| Unpacked {
        locked: locked_conda(name, &format!("{name}-3.11.1-0.tar.bz2"), &zero),
        url: format!("https://channel.invalid/fuzz/linux-64/{name}-3.11.1-0.tar.bz2"),
        channel_url: "https://channel.invalid/fuzz".to_owned(),
        dir: dir.to_owned(),
        listing,
    };
    let spec = CondaSpec {
        channels: vec!["fuzz".to_owned()],
        specs: vec!["tool".to_owned(), "python 3.11.*".to_owned()],
        prefix: "/opt/conda".to_owned(),
    };
    let tree = crate::source::conda::install::install(
        &spec,
        &[
            unpacked("python", &python, Listing::default()),
            unpacked("tool", &package, Listing { entries }),
        ],
        0,
    )
    .map_err(message)?;
    for path in tree.paths() {
        assert_under(path, "opt/conda", "conda install");
    }
    Ok(())
}

#[cfg(not(feature = "conda"))]
fn repodata(_: &[u8]) -> Result<(), String> {
    Err("built without the conda feature".to_owned())
}

#[cfg(feature = "conda")]
fn repodata(bytes: &[u8]) -> Result<(), String> {
    use crate::source::conda::channel::ResolvedChannel;
    use rattler_conda_types::{Channel, RepoData};

    let repodata: RepoData = serde_json::from_slice(bytes).map_err(message)?;
    let url = url::Url::parse("https://channel.invalid/fuzz/").map_err(message)?;
    let channel = ResolvedChannel {
        name: "fuzz".to_owned(),
        url: "https://channel.invalid/fuzz".to_owned(),
    };
    // Each record is locked, then installed as an empty package: what a lock pins goes into
    // paths of the image (`conda-meta/<name>-<version>-<build>.json`).
    let dir = scratch()?;
    write(&dir.path().join("files/info/index.json"), b"{}")?;
    write(
        &dir.path().join("files/info/paths.json"),
        br#"{"paths": []}"#,
    )?;
    let packages = repodata
        .into_repo_data_records(&Channel::from_url(url))
        .iter()
        .map(|record| {
            Ok(crate::source::conda::Unpacked {
                locked: crate::source::conda::solve::lock_entry(&channel, record)?,
                url: record.url.to_string(),
                channel_url: channel.url.clone(),
                dir: dir.path().to_owned(),
                listing: Default::default(),
            })
        })
        .collect::<Result<Vec<_>, crate::source::conda::CondaError>>()
        .map_err(message)?;
    let spec = crate::source::conda::CondaSpec {
        channels: vec![channel.name.clone()],
        specs: vec!["tool".to_owned()],
        prefix: "/opt/conda".to_owned(),
    };
    let tree = crate::source::conda::install::install(&spec, &packages, 0).map_err(message)?;
    for path in tree.paths() {
        assert_under(path, "opt/conda", "conda install");
    }
    Ok(())
}

#[cfg(not(feature = "conda"))]
fn conda_archive(_: &[u8]) -> Result<(), String> {
    Err("built without the conda feature".to_owned())
}

#[cfg(feature = "conda")]
fn conda_archive(bytes: &[u8]) -> Result<(), String> {
    let [filename, archive] = parts::<2>(bytes);
    let filename = String::from_utf8_lossy(filename);
    let dir = scratch()?;
    let path = dir.path().join("package");
    write(&path, archive)?;
    let cache = Cache::open(&dir.path().join("cache")).map_err(message)?;
    let sha256 = crate::digest::Digest::of_bytes(archive);
    let locked = locked_conda("tool", &filename, &sha256);
    let result = crate::source::conda::archive::extract_cached(
        &cache,
        &path,
        &locked,
        "https://channel.invalid/fuzz/linux-64/package",
    );
    assert_only(dir.path(), &["package", "cache"], "conda extraction");
    let (_, listing) = result.map_err(message)?;
    for entry in &listing.entries {
        let path = ImagePath::new(entry.path.as_str())
            .unwrap_or_else(|e| panic!("conda entry `{}` is not an image path: {e}", entry.path));
        assert_eq!(
            path.as_str(),
            entry.path.as_str(),
            "conda entry path is not clean"
        );
    }
    Ok(())
}

fn condarc(text: &str) -> Result<(), String> {
    let config = crate::source::conda::channel::ChannelConfig::parse_condarc(text);
    let mut names = config.channels.clone();
    names.extend(config.custom_channels.keys().cloned());
    names.push("conda-forge".to_owned());
    config.resolve(&names).map(drop).map_err(message)
}

fn reference(text: &str) -> Result<(), String> {
    use crate::reference::Reference;
    let parsed: Reference = text.parse().map_err(message)?;
    let written = parsed.to_string();
    let again: Reference = written
        .parse()
        .unwrap_or_else(|e| panic!("`{text}` is written `{written}`, which does not parse: {e}"));
    assert_eq!(
        again, parsed,
        "`{text}` does not round-trip through `{written}`"
    );
    // docker-archive RepoTags use the familiar form; it must name the same repository.
    let familiar = parsed.familiar();
    let short: Reference = familiar
        .parse()
        .unwrap_or_else(|e| panic!("familiar form `{familiar}` of `{text}` does not parse: {e}"));
    assert_eq!(
        (&short.registry, &short.repository),
        (&parsed.registry, &parsed.repository),
        "familiar form `{familiar}` of `{text}` names another repository"
    );
    Ok(())
}

fn digest(text: &str) -> Result<(), String> {
    let parsed: crate::digest::Digest = text.parse().map_err(message)?;
    assert!(
        parsed.hex().len() == 64
            && parsed
                .hex()
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "digest `{text}` accepted with hex `{}`",
        parsed.hex()
    );
    assert_eq!(parsed.to_string(), text, "digest does not round-trip");
    Ok(())
}

fn recipe(bytes: &[u8]) -> Result<(), String> {
    let [recipe, vars, base, requirements] = parts::<4>(bytes);
    let dir = scratch()?;
    let root = dir.path();
    write(&root.join("recipes/fuzz.toml"), recipe)?;
    if !vars.is_empty() {
        write(&root.join("recipes/_vars.toml"), vars)?;
    }
    if !base.is_empty() {
        write(&root.join("layers/base.toml"), base)?;
    }
    write(&root.join("requirements.txt"), requirements)?;
    let project = crate::recipe::Project::open(root).map_err(message)?;
    let mut last = Ok(());
    let mut names: BTreeSet<String> = project.target_names().into_iter().collect();
    names.insert("base".to_owned());
    for name in &names {
        if let Err(e) = project.load(name) {
            last = Err(e.to_string());
        }
    }
    last
}
