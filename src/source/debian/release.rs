//! `Release` files: the index of a Debian archive suite, as an `InRelease` file carries it.
//!
//! Input: the text of a `Release` file, as [`super::signature::verify_inrelease`] returns it
//! once its signature is checked. Output: [`parse_release`] reads the fields oci-build uses into
//! a [`Release`]; [`Release::check_file`] checks the index files it lists
//! (`main/binary-amd64/Packages.xz`) against their SHA256 and size, and
//! [`Release::check_valid_until`] refuses a Release past its `Valid-Until` date. Dates are read
//! and written here ([`parse_date`], [`format_date`]) in the form Release files use.
//!
//! The paragraph's lines are lexed by [`super::deb822`]; the grammar on top is the Release
//! file's own (one paragraph, `#` lines are fields, errors that quote the line).
//!
//! Spec: Debian's repository format, <https://wiki.debian.org/DebianRepository/Format>
//! (`Release` files, their `SHA256` field and dates).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::deb822;
use crate::time;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("Release file, line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("the Release file has no SHA256 field, so its index files cannot be checked")]
    NoChecksums,
    #[error("`{path}` is not listed in the Release file's SHA256 checksums")]
    NotListed { path: String },
    #[error(
        "`{path}` does not match the Release file: expected sha256 {expected} ({expected_size} bytes), found sha256 {found} ({found_size} bytes)"
    )]
    Mismatch {
        path: String,
        expected: String,
        expected_size: u64,
        found: String,
        found_size: u64,
    },
    #[error(
        "the Release file of suite `{suite}` expired on {valid_until} (Valid-Until): the mirror is stale or the clock is wrong"
    )]
    Expired { suite: String, valid_until: String },
    #[error(
        "the Release file's {field} `{value}` is not a date like `Sat, 06 Dec 2025 08:51:23 UTC`"
    )]
    BadDate { field: &'static str, value: String },
}

// ---------------------------------------------------------------------------------------------
// Release files

/// The fields of a `Release` file that oci-build uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) origin: Option<String>,
    pub(crate) suite: Option<String>,
    pub(crate) codename: Option<String>,
    pub(crate) date: Option<String>,
    pub(crate) valid_until: Option<String>,
    pub(crate) architectures: Vec<String>,
    pub(crate) components: Vec<String>,
    pub(crate) acquire_by_hash: bool,
    /// Index files by path relative to the suite directory (`main/binary-amd64/Packages.xz`).
    pub(crate) sha256: BTreeMap<String, FileHash>,
}

/// Size and SHA256 (lower-case hex) of an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileHash {
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

/// Parses the text of a `Release` file (as [`super::signature::verify_inrelease`] returns it):
/// one paragraph of `Field: value` lines, continuation lines starting with a space or tab.
/// Field names are case-insensitive; a field given twice is an error; fields not listed in
/// [`Release`] are ignored. The `SHA256` field must be present.
///
/// The lines come from [`deb822::lines`]; the rules differ from [`deb822::parse`]'s where a
/// Release file is stricter or simply different: a second paragraph is an error, a `#` line is
/// a field line like any other, a name may start with `-`, and every value line keeps its line
/// number so that a bad `SHA256` entry is reported on its own line.
pub(crate) fn parse_release(text: &str) -> Result<Release, ReleaseError> {
    let err = |line: usize, reason: String| ReleaseError::Parse { line, reason };
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut ended = false;
    for line in deb822::lines(text) {
        let n = line.number;
        if line.is_blank() {
            ended = !fields.is_empty();
            continue;
        }
        if ended {
            return Err(err(
                n,
                "a second paragraph; a Release file has one".to_string(),
            ));
        }
        if let Some(more) = line.continuation() {
            let Some(field) = fields.last_mut() else {
                return Err(err(n, "continuation line before any field".to_string()));
            };
            field.lines.push((n, more.trim_start()));
            continue;
        }
        let Some((name, value)) = line.field() else {
            return Err(err(
                n,
                format!("`{}` is not `Field: value`", as_written(text, line)),
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(err(n, format!("`{name}` is not a field name")));
        }
        let name = name.to_ascii_lowercase();
        if let Some(first) = fields.iter().find(|f| f.name == name) {
            return Err(err(
                n,
                format!("field `{name}` given twice (first on line {})", first.line),
            ));
        }
        let lines = if value.is_empty() {
            vec![]
        } else {
            vec![(n, value)]
        };
        fields.push(Field {
            name,
            line: n,
            lines,
        });
    }

    let mut release = Release::default();
    let mut have_sha256 = false;
    for Field { name, lines, .. } in fields {
        let values: Vec<&str> = lines.iter().map(|(_, v)| *v).collect();
        let single = || (!values.is_empty()).then(|| values.join(" "));
        match name.as_str() {
            "origin" => release.origin = single(),
            "suite" => release.suite = single(),
            "codename" => release.codename = single(),
            "date" => release.date = single(),
            "valid-until" => release.valid_until = single(),
            "architectures" => release.architectures = words(&values),
            "components" => release.components = words(&values),
            "acquire-by-hash" => {
                release.acquire_by_hash = single().is_some_and(|v| v.eq_ignore_ascii_case("yes"))
            }
            "sha256" => {
                have_sha256 = true;
                for &(n, entry) in &lines {
                    let (path, hash) = parse_sha256_line(entry).map_err(|reason| err(n, reason))?;
                    if let Some(old) = release.sha256.get(&path)
                        && *old != hash
                    {
                        return Err(err(n, format!("`{path}` is listed twice, differently")));
                    }
                    release.sha256.insert(path, hash);
                }
            }
            _ => {}
        }
    }
    if !have_sha256 {
        return Err(ReleaseError::NoChecksums);
    }
    Ok(release)
}

/// One field of a Release paragraph.
struct Field<'a> {
    /// Lower case.
    name: String,
    line: usize,
    /// The value's non-empty lines, trimmed, with their line numbers.
    lines: Vec<(usize, &'a str)>,
}

/// A line as an error quotes it: as [`deb822::lines`] gives it, except that a `\r` ending the
/// text with no `\n` after it is kept: it ends no line, so it is part of the line as written
/// (as `str::lines` has it).
fn as_written<'a>(text: &'a str, line: deb822::Line<'a>) -> &'a str {
    if line.number == text.split('\n').count() {
        text.rsplit('\n').next().unwrap_or(line.text)
    } else {
        line.text
    }
}

fn words(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(str::to_string)
        .collect()
}

/// ` <sha256 hex> <size> <path>`
fn parse_sha256_line(entry: &str) -> Result<(String, FileHash), String> {
    let parts: Vec<&str> = entry.split_whitespace().collect();
    let [hash, size, path] = parts[..] else {
        return Err(format!("`{entry}` is not `<sha256> <size> <path>`"));
    };
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{hash}` is not a SHA256 in hex"));
    }
    let size = size
        .parse::<u64>()
        .map_err(|_| format!("`{size}` is not a size in bytes"))?;
    Ok((
        path.to_string(),
        FileHash {
            size,
            sha256: hash.to_ascii_lowercase(),
        },
    ))
}

impl Release {
    /// Checks an index file's content against the size and SHA256 the Release lists for
    /// `path` (relative to the suite, e.g. `main/binary-amd64/Packages.xz`).
    pub(crate) fn check_file(&self, path: &str, bytes: &[u8]) -> Result<(), ReleaseError> {
        let Some(expected) = self.sha256.get(path) else {
            return Err(ReleaseError::NotListed {
                path: path.to_string(),
            });
        };
        let found = hex::encode(Sha256::digest(bytes));
        let found_size = bytes.len() as u64;
        if found_size != expected.size || found != expected.sha256 {
            return Err(ReleaseError::Mismatch {
                path: path.to_string(),
                expected: expected.sha256.clone(),
                expected_size: expected.size,
                found,
                found_size,
            });
        }
        Ok(())
    }

    /// Fails when the Release has a `Valid-Until` that lies before `now_unix` (seconds since
    /// 1970), or one that cannot be read. A Release without `Valid-Until` never expires.
    pub(crate) fn check_valid_until(&self, now_unix: u64) -> Result<(), ReleaseError> {
        let Some(value) = &self.valid_until else {
            return Ok(());
        };
        let until = parse_date(value).ok_or_else(|| ReleaseError::BadDate {
            field: "Valid-Until",
            value: value.clone(),
        })?;
        if now_unix > until {
            let suite = self.suite.as_deref().or(self.codename.as_deref());
            return Err(ReleaseError::Expired {
                suite: suite.unwrap_or("(unnamed)").to_string(),
                valid_until: value.clone(),
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses a Release date, `[Sat, ]06 Dec 2025 08:51:23 UTC` (RFC 2822 as Debian writes it; the
/// zone may be `UTC`, `GMT`, `UT`, `Z` or `±hhmm`; seconds may be left out) into seconds since
/// 1970. `None` when it is not such a date or lies before 1970.
pub(crate) fn parse_date(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = match value.split_once(',') {
        Some((weekday, rest)) if weekday.trim().chars().all(|c| c.is_ascii_alphabetic()) => rest,
        Some(_) => return None,
        None => value,
    };
    let mut parts = value.split_whitespace();
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() {
        return None;
    }
    let day: u32 = number(day, 1, 2)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    let year: i64 = number(year, 4, 4)?.into();
    let mut hms = time.split(':');
    let hour: u32 = number(hms.next()?, 2, 2)?;
    let minute: u32 = number(hms.next()?, 2, 2)?;
    let second: u32 = match hms.next() {
        Some(s) => number(s, 2, 2)?,
        None => 0,
    };
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let offset: i64 = match zone {
        "UTC" | "GMT" | "UT" | "Z" => 0,
        _ => {
            let (sign, digits) = match zone.as_bytes().first()? {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return None,
            };
            let hhmm: u32 = number(digits, 4, 4)?;
            let (h, m) = (hhmm / 100, hhmm % 100);
            if h > 23 || m > 59 {
                return None;
            }
            sign * i64::from(h * 3600 + m * 60)
        }
    };
    let secs = time::days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    u64::try_from(secs).ok()
}

/// Formats seconds since 1970 the way Release files write dates.
pub(crate) fn format_date(unix: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = time::civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An ASCII number of `min..=max` digits.
fn number(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Release file with every field oci-build reads; the signature tests sign it too.
    pub(crate) const RELEASE: &str = "\
Origin: Example
Label: Example
Suite: stable
Codename: example
Date: Sat, 06 Dec 2025 08:51:23 UTC
Valid-Until: Sat, 13 Dec 2025 08:51:23 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64
Components: main contrib
Description: made up for the tests
MD5Sum:
 d41d8cd98f00b204e9800998ecf8427e 0 main/binary-amd64/Packages
SHA256:
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages
 2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824 5 main/binary-amd64/Packages.xz
";

    #[test]
    fn release_fields_are_parsed() {
        let release = parse_release(RELEASE).unwrap();
        assert_eq!(release.origin.as_deref(), Some("Example"));
        assert_eq!(release.suite.as_deref(), Some("stable"));
        assert_eq!(release.codename.as_deref(), Some("example"));
        assert_eq!(
            release.date.as_deref(),
            Some("Sat, 06 Dec 2025 08:51:23 UTC")
        );
        assert_eq!(
            release.valid_until.as_deref(),
            Some("Sat, 13 Dec 2025 08:51:23 UTC")
        );
        assert_eq!(release.architectures, ["amd64", "arm64"]);
        assert_eq!(release.components, ["main", "contrib"]);
        assert!(release.acquire_by_hash);
        assert_eq!(release.sha256.len(), 2);
        assert_eq!(
            release.sha256["main/binary-amd64/Packages.xz"],
            FileHash {
                size: 5,
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into()
            }
        );

        let minimal = parse_release("suite: x\nsha256:\n").unwrap();
        assert!(!minimal.acquire_by_hash && minimal.sha256.is_empty());
    }

    #[test]
    fn bad_release_text_is_refused_with_its_line() {
        let cases = [
            ("Suite: a\nSuite: b\nSHA256:\n", 2, "twice"),
            (" orphan\nSHA256:\n", 1, "continuation"),
            ("Suite a\nSHA256:\n", 1, "Field: value"),
            ("SHA256:\n e3b0 0 main/x\n", 2, "not a SHA256"),
            (
                "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 x main/x\n",
                2,
                "size",
            ),
            (
                "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0\n",
                2,
                "<path>",
            ),
            ("Suite: a\n\nSHA256:\n", 3, "second paragraph"),
        ];
        for (text, line, needle) in cases {
            let err = parse_release(text).unwrap_err();
            assert!(
                matches!(err, ReleaseError::Parse { line: l, .. } if l == line),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
        assert!(matches!(
            parse_release("Suite: a\n"),
            Err(ReleaseError::NoChecksums)
        ));
    }

    #[test]
    fn release_rules_differ_from_other_control_files() {
        // Neither `#` lines nor names starting with `-` are special in a Release file.
        let release = parse_release("#x: y\n-n: v\nSuite: a\nSHA256:\n").unwrap();
        assert_eq!(release.suite.as_deref(), Some("a"));
        let err = parse_release("SHA256:\n# a: comment\n").unwrap_err();
        assert!(
            err.to_string().contains("`# a` is not a field name"),
            "{err}"
        );
        // Errors quote the line as written, a `\r` that ends the text included.
        let err = parse_release("SHA256:\r\nSuite a\r").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("line 2: `Suite a\r` is not `Field: value`"),
            "{err:?}"
        );
        let err = parse_release("Suite a\r\nSHA256:\n").unwrap_err();
        assert!(err.to_string().contains("`Suite a` is not"), "{err:?}");
    }

    #[test]
    fn files_are_checked_against_the_release() {
        let release = parse_release(RELEASE).unwrap();
        release
            .check_file("main/binary-amd64/Packages", b"")
            .unwrap();
        release
            .check_file("main/binary-amd64/Packages.xz", b"hello")
            .unwrap();

        let err = release
            .check_file("main/binary-amd64/Packages.xz", b"hellO")
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`main/binary-amd64/Packages.xz`"),
            "{message}"
        );
        assert!(
            message.contains("expected sha256 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 (5 bytes)"),
            "{message}"
        );
        assert!(
            message.contains(&hex::encode(Sha256::digest(b"hellO"))),
            "{message}"
        );

        let err = release
            .check_file("main/binary-amd64/Packages.xz", b"hello!")
            .unwrap_err();
        assert!(err.to_string().contains("(6 bytes)"), "{err}");

        let err = release
            .check_file("main/binary-arm64/Packages.xz", b"hello")
            .unwrap_err();
        assert!(matches!(err, ReleaseError::NotListed { .. }), "{err:?}");
        assert!(
            err.to_string().contains("`main/binary-arm64/Packages.xz`"),
            "{err}"
        );
    }

    #[test]
    fn valid_until_is_enforced() {
        let release = parse_release(RELEASE).unwrap();
        let until = parse_date("Sat, 13 Dec 2025 08:51:23 UTC").unwrap();
        release.check_valid_until(until - 1).unwrap();
        release.check_valid_until(until).unwrap();
        let err = release.check_valid_until(until + 1).unwrap_err();
        assert!(matches!(err, ReleaseError::Expired { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("`stable` expired on Sat, 13 Dec 2025"),
            "{err}"
        );

        let mut forever = release.clone();
        forever.valid_until = None;
        forever.check_valid_until(u64::MAX).unwrap();

        let mut garbled = release;
        garbled.valid_until = Some("next Tuesday".into());
        assert!(matches!(
            garbled.check_valid_until(0),
            Err(ReleaseError::BadDate { .. })
        ));
    }

    #[test]
    fn dates_are_parsed() {
        // Values from `date -ud '…' +%s`.
        assert_eq!(
            parse_date("Sat, 06 Dec 2025 08:51:23 UTC"),
            Some(1_765_011_083)
        );
        assert_eq!(parse_date("6 Dec 2025 08:51:23 GMT"), Some(1_765_011_083));
        assert_eq!(
            parse_date("Sat, 06 Dec 2025 09:51:23 +0100"),
            Some(1_765_011_083)
        );
        assert_eq!(
            parse_date("Sat, 06 dec 2025 07:51:23 -0100"),
            Some(1_765_011_083)
        );
        assert_eq!(parse_date("Wed, 01 Mar 2000 12:00 UTC"), Some(951_912_000));
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Thu, 29 Feb 2024 00:00:00 UTC"),
            Some(1_709_164_800)
        );
        for bad in [
            "",
            "Sat, 06 Dec 2025",
            "Sat, 06 Dec 2025 08:51:23",
            "Sat, 06 Dez 2025 08:51:23 UTC",
            "Thu, 29 Feb 2023 00:00:00 UTC",
            "Sat, 32 Dec 2025 08:51:23 UTC",
            "Sat, 06 Dec 2025 24:00:00 UTC",
            "Sat, 06 Dec 2025 08:51:23 CET",
            "Sat, 06 Dec 25 08:51:23 UTC",
            "Wed, 31 Dec 1969 23:59:59 UTC",
            "2025-12-06T08:51:23Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
        for unix in [0, 951_912_000, 1_709_164_800, 1_765_011_083, 4_102_444_800] {
            assert_eq!(
                parse_date(&format_date(unix)),
                Some(unix),
                "{}",
                format_date(unix)
            );
        }
        assert_eq!(format_date(1_765_011_083), "Sat, 06 Dec 2025 08:51:23 UTC");
    }
}
