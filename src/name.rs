//! Names from outside (archive members, entry points, scripts, file names from packages, index
//! pages, lock files and `inputs.json`) checked where they are read, before they are joined
//! onto a directory of the image or the cache.
//!
//! A [`FileName`] is one path component; a [`RelPath`] is a relative path of such components.
//! Neither can be empty, absolute, `.`/`..` (a path drops `.` parts and refuses `..` anywhere,
//! even where it would stay inside), or hold a control character: a NUL cuts a path short in
//! the kernel, and a newline or escape in a name would forge lines of the build's output. The
//! sources wrap a [`NameFault`] in their own error, which names the package and prints the
//! name Debug-escaped (`{name:?}`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name from a package cannot be used as a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameFault {
    #[error("is empty")]
    Empty,
    #[error("holds a control character")]
    Control,
    #[error("holds a path separator where one name is expected")]
    Separator,
    #[error("is `.` or `..`")]
    Dot,
    #[error("is an absolute path")]
    Absolute,
    #[error("climbs through `..`")]
    Climbs,
    #[error("appears more than once")]
    Duplicate,
    #[error("is not `name = module:function` with Python names")]
    NotEntryPoint,
}

fn check_chars(raw: &str) -> Result<(), NameFault> {
    if raw.chars().any(char::is_control) {
        return Err(NameFault::Control);
    }
    Ok(())
}

/// One path component: not empty, not `.` or `..`, no `/`, no control character.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileName(String);

impl FileName {
    pub(crate) fn new(raw: &str) -> Result<FileName, NameFault> {
        check_chars(raw)?;
        match raw {
            "" => Err(NameFault::Empty),
            "." | ".." => Err(NameFault::Dot),
            _ if raw.contains('/') => Err(NameFault::Separator),
            _ => Ok(FileName(raw.to_owned())),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A relative path of [`FileName`]s joined by `/`, with empty and `.` parts dropped (`./bin/x`
/// is `bin/x`). Read from JSON (cached listings) through the same check.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    pub fn new(raw: &str) -> Result<RelPath, NameFault> {
        check_chars(raw)?;
        if raw.starts_with('/') {
            return Err(NameFault::Absolute);
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(NameFault::Climbs),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(NameFault::Empty);
        }
        Ok(RelPath(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every proper ancestor, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(|(i, _)| &self.0[..i])
    }
}

impl TryFrom<String> for RelPath {
    type Error = NameFault;

    fn try_from(raw: String) -> Result<RelPath, NameFault> {
        RelPath::new(&raw)
    }
}

impl From<RelPath> for String {
    fn from(path: RelPath) -> String {
        path.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dotted Python name (`pkg.cli`, `main`, `Cli.run`), as entry points of wheels and conda
/// packages give a module and a function: they become lines of a generated script.
pub(crate) fn is_dotted_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Text from outside as messages show it: control characters escaped, so that a name cannot
/// forge another line or a terminal escape in the output.
pub(crate) struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.escape_debug(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_one_plain_component() {
        assert_eq!(FileName::new("black").unwrap().as_str(), "black");
        assert_eq!(FileName::new("a b+c").unwrap().as_str(), "a b+c");
        assert_eq!(FileName::new(""), Err(NameFault::Empty));
        assert_eq!(FileName::new(".."), Err(NameFault::Dot));
        assert_eq!(FileName::new("."), Err(NameFault::Dot));
        assert_eq!(FileName::new("../../x"), Err(NameFault::Separator));
        assert_eq!(FileName::new("evil\0x"), Err(NameFault::Control));
        assert_eq!(FileName::new("x\n"), Err(NameFault::Control));
        assert_eq!(FileName::new("\u{1b}[2J"), Err(NameFault::Control));
        assert_eq!(FileName::new("x\u{85}"), Err(NameFault::Control));
    }

    #[test]
    fn relative_paths_stay_below_their_root() {
        assert_eq!(RelPath::new("./bin//x/.").unwrap().as_str(), "bin/x");
        assert_eq!(RelPath::new("/etc/passwd"), Err(NameFault::Absolute));
        assert_eq!(RelPath::new("a/../b"), Err(NameFault::Climbs));
        assert_eq!(RelPath::new("../x"), Err(NameFault::Climbs));
        assert_eq!(RelPath::new("./"), Err(NameFault::Empty));
        assert_eq!(RelPath::new("a/b\0"), Err(NameFault::Control));
        let path = RelPath::new("a/b/c").unwrap();
        assert_eq!(path.ancestors().collect::<Vec<_>>(), ["a", "a/b"]);
    }

    #[test]
    fn cached_listings_are_checked_when_read() {
        let ok: RelPath = serde_json::from_str("\"lib/x.so\"").unwrap();
        assert_eq!(ok.as_str(), "lib/x.so");
        assert!(serde_json::from_str::<RelPath>("\"../../x\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"lib/x.so\"");
    }

    #[test]
    fn shown_names_cannot_forge_lines() {
        assert_eq!(Shown("a\nerror: b").to_string(), "a\\nerror: b");
    }
}
