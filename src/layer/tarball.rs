//! The deterministic tar writer.
//!
//! Every byte of the tar depends only on the [`LayerTree`] and the clamp time:
//! - entries in byte order of their path, parents before children (the tree is sorted);
//! - ustar headers with empty user/group names, so no build-machine account leaks in;
//! - uid/gid/mode exactly as the tree says, mtime fixed to SOURCE_DATE_EPOCH or 0;
//! - names over 100 bytes (and link targets, large ids, huge sizes) in a PAX header, whose
//!   own header name is derived from the entry name and never from a pid or clock.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{Content, Entry, EntryKind, ImagePath, LayerTree};
use crate::digest::{Digest, VerifyingReader};

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("cannot read `{path}` for image path {image_path}")]
    ReadSource {
        path: PathBuf,
        image_path: ImagePath,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{path}` changed size while the layer was written ({expected} bytes expected, {found} read); rebuild once the file is stable"
    )]
    SourceChanged {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("cannot write layer data")]
    Write(#[source] io::Error),
}

const USTAR_NAME_LEN: usize = 100;
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Writes `tree` as a tar stream to `out` and returns `out`. `on_file_bytes` is told of file
/// content bytes as they are written, for progress.
pub fn write_tar<W: Write>(
    tree: &LayerTree,
    mtime: u64,
    out: W,
    on_file_bytes: &mut dyn FnMut(u64),
) -> Result<W, TarError> {
    let mut writer = TarWriter {
        builder: tar::Builder::new(out),
        mtime,
        on_file_bytes,
    };
    for (path, entry) in tree.entries_with_parents() {
        writer.append(&path, &entry)?;
    }
    writer.builder.into_inner().map_err(TarError::Write)
}

/// What an entry's tar header says besides its owner, mode and time.
struct HeaderFields {
    entry_type: EntryType,
    name: String,
    link: Option<String>,
    size: u64,
}

impl HeaderFields {
    fn of(path: &ImagePath, entry: &Entry) -> HeaderFields {
        let (entry_type, name, link, size) = match &entry.kind {
            EntryKind::Directory => (EntryType::Directory, format!("{}/", path.as_str()), None, 0),
            EntryKind::File { size, .. } => {
                (EntryType::Regular, path.as_str().to_owned(), None, *size)
            }
            EntryKind::Symlink { target } => (
                EntryType::Symlink,
                path.as_str().to_owned(),
                Some(target.clone()),
                0,
            ),
            EntryKind::Hardlink { target } => (
                EntryType::Link,
                path.as_str().to_owned(),
                Some(target.as_str().to_owned()),
                0,
            ),
            EntryKind::Whiteout => {
                let name = match path.parent() {
                    Some(parent) => format!("{}/.wh.{}", parent.as_str(), path.file_name()),
                    None => format!(".wh.{}", path.file_name()),
                };
                (EntryType::Regular, name, None, 0)
            }
            EntryKind::Opaque => (
                EntryType::Regular,
                format!("{}/{}", path.as_str(), super::below::OPAQUE),
                None,
                0,
            ),
        };
        HeaderFields {
            entry_type,
            name,
            link,
            size,
        }
    }

    /// The PAX records for what does not fit the ustar header.
    fn pax_records(&self, entry: &Entry) -> Vec<(&'static str, Vec<u8>)> {
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if self.name.len() > USTAR_NAME_LEN {
            pax.push(("path", self.name.as_bytes().to_vec()));
        }
        if let Some(link) = &self.link
            && link.len() > USTAR_NAME_LEN
        {
            pax.push(("linkpath", link.as_bytes().to_vec()));
        }
        if u64::from(entry.uid) > USTAR_MAX_ID {
            pax.push(("uid", entry.uid.to_string().into_bytes()));
        }
        if u64::from(entry.gid) > USTAR_MAX_ID {
            pax.push(("gid", entry.gid.to_string().into_bytes()));
        }
        if self.size > USTAR_MAX_SIZE {
            pax.push(("size", self.size.to_string().into_bytes()));
        }
        pax
    }

    fn ustar_header(&self, entry: &Entry, mtime: u64) -> Header {
        let mut header = Header::new_ustar();
        set_truncated(&mut header.as_old_mut().name, self.name.as_bytes());
        if let Some(link) = &self.link {
            set_truncated(&mut header.as_old_mut().linkname, link.as_bytes());
        }
        header.set_entry_type(self.entry_type);
        header.set_mode(entry.mode & 0o7777);
        header.set_uid(u64::from(entry.uid).min(USTAR_MAX_ID));
        header.set_gid(u64::from(entry.gid).min(USTAR_MAX_ID));
        header.set_mtime(mtime);
        header.set_size(self.size.min(USTAR_MAX_SIZE));
        // The size field of a PAX-sized entry is only a hint; the reader takes the PAX value.
        header.set_cksum();
        header
    }
}

struct TarWriter<'a, W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
    on_file_bytes: &'a mut dyn FnMut(u64),
}

impl<W: Write> TarWriter<'_, W> {
    fn append(&mut self, path: &ImagePath, entry: &Entry) -> Result<(), TarError> {
        let fields = HeaderFields::of(path, entry);
        let pax = fields.pax_records(entry);
        if !pax.is_empty() {
            append_pax_header(&mut self.builder, &fields.name, self.mtime, &pax)
                .map_err(TarError::Write)?;
        }
        let header = fields.ustar_header(entry, self.mtime);
        match &entry.kind {
            EntryKind::File {
                content: Content::Host { path: host, .. },
                size,
            } => self.append_host_file(&header, path, HostFile::plain(host, *size))?,
            EntryKind::File {
                content: Content::Blob { path: host, digest },
                size,
            } => {
                let file = HostFile {
                    path: host,
                    digest: Some(digest),
                    size: *size,
                };
                self.append_host_file(&header, path, file)?;
            }
            EntryKind::File {
                content: Content::Inline(bytes),
                ..
            } => {
                self.builder
                    .append(&header, &bytes[..])
                    .map_err(TarError::Write)?;
                (self.on_file_bytes)(bytes.len() as u64);
            }
            _ => self
                .builder
                .append(&header, io::empty())
                .map_err(TarError::Write)?,
        }
        Ok(())
    }

    /// A file's content from the host (a blob's checked against its digest on the way); a
    /// file whose size is not the listed one fails the layer.
    fn append_host_file(
        &mut self,
        header: &Header,
        path: &ImagePath,
        host: HostFile,
    ) -> Result<(), TarError> {
        let HostFile {
            path: host_path,
            digest,
            size,
        } = host;
        let file = File::open(host_path).map_err(|source| TarError::ReadSource {
            path: host_path.to_owned(),
            image_path: path.clone(),
            source,
        })?;
        let length_now = file.metadata().map(|m| m.len()).unwrap_or(size);
        let inner: Box<dyn Read + '_> = match digest {
            Some(digest) => Box::new(VerifyingReader::new(file.take(size), digest.clone())),
            None => Box::new(file.take(size)),
        };
        let mut reader = CountingReader {
            inner,
            read: 0,
            on_bytes: &mut *self.on_file_bytes,
        };
        let result = self.builder.append(header, &mut reader);
        if reader.read != size || length_now != size {
            return Err(TarError::SourceChanged {
                path: host_path.to_owned(),
                expected: size,
                found: if length_now != size {
                    length_now
                } else {
                    reader.read
                },
            });
        }
        result.map_err(|source| TarError::ReadSource {
            path: host_path.to_owned(),
            image_path: path.clone(),
            source,
        })?;
        Ok(())
    }
}

/// A file whose content is read from the host, and the digest it must have if it is a blob.
struct HostFile<'a> {
    path: &'a Path,
    digest: Option<&'a Digest>,
    size: u64,
}

impl HostFile<'_> {
    fn plain(path: &Path, size: u64) -> HostFile<'_> {
        HostFile {
            path,
            digest: None,
            size,
        }
    }
}

/// Counts what was read, so that a file that shrank after it was listed is reported rather
/// than padded, and so that progress moves within large files.
struct CountingReader<'a, R> {
    inner: R,
    read: u64,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

fn set_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn append_pax_header<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    mtime: u64,
    records: &[(&str, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        // A record is "<len> <key>=<value>\n" where <len> counts its own digits.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len = len.to_string().len() + rest;
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut header = Header::new_ustar();
    let short: String = name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    set_truncated(
        &mut header.as_old_mut().name,
        format!("PaxHeaders/{short}").as_bytes(),
    );
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, &data[..])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::layer::Entry;

    fn inline(bytes: &[u8], mode: u32) -> Entry {
        Entry {
            kind: EntryKind::File {
                content: Content::Inline(Arc::from(bytes)),
                size: bytes.len() as u64,
            },
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn read_back(bytes: &[u8]) -> Vec<(String, EntryType, u32, u64, Option<String>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn long_names_links_and_whiteouts_round_trip() {
        let long = format!("/opt/{}/file", "d".repeat(150));
        let mut tree = LayerTree::default();
        tree.insert(ImagePath::new(&long).unwrap(), inline(b"abc", 0o640));
        tree.insert(
            ImagePath::new("/opt/link").unwrap(),
            Entry {
                kind: EntryKind::Symlink {
                    target: long.clone(),
                },
                mode: 0o777,
                uid: 0,
                gid: 0,
            },
        );
        tree.insert(
            ImagePath::new("/etc/gone").unwrap(),
            Entry {
                kind: EntryKind::Whiteout,
                mode: 0,
                uid: 0,
                gid: 0,
            },
        );
        tree.make_opaque(ImagePath::new("/etc/fresh").unwrap());
        let bytes = write_tar(&tree, 1234, Vec::new(), &mut |_| {}).unwrap();
        let entries = read_back(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        let long_rel = long.trim_start_matches('/');
        assert_eq!(
            names,
            [
                "etc/",
                "etc/fresh/",
                "etc/fresh/.wh..wh..opq",
                "etc/.wh.gone",
                "opt/",
                &format!("opt/{}/", "d".repeat(150)),
                long_rel,
                "opt/link"
            ]
        );
        assert!(entries.iter().all(|e| e.3 == 1234));
        let file = entries.iter().find(|e| e.0 == long_rel).unwrap();
        assert_eq!(file.2, 0o640);
        let link = entries.iter().find(|e| e.0 == "opt/link").unwrap();
        assert_eq!(link.1, EntryType::Symlink);
        assert_eq!(link.4.as_deref(), Some(long.as_str()));
        // No user or group names from the build machine.
        let mut archive = tar::Archive::new(&bytes[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username().unwrap(), Some(""));
            assert_eq!(e.header().groupname().unwrap(), Some(""));
        }
    }

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        let mut b = tar::Builder::new(Vec::new());
        // 8 bytes of value make a record of exactly 99 bytes only if the length is right.
        append_pax_header(&mut b, "x", 0, &[("path", vec![b'a'; 90])]).unwrap();
        let bytes = b.into_inner().unwrap();
        let data = &bytes[512..512 + 100];
        let text = String::from_utf8_lossy(data);
        let (len, _) = text.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        assert_eq!(data[len - 1], b'\n');
        assert_eq!(&data[len - 91..len - 1], &[b'a'; 90][..]);
    }
}
