//! A wheel rewritten so that its bytes depend only on the files in it: what a build backend
//! leaves to chance (the order it zips files in, which follows the order a directory is read
//! in; the times and modes of the files it wrote; the order of RECORD's lines) is made fixed.
//!
//! The wheel is read with the same checks as an install (`archive.rs`, `dist_info.rs`,
//! `record.rs`), so a backend's wheel that could not be installed is refused here already.
//! Then it is written again: files sorted by path with the `.dist-info` directory last and
//! `RECORD` at its end (as the binary distribution format recommends), no directory entries,
//! every entry dated 1980-01-01 00:00:00 (the earliest time a zip holds), mode 0644 or 0755,
//! deflated at one fixed level, and RECORD written anew from the files, sorted.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::WheelError;
use super::archive::extract;
use super::dist_info::Layout;
use super::name::parse_wheel_filename;
use super::record::{verify_record, write_record};

/// Rewrites the wheel `src` (named `filename`) as `dest`; `scratch` is an empty directory the
/// files are extracted into.
pub(crate) fn normalize_wheel(
    src: &Path,
    filename: &str,
    dest: &Path,
    scratch: &Path,
) -> Result<(), WheelError> {
    let parsed = parse_wheel_filename(filename)?;
    let listing = extract(src, filename, scratch)?;
    let files_dir = scratch.join("files");
    let layout = Layout::read(filename, &parsed, &files_dir, &listing)?;
    verify_record(filename, &files_dir, &listing, &layout.dist_info)?;

    let dist_info = format!("{}/", layout.dist_info);
    let record = format!("{}RECORD", dist_info);
    // Signatures of the backend's RECORD would not sign the one written here.
    let signature = |path: &str| path == format!("{record}.jws") || path == format!("{record}.p7s");
    let mut files: Vec<_> = listing
        .files
        .iter()
        .filter(|f| f.path != record && !signature(&f.path))
        .collect();
    // The listing is sorted by path; a stable sort moves the `.dist-info` files to the end.
    files.sort_by_key(|f| f.path.starts_with(&dist_info));
    let record_text = write_record(
        files
            .iter()
            .map(|f| (f.path.clone(), format!("sha256={},{}", f.sha256, f.size)))
            .chain([(record.clone(), ",".to_owned())])
            .collect(),
    );

    let io_err = |entry: &str| {
        let entry = entry.to_owned();
        move |source: io::Error| WheelError::Io {
            wheel: filename.to_owned(),
            entry,
            source,
        }
    };
    let zip_err = |entry: &str| {
        let entry = entry.to_owned();
        move |source: zip::result::ZipError| WheelError::ZipEntry {
            wheel: filename.to_owned(),
            entry,
            source,
        }
    };
    let out = fs::File::create(dest).map_err(io_err(&dest.display().to_string()))?;
    let mut zip = zip::ZipWriter::new(io::BufWriter::new(out));
    let options = |mode: u32, size: u64| {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(zip::DateTime::DEFAULT)
            .unix_permissions(mode)
            .large_file(size >= u64::from(u32::MAX))
    };
    for file in files {
        zip.start_file(file.path.as_str(), options(file.mode, file.size))
            .map_err(zip_err(&file.path))?;
        let mut bytes = fs::File::open(files_dir.join(&file.path)).map_err(io_err(&file.path))?;
        io::copy(&mut bytes, &mut zip).map_err(io_err(&file.path))?;
    }
    zip.start_file(record.as_str(), options(0o644, record_text.len() as u64))
        .map_err(zip_err(&record))?;
    zip.write_all(record_text.as_bytes())
        .map_err(io_err(&record))?;
    zip.finish()
        .map_err(zip_err(&record))?
        .into_inner()
        .map_err(|e| io_err(&record)(e.into_error()))?
        .sync_all()
        .map_err(io_err(&record))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pip::wheel::test_support::{FILENAME, demo_files, wheel_bytes, zip_bytes};

    fn normalized(bytes: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.whl");
        let dest = dir.path().join("out.whl");
        fs::write(&src, bytes).unwrap();
        fs::create_dir(dir.path().join("scratch")).unwrap();
        normalize_wheel(&src, FILENAME, &dest, &dir.path().join("scratch")).unwrap();
        fs::read(dest).unwrap()
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        let archive = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect()
    }

    #[test]
    fn order_modes_and_record_order_do_not_change_the_bytes() {
        let extra: &[(&str, &[u8], u32)] = &[
            ("demo/z.py", b"Z = 1\n", 0o100600),
            ("demo/a.py", b"A = 1\n", 0o100644),
            ("demo/tool", b"#!/bin/sh\n", 0o100700),
        ];
        let files = demo_files(true, extra);
        let mut reversed = files.clone();
        reversed.reverse();
        for file in &mut reversed {
            // What another umask makes of the same files.
            file.2 = if file.2 & 0o100 != 0 {
                0o100755
            } else {
                0o100664
            };
        }
        let one = normalized(&wheel_bytes(&files));
        let two = normalized(&wheel_bytes(&reversed));
        assert_eq!(one, two);
        let listed = names(&one);
        assert_eq!(listed.last().unwrap(), "demo-1.0.dist-info/RECORD");
        let first_dist_info = listed
            .iter()
            .position(|n| n.contains(".dist-info/"))
            .unwrap();
        assert!(
            listed[first_dist_info..]
                .iter()
                .all(|n| n.contains(".dist-info/")),
            "the .dist-info files come last: {listed:?}"
        );
        let mut archive = zip::ZipArchive::new(io::Cursor::new(&one)).unwrap();
        for i in 0..archive.len() {
            let entry = archive.by_index(i).unwrap();
            let name = entry.name().unwrap().into_owned();
            assert_eq!(entry.last_modified(), Some(zip::DateTime::DEFAULT));
            let expected = if name == "demo/tool" {
                0o100755
            } else {
                0o100644
            };
            assert_eq!(entry.unix_mode(), Some(expected), "{name}");
        }
        // Normalising is idempotent, and the result installs (its RECORD matches).
        assert_eq!(normalized(&one), one);
    }

    #[test]
    fn a_wheel_whose_record_does_not_match_is_refused() {
        let mut files = demo_files(true, &[]);
        let mut record =
            crate::source::pip::wheel::test_support::record_of(&files, "demo-1.0.dist-info/RECORD");
        record = record.replacen("sha256=", "sha256=AAAA", 1);
        files.push((
            "demo-1.0.dist-info/RECORD".to_owned(),
            record.into_bytes(),
            0o100644,
        ));
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.whl");
        fs::write(&src, zip_bytes(&files)).unwrap();
        fs::create_dir(dir.path().join("scratch")).unwrap();
        let err = normalize_wheel(
            &src,
            FILENAME,
            &dir.path().join("out.whl"),
            &dir.path().join("scratch"),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                WheelError::RecordMismatch { .. } | WheelError::NotInRecord { .. }
            ),
            "{err}"
        );
    }
}
