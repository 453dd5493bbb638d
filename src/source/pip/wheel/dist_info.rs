//! The files of a wheel's `.dist-info` directory that say how to install it.
//!
//! Input: the extracted files and their [`Listing`]. Output: the [`Layout`] read from `WHEEL`
//! (Wheel-Version, Root-Is-Purelib) and `METADATA` (Name, Version), checked against the file
//! name, and the script [`EntryPoint`]s of `entry_points.txt`, whose names are checked before
//! they become image paths.
//!
//! Spec: the `.dist-info` directory of the binary distribution format (PEP 427,
//! <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#the-dist-info-directory>),
//! core metadata (<https://packaging.python.org/en/latest/specifications/core-metadata/>) and
//! entry points (<https://packaging.python.org/en/latest/specifications/entry-points/>).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use super::WheelError;
use super::archive::Listing;
use super::name::{WheelName, is_project_name, normalize_name};
use crate::name::{FileName, NameFault, is_dotted_identifier};

/// The archive's `.dist-info` directory: exactly one at the top level, named after the wheel.
pub(super) fn find_dist_info<'p>(
    filename: &str,
    parsed: &WheelName,
    paths: impl Iterator<Item = &'p str>,
) -> Result<String, WheelError> {
    let found: BTreeSet<&str> = paths
        .filter_map(|p| p.split_once('/').map(|(top, _)| top))
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    let dist_info = match found.len() {
        1 => *found.iter().next().expect("one element"),
        0 => {
            return Err(WheelError::DistInfo {
                wheel: filename.to_owned(),
                reason: "it has no top-level `.dist-info` directory".to_owned(),
            });
        }
        _ => {
            return Err(WheelError::DistInfo {
                wheel: filename.to_owned(),
                reason: format!(
                    "it has {} `.dist-info` directories ({}); a wheel holds exactly one",
                    found.len(),
                    found.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    };
    let stem = dist_info.trim_end_matches(".dist-info");
    let expected = format!("{}-{}", parsed.name, parsed.version);
    if normalize_name(stem) != normalize_name(&expected) {
        return Err(WheelError::DistInfo {
            wheel: filename.to_owned(),
            reason: format!(
                "its metadata directory `{dist_info}` does not belong to `{expected}` named by the file name"
            ),
        });
    }
    Ok(dist_info.to_owned())
}

/// `Key: value` header lines up to the first blank line (RFC 822 style, as WHEEL and METADATA
/// are written); continuation lines are joined.
fn headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn header<'h>(headers: &'h [(String, String)], key: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// What the wheel's metadata says about how to install it.
pub(super) struct Layout {
    /// `X-1.0.dist-info`.
    pub(super) dist_info: String,
    /// `X-1.0.data`.
    pub(super) data_dir: String,
    pub(super) root_is_purelib: bool,
    pub(super) name: String,
    pub(super) version: String,
}

impl Layout {
    pub(super) fn read(
        filename: &str,
        parsed: &WheelName,
        files_dir: &Path,
        listing: &Listing,
    ) -> Result<Layout, WheelError> {
        let dist_info = find_dist_info(
            filename,
            parsed,
            listing.files.iter().map(|f| f.path.as_str()),
        )?;
        let text = |name: &str| -> Result<String, WheelError> {
            let entry = format!("{dist_info}/{name}");
            if !listing.files.iter().any(|f| f.path == entry) {
                return Err(WheelError::Missing {
                    wheel: filename.to_owned(),
                    entry,
                });
            }
            let bytes = fs::read(files_dir.join(&entry)).map_err(|source| WheelError::Io {
                wheel: filename.to_owned(),
                entry: entry.clone(),
                source,
            })?;
            String::from_utf8(bytes).map_err(|_| WheelError::Malformed {
                wheel: filename.to_owned(),
                entry,
                reason: "it is not UTF-8".to_owned(),
            })
        };

        let wheel_entry = format!("{dist_info}/WHEEL");
        let wheel_headers = headers(&text("WHEEL")?);
        let malformed = |reason: &str| WheelError::Malformed {
            wheel: filename.to_owned(),
            entry: wheel_entry.clone(),
            reason: reason.to_owned(),
        };
        let version = header(&wheel_headers, "Wheel-Version")
            .ok_or_else(|| malformed("it has no Wheel-Version"))?;
        let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
        let major: u32 = major
            .parse()
            .map_err(|_| malformed("its Wheel-Version is not `<major>.<minor>`"))?;
        let minor: u32 = minor
            .parse()
            .map_err(|_| malformed("its Wheel-Version is not `<major>.<minor>`"))?;
        if major != 1 {
            return Err(WheelError::UnsupportedVersion {
                wheel: filename.to_owned(),
                entry: wheel_entry,
                version: version.to_owned(),
            });
        }
        if minor > 0 {
            tracing::warn!(
                wheel = filename,
                "wheel format {version} is newer than 1.0; installing it as 1.0"
            );
        }
        let root_is_purelib = header(&wheel_headers, "Root-Is-Purelib")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));

        let metadata = headers(&text("METADATA")?);
        let name = header(&metadata, "Name").unwrap_or(&parsed.name).to_owned();
        // The name becomes the directory of the wheel's headers.
        if !is_project_name(&name) {
            return Err(WheelError::Malformed {
                wheel: filename.to_owned(),
                entry: format!("{dist_info}/METADATA"),
                reason: format!(
                    "its Name {name:?} is not letters, digits, `-`, `_` and `.` starting and ending with a letter or digit"
                ),
            });
        }
        if normalize_name(&name) != normalize_name(&parsed.name) {
            return Err(WheelError::DistInfo {
                wheel: filename.to_owned(),
                reason: format!(
                    "`{dist_info}/METADATA` names the project `{name}`, not `{}` as the file name does",
                    parsed.name
                ),
            });
        }
        let version = header(&metadata, "Version")
            .unwrap_or(&parsed.version)
            .to_owned();
        let stem = dist_info.trim_end_matches(".dist-info");
        Ok(Layout {
            data_dir: format!("{stem}.data"),
            dist_info,
            root_is_purelib,
            name,
            version,
        })
    }
}

/// One `[console_scripts]` or `[gui_scripts]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    pub(super) name: String,
    pub(super) module: String,
    /// `obj.attr` after the `:`.
    pub(super) attr: String,
}

/// The script entry points of an `entry_points.txt` (INI, `=` delimited, case kept), console
/// scripts first; a later line for the same name replaces an earlier one.
pub(crate) fn script_entry_points(
    filename: &str,
    text: &str,
) -> Result<Vec<EntryPoint>, WheelError> {
    let invalid = |entry: &str, reason: &str| WheelError::EntryPoint {
        wheel: filename.to_owned(),
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let mut by_group: BTreeMap<&str, BTreeMap<String, EntryPoint>> = BTreeMap::new();
    let mut section: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(match name.trim() {
                "console_scripts" => "0-console",
                "gui_scripts" => "1-gui",
                _ => "other",
            });
            continue;
        }
        let Some(group) = section.filter(|g| *g != "other") else {
            continue;
        };
        let (name, value) = trimmed
            .split_once('=')
            .ok_or_else(|| invalid(trimmed, "the line is not `name = module:attr`"))?;
        // The name becomes `<scripts>/<name>`: one file name, no `\` either.
        let name = name.trim();
        let name = FileName::new(name)
            .and_then(|n| {
                if n.as_str().contains('\\') {
                    Err(NameFault::Separator)
                } else {
                    Ok(n)
                }
            })
            .map_err(|fault| WheelError::BadName {
                wheel: filename.to_owned(),
                what: "a script entry point named",
                name: name.to_owned(),
                fault,
            })?;
        let name = name.as_str();
        // Extras in brackets select optional dependencies; they do not change the script.
        let value = value.split_once('[').map_or(value, |(v, _)| v).trim();
        let (module, attr) = value
            .split_once(':')
            .ok_or_else(|| invalid(name, "it names no callable (`module:function` expected)"))?;
        let (module, attr) = (module.trim(), attr.trim());
        if !is_dotted_identifier(module) || !is_dotted_identifier(attr) {
            return Err(invalid(
                name,
                "its object reference is not `module.path:object.attr`",
            ));
        }
        by_group.entry(group).or_default().insert(
            name.to_owned(),
            EntryPoint {
                name: name.to_owned(),
                module: module.to_owned(),
                attr: attr.to_owned(),
            },
        );
    }
    Ok(by_group
        .into_values()
        .flat_map(BTreeMap::into_values)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::source::pip::wheel::WheelError;
    use crate::source::pip::wheel::test_support::*;

    #[test]
    fn invalid_entry_points_are_refused() {
        for (line, what) in [
            ("../evil = demo:main", "path name"),
            ("nocall = demo", "no callable"),
            ("bad = demo:main; import os", "injection"),
            ("evil\u{1b}[2J = demo:main", "control character"),
        ] {
            let s = setup();
            let text = format!("[console_scripts]\n{line}\n");
            let files = demo_files(
                true,
                &[(
                    "demo-1.0.dist-info/entry_points.txt",
                    text.as_bytes(),
                    0o100644,
                )],
            );
            let err = s.install(&wheel_bytes(&files)).unwrap_err();
            assert!(
                matches!(
                    err,
                    WheelError::EntryPoint { .. } | WheelError::BadName { .. }
                ),
                "{what}: {err}"
            );
            // Printed escaped: a control character cannot reach the terminal.
            assert!(!err.to_string().contains(char::is_control), "{what}: {err}");
        }
    }

    #[test]
    fn newer_wheel_major_versions_are_refused() {
        let s = setup();
        let mut files = demo_files(true, &[]);
        files[2].1 = b"Wheel-Version: 2.0\nRoot-Is-Purelib: true\n".to_vec();
        assert_refused(
            &s,
            &wheel_bytes(&files),
            |e| matches!(e, WheelError::UnsupportedVersion { version, .. } if version == "2.0"),
        );
        // A newer minor version installs (with a warning).
        files[2].1 = b"Wheel-Version: 1.9\nRoot-Is-Purelib: true\n".to_vec();
        s.install(&wheel_bytes(&files)).unwrap();
    }

    #[test]
    fn dist_info_must_match_the_file_name() {
        let s = setup();
        let files = demo_files(true, &[]);
        let err = s
            .install_as(
                "other-1.0-py3-none-any.whl",
                &wheel_bytes(&files),
                &debian_scheme(),
                true,
            )
            .unwrap_err();
        assert!(matches!(err, WheelError::DistInfo { .. }), "{err}");
        let err = s
            .install_as(
                "demo-2.0-py3-none-any.whl",
                &wheel_bytes(&files),
                &debian_scheme(),
                true,
            )
            .unwrap_err();
        assert!(matches!(err, WheelError::DistInfo { .. }), "{err}");
        // Spelling differences that normalise away are fine.
        s.install_as(
            "Demo-1.0-py3-none-any.whl",
            &wheel_bytes(&files),
            &debian_scheme(),
            true,
        )
        .unwrap();
    }

    #[test]
    fn metadata_names_that_are_not_project_names_are_refused() {
        // `_` and `..` normalise alike, so the file name allows this METADATA; its headers
        // would go to `<headers>/../`.
        let s = setup();
        let mut files: Files = vec![
            (
                "_-1.0.dist-info/METADATA".to_owned(),
                b"Metadata-Version: 2.1\nName: ..\nVersion: 1.0\n".to_vec(),
                0o100644,
            ),
            (
                "_-1.0.dist-info/WHEEL".to_owned(),
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".to_vec(),
                0o100644,
            ),
            (
                "_-1.0.data/headers/x.h".to_owned(),
                b"int x;\n".to_vec(),
                0o100644,
            ),
        ];
        let record = record_of(&files, "_-1.0.dist-info/RECORD");
        files.push((
            "_-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        let err = s
            .install_as(
                "_-1.0-py3-none-any.whl",
                &zip_bytes(&files),
                &debian_scheme(),
                true,
            )
            .unwrap_err();
        // Refused by its file name already, before its METADATA could name a directory.
        assert!(matches!(&err, WheelError::BadFilename { .. }), "{err}");
    }
}
