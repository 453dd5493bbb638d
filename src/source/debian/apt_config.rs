//! Where packages come from: the apt sources of a system, read the way apt reads them.
//!
//! Input: a root directory (`/` for the host) holding `etc/apt/sources.list` and
//! `etc/apt/sources.list.d/`. Output: its [`AptSource`]s in apt's order — `sources.list` first,
//! then the files of `sources.list.d` by name — each with the keys its Release files must be
//! signed with ([`SignedBy`]), and [`default_keyrings`], the keys apt trusts when a source names
//! none.
//!
//! Implements sources.list(5): the one-line format of `*.list` files
//! (`deb [option=value …] URI SUITE [COMPONENT …]`) and the deb822 format of `*.sources` files
//! (`Types`, `URIs`, `Suites`, `Components`, `Signed-By`, `Architectures`, `Enabled`). Only
//! binary (`deb`) sources are returned. Options that only change how apt downloads (`lang`,
//! `pdiffs`, `by-hash`, …) are ignored, as are `arch+=`/`arch-=`, which adjust apt's default
//! architecture list and cannot widen what a build asks for. Signed-By naming key fingerprints
//! rather than keyrings is refused instead of trusting every default key in its place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::deb822::{self, Deb822Error, Stanza};

#[derive(Debug, thiserror::Error)]
pub enum AptConfigError {
    #[error("cannot read apt configuration `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` is not a valid deb822 sources file")]
    Syntax {
        path: PathBuf,
        #[source]
        source: Deb822Error,
    },
    #[error("apt source at {origin}: {problem}")]
    Entry { origin: String, problem: String },
}

/// The keys that may sign a source's Release files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignedBy {
    /// No Signed-By: any key of [`default_keyrings`].
    Default,
    /// Keyring files (binary or armored), any key of which may sign.
    Keyrings(Vec<PathBuf>),
    /// An armored public key block given in the sources file itself.
    Inline(String),
}

/// One binary-package source: every URI × suite × component combination of one line or
/// stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AptSource {
    pub uris: Vec<String>,
    /// Suites (`bookworm`, `bookworm-updates`), or paths ending in `/` for flat repositories.
    pub suites: Vec<String>,
    /// Empty for flat repositories.
    pub components: Vec<String>,
    pub signed_by: SignedBy,
    /// The architectures the source is limited to; `None` for apt's default.
    pub architectures: Option<Vec<String>>,
    /// The file and line the source came from, for messages.
    pub origin: String,
}

const ARMOR_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Reads the binary-package sources configured under `root`.
///
/// Files of `sources.list.d` are read in byte order of their names; only `*.list` and
/// `*.sources` are, and only those whose names apt accepts (letters, digits, `_`, `-`, `.`), so
/// `foo.list.save` or `foo.sources.disabled` stay ignored as apt ignores them. A missing
/// `sources.list` or `sources.list.d` is not an error.
pub(crate) fn read_host_sources(root: &Path) -> Result<Vec<AptSource>, AptConfigError> {
    let mut sources = Vec::new();
    let main = root.join("etc/apt/sources.list");
    if let Some(text) = read_optional(&main)? {
        parse_one_line(&main, &text, root, &mut sources)?;
    }
    let dir = root.join("etc/apt/sources.list.d");
    for (path, name) in dir_files(&dir, &[".list", ".sources"])? {
        let text = fs::read_to_string(&path).map_err(|source| AptConfigError::Read {
            path: path.clone(),
            source,
        })?;
        if name.ends_with(".list") {
            parse_one_line(&path, &text, root, &mut sources)?;
        } else {
            parse_deb822(&path, &text, root, &mut sources)?;
        }
    }
    Ok(sources)
}

/// apt's fallback trusted keys: `etc/apt/trusted.gpg` if present, then the `*.gpg` and `*.asc`
/// files of `etc/apt/trusted.gpg.d` in name order. Unreadable directories give no keys, which
/// makes verification fail later with a message about the source, not here.
pub(crate) fn default_keyrings(root: &Path) -> Vec<PathBuf> {
    let mut keyrings = Vec::new();
    let main = root.join("etc/apt/trusted.gpg");
    if main.is_file() {
        keyrings.push(main);
    }
    let parts = dir_files(&root.join("etc/apt/trusted.gpg.d"), &[".gpg", ".asc"]);
    keyrings.extend(parts.unwrap_or_default().into_iter().map(|(path, _)| path));
    keyrings
}

fn read_optional(path: &Path) -> Result<Option<String>, AptConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AptConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The non-directory entries of `dir` whose names end in one of `extensions` and use only the
/// characters apt allows in configuration file names, sorted by name.
fn dir_files(dir: &Path, extensions: &[&str]) -> Result<Vec<(PathBuf, String)>, AptConfigError> {
    let read_err = |source| AptConfigError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let allowed = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !allowed || !extensions.iter().any(|ext| name.ends_with(ext)) {
            continue;
        }
        // Follows symbolic links, as apt does; a dangling one is left to fail when read.
        let path = entry.path();
        if path.is_dir() {
            continue;
        }
        files.push((path, name));
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

/// `*.list` files and `sources.list`: one source per line.
fn parse_one_line(
    path: &Path,
    text: &str,
    root: &Path,
    out: &mut Vec<AptSource>,
) -> Result<(), AptConfigError> {
    for (index, raw) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), index + 1);
        let fail = |problem: String| AptConfigError::Entry {
            origin: origin.clone(),
            problem,
        };
        // apt drops everything from a `#` on, not only whole comment lines.
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match kind {
            "deb" => {}
            "deb-src" => continue,
            other => {
                return Err(fail(format!(
                    "unknown type `{other}` (expected deb or deb-src)"
                )));
            }
        }
        let mut rest = rest.trim_start();
        let mut signed_by = SignedBy::Default;
        let mut architectures = None;
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else {
                return Err(fail("the options list has no closing `]`".to_owned()));
            };
            for option in after[..close].split_whitespace() {
                let Some((key, value)) = option.split_once('=') else {
                    return Err(fail(format!("option `{option}` has no `=value`")));
                };
                match key {
                    "arch" => architectures = Some(list(value)),
                    "signed-by" => signed_by = signed_by_paths(value, root).map_err(&fail)?,
                    _ => {}
                }
            }
            rest = &after[close + 1..];
        }
        let mut words = rest.split_whitespace();
        let Some(uri) = words.next() else {
            return Err(fail("the line has no URI".to_owned()));
        };
        let Some(suite) = words.next() else {
            return Err(fail(format!("the line has no suite after `{uri}`")));
        };
        let suites = vec![suite.to_owned()];
        let components: Vec<String> = words.map(str::to_owned).collect();
        check_components(&suites, &components).map_err(fail)?;
        out.push(AptSource {
            uris: vec![uri.to_owned()],
            suites,
            components,
            signed_by,
            architectures,
            origin,
        });
    }
    Ok(())
}

/// `*.sources` files: one source per stanza.
fn parse_deb822(
    path: &Path,
    text: &str,
    root: &Path,
    out: &mut Vec<AptSource>,
) -> Result<(), AptConfigError> {
    let stanzas = deb822::parse(text).map_err(|source| AptConfigError::Syntax {
        path: path.to_owned(),
        source,
    })?;
    for stanza in stanzas {
        let origin = format!("{}:{}", path.display(), stanza.line());
        let fail = |problem: String| AptConfigError::Entry {
            origin: origin.clone(),
            problem,
        };
        let enabled = match stanza.get("Enabled") {
            Some(value) => apt_bool(value)
                .ok_or_else(|| fail(format!("`Enabled: {value}` is neither yes nor no")))?,
            None => true,
        };
        if !enabled {
            continue;
        }
        let types = words(&stanza, "Types");
        if types.is_empty() {
            return Err(fail("the stanza has no Types field".to_owned()));
        }
        if let Some(other) = types
            .iter()
            .find(|t| !matches!(t.as_str(), "deb" | "deb-src"))
        {
            return Err(fail(format!(
                "unknown type `{other}` (expected deb or deb-src)"
            )));
        }
        if !types.iter().any(|t| t == "deb") {
            continue;
        }
        let uris = words(&stanza, "URIs");
        if uris.is_empty() {
            return Err(fail("the stanza has no URIs field".to_owned()));
        }
        let suites = words(&stanza, "Suites");
        if suites.is_empty() {
            return Err(fail("the stanza has no Suites field".to_owned()));
        }
        let components = words(&stanza, "Components");
        check_components(&suites, &components).map_err(&fail)?;
        let signed_by = match stanza.get("Signed-By") {
            Some(value) if value.contains(ARMOR_BEGIN) => SignedBy::Inline(inline_key(value)),
            Some(value) => signed_by_paths(value, root).map_err(&fail)?,
            None => SignedBy::Default,
        };
        let architectures = stanza.get("Architectures").map(list);
        out.push(AptSource {
            uris,
            suites,
            components,
            signed_by,
            architectures,
            origin,
        });
    }
    Ok(())
}

/// A deb822 list field: whitespace-separated words, over as many lines as it takes.
fn words(stanza: &Stanza, field: &str) -> Vec<String> {
    stanza
        .get(field)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A list in an option or field that apt splits at commas or whitespace.
fn list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A suite ending in `/` is a path in a flat repository, which has no components; any other
/// suite needs at least one.
fn check_components(suites: &[String], components: &[String]) -> Result<(), String> {
    let flat = suites.iter().filter(|s| s.ends_with('/')).count();
    if flat > 0 && flat < suites.len() {
        return Err(
            "flat-repository suites (ending in `/`) and ordinary suites are mixed".to_owned(),
        );
    }
    match (flat > 0, components.is_empty()) {
        (true, false) => Err(format!(
            "suite `{}` ends in `/` (a flat repository), which takes no components",
            suites[0]
        )),
        (false, true) => Err(format!("suite `{}` has no components", suites[0])),
        _ => Ok(()),
    }
}

/// Signed-By naming keyring files. Relative paths are taken relative to `root`.
fn signed_by_paths(value: &str, root: &Path) -> Result<SignedBy, String> {
    let items = list(value);
    if items.is_empty() {
        return Ok(SignedBy::Default);
    }
    let mut paths = Vec::with_capacity(items.len());
    for item in items {
        // apt also accepts key fingerprints here, meaning "this key of the default keyrings";
        // we would have to trust all of them instead, so we refuse.
        let hex = item.trim_end_matches('!');
        if hex.len() >= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "Signed-By `{item}` is a key fingerprint; only keyring files and inline keys are supported"
            ));
        }
        let path = Path::new(&item);
        paths.push(if path.is_absolute() {
            path.to_owned()
        } else {
            root.join(path)
        });
    }
    Ok(SignedBy::Keyrings(paths))
}

/// An inline key as the armored text it was before being folded into a field: deb822 writes
/// its empty lines as ` .`, which become empty lines again.
fn inline_key(value: &str) -> String {
    let mut key = String::with_capacity(value.len() + 1);
    for line in value.trim().lines() {
        let line = line.trim();
        if line != "." {
            key.push_str(line);
        }
        key.push('\n');
    }
    key
}

/// apt's spellings of booleans in configuration.
fn apt_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "with" | "on" | "enable" | "1" => Some(true),
        "no" | "false" | "without" | "off" | "disable" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    const KEY_FIELD: &str = "Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZkZXeRYJKwYBBAHaRw8BAQdAexample
 =abcd
 -----END PGP PUBLIC KEY BLOCK-----
";

    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/apt/sources.list",
            "# the main archive\n\
             deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/main.gpg] http://archive.invalid/debian bookworm main contrib # trailing\n\
             deb-src http://archive.invalid/debian bookworm main\n\
             \n\
             deb [ signed-by=keys/flat.asc ] http://flat.invalid/repo ./\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/b.sources",
            &format!(
                "Types: deb deb-src\n\
                 # a comment inside the stanza\n\
                 URIs: http://archive.invalid/debian http://mirror.invalid/debian\n\
                 Suites: bookworm\n bookworm-updates\n\
                 Components: main\n\
                 Architectures: amd64\n\
                 {KEY_FIELD}\n\
                 Types: deb\n\
                 URIs: http://disabled.invalid/debian\n\
                 Suites: bookworm\n\
                 Components: main\n\
                 Enabled: no\n\
                 \n\
                 Types: deb-src\n\
                 URIs: http://archive.invalid/debian\n\
                 Suites: bookworm\n\
                 Components: main\n"
            ),
        );
        write(
            root,
            "etc/apt/sources.list.d/a.list",
            "deb http://extra.invalid/debian stable main\n",
        );
        // Files apt ignores; reading them would fail.
        for name in [
            "c.list.disabled-by-farm",
            "c.sources.save",
            "c.list~",
            "bad name.list",
        ] {
            write(root, &format!("etc/apt/sources.list.d/{name}"), "garbage\n");
        }
        fs::create_dir_all(root.join("etc/apt/sources.list.d/dir.list")).unwrap();
        dir
    }

    #[test]
    fn reads_both_formats_in_apt_order() {
        let dir = fake_root();
        let root = dir.path();
        let sources = read_host_sources(root).unwrap();
        let summary: Vec<_> = sources
            .iter()
            .map(|s| (s.uris.join(" "), s.suites.join(" "), s.components.join(" ")))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "http://archive.invalid/debian".into(),
                    "bookworm".into(),
                    "main contrib".into()
                ),
                (
                    "http://flat.invalid/repo".into(),
                    "./".into(),
                    String::new()
                ),
                (
                    "http://extra.invalid/debian".into(),
                    "stable".into(),
                    "main".into()
                ),
                (
                    "http://archive.invalid/debian http://mirror.invalid/debian".into(),
                    "bookworm bookworm-updates".into(),
                    "main".into()
                ),
            ]
        );

        let main = &sources[0];
        assert_eq!(
            main.signed_by,
            SignedBy::Keyrings(vec![PathBuf::from("/usr/share/keyrings/main.gpg")])
        );
        assert_eq!(
            main.architectures,
            Some(vec!["amd64".into(), "arm64".into()])
        );
        assert_eq!(
            main.origin,
            format!("{}:2", root.join("etc/apt/sources.list").display())
        );

        // Relative keyring paths are under the root.
        assert_eq!(
            sources[1].signed_by,
            SignedBy::Keyrings(vec![root.join("keys/flat.asc")])
        );
        assert_eq!(sources[2].signed_by, SignedBy::Default);
        assert_eq!(sources[2].architectures, None);

        let deb822 = &sources[3];
        assert_eq!(deb822.architectures, Some(vec!["amd64".into()]));
        assert_eq!(
            deb822.origin,
            format!(
                "{}:1",
                root.join("etc/apt/sources.list.d/b.sources").display()
            )
        );
        assert_eq!(
            deb822.signed_by,
            SignedBy::Inline(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n\
                 mDMEZkZXeRYJKwYBBAHaRw8BAQdAexample\n=abcd\n\
                 -----END PGP PUBLIC KEY BLOCK-----\n"
                    .into()
            )
        );
    }

    #[test]
    fn empty_or_missing_configuration_gives_no_sources() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_host_sources(dir.path()).unwrap().is_empty());
        write(dir.path(), "etc/apt/sources.list", "# nothing\n\n");
        assert!(read_host_sources(dir.path()).unwrap().is_empty());
    }

    #[track_caller]
    fn assert_error(rel: &str, text: &str, line: usize, fragment: &str) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), rel, text);
        let err = read_host_sources(dir.path()).unwrap_err();
        let message = err.to_string();
        let origin = format!("{}:{line}", dir.path().join(rel).display());
        assert!(message.contains(&origin), "{message} (expected {origin})");
        assert!(
            message.contains(fragment),
            "{message} (expected {fragment})"
        );
    }

    #[test]
    fn malformed_sources_name_file_and_line() {
        let list = "etc/apt/sources.list.d/x.list";
        assert_error(list, "\ndeb http://archive.invalid/debian\n", 2, "no suite");
        assert_error(
            list,
            "deb http://archive.invalid/debian bookworm\n",
            1,
            "no components",
        );
        assert_error(
            list,
            "deb http://archive.invalid/debian ./ main\n",
            1,
            "takes no components",
        );
        assert_error(
            list,
            "rpm http://archive.invalid/x y z\n",
            1,
            "unknown type `rpm`",
        );
        assert_error(
            list,
            "deb [arch=amd64 http://archive.invalid/x y z\n",
            1,
            "`]`",
        );
        assert_error(
            list,
            "deb [trusted] http://archive.invalid/x y z\n",
            1,
            "`trusted`",
        );
        assert_error(
            list,
            "deb [signed-by=0123456789ABCDEF0123456789ABCDEF01234567] http://archive.invalid/x y z\n",
            1,
            "fingerprint",
        );
        let sources = "etc/apt/sources.list.d/x.sources";
        let stanza = "Types: deb\nURIs: http://archive.invalid/debian\nSuites: bookworm\n";
        assert_error(sources, &format!("\n\n{stanza}"), 3, "no components");
        assert_error(
            sources,
            "Types: deb\nSuites: bookworm\nComponents: main\n",
            1,
            "no URIs",
        );
        assert_error(
            sources,
            "URIs: http://archive.invalid/debian\n",
            1,
            "no Types",
        );
        assert_error(
            sources,
            &format!("{stanza}Components: main\nEnabled: perhaps\n"),
            1,
            "`Enabled: perhaps`",
        );

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), sources, "Types: deb\nnot a field\n");
        let err = read_host_sources(dir.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                AptConfigError::Syntax {
                    source: Deb822Error::NotAField { line: 2, .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn options_that_do_not_matter_here_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "etc/apt/sources.list",
            "deb [lang=none arch+=i386 pdiffs=no] http://archive.invalid/debian bookworm main\n",
        );
        let sources = read_host_sources(dir.path()).unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].architectures, None);
        assert_eq!(sources[0].signed_by, SignedBy::Default);
    }

    #[test]
    fn default_keyrings_are_trusted_gpg_then_its_directory_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(default_keyrings(root).is_empty());
        for name in ["b.asc", "a.gpg", "c.gpg~", "d.txt", "e.gpg"] {
            write(root, &format!("etc/apt/trusted.gpg.d/{name}"), "");
        }
        fs::create_dir_all(root.join("etc/apt/trusted.gpg.d/f.gpg")).unwrap();
        let names = |keys: Vec<PathBuf>| -> Vec<String> {
            keys.iter()
                .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(default_keyrings(root)),
            [
                "etc/apt/trusted.gpg.d/a.gpg",
                "etc/apt/trusted.gpg.d/b.asc",
                "etc/apt/trusted.gpg.d/e.gpg"
            ]
        );
        write(root, "etc/apt/trusted.gpg", "");
        assert_eq!(names(default_keyrings(root))[0], "etc/apt/trusted.gpg");
    }

    /// The configuration of the machine running the tests, when it has one.
    #[test]
    fn reads_the_host_configuration() {
        let root = Path::new("/");
        if !root.join("etc/apt/sources.list.d").is_dir() {
            return;
        }
        let configured = root.join("etc/apt/sources.list").is_file()
            || !dir_files(&root.join("etc/apt/sources.list.d"), &[".list", ".sources"])
                .unwrap()
                .is_empty();
        if !configured {
            return;
        }
        let sources = read_host_sources(root).unwrap();
        assert!(
            sources.iter().any(|s| s.uris.iter().any(|u| !u.is_empty())),
            "{sources:?}"
        );
    }
}
