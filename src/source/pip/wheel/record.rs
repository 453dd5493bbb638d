//! `RECORD`: the list of a wheel's files with their hashes and sizes.
//!
//! Input: the `RECORD` an archive ships and the extracted [`Listing`]. Output: an error unless
//! every file is listed with a matching hash (sha256, sha384 or sha512) and size; and, for an
//! install, the `RECORD` written back over the installed files so that `pip show -f` and
//! `pip uninstall` work in the image. RECORD is CSV as Python's `csv` module writes it.
//!
//! Spec: the binary distribution format (PEP 427,
//! <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#the-dist-info-directory>)
//! and recording installed projects (PEP 376,
//! <https://packaging.python.org/en/latest/specifications/recording-installed-packages/#the-record-file>).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha384, Sha512};

use super::WheelError;
use super::archive::{ListedFile, Listing, clean_path};
use crate::name::NameFault;

/// A digest as RECORD writes it: urlsafe base64 without padding.
pub(super) fn record_hash(digest: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest)
}

/// RFC 4180 / Python `csv` records: `,` separated, `"` quoted with `""` inside quotes.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".to_owned());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows.retain(|r| r.iter().any(|f| !f.is_empty()));
    Ok(rows)
}

pub(crate) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// RECORD's text from `(path, "hash,size")` rows: sorted by path, one CSV line each.
pub(super) fn write_record(mut rows: Vec<(String, String)>) -> String {
    rows.sort();
    let mut record = String::new();
    for (path, rest) in rows {
        record.push_str(&csv_field(&path));
        record.push(',');
        record.push_str(&rest);
        record.push('\n');
    }
    record
}

/// Whether `path` is RECORD or one of its signatures, which RECORD cannot hash.
fn is_record_or_signature(dist_info: &str, path: &str) -> bool {
    path.strip_prefix(dist_info)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| matches!(name, "RECORD" | "RECORD.jws" | "RECORD.p7s"))
}

/// Checks every archive file against RECORD: listed, and matching its hash and size if given.
pub(super) fn verify_record(
    filename: &str,
    files_dir: &Path,
    listing: &Listing,
    dist_info: &str,
) -> Result<(), WheelError> {
    let record_entry = format!("{dist_info}/RECORD");
    if !listing.files.iter().any(|f| f.path == record_entry) {
        return Err(WheelError::Missing {
            wheel: filename.to_owned(),
            entry: record_entry,
        });
    }
    let malformed = |reason: String| WheelError::Malformed {
        wheel: filename.to_owned(),
        entry: record_entry.clone(),
        reason,
    };
    let bytes = fs::read(files_dir.join(&record_entry)).map_err(|source| WheelError::Io {
        wheel: filename.to_owned(),
        entry: record_entry.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| malformed("it is not UTF-8".to_owned()))?;
    let rows = parse_csv(&text).map_err(malformed)?;
    let by_path: BTreeMap<&str, &ListedFile> =
        listing.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut recorded = BTreeSet::new();
    for row in &rows {
        let raw = row.first().map_or("", String::as_str);
        let path = match clean_path(raw) {
            Ok(path) if !path.is_empty() => path,
            Ok(_) | Err(NameFault::Absolute | NameFault::Climbs | NameFault::Separator) => {
                return Err(WheelError::RecordEscapes {
                    wheel: filename.to_owned(),
                    entry: raw.to_owned(),
                });
            }
            Err(fault) => {
                return Err(WheelError::BadName {
                    wheel: filename.to_owned(),
                    what: "a RECORD path",
                    name: raw.to_owned(),
                    fault,
                });
            }
        };
        let hash = row.get(1).map_or("", |h| h.trim());
        let size = row.get(2).map_or("", |s| s.trim());
        let file = by_path.get(path.as_str()).copied();
        recorded.insert(path.clone());
        // A RECORD line for a file the archive lacks installs nothing; pip ignores it too.
        let Some(file) = file else { continue };
        let mismatch = |what, expected: &str, found: String| WheelError::RecordMismatch {
            wheel: filename.to_owned(),
            entry: path.clone(),
            what,
            expected: expected.to_owned(),
            found,
        };
        if !hash.is_empty() {
            let (algorithm, value) = hash.split_once('=').ok_or_else(|| {
                malformed(format!(
                    "the hash of `{path}` is not `<algorithm>=<digest>`"
                ))
            })?;
            let value = value.trim_end_matches('=');
            let found = match algorithm {
                "sha256" => file.sha256.clone(),
                "sha384" | "sha512" => {
                    let bytes =
                        fs::read(files_dir.join(&file.path)).map_err(|source| WheelError::Io {
                            wheel: filename.to_owned(),
                            entry: path.clone(),
                            source,
                        })?;
                    if algorithm == "sha384" {
                        record_hash(&Sha384::digest(&bytes))
                    } else {
                        record_hash(&Sha512::digest(&bytes))
                    }
                }
                _ => {
                    return Err(WheelError::WeakHash {
                        wheel: filename.to_owned(),
                        entry: path.clone(),
                        algorithm: algorithm.to_owned(),
                    });
                }
            };
            if found != value {
                return Err(mismatch(
                    "hash",
                    &format!("{algorithm}={value}"),
                    format!("{algorithm}={found}"),
                ));
            }
        }
        if !size.is_empty() {
            let expected: u64 = size
                .parse()
                .map_err(|_| malformed(format!("the size of `{path}` is not a number")))?;
            if expected != file.size {
                return Err(mismatch("size", size, file.size.to_string()));
            }
        }
    }
    for file in &listing.files {
        if !recorded.contains(&file.path) && !is_record_or_signature(dist_info, &file.path) {
            return Err(WheelError::NotInRecord {
                wheel: filename.to_owned(),
                entry: file.path.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pip::wheel::WheelError;
    use crate::source::pip::wheel::test_support::*;
    use sha2::Sha256;

    #[test]
    fn record_hash_and_size_mismatches_are_refused() {
        let s = setup();
        let files = demo_files(true, &[]);
        let record = record_of(&files, "demo-1.0.dist-info/RECORD").replace(
            &record_hash(&Sha256::digest(&files[0].1)),
            &record_hash(&Sha256::digest(b"something else")),
        );
        assert_refused(
            &s,
            &wheel_with_record(&files, record),
            |e| matches!(e, WheelError::RecordMismatch { what: "hash", entry, .. } if entry == "demo/__init__.py"),
        );

        let size = files[0].1.len();
        let record = record_of(&files, "demo-1.0.dist-info/RECORD")
            .replace(&format!(",{size}\n"), &format!(",{}\n", size + 1));
        assert_refused(&s, &wheel_with_record(&files, record), |e| {
            matches!(e, WheelError::RecordMismatch { what: "size", .. })
        });

        let record = record_of(&files, "demo-1.0.dist-info/RECORD").replace("sha256=", "md5=");
        assert_refused(&s, &wheel_with_record(&files, record), |e| {
            matches!(e, WheelError::WeakHash { .. })
        });

        // sha512 is accepted when it matches.
        let mut record = String::new();
        for (path, bytes, _) in &files {
            record.push_str(&format!(
                "{path},sha512={},\n",
                record_hash(&Sha512::digest(bytes))
            ));
        }
        s.install(&wheel_with_record(&files, record)).unwrap();
    }

    #[test]
    fn record_paths_escaping_the_root_are_refused() {
        for bad in ["../../../etc/passwd", "/etc/passwd"] {
            let s = setup();
            let files = demo_files(true, &[]);
            let mut record = record_of(&files, "demo-1.0.dist-info/RECORD");
            record.push_str(&format!("{bad},,\n"));
            assert_refused(
                &s,
                &wheel_with_record(&files, record),
                |e| matches!(e, WheelError::RecordEscapes { entry, .. } if entry == bad),
            );
        }
    }

    #[test]
    fn files_missing_from_record_are_refused() {
        let s = setup();
        let files = demo_files(true, &[]);
        let mut all = files.clone();
        all.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record_of(&files, "demo-1.0.dist-info/RECORD").into_bytes(),
            0o100644,
        ));
        all.push((
            "demo/smuggled.py".to_owned(),
            b"import os\n".to_vec(),
            0o100644,
        ));
        assert_refused(
            &s,
            &zip_bytes(&all),
            |e| matches!(e, WheelError::NotInRecord { entry, .. } if entry == "demo/smuggled.py"),
        );

        // Without any RECORD at all.
        assert_refused(
            &s,
            &zip_bytes(&files),
            |e| matches!(e, WheelError::Missing { entry, .. } if entry == "demo-1.0.dist-info/RECORD"),
        );
    }

    #[test]
    fn record_csv_round_trips_quoted_fields() {
        let rows = parse_csv("a,b,c\r\n\"x,y\",\"say \"\"hi\"\"\",3\n\nlast,,").unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["x,y", "say \"hi\"", "3"],
                vec!["last", "", ""]
            ]
        );
        assert_eq!(csv_field("x,y"), "\"x,y\"");
        assert_eq!(csv_field("plain"), "plain");
        assert!(parse_csv("\"open").is_err());
    }
}
