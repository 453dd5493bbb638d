//! Debian package versions and package relationships.
//!
//! Input: the text of a `Version` field, or of a relationship field (`Depends`, `Pre-Depends`,
//! `Recommends`, `Suggests`, `Conflicts`, `Breaks`, `Replaces`, `Provides`) from a `Packages`
//! index or a dpkg status file. Output: [`Version`]s that order exactly as dpkg orders them, and
//! [`Dependency`] groups ([`Alternatives`]) that say which versions of which package satisfy
//! each entry.
//!
//! Implements Debian Policy §5.6.12 (`[epoch:]upstream_version[-debian_revision]` and its
//! comparison) and §7.1 (relationship syntax). Where Policy and dpkg differ, dpkg wins, since
//! dpkg is what decided what the archive's packages mean: an upstream version that does not
//! start with a digit or holds unusual characters is accepted (dpkg only warns), the obsolete
//! relations `<` and `>` mean `<=` and `>=`, and a bare `(1.0)` means `(= 1.0)`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("version `{version}` is not valid: {reason}")]
    Version {
        version: String,
        reason: &'static str,
    },
    #[error("`{0}` is not a version relation (expected <<, <=, =, >= or >>)")]
    Relation(String),
    #[error("relationship `{entry}` is not valid: {reason}")]
    Entry { entry: String, reason: String },
    /// The entry's relation or version: boxed, being this same type.
    #[error("relationship `{entry}` is not valid")]
    EntryPart {
        entry: String,
        #[source]
        source: Box<VersionError>,
    },
}

/// A Debian version, `[epoch:]upstream_version[-debian_revision]` (Policy §5.6.12).
///
/// Equality follows the ordering, as in dpkg: `1.0` equals `1.00` and `1.0-0`, because digit
/// runs compare by value and a missing revision compares like `0`. For that reason `Version`
/// does not implement `Hash`.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    upstream: String,
    revision: String,
}

impl Version {
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision; empty for a native package.
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| VersionError::Version {
            version: text.to_owned(),
            reason,
        };
        // dpkg ignores whitespace around the field value, but not inside it.
        let s = text.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.contains(char::is_whitespace) {
            return Err(bad("it contains whitespace"));
        }
        // The epoch ends at the first colon and the revision starts after the last hyphen, so
        // the upstream part may itself hold colons (with an epoch) and hyphens (with a revision).
        let (epoch, rest) = match s.split_once(':') {
            Some((epoch, rest)) => {
                if epoch.is_empty() {
                    return Err(bad("the epoch before `:` is empty"));
                }
                if !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the epoch before `:` is not a number"));
                }
                if rest.is_empty() {
                    return Err(bad("nothing follows the epoch"));
                }
                // dpkg keeps epochs in an int and refuses larger ones.
                let epoch = epoch
                    .parse::<u32>()
                    .ok()
                    .filter(|&e| e <= i32::MAX as u32)
                    .ok_or_else(|| bad("the epoch is too large"))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((_, "")) => return Err(bad("the revision after the last `-` is empty")),
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(bad("the upstream version is empty"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A version with a colon after the epoch needs the epoch written, even 0, to read back.
        if self.epoch != 0 || self.upstream.contains(':') || self.revision.contains(':') {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// The weight of one character in the non-digit parts of a version: `~` sorts before
/// everything, even the end of the part; letters sort before all other characters. The end of
/// the part (and a digit, which ends it) weighs 0.
fn order(c: u8) -> i32 {
    match c {
        b'~' => -1,
        c if c.is_ascii_digit() => 0,
        0 => 0,
        c if c.is_ascii_alphabetic() => i32::from(c),
        c => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: the strings are cut into alternating non-digit and digit parts; the
/// non-digit parts compare character by character with [`order`], the digit parts by numeric
/// value. Digit parts are compared as strings without their leading zeros, so any length works
/// without overflow.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    // 0 stands for the end of the string, as the NUL terminator does in dpkg.
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(at(a, i)), order(at(b, j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            // Equal weights here mean both sides hold a non-digit character.
            i += 1;
            j += 1;
        }
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        // The longer number (without leading zeros) is the larger one.
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A version relation of Policy §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `<<`
    Earlier,
    /// `<=`, and the obsolete `<`
    EarlierOrEqual,
    /// `=`
    Exact,
    /// `>=`, and the obsolete `>`
    LaterOrEqual,
    /// `>>`
    Later,
}

impl Relation {
    /// Whether `candidate` satisfies `candidate <relation> bound`.
    pub fn allows(&self, candidate: &Version, bound: &Version) -> bool {
        let ord = candidate.cmp(bound);
        match self {
            Relation::Earlier => ord == Ordering::Less,
            Relation::EarlierOrEqual => ord != Ordering::Greater,
            Relation::Exact => ord == Ordering::Equal,
            Relation::LaterOrEqual => ord != Ordering::Less,
            Relation::Later => ord == Ordering::Greater,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Relation::Earlier => "<<",
            Relation::EarlierOrEqual => "<=",
            Relation::Exact => "=",
            Relation::LaterOrEqual => ">=",
            Relation::Later => ">>",
        }
    }
}

impl FromStr for Relation {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "<<" => Relation::Earlier,
            // `<` and `>` are obsolete and meant "or equal"; dpkg still reads them so.
            "<=" | "<" => Relation::EarlierOrEqual,
            "=" => Relation::Exact,
            ">=" | ">" => Relation::LaterOrEqual,
            ">>" => Relation::Later,
            _ => return Err(VersionError::Relation(s.to_owned())),
        })
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One package named in a relationship field, `name[:arch] [(relation version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// The architecture qualifier after `:`: `any`, `native` or an architecture name.
    pub arch: Option<String>,
    pub version: Option<(Relation, Version)>,
}

/// Entries separated by `|`: any one of them satisfies the group.
pub(crate) type Alternatives = Vec<Dependency>;

impl Dependency {
    /// Whether version `v` of the named package satisfies this entry's version constraint
    /// (always, when it has none).
    pub fn matches_version(&self, v: &Version) -> bool {
        self.version
            .as_ref()
            .is_none_or(|(relation, bound)| relation.allows(v, bound))
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some((relation, version)) = &self.version {
            write!(f, " ({relation} {version})")?;
        }
        Ok(())
    }
}

/// Parses a relationship field: groups separated by `,`, alternatives within a group by `|`.
///
/// Whitespace, including the newlines of a folded field, may appear anywhere between tokens.
/// Architecture restrictions (`[amd64 !i386]`) and build-profile restrictions (`<!nocheck>`)
/// belong to source packages; they are accepted and dropped. Empty groups (a trailing comma)
/// are skipped, as dpkg-dev does; an empty alternative is an error. An empty field gives no
/// groups.
pub(crate) fn parse_relations(field: &str) -> Result<Vec<Alternatives>, VersionError> {
    let mut groups = Vec::new();
    // None of `,`, `|` may appear inside an entry, not even inside its restriction lists, so
    // plain splitting finds the structure.
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let alternatives = group
            .split('|')
            .map(|entry| parse_dependency(entry, group))
            .collect::<Result<Alternatives, _>>()?;
        groups.push(alternatives);
    }
    Ok(groups)
}

fn parse_dependency(text: &str, group: &str) -> Result<Dependency, VersionError> {
    let entry = text.trim();
    let bad = |reason: String| VersionError::Entry {
        entry: if entry.is_empty() {
            group.trim().to_owned()
        } else {
            entry.to_owned()
        },
        reason,
    };
    let part = |source: VersionError| VersionError::EntryPart {
        entry: entry.to_owned(),
        source: Box::new(source),
    };
    if entry.is_empty() {
        return Err(bad("one of its `|` alternatives is empty".to_owned()));
    }
    let ends_name = |c: char| c.is_whitespace() || matches!(c, ':' | '(' | '[' | '<');
    let name_end = entry.find(ends_name).unwrap_or(entry.len());
    let name = &entry[..name_end];
    check_package_name(name).map_err(|reason| bad(reason.to_owned()))?;
    let mut rest = &entry[name_end..];

    let mut arch = None;
    if let Some(after) = rest.strip_prefix(':') {
        let end = after.find(ends_name).unwrap_or(after.len());
        let qualifier = &after[..end];
        if qualifier.is_empty()
            || !qualifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(format!(
                "`{qualifier}` is not an architecture qualifier"
            )));
        }
        arch = Some(qualifier.to_owned());
        rest = &after[end..];
    }

    let mut version = None;
    rest = rest.trim_start();
    if let Some(after) = rest.strip_prefix('(') {
        let Some(close) = after.find(')') else {
            return Err(bad("the version constraint has no closing `)`".to_owned()));
        };
        let inner = after[..close].trim();
        let op_end = inner
            .find(|c| !matches!(c, '<' | '>' | '='))
            .unwrap_or(inner.len());
        let (op, bound) = (&inner[..op_end], inner[op_end..].trim());
        // A bare `(1.0)` is an old spelling of `(= 1.0)`; dpkg reads it so, with a warning.
        let relation = if op.is_empty() {
            Relation::Exact
        } else {
            op.parse().map_err(part)?
        };
        if bound.is_empty() {
            return Err(bad("the version constraint has no version".to_owned()));
        }
        let bound = bound.parse::<Version>().map_err(part)?;
        version = Some((relation, bound));
        rest = &after[close + 1..];
    }

    // Source-package restrictions: any number of `[...]` and `<...>` lists, dropped.
    loop {
        rest = rest.trim_start();
        let close = match rest.chars().next() {
            Some('[') => ']',
            Some('<') => '>',
            _ => break,
        };
        let Some(end) = rest.find(close) else {
            return Err(bad(format!("a restriction list has no closing `{close}`")));
        };
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        return Err(bad(format!("unexpected `{rest}` after the package")));
    }
    Ok(Dependency {
        name: name.to_owned(),
        arch,
        version,
    })
}

/// Package names per Policy §5.6.1, with dpkg's leniency: ASCII letters of either case, digits
/// and `+ - . _`, starting with a letter or digit.
fn check_package_name(name: &str) -> Result<(), &'static str> {
    let Some(first) = name.bytes().next() else {
        return Err("it has no package name");
    };
    if !first.is_ascii_alphanumeric() {
        return Err("the package name must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_'))
    {
        return Err("the package name holds a character other than letters, digits and + - . _");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[track_caller]
    fn assert_order(a: &str, ord: Ordering, b: &str) {
        assert_eq!(v(a).cmp(&v(b)), ord, "{a} vs {b}");
        assert_eq!(v(b).cmp(&v(a)), ord.reverse(), "{b} vs {a}");
    }

    #[test]
    fn parts_are_split_at_first_colon_and_last_hyphen() {
        let x = v("2:1.0-rc1-3ubuntu1");
        assert_eq!(
            (x.epoch(), x.upstream(), x.revision()),
            (2, "1.0-rc1", "3ubuntu1")
        );
        let x = v("1:2:3");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (1, "2:3", ""));
        let x = v("1.2.3");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (0, "1.2.3", ""));
        assert_eq!(v("  1.0-1 \n").to_string(), "1.0-1");
    }

    #[test]
    fn display_round_trips_and_drops_a_zero_epoch() {
        for s in [
            "1.0",
            "1:1.0",
            "1.0-1",
            "3:2.30-1+deb12u1",
            "1.0~rc1-0.1",
            "2:1:2-3-4",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        assert_eq!(v("0:1.0-1").to_string(), "1.0-1");
    }

    #[test]
    fn epoch_zero_is_written_when_the_version_has_a_colon() {
        // `1:2-1` would read back as epoch 1, upstream 2: another version.
        assert_eq!(v("0:1:2-1").to_string(), "0:1:2-1");
        assert_eq!(v(&v("0:1:2-1").to_string()), v("0:1:2-1"));
        assert_eq!(v(&v("0:1:2-1").to_string()).upstream(), "1:2");
        assert_eq!(v("0:1-a:b").to_string(), "0:1-a:b");
    }

    #[test]
    fn invalid_versions_are_refused() {
        for s in [
            "",
            "  ",
            "1.0 1",
            ":1.0",
            "a:1.0",
            "1:",
            "1.0-",
            "-1",
            "1:-1",
            "99999999999:1",
        ] {
            assert!(s.parse::<Version>().is_err(), "{s:?} parsed");
        }
        let err = "1.0-".parse::<Version>().unwrap_err().to_string();
        assert!(err.contains("`1.0-`") && err.contains("revision"), "{err}");
    }

    #[test]
    fn upstream_not_starting_with_a_digit_is_tolerated_as_dpkg_does() {
        assert_eq!(v("abc").upstream(), "abc");
        assert_order("abc", Ordering::Greater, "1.0");
    }

    #[test]
    fn comparison_follows_dpkg() {
        use Ordering::*;
        // The epoch decides first.
        assert_order("1:0.1", Greater, "9.9");
        assert_order("0:1.0", Equal, "1.0");
        // Digit runs compare numerically, whatever their length.
        assert_order("1.10", Greater, "1.9");
        assert_order("1.0", Equal, "1.00");
        assert_order("1.001", Equal, "1.1");
        assert_order(
            "1.99999999999999999999999",
            Less,
            "1.100000000000000000000000",
        );
        // `~` sorts before everything, even the end of the string.
        assert_order("1.0~rc1", Less, "1.0");
        assert_order("1.0~~", Less, "1.0~");
        assert_order("1.0~~a", Less, "1.0~");
        assert_order("1.0~", Less, "1.0");
        // Letters sort before non-letters, and the end before both.
        assert_order("1.0a", Less, "1.0+");
        assert_order("1.0", Less, "1.0a");
        assert_order("1.0", Less, "1.0+b1");
        assert_order("1.0+", Less, "1.0.");
        assert_order("1.0a", Greater, "1.0A");
        assert_order("1.0-1", Less, "1.0.1");
        // The revision compares with the same algorithm; a missing one is like 0.
        assert_order("1.0-1", Less, "1.0-1+deb12u1");
        assert_order("1.0-2", Less, "1.0-10");
        assert_order("1.0", Equal, "1.0-0");
        assert_order("1.0", Less, "1.0-1");
        assert_order("2.36-9+deb12u4", Less, "2.36-9+deb12u10~bpo");
        assert_order("1.2-3~bpo12+1", Less, "1.2-3");
        // Upstream decides before the revision, even with hyphens inside it.
        assert_order("1.0-rc1-1", Greater, "1.0-10");
        assert_eq!(v("1.0"), v("1.00"));
        assert_ne!(v("1.0"), v("1.0.0"));
    }

    #[test]
    fn relations_include_the_obsolete_spellings() {
        assert_eq!("<".parse::<Relation>().unwrap(), Relation::EarlierOrEqual);
        assert_eq!(">".parse::<Relation>().unwrap(), Relation::LaterOrEqual);
        assert!("=<".parse::<Relation>().is_err());
        assert!("==".parse::<Relation>().is_err());
        let (a, b) = (v("1.0"), v("1.0-1"));
        assert!(Relation::Earlier.allows(&a, &b));
        assert!(!Relation::Earlier.allows(&b, &b));
        assert!(Relation::EarlierOrEqual.allows(&b, &b));
        assert!(Relation::Exact.allows(&v("1.00"), &a));
        assert!(!Relation::Exact.allows(&b, &a));
        assert!(Relation::LaterOrEqual.allows(&b, &a));
        assert!(Relation::Later.allows(&b, &a));
        assert!(!Relation::Later.allows(&a, &a));
    }

    #[test]
    fn relationship_fields_parse_into_groups_of_alternatives() {
        let groups = parse_relations(
            "libc6 (>= 2.34), libssl3t64 (>= 3.0.0) | libssl3,\n debconf (>= 0.5) | debconf-2.0, python3:any",
        )
        .unwrap();
        let text: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            text,
            [
                vec!["libc6 (>= 2.34)"],
                vec!["libssl3t64 (>= 3.0.0)", "libssl3"],
                vec!["debconf (>= 0.5)", "debconf-2.0"],
                vec!["python3:any"],
            ]
        );
        assert_eq!(groups[3][0].arch.as_deref(), Some("any"));
        assert_eq!(parse_relations("").unwrap(), Vec::<Alternatives>::new());
        assert_eq!(parse_relations(" \n ").unwrap(), Vec::<Alternatives>::new());
    }

    #[test]
    fn whitespace_is_free_between_tokens() {
        let want = Dependency {
            name: "foo".into(),
            arch: Some("amd64".into()),
            version: Some((Relation::Earlier, v("1:2.0"))),
        };
        for s in [
            "foo:amd64(<<1:2.0)",
            "foo:amd64 (<< 1:2.0)",
            "  foo:amd64\n  ( <<\t1:2.0 )  ",
        ] {
            assert_eq!(parse_relations(s).unwrap(), [vec![want.clone()]], "{s:?}");
        }
    }

    #[test]
    fn source_restrictions_are_dropped() {
        let groups = parse_relations(
            "debhelper-compat (= 13), libfoo-dev [amd64 !i386] <!nocheck> <stage1 cross>, bar (<< 2) [linux-any] | baz <!pkg.foo.bar>",
        )
        .unwrap();
        let names: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|d| d.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["debhelper-compat"],
                vec!["libfoo-dev"],
                vec!["bar", "baz"]
            ]
        );
        assert_eq!(groups[2][0].version, Some((Relation::Earlier, v("2"))));
    }

    #[test]
    fn provides_and_old_spellings() {
        let groups = parse_relations("mail-transport-agent, awk (= 1:5.2.1-2), foo (1.0)").unwrap();
        assert_eq!(
            groups[1][0].version,
            Some((Relation::Exact, v("1:5.2.1-2")))
        );
        // A bare version is an implicit `=`, as dpkg reads it.
        assert_eq!(groups[2][0].version, Some((Relation::Exact, v("1.0"))));
        // A trailing comma leaves an empty group, which is skipped.
        assert_eq!(parse_relations("a, b,").unwrap().len(), 2);
    }

    #[test]
    fn malformed_entries_name_the_entry() {
        for (field, fragment) in [
            ("foo (>= 1.0", "closing `)`"),
            ("foo (>= )", "no version"),
            ("foo (=> 1.0)", "`=>`"),
            ("foo (>= 1.0-)", "revision"),
            ("foo | , bar", "empty"),
            ("foo bar", "unexpected `bar`"),
            ("-foo", "start with"),
            ("foo/bar", "character"),
            ("foo: (>= 1)", "architecture qualifier"),
            ("foo [amd64", "closing `]`"),
        ] {
            let err = parse_relations(field).unwrap_err();
            // The message and its causes, as main prints them.
            let mut err_text = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(inner) = cause {
                err_text = format!("{err_text}: {inner}");
                cause = inner.source();
            }
            let err = err_text;
            assert!(err.contains(fragment), "{field:?}: {err}");
            assert!(
                err.contains("foo") || err.contains("bar"),
                "{field:?}: {err}"
            );
        }
    }

    #[test]
    fn matches_version_applies_the_constraint() {
        let dep = &parse_relations("libc6 (>= 2.36)").unwrap()[0][0];
        assert!(dep.matches_version(&v("2.36-9+deb12u4")));
        assert!(dep.matches_version(&v("2.36")));
        assert!(!dep.matches_version(&v("2.35-1")));
        assert!(!dep.matches_version(&v("2.36~rc1")));
        let any = &parse_relations("libc6").unwrap()[0][0];
        assert!(any.matches_version(&v("0.1")));
    }
}
